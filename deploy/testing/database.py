"""A database provisioned like production on a test server: the real deploy, through pyinfra's API.

Split profile (the migrator owns database and schema ``app``; the runtime has only
SELECT/INSERT/UPDATE/DELETE and sequence rights), the Aerich migrations applied as the
migrator, the JSONB GIN index built. Role passwords are generated, kept in 0600 files that
the deploy reads by reference, and appear only inside the URLs (never in a repr).

    with provisioned_database(server, directory) as db:
        psycopg.connect(db.runtime_url)
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pgprov.testing.servers import Server, drop_prefixed

# Production's operator class (inventories/staging.py, production.py): the service's queries use `?`.
GIN_OPCLASS = "jsonb_ops"


class ProvisioningError(RuntimeError):
    """The deploy did not bring the test database to its declared state (one line)."""


@dataclass(frozen=True)
class ProvisionedDatabase:
    """Where the provisioned database is and how the application's two roles reach it."""

    host: str
    port: int
    database: str
    schema: str
    runtime: str
    migrator: str
    server_version: int
    runtime_password: str = field(repr=False)
    migrator_password: str = field(repr=False)

    def _url(self, role: str, password: str) -> str:
        return (
            f"postgres://{quote(role, safe='')}:{quote(password, safe='')}"
            f"@{self.host}:{self.port}/{quote(self.database, safe='')}"
        )

    @property
    def runtime_url(self) -> str:
        """The least-privileged role the application runs as (psycopg and Tortoise accept it)."""
        return self._url(self.runtime, self.runtime_password)

    @property
    def migrator_url(self) -> str:
        """The role that owns the schema and runs migrations."""
        return self._url(self.migrator, self.migrator_password)


def _secret_file(directory: Path, name: str, value: str) -> str:
    path = directory / f"{name}.secret"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return f"file:{path}"


def deploy(data: dict[str, Any]) -> None:
    """Run the deploy for one ``@local`` host with ``data``; ProvisioningError unless it succeeded."""
    from pgprov.steps.environment import environment
    from pgprov.steps.plan import HostRun
    from pyinfra.api import Config, Inventory, State
    from pyinfra.api.connect import connect_all, disconnect_all
    from pyinfra.api.deploy import add_deploy
    from pyinfra.api.exceptions import PyinfraError
    from pyinfra.api.operations import run_ops

    inventory = Inventory((["@local"], data))
    state = State(inventory, Config())
    host = inventory.get_host("@local")
    run = HostRun()
    try:
        connect_all(state)
        add_deploy(state, environment, run=run)
        run_ops(state)
    except PyinfraError as exc:
        errors = run.errors
        raise ProvisioningError(f"pgprov_database: {errors[0] if errors else exc}") from None
    finally:
        disconnect_all(state)
    results = state.get_results_for_host(host)
    if results.error_ops or results.success_ops != results.ops:
        raise ProvisioningError(
            f"pgprov_database: the deploy failed on {data['pg_admin_host']}:{data['pg_admin_port']} "
            f"({results.error_ops} of {results.ops} steps failed)"
        )


@contextlib.contextmanager
def provisioned_database(
    server: Server, directory: Path, *, prefix: str | None = None
) -> Iterator[ProvisionedDatabase]:
    """Provision on ``server``; production's names unless ``prefix`` (a shared server), in which
    case the database and roles are dropped when the block ends."""
    names = {
        "database": f"{prefix}_db" if prefix else "hinfelaar_fastapi",
        "migrator": f"{prefix}_migrator" if prefix else "app_migrator",
        "runtime": f"{prefix}_runtime" if prefix else "app_runtime",
    }
    passwords = {role: secrets.token_urlsafe(24) for role in ("migrator", "runtime")}
    data = {
        "pg_inventory": "pgprov_database fixture",
        "pg_environment": "test",
        "pg_profile": "split",
        "pg_gin_opclass": GIN_OPCLASS,
        "pg_database": names["database"],
        "pg_migrator": names["migrator"],
        "pg_runtime": names["runtime"],
        "pg_admin_host": server.host,
        "pg_admin_port": server.port,
        "pg_admin_user": server.superuser,
        "pg_admin_password": _secret_file(directory, "admin", server.password),
        "pg_app_host": server.host,
        "pg_app_port": server.port,
        "pg_migrator_password": _secret_file(directory, "migrator", passwords["migrator"]),
        "pg_runtime_password": _secret_file(directory, "runtime", passwords["runtime"]),
    }
    try:
        deploy(data)
        yield ProvisionedDatabase(
            host=server.host,
            port=server.port,
            database=names["database"],
            schema="app",
            runtime=names["runtime"],
            migrator=names["migrator"],
            server_version=server.major,
            runtime_password=passwords["runtime"],
            migrator_password=passwords["migrator"],
        )
    finally:
        if prefix:
            drop_prefixed(server, prefix)
