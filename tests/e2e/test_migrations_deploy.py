"""The schema step of a real deploy: Aerich migrations as the migrator, compatible with the
``aerich`` CLI, planned by the dry run, serialized between concurrent deploys, cheap when
converged, and stopping cleanly (and resumably) on a failing migration.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pgprov.sql.locks import PROVISION_LOCK_KEY as LOCK_KEY
from psycopg import sql

from tests.deploykit import PYINFRA, REPO, env_data, run_api, run_cli, snapshot, write_inventory
from tests.e2e.migration_helpers import (
    INITIAL,
    MIGRATIONS_ENV,
    aerich_cli,
    aerich_versions,
    execute,
    migration_source,
    migrations_copy,
    query,
    runtime_privileges_on,
    tables_in_schema,
)
from tests.pgserver import MODEL_TABLES

pytestmark = pytest.mark.db

ADD_PRIORITY = "1_20270101000000_add_priority.py"
BROKEN = "2_20270102000000_broken.py"


def cli_output(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout + proc.stderr


# --- Aerich compatibility -------------------------------------------------------------------


def test_aerich_cli_sees_nothing_pending_after_a_deploy(pg_server, names, tmp_path):
    env = env_data(pg_server, names, tmp_path)
    assert run_api(env.data).success

    proc = aerich_cli(pg_server, env, "heads")

    assert proc.returncode == 0, cli_output(proc)
    assert "No available heads" in proc.stdout
    assert INITIAL not in proc.stdout


def test_database_upgraded_by_the_aerich_cli_is_current_for_the_deploy(pg_server, names, tmp_path):
    env = env_data(pg_server, names, tmp_path)
    assert run_api(env.data).success
    execute(
        pg_server,
        env,
        sql.SQL("DROP SCHEMA app CASCADE; CREATE SCHEMA app AUTHORIZATION {}").format(
            sql.Identifier(names.migrator)
        ),
    )
    upgraded = aerich_cli(pg_server, env, "upgrade")
    assert upgraded.returncode == 0, cli_output(upgraded)
    assert aerich_versions(pg_server, env) == [INITIAL]

    again = run_api(env.data)

    assert again.success, again
    assert again.changed["migrate"] is False
    assert again.commands["migrate"] == 0
    assert aerich_versions(pg_server, env) == [INITIAL]


# --- Plan, fresh databases, concurrency -----------------------------------------------------


def test_dry_run_lists_the_pending_migration_and_applies_nothing(pg_server, names, tmp_path):
    env = env_data(pg_server, names, tmp_path)

    proc = run_cli(tmp_path, env.data, "--dry")

    assert proc.returncode == 0, cli_output(proc)
    assert f"apply migration {INITIAL} as {names.migrator}" in cli_output(proc)
    snap = snapshot(pg_server, env)
    assert snap.database is None
    assert snap.migrations is None


def test_dry_run_on_an_existing_database_applies_no_migration(pg_server, names, tmp_path):
    env = env_data(pg_server, names, tmp_path)
    assert run_api(env.data).success
    execute(pg_server, env, "DROP SCHEMA app CASCADE")

    proc = run_cli(tmp_path, env.data, "--dry")

    assert proc.returncode == 0, cli_output(proc)
    assert f"apply migration {INITIAL} as {names.migrator}" in cli_output(proc)
    assert query(pg_server, env, "SELECT to_regnamespace('app')") == [(None,)]
    assert snapshot(pg_server, env).migrations is None


def test_brand_new_environment_gets_the_aerich_table_on_first_deploy(pg_server, names, tmp_path):
    env = env_data(pg_server, names, tmp_path)
    assert snapshot(pg_server, env).migrations is None

    result = run_api(env.data)

    assert result.success, result
    assert snapshot(pg_server, env).migrations == (INITIAL,)
    assert tables_in_schema(pg_server, env) == {*MODEL_TABLES, "aerich"}


def test_existing_database_without_aerich_table_is_migrated(pg_server, names, tmp_path):
    env = env_data(pg_server, names, tmp_path)
    assert run_api(env.data).success
    execute(pg_server, env, "DROP SCHEMA app CASCADE")
    before = snapshot(pg_server, env)
    assert before.database is not None
    assert before.migrations is None

    result = run_api(env.data)

    assert result.success, result
    assert result.changed["migrate"] is True
    assert snapshot(pg_server, env).migrations == (INITIAL,)
    assert tables_in_schema(pg_server, env) >= MODEL_TABLES


def start_deploy(directory: Path, data: dict) -> subprocess.Popen[str]:
    directory.mkdir()
    inventory = write_inventory(directory, data)
    return subprocess.Popen(
        [PYINFRA, "-y", str(inventory), "deploy/provision.py"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@contextlib.contextmanager
def provisioning_lock_held(server) -> Iterator[Callable[[int], None]]:
    """Hold the deploys' provisioning lock; the callable waits until n sessions queue on it.

    Releasing it lets the queued deploys go on at the same moment, so their races are
    reproduced every time instead of now and then."""
    with server.connect() as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))

        def wait_for(n: int) -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                (waiting,) = conn.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                    "AND objid = %s",
                    (LOCK_KEY & 0xFFFFFFFF,),
                ).fetchone()
                if waiting >= n:
                    return
                time.sleep(0.05)
            raise AssertionError(f"{n} deploys never queued on the provisioning lock")

        try:
            yield wait_for
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))


def run_simultaneously(server, tmp_path: Path, data: dict) -> list[tuple[int, str]]:
    with provisioning_lock_held(server) as wait_for:
        procs = [start_deploy(tmp_path / which, data) for which in ("a", "b")]
        wait_for(2)
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    return [(p.returncode, out) for p, out in zip(procs, outputs, strict=True)]


def test_two_simultaneous_deploys_on_a_fresh_environment_both_succeed(pg_server, names, tmp_path):
    env = env_data(pg_server, names, tmp_path)

    runs = run_simultaneously(pg_server, tmp_path, env.data)

    for code, output in runs:
        assert code == 0, output[-8000:]
    assert aerich_versions(pg_server, env) == [INITIAL]
    assert runtime_privileges_on(pg_server, env, "aerich") == []
    assert run_api(env.data).changed == {"provision": False, "migrate": False, "gin_index": False}


def test_two_simultaneous_deploys_on_an_empty_database_apply_each_version_once(
    pg_server, names, tmp_path
):
    env = env_data(pg_server, names, tmp_path)
    with pg_server.connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(names.database)))

    runs = run_simultaneously(pg_server, tmp_path, env.data)

    for code, output in runs:
        assert code == 0, output[-8000:]
    assert aerich_versions(pg_server, env) == [INITIAL]
    assert runtime_privileges_on(pg_server, env, "aerich") == []
    assert run_api(env.data).changed == {"provision": False, "migrate": False, "gin_index": False}


# --- Cheap when converged -------------------------------------------------------------------

CONVERGED_PROBE = """
import json, sys
import pgprov.migrate.upgrade as migrate
from pgprov.sql.locks import PROVISION_LOCK_KEY as LOCK_KEY
from tests.deploykit import run_api

children = []
real = migrate.run_child
def counting(*args, **kwargs):
    children.append(1)
    return real(*args, **kwargs)
migrate.run_child = counting
result = run_api(json.loads(sys.stdin.read()))
print(json.dumps({
    "success": result.success,
    "changed": result.changed,
    "commands": result.commands,
    "children": len(children),
    "imported": sorted(m for m in sys.modules if m.split(".")[0] in ("aerich", "tortoise")),
}))
"""


def converged_probe(data: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", CONVERGED_PROBE],
        input=json.dumps(data),
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_converged_deploy_neither_starts_nor_imports_aerich_or_tortoise(pg_server, names, tmp_path):
    env = env_data(pg_server, names, tmp_path)
    assert run_api(env.data).success

    probe = converged_probe(env.data)

    assert probe["success"] is True
    assert probe["changed"]["migrate"] is False
    assert probe["commands"]["migrate"] == 0
    assert probe["children"] == 0
    assert probe["imported"] == []


def test_first_deploy_runs_exactly_one_migration_child(pg_server, names, tmp_path):
    env = env_data(pg_server, names, tmp_path)

    probe = converged_probe(env.data)

    assert probe["success"] is True
    assert probe["commands"]["migrate"] == 1
    assert probe["children"] == 1


# --- Failing migrations ---------------------------------------------------------------------


def test_failing_migration_stops_the_deploy_naming_it_and_a_fixed_rerun_continues(
    pg_server, names, tmp_path
):
    """Without a second location: a hand-made ``user`` table without a primary key makes the
    initial migration's foreign keys to it fail; dropping it lets the next run apply it."""
    env = env_data(pg_server, names, tmp_path)
    assert run_api(env.data).success
    execute(pg_server, env, "DROP SCHEMA app CASCADE; CREATE SCHEMA app")
    execute(pg_server, env, 'CREATE TABLE app."user" (id int)')

    failed = run_cli(tmp_path, env.data)

    output = cli_output(failed)
    assert failed.returncode != 0, output[-3000:]
    assert f"migration {INITIAL} failed" in output
    assert 'there is no unique constraint matching given keys for referenced table "user"' in output
    assert snapshot(pg_server, env).migrations in (None, ())
    assert "checklistresponse" not in tables_in_schema(pg_server, env)

    execute(pg_server, env, 'DROP TABLE app."user"')
    fixed = run_cli(tmp_path, env.data)

    assert fixed.returncode == 0, cli_output(fixed)[-3000:]
    assert f"applied {INITIAL}" in cli_output(fixed)
    assert aerich_versions(pg_server, env) == [INITIAL]


def test_failing_second_migration_keeps_earlier_ones_and_a_fixed_rerun_continues(
    pg_server, names, tmp_path
):
    location = migrations_copy(
        tmp_path,
        {
            ADD_PRIORITY: migration_source('ALTER TABLE "checklist" ADD COLUMN "priority" INT;'),
            BROKEN: migration_source('ALTER TABLE "no_such_table" ADD COLUMN "x" INT;'),
        },
    )
    hook = {MIGRATIONS_ENV: str(location)}
    env = env_data(pg_server, names, tmp_path)

    failed = run_cli(tmp_path, env.data, env=hook)

    output = cli_output(failed)
    assert failed.returncode != 0, output[-3000:]
    assert f"migration {BROKEN} failed" in output
    assert 'relation "no_such_table" does not exist' in output
    assert aerich_versions(pg_server, env) == [INITIAL, ADD_PRIORITY]
    assert query(
        pg_server,
        env,
        "SELECT 1 FROM information_schema.columns "
        "WHERE table_schema = 'app' AND table_name = 'checklist' AND column_name = 'priority'",
    ) == [(1,)]

    (location / "models" / BROKEN).write_text(
        migration_source('ALTER TABLE "checklist" ADD COLUMN "x" INT;')
    )
    fixed = run_cli(tmp_path, env.data, env=hook)

    fixed_output = cli_output(fixed)
    assert fixed.returncode == 0, fixed_output[-3000:]
    assert f"applied {BROKEN}" in fixed_output
    assert f"applied {ADD_PRIORITY}" not in fixed_output
    assert aerich_versions(pg_server, env) == [INITIAL, ADD_PRIORITY, BROKEN]


def test_second_migration_is_planned_then_applied_on_a_converged_environment(
    pg_server, names, tmp_path
):
    env = env_data(pg_server, names, tmp_path)
    assert run_api(env.data).success
    location = migrations_copy(
        tmp_path,
        {ADD_PRIORITY: migration_source('ALTER TABLE "checklist" ADD COLUMN "priority" INT;')},
    )
    hook = {MIGRATIONS_ENV: str(location)}

    plan = run_cli(tmp_path, env.data, "--dry", env=hook)
    assert plan.returncode == 0, cli_output(plan)[-3000:]
    assert f"apply migration {ADD_PRIORITY}" in cli_output(plan)
    assert f"apply migration {INITIAL}" not in cli_output(plan)
    assert aerich_versions(pg_server, env) == [INITIAL]

    applied = run_cli(tmp_path, env.data, env=hook)

    assert applied.returncode == 0, cli_output(applied)[-3000:]
    assert aerich_versions(pg_server, env) == [INITIAL, ADD_PRIORITY]
    assert runtime_privileges_on(pg_server, env, "aerich") == []


# --- Bookkeeping ----------------------------------------------------------------------------


def test_runtime_holds_nothing_on_the_bookkeeping_table_after_the_first_deploy(
    pg_server, names, tmp_path
):
    env = env_data(pg_server, names, tmp_path)

    assert run_api(env.data).success

    assert runtime_privileges_on(pg_server, env, "aerich") == []
    assert runtime_privileges_on(pg_server, env, "aerich_id_seq") == []
    assert runtime_privileges_on(pg_server, env, "checklistresponse") == [
        "DELETE",
        "INSERT",
        "SELECT",
        "UPDATE",
    ]


def test_privilege_granted_by_hand_on_the_bookkeeping_table_is_revoked_by_the_next_run(
    pg_server, names, tmp_path
):
    env = env_data(pg_server, names, tmp_path)
    assert run_api(env.data).success
    execute(
        pg_server,
        env,
        sql.SQL("GRANT SELECT, INSERT ON app.aerich TO {}").format(sql.Identifier(names.runtime)),
    )
    assert runtime_privileges_on(pg_server, env, "aerich") == ["INSERT", "SELECT"]

    result = run_api(env.data)

    assert result.success, result
    assert result.changed["provision"] is True
    assert runtime_privileges_on(pg_server, env, "aerich") == []
    assert runtime_privileges_on(pg_server, env, "aerich_id_seq") == []
    assert run_api(env.data).changed == {"provision": False, "migrate": False, "gin_index": False}
