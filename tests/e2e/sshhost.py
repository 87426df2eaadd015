"""A real SSH target on loopback for e2e tests: OpenSSH, a sudo user, PostgreSQL on the "host".

Everything runs on this machine as root, following the team notes (notes-ssh-on-loopback.md):
an ``sshd`` on a free 127.0.0.1 port with a generated host key (pinned in a known_hosts file)
and a generated client key, a deploy user with NOPASSWD sudo (a drop-in in /etc/sudoers.d
that also logs every sudo command to a file), and a ``LocalCluster`` whose unix socket admits
``sudo -u pgprov psql`` by peer authentication and whose TCP side listens on 127.0.0.1 only.
Every piece is undone when its context ends, whether or not the test passed.

    with ssh_target(directory / "ssh") as target, cluster_on_target(directory, "15") as server:
        inventory = ssh_inventory(directory, target, {"pg_profile": "split", ...})
        proc = run_pyinfra(inventory, env={"APP_MIGRATOR_PASSWORD": ...}, home=directory / "home")
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgprov.local.embedded import LocalCluster, free_port

from tests.deploykit import PYINFRA, REPO, write_inventory
from tests.pgserver import Server

SSHD = Path("/usr/sbin/sshd")
SFTP_SERVER = Path("/usr/lib/openssh/sftp-server")
SUDOERS_DIR = Path("/etc/sudoers.d")
PRIVSEP_DIR = Path("/run/sshd")
MISSING_TOOLS_HINT = "apt-get install -y openssh-server sudo"
# Where a careless deploy leaves files on the target: the world-writable scratch places.
SCRATCH_DIRS = (Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"))  # noqa: S108


class TargetUnavailable(RuntimeError):
    """This machine cannot host the SSH target (not root, or OpenSSH/sudo missing)."""


def check_prerequisites() -> None:
    if os.geteuid() != 0:
        raise TargetUnavailable("the SSH target needs root (useradd, sudoers, sshd)")
    missing = [
        str(tool)
        for tool in (SSHD, SFTP_SERVER, Path("/usr/bin/sudo"), Path("/usr/bin/ssh-keygen"))
        if not tool.exists()
    ]
    if missing or not SUDOERS_DIR.is_dir():
        raise TargetUnavailable(
            f"missing {', '.join(missing) or SUDOERS_DIR}: {MISSING_TOOLS_HINT}"
        )


@dataclass
class SshTarget:
    """A running sshd on 127.0.0.1 and the deploy user it lets in (key only, NOPASSWD sudo)."""

    directory: Path
    port: int
    user: str
    home: Path
    key: Path
    known_hosts: Path
    ssh_config: Path
    sshd_log: Path
    sudo_log: Path
    trace_log: Path | None = None  # strace -f of sshd and everything it starts

    def host_data(self, **overrides: Any) -> dict[str, Any]:
        """The inventory's SSH connector keys: this key, this pinned host key, nothing else."""
        return {
            "ssh_port": self.port,
            "ssh_user": self.user,
            "ssh_key": str(self.key),
            "ssh_known_hosts_file": str(self.known_hosts),
            "ssh_strict_host_key_checking": "yes",
            "ssh_config_file": str(self.ssh_config),
            "ssh_allow_agent": False,
            "ssh_look_for_keys": False,
            **overrides,
        }


def _keygen(path: Path) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def new_client_key(directory: Path, name: str) -> Path:
    """A fresh ed25519 key pair (private key path returned) that no server knows."""
    return _keygen(directory / name)


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise TargetUnavailable(
                f"sshd exited with {proc.returncode}: {log.read_text()[-2000:]}"
            )
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TargetUnavailable(f"sshd did not listen on 127.0.0.1:{port}: {log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen[bytes], pidfile: Path) -> None:
    """Stop sshd itself (by its pid file: under strace, ``proc`` is strace, which would only
    detach on SIGTERM and leave sshd listening), then reap ``proc``."""
    with contextlib.suppress(OSError, ValueError):
        os.kill(int(pidfile.read_text().split()[0]), signal.SIGTERM)
    if proc.poll() is None:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _strace_works() -> bool:
    strace = shutil.which("strace")
    if not strace:
        return False
    probe = subprocess.run(
        [strace, "-f", "-qq", "-e", "trace=execve", "-o", "/dev/null", "true"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


@contextlib.contextmanager
def ssh_target(directory: Path, *, trace: bool = True) -> Iterator[SshTarget]:
    """sshd + deploy user + sudoers drop-in, all removed when the block ends.

    ``trace`` runs sshd under ``strace -f`` (execve and openat of sshd, its session children,
    sudo, sh and psql) when strace can ptrace here, so tests can see argv and files touched.
    """
    check_prerequisites()
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    suffix = secrets.token_hex(3)
    user = f"pgprov_deploy_{suffix}"
    with contextlib.ExitStack() as cleanup:
        host_key = _keygen(directory / "ssh_host_ed25519_key")
        key = _keygen(directory / "id_deploy")
        port = free_port()
        known_hosts = directory / "known_hosts"
        known_hosts.write_text(
            f"[127.0.0.1]:{port} {' '.join(host_key.with_suffix('.pub').read_text().split()[:2])}\n"
        )
        ssh_config = directory / "ssh_config"
        ssh_config.write_text("")
        authorized = directory / "authorized_keys"
        authorized.mkdir(mode=0o755)
        shutil.copy(key.with_suffix(".pub"), authorized / user)

        subprocess.run(
            ["useradd", "--create-home", "--shell", "/bin/sh", user],
            check=True,
            capture_output=True,
        )
        cleanup.callback(
            subprocess.run, ["userdel", "--remove", user], check=False, capture_output=True
        )
        # useradd leaves the password "!" (locked): sshd refuses locked accounts without PAM.
        subprocess.run(["usermod", "-p", "*", user], check=True, capture_output=True)
        home = Path(pwd.getpwnam(user).pw_dir)

        sudo_log = directory / "sudo.log"
        sudo_log.touch()
        rules = directory / "sudoers"
        rules.write_text(
            f"Defaults:{user} logfile={sudo_log}, loglinelen=0, !syslog\n"
            f"{user} ALL=(ALL:ALL) NOPASSWD: ALL\n"
        )
        subprocess.run(["visudo", "-cqf", str(rules)], check=True, capture_output=True)
        # No dots in the name: sudo skips drop-ins whose name contains one.
        dropin = SUDOERS_DIR / f"90-pgprov-deploy-{suffix}"
        cleanup.callback(dropin.unlink, missing_ok=True)
        shutil.copy(rules, dropin)
        dropin.chmod(0o440)

        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        sshd_log = directory / "sshd.log"
        pidfile = directory / "sshd.pid"
        config = directory / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {host_key}",
                    f"PidFile {pidfile}",
                    f"AuthorizedKeysFile {authorized}/%u",
                    f"AllowUsers {user}",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",
                    "AllowTcpForwarding yes",
                    # DEBUG1 logs each direct-tcpip channel (the tunnel) with its target.
                    "LogLevel DEBUG1",
                    f"Subsystem sftp {SFTP_SERVER}",
                    "",
                ]
            )
        )
        command = [str(SSHD), "-f", str(config), "-D", "-E", str(sshd_log)]
        trace_log = None
        if trace and _strace_works():
            trace_log = directory / "sshd.strace"
            command = [
                "strace", "-f", "-qq", "-s", "4096", "-e", "trace=execve,openat,unlink,unlinkat,rename",
                "-o", str(trace_log), *command,
            ]  # fmt: skip
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        cleanup.callback(_stop, proc, pidfile)
        _wait_listening(port, proc, sshd_log, timeout=15)
        yield SshTarget(
            directory=directory,
            port=port,
            user=user,
            home=home,
            key=key,
            known_hosts=known_hosts,
            ssh_config=ssh_config,
            sshd_log=sshd_log,
            sudo_log=sudo_log,
            trace_log=trace_log,
        )


@contextlib.contextmanager
def cluster_on_target(directory: Path, major: str | None) -> Iterator[Server]:
    """PostgreSQL on the target: ``sudo -u pgprov psql`` gets in by peer on the unix socket;
    TCP (127.0.0.1 only) wants SCRAM passwords. Every connection is logged.

    The returned Server is the controller's superuser view (TCP, passfile) for assertions.
    """
    base = directory / "cluster"
    cluster = LocalCluster.create(
        base,
        major=major,
        settings={
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "log_connections": "on",
        },
        superuser="pgprov",
        auth_local="peer",
    )
    try:
        cluster.start()
        yield Server.from_cluster(cluster)
    finally:
        cluster.destroy()


def ssh_inventory(directory: Path, target: SshTarget, data: dict[str, Any]) -> Path:
    """inventory.py with the single host ``127.0.0.1`` reached through ``target``."""
    return write_inventory(directory, {**target.host_data(), **data}, host="127.0.0.1")


def run_pyinfra(
    inventory: Path,
    *args: str,
    env: dict[str, str],
    home: Path,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """``pyinfra -y <inventory> deploy/provision.py`` (``--dry`` instead of ``-y`` when given).

    The controller's environment is cleaned of libpq variables (the admin goes through sudo on
    the target, so nothing may depend on them) and HOME is private (no ~/.ssh of root's).
    """
    flags = list(args) if "--dry" in args else ["-y", *args]
    base = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    home.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [PYINFRA, *flags, str(inventory), "deploy/provision.py"],
        cwd=REPO,
        env={**base, "HOME": str(home), "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class LogCursor:
    """Reads what a log file gained since the last ``mark()`` (nothing, for no file)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.offset = self._size()

    def _size(self) -> int:
        return self.path.stat().st_size if self.path and self.path.exists() else 0

    def mark(self) -> None:
        self.offset = self._size()

    def since(self) -> str:
        if self.path is None or not self.path.exists():
            return ""
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            return fh.read().decode("utf-8", "replace")


@dataclass
class PgSession:
    """One backend's connection log lines (log_connections=on), keyed by its pid."""

    pid: str
    source: str = ""  # "[local]" or "127.0.0.1 port=NNNN"
    method: str = ""  # peer, scram-sha-256, ...
    identity: str = ""
    user: str = ""
    database: str = ""

    @property
    def over_tcp(self) -> bool:
        return self.source.startswith("127.0.0.1")


_PG_LINE = re.compile(r"\[(?P<pid>\d+)\] LOG:\s+connection (?P<what>\w+): (?P<rest>.*)$")


def pg_sessions(log: str) -> list[PgSession]:
    """Sessions from a server log with the default log_line_prefix ('%m [%p] ')."""
    sessions: dict[str, PgSession] = {}
    for line in log.splitlines():
        found = _PG_LINE.search(line)
        if not found:
            continue
        session = sessions.setdefault(found["pid"], PgSession(found["pid"]))
        rest = found["rest"]
        if found["what"] == "received":
            session.source = rest.removeprefix("host=")
        elif match := re.match(r'identity="([^"]*)" method=(\S+)', rest):
            session.identity, session.method = match.groups()
        elif match := re.match(r"user=(\S+) database=(\S+)", rest):
            session.user, session.database = match.groups()
    return list(sessions.values())


_DIRECT_TCPIP = re.compile(
    r"server_request_direct_tcpip: originator (?P<orig>\S+) port (?P<oport>\d+), "
    r"target (?P<host>\S+) port (?P<port>\d+)"
)


def direct_tcpip_targets(sshd_log: str) -> list[tuple[str, int]]:
    """(host, port) of every direct-tcpip channel sshd was asked for (LogLevel DEBUG1)."""
    return [(m["host"], int(m["port"])) for m in _DIRECT_TCPIP.finditer(sshd_log)]


@dataclass
class SudoCommand:
    user: str  # the deploy user who ran sudo
    run_as: str
    command: str


_SUDO_LINE = re.compile(r": (?P<user>[^ :]+) : .*?USER=(?P<as>[^ ;]+) ; COMMAND=(?P<cmd>.*)$")


def sudo_commands(sudo_log: str) -> list[SudoCommand]:
    """Commands from sudo's own log file (one line each: loglinelen=0)."""
    return [
        SudoCommand(m["user"], m["as"], m["cmd"])
        for m in map(_SUDO_LINE.search, sudo_log.splitlines())
        if m
    ]


@dataclass
class Trace:
    """What strace saw the target side do: argv of every exec, every file opened for writing."""

    execs: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)


_EXECVE = re.compile(r"execve\(\"[^\"]*\", \[(?P<argv>.*?)\], ")
_OPEN_WRITE = re.compile(r"openat\([^,]+, \"(?P<path>[^\"]+)\", (?P<flags>[A-Z_|]+)")


def parse_trace(text: str) -> Trace:
    trace = Trace()
    for line in text.splitlines():
        if match := _EXECVE.search(line):
            trace.execs.append(match["argv"])
        elif (match := _OPEN_WRITE.search(line)) and re.search(
            r"O_WRONLY|O_RDWR|O_CREAT", match["flags"]
        ):
            trace.written.append(match["path"])
    return trace


def files_containing(
    roots: Iterable[Path],
    needles: Mapping[str, str],
    *,
    newer_than: float,
    exclude: Iterable[Path] = (),
    max_size: int = 16 * 1024 * 1024,
) -> dict[Path, list[str]]:
    """Regular files under ``roots`` modified after ``newer_than`` that contain a needle
    (PostgreSQL data directories excepted).

    ``needles`` maps a label to a secret; each file found comes with the labels of the secrets
    it holds (never the secrets themselves, which would end up in test reports).
    """
    wanted = {label: value.encode() for label, value in needles.items() if value}
    skip = [p.resolve() for p in exclude]
    found: dict[Path, list[str]] = {}
    for root in roots:
        if not root.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            here = Path(dirpath)
            if "PG_VERSION" in filenames:
                # A PostgreSQL data directory: the server's own storage, where verifiers belong.
                dirnames[:] = []
                continue
            dirnames[:] = [d for d in dirnames if (here / d).resolve() not in skip]
            for name in filenames:
                path = here / name
                try:
                    st = path.lstat()
                    if not path.is_file() or path.is_symlink():
                        continue
                    if st.st_mtime < newer_than and st.st_ctime < newer_than:
                        continue
                    if st.st_size > max_size:
                        continue
                    data = path.read_bytes()
                except OSError:
                    continue
                hits = [label for label, value in wanted.items() if value in data]
                if hits:
                    found[path] = hits
    return found
