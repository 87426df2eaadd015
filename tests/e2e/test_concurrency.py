"""Two CLI deploys started at once against a fresh environment: both succeed, and the catalog
ends exactly as after one deploy, each migration applied once.

The race window (between planning from the snapshot and creating the database, the roles,
the index) is short and the two processes start a few hundred milliseconds apart at best, so
each profile is tried in several rounds; one failed round is a defect.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.deploykit import env_data, run_api, run_cli, snapshot
from tests.e2e.helpers import MIGRATIONS, combined, comparable, lines_with
from tests.pgserver import Names, Server, drop_prefixed

ROUNDS = 3


@pytest.fixture(scope="module")
def reference(pg_server: Server, tmp_path_factory: pytest.TempPathFactory):
    """profile -> the catalog after one deploy (name-independent form)."""
    states: dict[str, str] = {}
    prefixes: list[str] = []
    try:
        for profile in ("split", "single_user"):
            names = Names.new()
            prefixes.append(names.prefix)
            env = env_data(pg_server, names, tmp_path_factory.mktemp(profile), profile=profile)
            assert run_api(env.data).success
            states[profile] = comparable(snapshot(pg_server, env), names)
        yield states
    finally:
        for prefix in prefixes:
            drop_prefixed(pg_server, prefix)


@pytest.mark.parametrize("attempt", range(ROUNDS))
@pytest.mark.parametrize("profile", ["split", "single_user"])
def test_two_simultaneous_deploys_both_succeed_and_leave_the_state_of_one(
    pg_server: Server,
    names: Names,
    tmp_path: Path,
    reference: dict[str, str],
    profile: str,
    attempt: int,
):
    env = env_data(pg_server, names, tmp_path, profile=profile)
    directories = [tmp_path / "first", tmp_path / "second"]
    start = threading.Barrier(2)

    def deploy(directory: Path):
        directory.mkdir()
        start.wait()
        return run_cli(directory, env.data)

    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(deploy, directories))

    failures = [
        "\n".join(lines_with(combined(p), "ERROR") or combined(p).splitlines()[-5:])
        for p in runs
        if p.returncode != 0
    ]
    assert not failures, f"round {attempt}: a concurrent deploy failed:\n" + "\n".join(failures)
    assert comparable(snapshot(pg_server, env), names) == reference[profile]
    with pg_server.connect(names.database) as conn:
        rows = conn.execute(
            "SELECT version, count(*) FROM app.aerich GROUP BY version ORDER BY version"
        ).fetchall()
    assert rows == [(version, 1) for version in sorted(MIGRATIONS)]
