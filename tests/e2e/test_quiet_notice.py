"""An admin that may not switch a logging setting off (a managed service) is told, in one line,
what may log the statements that carry a verifier; one that may (SET privilege on the
parameter, PostgreSQL 15+) switches it off, although it is no superuser.

The provider's logging is a role setting of the admin's (``log_statement = 'all'``), which the
admin cannot change; a password statement then reaches the server log with its verifier, which
is what the notice says. Granting SET on the parameter to the admin is enough to keep it out.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg import sql

from tests.deploykit import DeployEnv, run_cli, write_inventory
from tests.e2e.helpers import combined, console, lines_with, managed_admin_env
from tests.pgserver import Names, Server, drop_prefixed

pytestmark = pytest.mark.db


@pytest.fixture
def managed(pg_server: Server, names: Names, tmp_path: Path) -> Iterator[DeployEnv]:
    """A fresh environment whose admin has CREATEROLE and CREATEDB only, and whose sessions
    log every statement (a provider's choice the admin cannot undo)."""
    env = managed_admin_env(pg_server, names, tmp_path)
    with pg_server.connect() as conn:
        conn.execute(
            sql.SQL("ALTER ROLE {} SET log_statement = 'all'").format(
                sql.Identifier(names.role("admin"))
            )
        )
    try:
        yield env
    finally:
        drop_prefixed(pg_server, names.prefix)


def test_an_admin_that_may_not_silence_the_log_is_told_once(
    managed: DeployEnv, names: Names, tmp_path: Path
) -> None:
    admin = names.role("admin")
    plan = console("pgprov-plan", write_inventory(tmp_path, managed.data))
    assert plan.returncode == 1, combined(plan)
    [notice] = lines_with(plan.stderr, f"the admin {admin} may not set", "log_statement = 'all'")
    assert "SCRAM verifier" in notice and "tests/inventory.py: host @local" in notice

    deploy = run_cli(tmp_path, managed.data)
    assert deploy.returncode == 0, combined(deploy)
    assert len(lines_with(combined(deploy), f"the admin {admin} may not set")) == 1


def test_an_admin_granted_set_on_the_parameter_keeps_the_verifier_out(
    managed: DeployEnv, pg_server: Server, names: Names, tmp_path: Path
) -> None:
    admin = names.role("admin")
    with pg_server.connect() as conn:
        for parameter in ("log_statement", "log_transaction_sample_rate"):
            conn.execute(
                sql.SQL("GRANT SET ON PARAMETER {} TO {}").format(
                    sql.Identifier(parameter), sql.Identifier(admin)
                )
            )
    log = pg_server.cluster.logfile if pg_server.cluster else None
    before = log.stat().st_size if log else 0
    deploy = run_cli(tmp_path, managed.data)
    assert deploy.returncode == 0, combined(deploy)
    assert not lines_with(combined(deploy), "may not set")
    if log is not None:
        with log.open() as fh:
            fh.seek(before)
            written = fh.read()
        assert "statement: SET log_statement = 'none'" in written
        assert "PASSWORD" not in written
