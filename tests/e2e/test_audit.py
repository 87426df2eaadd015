"""The audit on real PostgreSQL: clean after a deploy, and each seeded defect named in one line.

Environments are provisioned through pyinfra's API, then broken by hand as the superuser;
the audit runs as users run it (``python -m pgprov.audit.audit <inventory>``).
"""

from __future__ import annotations

import json
import re
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
from psycopg import sql

from tests.deploykit import DeployEnv, env_data, run_api, run_module, write_inventory
from tests.pgserver import Names, Server

Seed = Callable[[Server, Names], None]


def provision(server: Server, names: Names, tmp_path: Path, **kwargs) -> tuple[DeployEnv, Path]:
    env = env_data(server, names, tmp_path, **kwargs)
    result = run_api(env.data)
    assert result.success, result
    return env, write_inventory(tmp_path, env.data)


def run_audit(inventory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_module("pgprov.audit.audit", str(inventory), *args)


def rows(output: str) -> list[list[str]]:
    """The matrix rows of the text report, split into cells (columns are 2+ spaces apart)."""
    return [
        re.split(r"\s{2,}", line.strip()) for line in output.splitlines() if line.startswith("    ")
    ]


def drift_rows(output: str) -> list[list[str]]:
    return [row for row in rows(output) if row[0] == "DRIFT"]


def execute(server: Server, dbname: str, statement: sql.Composable) -> None:
    with server.connect(dbname) as conn:
        conn.execute(statement)


def test_clean_split_environment_passes_with_zero_differences(pg_server, names, tmp_path):
    _, inventory = provision(pg_server, names, tmp_path)
    proc = run_audit(inventory)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert drift_rows(proc.stdout) == []
    assert re.search(r"^\d+ checks, 0 differences$", proc.stdout, re.M), proc.stdout
    matrix = rows(proc.stdout)
    runtime = names.runtime
    assert ["OK", runtime, "role", "SUPERUSER", "no", "no"] in matrix
    assert ["OK", runtime, "table app.checklist", "TRUNCATE", "denied", "denied"] in matrix
    assert ["OK", runtime, "table app.aerich", "SELECT", "denied", "denied"] in matrix
    assert ["OK", runtime, "table app.checklist", "INSERT", "allowed", "allowed"] in matrix
    assert [
        "OK",
        "PUBLIC",
        f"database {names.database}",
        "CONNECT",
        "not granted",
        "not granted",
    ] in matrix


def test_clean_single_user_environment_passes_with_zero_differences(pg_server, names, tmp_path):
    _, inventory = provision(pg_server, names, tmp_path, profile="single_user")
    proc = run_audit(inventory)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert drift_rows(proc.stdout) == []
    matrix = rows(proc.stdout)
    user = names.app_user
    assert ["OK", user, "schema app", "CREATE TABLE", "allowed", "allowed"] in matrix
    assert ["OK", user, "cluster", "CREATE ROLE", "denied", "denied"] in matrix
    assert [
        "OK",
        user,
        f"database {names.database}",
        "search_path",
        "app, public",
        "app, public",
    ] in matrix


def _superuser(server: Server, n: Names) -> None:
    execute(
        server, "postgres", sql.SQL("ALTER ROLE {} SUPERUSER").format(sql.Identifier(n.runtime))
    )


def _drop_default_privilege(server: Server, n: Names) -> None:
    execute(
        server,
        n.database,
        sql.SQL(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA app REVOKE SELECT ON TABLES FROM {}"
        ).format(sql.Identifier(n.migrator), sql.Identifier(n.runtime)),
    )


def _create_on_app(server: Server, n: Names) -> None:
    execute(
        server,
        n.database,
        sql.SQL("GRANT CREATE ON SCHEMA app TO {}").format(sql.Identifier(n.runtime)),
    )


def _public_connect(server: Server, n: Names) -> None:
    execute(
        server,
        "postgres",
        sql.SQL("GRANT CONNECT ON DATABASE {} TO PUBLIC").format(sql.Identifier(n.database)),
    )


def _all_on_table(server: Server, n: Names) -> None:
    execute(
        server,
        n.database,
        sql.SQL("GRANT ALL ON app.checklist TO {}").format(sql.Identifier(n.runtime)),
    )


def _reset_search_path(server: Server, n: Names) -> None:
    execute(
        server,
        "postgres",
        sql.SQL("ALTER ROLE {} IN DATABASE {} RESET search_path").format(
            sql.Identifier(n.runtime), sql.Identifier(n.database)
        ),
    )


def _other_opclass(server: Server, n: Names) -> None:
    with server.connect(n.database) as conn:
        conn.execute("DROP INDEX app.idx_checklistresponse_answers_gin")
        conn.execute(
            "CREATE INDEX idx_checklistresponse_answers_gin "
            "ON app.checklistresponse USING gin (answers jsonb_path_ops)"
        )


def _member_of_migrator(server: Server, n: Names) -> None:
    execute(
        server,
        "postgres",
        sql.SQL("GRANT {} TO {}").format(sql.Identifier(n.migrator), sql.Identifier(n.runtime)),
    )


def _select_on_aerich(server: Server, n: Names) -> None:
    execute(
        server,
        n.database,
        sql.SQL("GRANT SELECT ON app.aerich TO {}").format(sql.Identifier(n.runtime)),
    )


# defect -> the row that must name it (with {runtime}, {migrator}, {database} filled in)
DEFECTS: list[tuple[str, Seed, list[str]]] = [
    ("runtime_superuser", _superuser, ["DRIFT", "{runtime}", "role", "SUPERUSER", "no", "yes"]),
    (
        "default_privilege_dropped",
        _drop_default_privilege,
        [
            "DRIFT",
            "{runtime}",
            "future tables of {migrator} in app",
            "SELECT",
            "granted",
            "not granted",
        ],
    ),
    (
        "create_on_app",
        _create_on_app,
        ["DRIFT", "{runtime}", "schema app", "CREATE", "not granted", "granted"],
    ),
    (
        "public_connect",
        _public_connect,
        ["DRIFT", "PUBLIC", "database {database}", "CONNECT", "not granted", "granted"],
    ),
    (
        "all_on_table",
        _all_on_table,
        ["DRIFT", "{runtime}", "table app.checklist", "TRUNCATE", "not granted", "granted"],
    ),
    (
        "search_path_reset",
        _reset_search_path,
        ["DRIFT", "{runtime}", "database {database}", "search_path", "app, public", "(not set)"],
    ),
    (
        "gin_other_opclass",
        _other_opclass,
        [
            "DRIFT",
            "{migrator}",
            "index app.idx_checklistresponse_answers_gin",
            "operator class",
            "jsonb_ops",
            "jsonb_path_ops",
        ],
    ),
    (
        "member_of_migrator",
        _member_of_migrator,
        ["DRIFT", "{runtime}", "role", "member of", "none", "{migrator}"],
    ),
    (
        "select_on_aerich",
        _select_on_aerich,
        ["DRIFT", "{runtime}", "table app.aerich", "SELECT", "not granted", "granted"],
    ),
]


@pytest.mark.parametrize(
    ("seed", "expected"), [d[1:] for d in DEFECTS], ids=[d[0] for d in DEFECTS]
)
def test_seeded_defect_fails_the_audit_with_a_line_naming_it(
    pg_server, names, tmp_path, seed: Seed, expected: list[str]
):
    _, inventory = provision(pg_server, names, tmp_path)
    seed(pg_server, names)
    proc = run_audit(inventory)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    fill = {"runtime": names.runtime, "migrator": names.migrator, "database": names.database}
    assert [cell.format(**fill) for cell in expected] in drift_rows(proc.stdout), proc.stdout
    differences = len(drift_rows(proc.stdout))
    assert re.search(rf"^\d+ checks, {differences} differences$", proc.stdout, re.M)


def test_probes_catch_what_the_catalog_rows_imply(pg_server, names, tmp_path):
    _, inventory = provision(pg_server, names, tmp_path)
    _select_on_aerich(pg_server, names)
    _create_on_app(pg_server, names)
    proc = run_audit(inventory)
    assert proc.returncode == 1
    drifts = drift_rows(proc.stdout)
    assert ["DRIFT", names.runtime, "table app.aerich", "SELECT", "denied", "allowed"] in drifts
    assert ["DRIFT", names.runtime, "schema app", "CREATE TABLE", "denied", "allowed"] in drifts
    no_probes = run_audit(inventory, "--no-probes")
    assert no_probes.returncode == 1
    assert all(row[3] != "CREATE TABLE" for row in rows(no_probes.stdout))


def test_junit_and_json_reports_record_the_differences(pg_server, names, tmp_path):
    _, inventory = provision(pg_server, names, tmp_path)
    _superuser(pg_server, names)
    junit = tmp_path / "audit.xml"
    proc = run_audit(inventory, "--format", "junit", "--output", str(junit))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    suites = ET.parse(junit).getroot()  # noqa: S314 - our own report, not untrusted input
    cases = suites.findall("./testsuite/testcase")
    failed = [case for case in cases if case.find("failure") is not None]
    assert int(suites.get("tests", "0")) == len(cases) > 0
    assert int(suites.get("failures", "0")) == len(failed) > 0
    assert f"{names.runtime} role SUPERUSER" in {case.get("name") for case in failed}
    assert f"{len(cases)} checks, {len(failed)} differences" in proc.stdout

    as_json = run_audit(inventory, "--format", "json")
    assert as_json.returncode == 1
    checks = json.loads(as_json.stdout)
    superuser = [c for c in checks if c["subject"] == names.runtime and c["check"] == "SUPERUSER"]
    assert superuser == [
        {
            "host": "@local",
            "group": "roles",
            "subject": names.runtime,
            "object": "role",
            "check": "SUPERUSER",
            "declared": "no",
            "actual": "yes",
            "verdict": "DRIFT",
            "detail": "",
            "difference": True,
        }
    ]


def _traces(server: Server, database: str) -> dict[str, object]:
    """Row counts of every app table, values handed out by every sequence, probe leftovers."""
    with server.connect(database) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'app' AND c.relkind = 'r' ORDER BY 1"
            )
        ]
        counts = {
            t: conn.execute(
                sql.SQL("SELECT count(*) FROM app.{}").format(sql.Identifier(t))
            ).fetchone()[0]
            for t in tables
        }
        sequences = {
            name: last - (0 if called else 1)
            for name, last, called in conn.execute(
                "SELECT sequencename, COALESCE(last_value, start_value), last_value IS NOT NULL "
                "FROM pg_sequences WHERE schemaname = 'app'"
            )
        }
        leftovers = (
            conn.execute("SELECT count(*) FROM pg_class WHERE relname LIKE 'pgprov%'").fetchone()[0]
            + conn.execute("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'pgprov%'").fetchone()[
                0
            ]
        )
        columns = conn.execute(
            "SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "WHERE c.relname = 'checklist' AND a.attnum > 0 AND NOT a.attisdropped"
        ).fetchone()[0]
    return {"counts": counts, "sequences": sequences, "leftovers": leftovers, "columns": columns}


def test_probes_leave_no_trace_but_one_sequence_value(pg_server, names, tmp_path):
    _, inventory = provision(pg_server, names, tmp_path)
    with pg_server.connect(names.database) as conn:
        conn.execute(
            "INSERT INTO app.checklist (name, version, is_active, created_at, updated_at) "
            "VALUES ('probe me', 1, true, now(), now())"
        )
    before = _traces(pg_server, names.database)
    proc = run_audit(inventory)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    after = _traces(pg_server, names.database)
    assert after["counts"] == before["counts"] and before["counts"]["checklist"] == 1
    assert after["leftovers"] == before["leftovers"] == 0
    assert after["columns"] == before["columns"]
    # nextval is not transactional: the one sequence probe hands out exactly one value.
    moved = {k: after["sequences"][k] - v for k, v in before["sequences"].items()}  # type: ignore[index]
    assert moved == {**dict.fromkeys(moved, 0), "checklist_id_seq": 1}


def test_unreachable_server_exits_2_naming_the_host(pg_server, names, tmp_path):
    env = env_data(pg_server, names, tmp_path, pg_admin_port=1, pg_app_port=1)
    proc = run_audit(write_inventory(tmp_path, env.data))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "tests/inventory.py: host @local: cannot read the catalog"
    )


def test_bad_input_exits_2_naming_the_field(pg_server, names, tmp_path):
    env = env_data(pg_server, names, tmp_path, pg_schema="app;drop")
    proc = run_audit(write_inventory(tmp_path, env.data))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "tests/inventory.py: host @local: pg_schema: 'app;drop' is not a valid identifier "
        "(lowercase letters, digits and _, not starting with a digit, at most 63 bytes)"
    )
    limited = run_audit(write_inventory(tmp_path, env.data), "--limit", "db9")
    assert limited.returncode == 2 and "--limit db9 matches no host" in limited.stderr
