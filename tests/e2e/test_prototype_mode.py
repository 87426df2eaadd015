"""Prototype mode (``pg_schema_mode: generate``): Tortoise ``generate_schemas`` as the owner
instead of migrations, for both profiles; and ``make reset``, which throws away only local and
dev databases.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.deploykit import REPO, env_data, run_api, snapshot, write_inventory
from tests.e2e.migration_helpers import (
    GIN_INDEX,
    query,
    runtime_privileges_on,
    tables_in_schema,
)
from tests.pgserver import MODEL_TABLES

pytestmark = pytest.mark.db

NO_CHANGES = {"provision": False, "migrate": False, "gin_index": False}


def table_owners(server, env) -> set[str]:
    rows = query(
        server,
        env,
        "SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'app' "
        "AND c.relkind IN ('r', 'S', 'i')",
    )
    return {r[0] for r in rows}


def gin_state(server, env) -> list[tuple]:
    return query(
        server,
        env,
        "SELECT x.indisvalid, am.amname FROM pg_index x "
        "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_am am ON am.oid = i.relam "
        "WHERE x.indexrelid = to_regclass(%s)",
        (f"app.{GIN_INDEX}",),
    )


@pytest.mark.parametrize("profile", ["split", "single_user"])
def test_generate_mode_creates_every_model_table_without_bookkeeping(
    pg_server, names, tmp_path, profile
):
    env = env_data(pg_server, names, tmp_path, profile=profile, pg_schema_mode="generate")

    result = run_api(env.data)

    assert result.success, result
    assert result.changed["migrate"] is True
    assert tables_in_schema(pg_server, env) == MODEL_TABLES
    assert snapshot(pg_server, env).migrations is None
    assert gin_state(pg_server, env) == [(True, "gin")]
    owner = names.migrator if profile == "split" else names.app_user
    assert table_owners(pg_server, env) == {owner}


@pytest.mark.parametrize("profile", ["split", "single_user"])
def test_generate_mode_second_run_changes_nothing(pg_server, names, tmp_path, profile):
    env = env_data(pg_server, names, tmp_path, profile=profile, pg_schema_mode="generate")
    assert run_api(env.data).success

    second = run_api(env.data)

    assert second.success, second
    assert second.changed == NO_CHANGES
    assert second.commands["migrate"] == 0


def test_generate_mode_gives_the_runtime_its_table_privileges(pg_server, names, tmp_path):
    env = env_data(pg_server, names, tmp_path, pg_schema_mode="generate")

    assert run_api(env.data).success

    for table in sorted(MODEL_TABLES):
        assert runtime_privileges_on(pg_server, env, table) == [
            "DELETE",
            "INSERT",
            "SELECT",
            "UPDATE",
        ], table


def test_generate_mode_recreates_a_dropped_table(pg_server, names, tmp_path):
    env = env_data(pg_server, names, tmp_path, pg_schema_mode="generate")
    assert run_api(env.data).success
    query(pg_server, env, "DROP TABLE app.workorder_rating")

    result = run_api(env.data)

    assert result.success, result
    assert result.changed["migrate"] is True
    assert "workorder_rating" in tables_in_schema(pg_server, env)
    assert run_api(env.data).changed == NO_CHANGES


# --- make reset -----------------------------------------------------------------------------


def reset(directory, data: dict) -> subprocess.CompletedProcess[str]:
    inventory = write_inventory(directory, data)
    return subprocess.run(
        [sys.executable, "-m", "pgprov.local.reset", str(inventory)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def database_exists(server, name: str) -> bool:
    with server.connect() as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_reset_is_refused_for_protected_environments(pg_server, names, tmp_path, environment):
    env = env_data(pg_server, names, tmp_path, pg_environment=environment)
    assert run_api(env.data).success

    proc = reset(tmp_path, env.data)

    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "refusing to reset" in lines[0]
    assert repr(environment) in lines[0]
    assert "Traceback" not in proc.stderr
    assert database_exists(pg_server, names.database)


@pytest.mark.parametrize("environment", ["dev", "local"])
def test_reset_drops_a_dev_database_and_the_next_deploy_recreates_it(
    pg_server, names, tmp_path, environment
):
    env = env_data(pg_server, names, tmp_path, profile="single_user", pg_environment=environment)
    assert run_api(env.data).success

    proc = reset(tmp_path, env.data)

    assert proc.returncode == 0, proc.stderr
    assert f"dropped database {names.database}" in proc.stdout
    assert not database_exists(pg_server, names.database)

    again = run_api(env.data)

    assert again.success, again
    assert database_exists(pg_server, names.database)
    assert snapshot(pg_server, env).migrations is not None
    assert tables_in_schema(pg_server, env) >= MODEL_TABLES
