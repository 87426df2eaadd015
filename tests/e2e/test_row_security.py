"""Row-level security nobody declared: a policy on an app table with RLS enabled and forced
(the migrator, as the tables' owner, may do it) makes the service's INSERTs fail. The audit
names the policy and the table's RLS, one deploy drops the policy and switches RLS off, the
service's INSERT works again, and a second deploy sends nothing."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.deploykit import DeployEnv, run_api, write_inventory
from tests.e2e.helpers import console, lines_with, login
from tests.pgserver import Names, Server

pytestmark = pytest.mark.db


def insert_a_unit(server: Server, env: DeployEnv, names: Names, symbol: str) -> None:
    with login(server, env, names, "runtime") as conn:
        conn.execute("INSERT INTO app.unit (name, symbol) VALUES (%s, %s)", (symbol, symbol))


def test_an_undeclared_policy_and_forced_rls_are_named_and_removed(
    deployed: DeployEnv, pg_server: Server, names: Names, tmp_path: Path
) -> None:
    policy = f"{names.prefix}_p"
    with pg_server.connect(names.database) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(names.migrator)))
        conn.execute(
            sql.SQL("CREATE POLICY {} ON app.unit FOR ALL TO {} USING (false)").format(
                sql.Identifier(policy), sql.Identifier(names.runtime)
            )
        )
        conn.execute("ALTER TABLE app.unit ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        insert_a_unit(pg_server, deployed, names, "K")
    inventory = write_inventory(tmp_path, deployed.data)

    audit = console("pgprov-verify", inventory, "--no-probes")
    assert audit.returncode == 1, audit.stdout + audit.stderr
    assert lines_with(audit.stdout, "DRIFT", f"policy {policy} on app.unit", names.runtime)
    assert lines_with(audit.stdout, "DRIFT", "table app.unit", "RLS", "enabled, forced")

    repair = run_api(deployed.data)
    assert repair.success and repair.changed["provision"], repair
    insert_a_unit(pg_server, deployed, names, "K")
    with pg_server.connect(names.database) as conn:
        row = conn.execute(
            "SELECT relrowsecurity, relforcerowsecurity,"
            " (SELECT count(*) FROM pg_policy WHERE polrelid = c.oid)"
            " FROM pg_class c WHERE oid = 'app.unit'::regclass"
        ).fetchone()
    assert row == (False, False, 0)

    again = run_api(deployed.data)
    assert again.success and not any(again.changed.values()), again
    audit = console("pgprov-verify", inventory, "--no-probes")
    assert audit.returncode == 0, audit.stdout + audit.stderr
