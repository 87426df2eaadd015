"""Names are data: a catalog full of hostile names is planned, audited and repaired.

Names a stranger may choose (roles, schemas, tables, functions) carrying psql meta-commands
(``\\g``, ``\\!``, ``\\o``, ``\\copy``, ``\\gexec``), psql variables (``:name``), quotes, semicolons,
newlines, unicode and 63 bytes. The plan and the audit exit 1 naming the drift (never 2, never a
traceback), one deploy repairs it, the next sends nothing, the audit is then clean; no command
hidden in a name ran on the controller or the server's host.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg import sql

from tests.deploykit import DeployEnv, env_data, run_api, write_inventory
from tests.e2e.helpers import console
from tests.pgserver import Names, Server, drop_prefixed

pytestmark = pytest.mark.db

BIN = Path(sys.executable).parent


def hostile_names(prefix: str, witness: Path) -> list[str]:
    """One name per trick, each unique to this test (``prefix``) and at most 63 bytes."""
    names = [
        f"{prefix} evil \\g",
        f"{prefix}\\! touch {witness}",
        f"{prefix}\\o {witness}",
        f"{prefix}\\copy x",
        f"{prefix} \\gexec",
        f"{prefix}:pgprov_superuser :'x'",
        f"{prefix} q'uote",
        f'{prefix} dq"uote',
        f"{prefix}; DROP TABLE app.unit; --",
        f"{prefix}\nnew\\! line",
        f"{prefix} ünïcødé ☃",
    ]
    names.append(prefix + "é" * ((63 - len(prefix.encode())) // 2))
    names.append(prefix + "x" * (63 - len(prefix.encode())))
    for name in names:
        assert len(name.encode()) <= 63, name
    return names


@pytest.fixture
def environment(pg_server: Server, names: Names, tmp_path: Path) -> Iterator[DeployEnv]:
    env = env_data(pg_server, names, tmp_path)
    assert run_api(env.data).success
    try:
        yield env
    finally:
        drop_prefixed(pg_server, names.prefix)


def test_hostile_names_are_planned_audited_and_repaired(
    environment: DeployEnv, pg_server: Server, names: Names, tmp_path: Path
) -> None:
    # Short: the name that holds the path has at most 63 bytes.
    witness = Path(tempfile.gettempdir()) / f"{names.prefix}w"
    hostile = hostile_names(names.prefix, witness)
    migrator = sql.Identifier(names.migrator)
    runtime = sql.Identifier(names.runtime)
    # The migrator's large object (declared to belong) with privileges for every hostile name:
    # revoked by a statement built on the server from the names (large_object_privileges.sql.j2).
    data = {**environment.data, "pg_large_objects": {"migrator": {}}}
    with pg_server.connect(names.database) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(migrator))
        lo = conn.execute("SELECT lo_create(0)::bigint").fetchone()[0]
        conn.execute("RESET ROLE")
        for name in hostile:
            role = sql.Identifier(name)
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(role))
            conn.execute(sql.SQL("GRANT SELECT, UPDATE ON app.unit TO {}").format(role))
            conn.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA app TO {}").format(role))
            conn.execute(sql.SQL("GRANT {} TO {}").format(runtime, role))
            conn.execute(sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(role, role))
            conn.execute(sql.SQL("CREATE TABLE {}.{} (i int)").format(role, role))
            conn.execute(sql.SQL("ALTER TABLE {}.{} OWNER TO {}").format(role, role, role))
            conn.execute(sql.SQL("CREATE TABLE public.{} (i int)").format(role))
            conn.execute(sql.SQL("ALTER TABLE public.{} OWNER TO {}").format(role, role))
            conn.execute(
                sql.SQL("CREATE FUNCTION app.{}() RETURNS int LANGUAGE sql AS 'SELECT 1'").format(
                    role
                )
            )
            conn.execute(sql.SQL("ALTER FUNCTION app.{}() OWNER TO {}").format(role, migrator))
            conn.execute(sql.SQL("GRANT EXECUTE ON FUNCTION app.{}() TO {}").format(role, role))
            conn.execute(sql.SQL(f"GRANT SELECT ON LARGE OBJECT {lo} TO {{}}").format(role))

    inventory = write_inventory(tmp_path, data)
    for script in ("pgprov-plan", "pgprov-verify"):
        proc = console(script, inventory)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 1, f"{script}: {output}"
        assert "Traceback" not in output, output
        assert names.prefix in proc.stdout, output

    repair = run_api(data)
    assert repair.success and repair.changed["provision"], repair
    again = run_api(data)
    assert again.success and not again.changed["provision"], again
    audit = console("pgprov-verify", inventory)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert not witness.exists()

    with pg_server.connect(names.database) as conn:
        owners = conn.execute(
            "SELECT DISTINCT pg_get_userbyid(relowner)::text FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = ANY (%s)",
            (hostile,),
        ).fetchall()
        assert owners == [(names.migrator,)]
        assert conn.execute("SELECT count(*) FROM app.unit").fetchone() == (0,)
        assert conn.execute(
            "SELECT lomacl::text FROM pg_largeobject_metadata WHERE oid = %s", [lo]
        ).fetchone() == (f"{{{names.migrator}=rw/{names.migrator}}}",)
