"""The migrations step when things go wrong: the runtime never keeps rights on Aerich's
bookkeeping table, even when a migration fails; and a wait for the migration lock that times
out in the fork server fails the host with one line and leaves no child behind to take the
lock later (gevent's Timeout is a BaseException: it used to escape ``except Exception``).
"""

from __future__ import annotations

import time

import psycopg
import pytest
from pgprov.migrate.upgrade import MigrationError, Target, run_child
from pgprov.sql.locks import MIGRATION_LOCK_KEY

from tests.deploykit import env_data, run_api, run_cli
from tests.e2e.helpers import combined
from tests.e2e.migration_helpers import (
    MIGRATIONS_ENV,
    migration_source,
    migrations_copy,
    query,
    runtime_privileges_on,
)

pytestmark = pytest.mark.db

ADD_PRIORITY = "1_20270101000000_add_priority.py"
BROKEN = "2_20270102000000_broken.py"


def runtime_sequence_privileges(server, env) -> list[bool]:
    return [
        row[0]
        for row in query(
            server,
            env,
            "SELECT has_sequence_privilege(%s, 'app.aerich_id_seq', p) "
            "FROM unnest(ARRAY['USAGE', 'SELECT', 'UPDATE']) p",
            (env.data["pg_runtime"],),
        )
    ]


def test_runtime_holds_nothing_on_aerich_after_a_failed_first_deploy(pg_server, names, tmp_path):
    location = migrations_copy(
        tmp_path,
        {
            ADD_PRIORITY: migration_source('ALTER TABLE "checklist" ADD COLUMN "priority" INT;'),
            BROKEN: migration_source('ALTER TABLE "no_such_table" ADD COLUMN "x" INT;'),
        },
    )
    env = env_data(pg_server, names, tmp_path)

    failed = run_cli(tmp_path, env.data, env={MIGRATIONS_ENV: str(location)})

    assert failed.returncode != 0, combined(failed)[-3000:]
    assert f"migration {BROKEN} failed" in combined(failed)
    # Aerich created its table during this run, and the default privileges gave the runtime
    # DML on it at once; the failed run still took that back.
    assert runtime_privileges_on(pg_server, env, "aerich") == []
    assert runtime_sequence_privileges(pg_server, env) == [False, False, False]


def migrate_sessions(server) -> list[tuple]:
    with server.connect() as conn:
        return conn.execute(
            "SELECT pid, state, wait_event_type FROM pg_stat_activity "
            "WHERE application_name = 'pgprov migrate'"
        ).fetchall()


def test_timed_out_lock_wait_fails_in_one_line_and_stops_the_child(pg_server, names, tmp_path):
    env = env_data(pg_server, names, tmp_path)
    assert run_api(env.data).success
    spec = env.spec()
    target = Target(
        host=pg_server.host,
        port=pg_server.port,
        user=spec.migrator,
        password=env.passwords["migrator"],
        database=spec.database,
        schema=spec.schema_name,
        runtime=spec.runtime,
    )
    holder = psycopg.connect(pg_server.dsn(spec.database), autocommit=True)
    try:
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))

        started = time.monotonic()
        with pytest.raises(MigrationError) as caught:
            run_child(target, timeout=2)
        waited = time.monotonic() - started

        assert "no result from the upgrade within 2 s" in str(caught.value)
        assert "\n" not in str(caught.value)
        assert 1.5 < waited < 20
        # The child is gone, and with it its session waiting for the lock.
        deadline = time.monotonic() + 15
        while migrate_sessions(pg_server) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert migrate_sessions(pg_server) == []
    finally:
        holder.close()
    # Once the lock is free nobody takes it: no stray child was left to run the upgrade.
    time.sleep(2)
    assert migrate_sessions(pg_server) == []
    with pg_server.connect() as conn:
        assert conn.execute("SELECT FROM pg_locks WHERE locktype = 'advisory'").fetchall() == []
