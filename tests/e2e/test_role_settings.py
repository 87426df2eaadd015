"""Role settings as code on real PostgreSQL: pg_role_settings and pg_connection_limits converge
both ways, compare as the server normalises them, show up in the audit, and a value the
server would reject stops the run before any change.

Every test deploys an environment of its own through pyinfra's API (or the CLI, as users run
it) and plants drift as the superuser.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.deploykit import (
    DeployEnv,
    env_data,
    login,
    run_api,
    run_cli,
    secret_file,
    snapshot,
    write_inventory,
)
from tests.e2e.clusters import create_admin, run_audit
from tests.e2e.helpers import assert_one_clear_line, comparable, prefixed_objects, superuser_sql
from tests.pgserver import Names, Server

HOST = "@local"
INVENTORY = "tests/inventory.py"
NO_COMMANDS = {"provision": 0, "migrate": 0, "gin_index": 0}
SEARCH_PATH = "search_path=app, public"
RUNTIME_SETTINGS = {
    "statement_timeout": "30s",
    "idle_in_transaction_session_timeout": "1min",
    "work_mem": "8MB",
}
MIGRATOR_SETTINGS = {"lock_timeout": "2s"}


def declared(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "pg_role_settings": {"runtime": RUNTIME_SETTINGS, "migrator": MIGRATOR_SETTINGS},
        "pg_connection_limits": {"runtime": 20},
    }
    data.update(overrides)
    return data


def role_settings(server: Server, role: str) -> dict[str, set[str]]:
    """What pg_db_role_setting holds for ``role``: database ("" for role-wide) -> settings."""
    with server.connect() as conn:
        rows = conn.execute(
            "SELECT COALESCE(d.datname, ''), s.setconfig FROM pg_db_role_setting s "
            "JOIN pg_roles r ON r.oid = s.setrole "
            "LEFT JOIN pg_database d ON d.oid = s.setdatabase WHERE r.rolname = %s",
            (role,),
        ).fetchall()
    return {database: set(config) for database, config in rows}


def connection_limit(server: Server, role: str) -> int:
    with server.connect() as conn:
        row = conn.execute("SELECT rolconnlimit FROM pg_roles WHERE rolname = %s", (role,))
        return row.fetchone()[0]  # type: ignore[index]


def deploy(data: dict[str, Any]) -> dict[str, int]:
    result = run_api(data)
    assert result.success, result
    return result.commands


def deployed(server: Server, names: Names, directory: Path, **overrides: Any) -> DeployEnv:
    env = env_data(server, names, directory, **declared(**overrides))
    deploy(env.data)
    return env


def test_declared_settings_are_set_in_the_database_and_the_roles_log_in_with_them(
    pg_server: Server, names: Names, tmp_path: Path
):
    env = deployed(pg_server, names, tmp_path)

    assert role_settings(pg_server, names.runtime) == {
        names.database: {
            SEARCH_PATH,
            "statement_timeout=30s",
            "idle_in_transaction_session_timeout=1min",
            "work_mem=8MB",
        }
    }
    assert role_settings(pg_server, names.migrator) == {
        names.database: {SEARCH_PATH, "lock_timeout=2s"}
    }
    assert connection_limit(pg_server, names.runtime) == 20
    assert connection_limit(pg_server, names.migrator) == -1
    password = env.passwords["runtime"]
    with login(pg_server, names.runtime, password, names.database) as conn:
        shown = [
            conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
            for name in ("statement_timeout", "idle_in_transaction_session_timeout", "work_mem")
        ]
    assert shown == ["30s", "1min", "8MB"]
    with login(pg_server, names.runtime, password, "postgres") as conn:
        other = conn.execute("SHOW statement_timeout").fetchone()[0]  # type: ignore[index]
    assert other == "0", "a setting leaked outside the environment's database"
    assert deploy(env.data) == NO_COMMANDS


def test_settings_converge_both_ways_and_leave_other_databases_alone(
    pg_server: Server, names: Names, tmp_path: Path
):
    env = deployed(pg_server, names, tmp_path)
    # Drift by hand: a changed value, an undeclared one in the database, one role-wide (also a
    # role-wide search_path), one in another database, and a changed connection limit.
    for statement in (
        "ALTER ROLE {runtime} IN DATABASE {db} SET statement_timeout = '5s'",
        "ALTER ROLE {runtime} IN DATABASE {db} SET jit = off",
        "ALTER ROLE {runtime} SET maintenance_work_mem = '128MB'",
        "ALTER ROLE {migrator} SET search_path = public",
        "ALTER ROLE {runtime} IN DATABASE postgres SET work_mem = '32MB'",
        "ALTER ROLE {migrator} CONNECTION LIMIT 3",
    ):
        superuser_sql(pg_server, "postgres", statement, names)
    # ... and the inventory changed: work_mem changed, idle_in_transaction undeclared, the
    # migrator's settings and the runtime's connection limit dropped.
    changed = {
        **env.data,
        "pg_role_settings": {"runtime": {"statement_timeout": "30s", "work_mem": "16MB"}},
        "pg_connection_limits": {"migrator": 5},
    }
    commands = deploy(changed)
    assert commands["provision"] == 1

    assert role_settings(pg_server, names.runtime) == {
        names.database: {SEARCH_PATH, "statement_timeout=30s", "work_mem=16MB"},
        "postgres": {"work_mem=32MB"},
    }
    assert role_settings(pg_server, names.migrator) == {names.database: {SEARCH_PATH}}
    assert connection_limit(pg_server, names.runtime) == -1
    assert connection_limit(pg_server, names.migrator) == 5
    assert deploy(changed) == NO_COMMANDS


def counting_psql(directory: Path) -> tuple[Path, Path]:
    """A psql stand-in (for pg_psql) that logs every start with its last argument (``-`` for a
    session reading SQL from stdin, empty for the event-trigger probe), then runs the client."""
    from pgprov.catalog.psql import local_psql

    log = directory / "psql.starts"
    shim = directory / "psql-counting"
    shim.write_text(
        f'#!/bin/sh\nfor a; do last=$a; done\necho "start $last" >> "{log}"\n'
        f'exec "{local_psql()}" "$@"\n'
    )
    shim.chmod(0o755)
    return shim, log


def test_a_converged_deploy_checks_the_settings_in_its_one_catalog_round_trip(
    pg_server: Server, names: Names, tmp_path: Path
):
    shim, log = counting_psql(tmp_path)
    env = deployed(pg_server, names, tmp_path, pg_psql=str(shim))
    log.unlink()
    assert deploy(env.data) == NO_COMMANDS
    # One catalog session, preceded by the run's probe connection, which runs nothing.
    assert log.read_text().splitlines() == ["start ", "start -"]


def test_a_value_spelled_differently_is_not_set_again(
    pg_server: Server, names: Names, tmp_path: Path
):
    env = deployed(pg_server, names, tmp_path)
    superuser_sql(
        pg_server,
        "postgres",
        "ALTER ROLE {runtime} IN DATABASE {db} SET statement_timeout = 30000",
        names,
    )
    assert deploy(env.data) == NO_COMMANDS
    spelled = {
        **env.data,
        "pg_role_settings": {
            "runtime": {**RUNTIME_SETTINGS, "statement_timeout": "30000ms", "work_mem": 8192},
            "migrator": {"lock_timeout": 2000},
        },
    }
    assert deploy(spelled) == NO_COMMANDS
    assert "statement_timeout=30000" in role_settings(pg_server, names.runtime)[names.database]


def test_audit_reports_a_drifted_setting_and_connection_limit(
    pg_server: Server, names: Names, tmp_path: Path
):
    env = deployed(pg_server, names, tmp_path)
    inventory = write_inventory(tmp_path, env.data)
    clean = run_audit(inventory, "--no-probes")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert re.search(
        rf"OK\s+{names.runtime}\s+database {names.database}\s+statement_timeout\s+30s\s+30s",
        clean.stdout,
    ), clean.stdout

    for statement in (
        "ALTER ROLE {runtime} IN DATABASE {db} SET statement_timeout = '5s'",
        "ALTER ROLE {runtime} SET jit = off",
        "ALTER ROLE {runtime} CONNECTION LIMIT 3",
    ):
        superuser_sql(pg_server, "postgres", statement, names)
    proc = run_audit(inventory, "--no-probes", "--format", "json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    drift = {
        (row["subject"], row["object"], row["check"], row["declared"], row["actual"])
        for row in json.loads(proc.stdout)
        if row["verdict"] == "DRIFT"
    }
    assert drift == {
        (names.runtime, f"database {names.database}", "statement_timeout", "30s", "5s"),
        (names.runtime, "all databases", "jit", "(not set)", "off"),
        (names.runtime, "role", "CONNECTION LIMIT", "20", "3"),
    }


# Bad declarations: (host data, what the one line must say besides host and inventory).
BAD = {
    "unknown_setting": (
        {"runtime": {"statement_timout": "30s"}},
        ("pg_role_settings: runtime.statement_timout", "no such setting"),
    ),
    "value_the_server_rejects": (
        {"runtime": {"statement_timeout": "30 parsecs"}},
        ("pg_role_settings: runtime.statement_timeout", "rejects", "30 parsecs"),
    ),
    "not_settable_per_role": (
        {"migrator": {"shared_buffers": "1GB"}},
        ("pg_role_settings: migrator.shared_buffers", "cannot be set per role", "postmaster"),
    ),
    "unknown_logical_role": (
        {"reader": {"statement_timeout": "30s"}},
        ("pg_role_settings: reader",),
    ),
    "value_of_the_wrong_type": (
        {"runtime": {"statement_timeout": ["30s"]}},
        ("pg_role_settings: runtime.statement_timeout", "not a setting value"),
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_setting_stops_an_existing_environment_before_any_change(
    pg_server: Server, names: Names, tmp_path: Path, case: str
):
    env = deployed(pg_server, names, tmp_path)
    superuser_sql(pg_server, "postgres", "ALTER ROLE {runtime} SET jit = off", names)
    superuser_sql(
        pg_server,
        "postgres",
        "ALTER ROLE {migrator} IN DATABASE {db} SET statement_timeout = '7s'",
        names,
    )
    before = comparable(snapshot(pg_server, env), names)
    settings, needles = BAD[case]

    proc = run_cli(tmp_path, {**env.data, "pg_role_settings": settings})

    assert_one_clear_line(proc, HOST, INVENTORY, *needles)
    assert comparable(snapshot(pg_server, env), names) == before


@pytest.mark.parametrize("case", ["unknown_setting", "value_the_server_rejects"])
def test_a_bad_setting_on_a_fresh_environment_creates_nothing(
    pg_server: Server, names: Names, tmp_path: Path, case: str
):
    settings, needles = BAD[case]
    env = env_data(pg_server, names, tmp_path, pg_role_settings=settings)
    proc = run_cli(tmp_path, env.data)
    assert_one_clear_line(proc, HOST, INVENTORY, *needles)
    assert prefixed_objects(pg_server, names.prefix) == []


def test_a_plan_with_a_bad_setting_fails_instead_of_looking_empty(
    pg_server: Server, names: Names, tmp_path: Path
):
    env = deployed(pg_server, names, tmp_path)
    settings, needles = BAD["value_the_server_rejects"]
    proc = run_cli(tmp_path, {**env.data, "pg_role_settings": settings}, "--dry")
    assert_one_clear_line(proc, HOST, INVENTORY, *needles)


def test_single_user_settings_converge_for_the_app_user(
    pg_server: Server, names: Names, tmp_path: Path
):
    env = env_data(
        pg_server,
        names,
        tmp_path,
        profile="single_user",
        pg_createdb=True,
        pg_role_settings={"app_user": {"statement_timeout": "1min"}},
        pg_connection_limits={"app_user": 10},
    )
    deploy(env.data)
    assert role_settings(pg_server, names.app_user) == {
        names.database: {SEARCH_PATH, "statement_timeout=1min"}
    }
    assert connection_limit(pg_server, names.app_user) == 10
    assert deploy(env.data) == NO_COMMANDS
    undeclared = {
        k: v for k, v in env.data.items() if k not in ("pg_role_settings", "pg_connection_limits")
    }
    deploy(undeclared)
    assert role_settings(pg_server, names.app_user) == {names.database: {SEARCH_PATH}}
    assert connection_limit(pg_server, names.app_user) == -1


def test_a_managed_services_admin_converges_settings_but_cannot_set_superuser_ones(
    pg_server: Server, names: Names, tmp_path: Path
):
    # The admin managed PostgreSQL services hand out: no superuser, CREATEROLE and CREATEDB.
    admin, password = names.role("admin"), f"adm-{names.prefix}-Pw0"
    create_admin(pg_server, admin, password, ("LOGIN", "CREATEROLE", "CREATEDB"))
    managed = {
        "pg_admin_user": admin,
        "pg_admin_password": f"file:{secret_file(tmp_path, 'managed_admin', password)}",
    }
    env = deployed(pg_server, names, tmp_path, **managed)
    superuser_sql(pg_server, "postgres", "ALTER ROLE {runtime} SET jit = off", names)
    deploy(env.data)
    assert role_settings(pg_server, names.runtime) == {
        names.database: {
            SEARCH_PATH,
            "statement_timeout=30s",
            "idle_in_transaction_session_timeout=1min",
            "work_mem=8MB",
        }
    }
    assert deploy(env.data) == NO_COMMANDS
    before = comparable(snapshot(pg_server, env), names)

    superuser_only = {"runtime": {"log_min_duration_statement": "1s"}}
    proc = run_cli(tmp_path, {**env.data, "pg_role_settings": superuser_only})

    assert_one_clear_line(
        proc,
        HOST,
        INVENTORY,
        "pg_role_settings: runtime.log_min_duration_statement",
        "permission denied",
    )
    assert comparable(snapshot(pg_server, env), names) == before
