"""The PostgreSQL servers tests run against: one backend per session, chosen by environment.

PGPROV_TEST_BACKEND=container|local|dsn (default: container when a Docker-compatible engine
answers, else local); PGPROV_TEST_PG=15|18 picks the local binaries; PGPROV_TEST_DSN is the
superuser DSN for the dsn backend; PGPROV_REQUIRE_CONTAINERS=1 turns a missing engine into a
failure instead of a fallback. Shipped in the package for the pytest plugin; this repo's tests
import it through tests/pgserver.py.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from pgprov.local.embedded import LocalCluster
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo


class BackendUnavailable(RuntimeError):
    """The requested test backend cannot run on this machine."""


@dataclass
class Server:
    """A running server and a superuser that the tests may use freely."""

    backend: str
    host: str
    port: int
    superuser: str
    password: str
    major: int = 0
    cluster: LocalCluster | None = None
    passfile: Path = field(default_factory=Path)

    def dsn(self, dbname: str = "postgres", **extra: str) -> str:
        return make_conninfo(
            host=self.host,
            port=str(self.port),
            user=self.superuser,
            password=self.password,
            dbname=dbname,
            **extra,
        )

    def url(self, dbname: str = "postgres") -> str:
        return f"postgres://{self.superuser}:{self.password}@{self.host}:{self.port}/{dbname}"

    def libpq_env(self) -> dict[str, str]:
        """Admin connection for deploys: libpq variables, password through a 0600 passfile."""
        return {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.superuser,
            "PGPASSFILE": str(self.passfile),
            "PGDATABASE": "postgres",
        }

    def connect(self, dbname: str = "postgres", **kwargs) -> psycopg.Connection:
        return psycopg.connect(self.dsn(dbname), autocommit=True, **kwargs)

    @classmethod
    def from_cluster(cls, cluster: LocalCluster) -> Server:
        """A running local cluster as a Server (its passfile lives in the cluster's directory)."""
        return cls(
            backend="local",
            host="127.0.0.1",
            port=cluster.port,
            superuser=cluster.superuser,
            password=cluster.password,
            cluster=cluster,
        ).finish(Path(cluster.base))

    def finish(self, directory: Path | None = None) -> Server:
        """Read the server's major version; write a passfile (in ``directory`` if given)."""
        with self.connect() as conn:
            self.major = conn.info.server_version // 10000
        fd, name = tempfile.mkstemp(prefix="pgprov-pgpass-", dir=directory)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{self.host}:{self.port}:*:{self.superuser}:{self.password}\n")
        self.passfile = Path(name)
        return self


def choose_backend() -> str:
    wanted = os.environ.get("PGPROV_TEST_BACKEND", "").strip()
    if wanted:
        if wanted not in ("container", "local", "dsn"):
            raise BackendUnavailable(
                f"PGPROV_TEST_BACKEND={wanted!r}: expected container, local or dsn"
            )
        return wanted
    from pgprov.testing.containers import engine_available

    if engine_available():
        return "container"
    if os.environ.get("PGPROV_REQUIRE_CONTAINERS") == "1":
        raise BackendUnavailable(
            "PGPROV_REQUIRE_CONTAINERS=1 but no Docker-compatible engine answers "
            "(run `bash tests/containers/setup.sh` and `source .cache/podman/env.sh`)"
        )
    return "local"


def make_base(prefix: str) -> Path:
    """A temporary directory that an unprivileged server user can enter."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)
    return base


@contextlib.contextmanager
def local_server(
    major: str | None = None, settings: dict[str, str] | None = None
) -> Iterator[Server]:
    base = make_base("pgprov-test-")
    cluster = LocalCluster.create(
        base / "cluster",
        major=major,
        settings={
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            **(settings or {}),
        },
    )
    try:
        cluster.start()
        yield Server.from_cluster(cluster)
    finally:
        cluster.destroy()
        with contextlib.suppress(OSError):
            base.rmdir()


@contextlib.contextmanager
def open_server() -> Iterator[Server]:
    """The session's server, from the chosen backend; stopped when the block ends."""
    with _open_server() as server:
        try:
            yield server
        finally:
            if server.passfile.name:
                server.passfile.unlink(missing_ok=True)


@contextlib.contextmanager
def _open_server() -> Iterator[Server]:
    backend = choose_backend()
    if backend == "local":
        with local_server(os.environ.get("PGPROV_TEST_PG") or None) as server:
            yield server
    elif backend == "dsn":
        dsn = os.environ.get("PGPROV_TEST_DSN")
        if not dsn:
            raise BackendUnavailable("PGPROV_TEST_BACKEND=dsn needs PGPROV_TEST_DSN")
        params = conninfo_to_dict(dsn)
        server = Server(
            backend="dsn",
            host=str(params.get("host", "127.0.0.1")),
            port=int(params.get("port", 5432)),
            superuser=str(params.get("user", "postgres")),
            password=str(params.get("password", "")),
        ).finish()
        yield server
    else:
        from pgprov.testing.containers import postgres_container

        with postgres_container() as info:
            yield Server(
                backend="container",
                host=info.host,
                port=info.port,
                superuser=info.user,
                password=info.password,
            ).finish()


def drop_prefixed(server: Server, prefix: str) -> None:
    """Remove every database and role whose name starts with ``prefix``."""
    with server.connect() as conn:
        like = prefix + "%"
        for (db,) in conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (like,)
        ).fetchall():
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db))
            )
        roles = [
            r
            for (r,) in conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolname LIKE %s", (like,)
            ).fetchall()
        ]
        if not roles:
            return
        for (db,) in conn.execute(
            "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate"
        ).fetchall():
            with server.connect(db) as dbconn:
                dbconn.execute(
                    sql.SQL("DROP OWNED BY {}").format(
                        sql.SQL(", ").join(map(sql.Identifier, roles))
                    )
                )
        for role in roles:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
