"""Helpers for the e2e tests of the schema step, the GIN index and the service's data layer.

rows = query(pg_server, env, "SELECT version FROM app.aerich")   # as the superuser
proc = aerich_cli(pg_server, env, "heads")                         # the aerich CLI
location = migrations_copy(tmp_path, extra={"1_20270101000000_broken.py": BROKEN})
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pgprov.app_schema.config import APP_LABEL, MIGRATIONS_LOCATION
from psycopg import sql

from tests.deploykit import REPO, DeployEnv
from tests.pgserver import Server

AERICH = str(Path(sys.executable).parent / "aerich")
SCHEMA = "app"
GIN_INDEX = "idx_checklistresponse_answers_gin"
INITIAL = next(Path(MIGRATIONS_LOCATION, APP_LABEL).glob("0_*.py")).name
MIGRATIONS_ENV = "PGPROV_MIGRATIONS_LOCATION"
"""The hook the tests need: the migrations location the deploy (and its child) should use."""


def database(env: DeployEnv) -> str:
    return str(env.data["pg_database"])


def query(server: Server, env: DeployEnv, statement: str, params: Any = None) -> list[tuple]:
    """Run one statement as the superuser in the environment's database; rows (or [])."""
    with server.connect(database(env)) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


def execute(server: Server, env: DeployEnv, statement: str | sql.Composable) -> None:
    with server.connect(database(env)) as conn:
        conn.execute(statement)


def role_url(server: Server, env: DeployEnv, which: str) -> str:
    """postgres:// URL of a managed role (``migrator``, ``runtime`` or ``app_user``)."""
    role = str(env.data[f"pg_{which}"])
    password = env.passwords[which]
    return (
        f"postgres://{quote(role, safe='')}:{quote(password, safe='')}"
        f"@{server.host}:{server.port}/{database(env)}"
    )


def aerich_cli(
    server: Server, env: DeployEnv, *args: str, which: str = "migrator"
) -> subprocess.CompletedProcess[str]:
    """The ``aerich`` CLI as a developer runs it: config from DATABASE_URL and DB_SCHEMA."""
    environ = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DATABASE_URL": role_url(server, env, which),
        "DB_SCHEMA": SCHEMA,
    }
    return subprocess.run(
        [AERICH, *args],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def aerich_versions(server: Server, env: DeployEnv) -> list[str]:
    """Every recorded version, duplicates included, in insertion order."""
    return [r[0] for r in query(server, env, "SELECT version FROM app.aerich ORDER BY id")]


def tables_in_schema(server: Server, env: DeployEnv) -> set[str]:
    rows = query(
        server,
        env,
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind = 'r'",
        (SCHEMA,),
    )
    return {r[0] for r in rows}


def runtime_privileges_on(server: Server, env: DeployEnv, table: str) -> list[str]:
    """Privileges the runtime role holds on app.<table> directly (from the ACL itself)."""
    rows = query(
        server,
        env,
        "SELECT a.privilege_type FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace, "
        "LATERAL aclexplode(COALESCE(c.relacl, acldefault('r', c.relowner))) a "
        "WHERE n.nspname = %s AND c.relname = %s AND a.grantee = %s::regrole "
        "ORDER BY 1",
        (SCHEMA, table, env.data["pg_runtime"]),
    )
    return [r[0] for r in rows]


def migrations_copy(directory: Path, extra: dict[str, str] | None = None) -> Path:
    """A copy of the committed migrations location, plus ``extra`` version files."""
    location = directory / "migrations"
    shutil.copytree(
        Path(MIGRATIONS_LOCATION), location, ignore=shutil.ignore_patterns("__pycache__")
    )
    for name, text in (extra or {}).items():
        (location / APP_LABEL / name).write_text(text)
    return location


def migration_source(upgrade_sql: str, downgrade_sql: str = "SELECT 1;") -> str:
    """An Aerich version file whose upgrade returns ``upgrade_sql``."""
    return (
        "from tortoise import BaseDBAsyncClient\n\n"
        "RUN_IN_TRANSACTION = True\n\n\n"
        "async def upgrade(db: BaseDBAsyncClient) -> str:\n"
        f"    return {upgrade_sql!r}\n\n\n"
        "async def downgrade(db: BaseDBAsyncClient) -> str:\n"
        f"    return {downgrade_sql!r}\n"
    )
