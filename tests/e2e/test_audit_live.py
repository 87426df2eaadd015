"""The audit's behavioural probes against a live database: a probe that drift allows (TRUNCATE
on an application table, ACCESS EXCLUSIVE) waits at most pg_lock_timeout for its lock, so the
application's queries never queue behind the audit for longer.
"""

from __future__ import annotations

import pytest

from tests.deploykit import env_data, run_api, run_module, write_inventory
from tests.e2e.helpers import superuser_sql
from tests.e2e.traffic import AppReader, Blocker

pytestmark = pytest.mark.db

LOCK_TIMEOUT = 0.3
MARGIN = 0.7


def test_allowed_truncate_probe_never_blocks_readers_longer_than_lock_timeout(
    pg_server, names, tmp_path
):
    env = env_data(pg_server, names, tmp_path, pg_lock_timeout=f"{LOCK_TIMEOUT}s")
    assert run_api(env.data).success
    superuser_sql(pg_server, names.database, "GRANT TRUNCATE ON app.checklist TO {runtime}", names)
    inventory = write_inventory(tmp_path, env.data)
    blocker = Blocker(pg_server, env, "SELECT FROM app.checklist LIMIT 1")
    try:
        with AppReader(pg_server, env, "SELECT count(*) FROM app.checklist") as reader:
            proc = run_module("pgprov.audit.audit", str(inventory))
    finally:
        blocker.release()

    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    truncate = [line for line in proc.stdout.splitlines() if "TRUNCATE" in line]
    assert any("app.checklist" in line for line in truncate), proc.stdout[-3000:]
    assert reader.errors == []
    assert max(reader.latencies) < LOCK_TIMEOUT + MARGIN, sorted(reader.latencies)[-5:]
