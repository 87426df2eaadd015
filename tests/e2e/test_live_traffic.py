"""A deploy against a live database: while a real application transaction holds a lock that
the deploy's statement conflicts with, the application's other queries on that table wait at
most one lock_timeout at a time; the deploy converges once the blocker ends within
pg_lock_wait, and otherwise stops, non-zero, naming the blocker's pid, with nothing changed.
Covers ownership repair (ALTER TABLE ... OWNER), an Aerich migration's ALTER TABLE and the GIN
swap's DROP INDEX CONCURRENTLY.
"""

from __future__ import annotations

import time

import pytest

from tests.deploykit import env_data, run_api, run_cli
from tests.e2e.helpers import assert_one_clear_line, combined, superuser_sql
from tests.e2e.migration_helpers import (
    MIGRATIONS_ENV,
    execute,
    migration_source,
    migrations_copy,
    query,
)
from tests.e2e.traffic import AppReader, Blocker

pytestmark = pytest.mark.db

LOCK_TIMEOUT = 0.3
# A query on a loaded two-core box takes well under this besides its lock wait; without the
# lock discipline the reader waits as long as the blocker holds on (seconds).
MARGIN = 0.7
READ = "SELECT count(*) FROM app.checklist"
HOLD = "SELECT FROM app.checklist LIMIT 1"
ADD_PRIORITY = "1_20270101000000_add_priority.py"


def owner_of(server, env, table: str) -> str:
    rows = query(
        server,
        env,
        "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = %s::regclass",
        (f"app.{table}",),
    )
    return rows[0][0]


@pytest.fixture
def drifted(pg_server, names, tmp_path):
    """A deployed environment whose app.checklist was handed to another role (ownership drift:
    the repair needs ACCESS EXCLUSIVE on a table the application reads)."""
    env = env_data(
        pg_server, names, tmp_path, pg_lock_timeout=f"{LOCK_TIMEOUT}s", pg_lock_wait="30s"
    )
    assert run_api(env.data).success
    intruder = names.role("intruder")
    superuser_sql(pg_server, "postgres", "CREATE ROLE {intruder}", names, intruder=intruder)
    superuser_sql(
        pg_server, names.database, "ALTER TABLE app.checklist OWNER TO {intruder}", names,
        intruder=intruder,
    )  # fmt: skip
    return env, intruder


def test_ownership_repair_never_blocks_readers_longer_than_lock_timeout_and_converges(
    pg_server, names, drifted
):
    env, _ = drifted
    blocker = Blocker(pg_server, env, HOLD)
    with AppReader(pg_server, env, READ) as reader:
        timer = blocker.release_after(4.0)
        started = time.monotonic()
        result = run_api(env.data)
        finished = time.monotonic()
        timer.join()
        during = [t for t in reader.latencies]

    assert result.success, result
    assert owner_of(pg_server, env, "checklist") == names.migrator
    assert blocker.released_at is not None and finished > blocker.released_at
    assert finished - started >= 3.5  # it did wait for the blocker
    assert reader.errors == []
    assert len(during) > 20
    assert max(during) < LOCK_TIMEOUT + MARGIN, sorted(during)[-5:]
    assert run_api(env.data).any_change is False


def test_blocker_outlasting_the_budget_stops_the_deploy_naming_its_pid_and_nothing_changes(
    pg_server, names, drifted, tmp_path
):
    env, intruder = drifted
    data = {**env.data, "pg_lock_wait": "3s"}
    blocker = Blocker(pg_server, env, HOLD)
    try:
        with AppReader(pg_server, env, READ) as reader:
            proc = run_cli(tmp_path, data)
    finally:
        blocker.release()

    line = assert_one_clear_line(proc, f"pid {blocker.pid} ", "pg_lock_wait")
    assert "application_name 'hinfelaar_fastapi'" in line
    assert "idle in transaction" in line
    assert owner_of(pg_server, env, "checklist") == intruder
    assert reader.errors == []
    assert max(reader.latencies) < LOCK_TIMEOUT + MARGIN, sorted(reader.latencies)[-5:]
    # Once the application lets go, the same deploy converges.
    assert run_cli(tmp_path, data).returncode == 0
    assert owner_of(pg_server, env, "checklist") == names.migrator


def test_migration_alter_table_waits_in_short_tries_and_applies_once_the_blocker_ends(
    pg_server, names, tmp_path
):
    env = env_data(
        pg_server, names, tmp_path, pg_lock_timeout=f"{LOCK_TIMEOUT}s", pg_lock_wait="30s"
    )
    assert run_api(env.data).success
    location = migrations_copy(
        tmp_path,
        {ADD_PRIORITY: migration_source('ALTER TABLE "checklist" ADD COLUMN "priority" INT;')},
    )
    blocker = Blocker(pg_server, env, HOLD)
    with AppReader(pg_server, env, READ) as reader:
        timer = blocker.release_after(4.0)
        proc = run_cli(tmp_path, env.data, env={MIGRATIONS_ENV: str(location)})
        timer.join()

    assert proc.returncode == 0, combined(proc)[-3000:]
    assert f"applied {ADD_PRIORITY}" in combined(proc)
    assert reader.errors == []
    assert max(reader.latencies) < LOCK_TIMEOUT + MARGIN, sorted(reader.latencies)[-5:]
    assert query(
        pg_server,
        env,
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'app' "
        "AND table_name = 'checklist' AND column_name = 'priority'",
    ) == [(1,)]


def test_migration_blocked_past_the_budget_names_the_blocker_and_is_not_applied(
    pg_server, names, tmp_path
):
    env = env_data(
        pg_server, names, tmp_path, pg_lock_timeout=f"{LOCK_TIMEOUT}s", pg_lock_wait="2s"
    )
    assert run_api(env.data).success
    location = migrations_copy(
        tmp_path,
        {ADD_PRIORITY: migration_source('ALTER TABLE "checklist" ADD COLUMN "priority" INT;')},
    )
    blocker = Blocker(pg_server, env, HOLD)
    try:
        proc = run_cli(tmp_path, env.data, env={MIGRATIONS_ENV: str(location)})
    finally:
        blocker.release()

    line = assert_one_clear_line(proc, f"migration {ADD_PRIORITY}", f"pid {blocker.pid} ")
    assert "pg_lock_wait" in line
    applied = query(pg_server, env, "SELECT version FROM app.aerich")
    assert (ADD_PRIORITY,) not in applied


def test_gin_swap_drop_waits_in_short_tries_for_a_transaction_using_the_table(
    pg_server, names, tmp_path
):
    env = env_data(
        pg_server, names, tmp_path, pg_lock_timeout=f"{LOCK_TIMEOUT}s", pg_lock_wait="30s"
    )
    assert run_api(env.data).success
    execute(pg_server, env, "ANALYZE app.checklistresponse")
    blocker = Blocker(pg_server, env, "SELECT FROM app.checklistresponse LIMIT 1")
    read = "SELECT count(*) FROM app.checklistresponse"
    with AppReader(pg_server, env, read) as reader:
        timer = blocker.release_after(4.0)
        result = run_api({**env.data, "pg_gin_opclass": "jsonb_path_ops"})
        finished = time.monotonic()
        timer.join()

    assert result.success, result
    assert blocker.released_at is not None and finished > blocker.released_at
    assert reader.errors == []
    assert max(reader.latencies) < LOCK_TIMEOUT + MARGIN, sorted(reader.latencies)[-5:]
    opclasses = query(
        pg_server,
        env,
        "SELECT c.relname, o.opcname, x.indisvalid FROM pg_index x "
        "JOIN pg_class c ON c.oid = x.indexrelid JOIN pg_opclass o ON o.oid = x.indclass[0] "
        "WHERE x.indrelid = 'app.checklistresponse'::regclass AND c.relname LIKE '%gin%'",
    )
    assert opclasses == [("idx_checklistresponse_answers_gin", "jsonb_path_ops", True)]
