"""Smoke: the deploy through pyinfra's API converges and a second run changes nothing."""

from tests.deploykit import env_data, run_api, snapshot


def test_second_run_reports_no_changes(pg_server, names, tmp_path):
    env = env_data(pg_server, names, tmp_path)
    first = run_api(env.data)
    assert first.success, first
    assert first.changed == {"provision": True, "migrate": True, "gin_index": True}
    second = run_api(env.data)
    assert second.success, second
    assert second.changed == {"provision": False, "migrate": False, "gin_index": False}
    snap = snapshot(pg_server, env)
    assert snap.database is not None and snap.database.owner == names.migrator
