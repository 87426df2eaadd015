"""Standby safety: a deploy pointed at a streaming replica is refused in one line and changes
nothing; the same deploy on the primary reaches the replica through replication.

The replica is real: ``LocalCluster.create_standby`` (pg_basebackup -R) of a local primary,
started and streaming before any test runs. Deploys run as users run them, through the
pyinfra CLI on ``@db/<name>`` hosts.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploykit import env_data, snapshot, write_inventory
from tests.e2e.clusters import (
    cluster_objects,
    host_outcomes,
    run_pyinfra,
    standby_of,
    wait_replayed,
)
from tests.e2e.helpers import SCHEMA, assert_one_clear_line, combined
from tests.pgserver import Names, Server, local_server

MAJOR = "15"
REPLICA = "@db/replica"
PRIMARY = "@db/primary"


@pytest.fixture(scope="module")
def primary() -> Iterator[Server]:
    with local_server(MAJOR) as server:
        yield server


@pytest.fixture(scope="module")
def standby(primary: Server) -> Iterator[Server]:
    with standby_of(primary) as server:
        yield server


def deploy(server: Server, names: Names, directory: Path, host: str):
    """Run the deploy of ``names``' environment against ``server`` as ``host``."""
    directory.mkdir(exist_ok=True)
    env = env_data(server, names, directory)
    proc, _ = run_pyinfra(write_inventory(directory, env.data, host=host))
    return env, proc


def assert_refused_as_standby(proc, host: str) -> None:
    line = assert_one_clear_line(proc, f"[{host}]", "standby", "recovery", "primary")
    assert host_outcomes(combined(proc), host) == ["Error"], line


def test_create_standby_streams_from_its_primary(primary: Server) -> None:
    with standby_of(primary, timeout=15) as replica, replica.connect() as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)


def test_deploy_at_the_standby_is_refused_in_one_line_and_changes_nothing(
    primary: Server, standby: Server, tmp_path: Path
) -> None:
    before = cluster_objects(primary), cluster_objects(standby)

    _, proc = deploy(standby, Names.new(), tmp_path, REPLICA)

    assert_refused_as_standby(proc, REPLICA)
    assert (cluster_objects(primary), cluster_objects(standby)) == before


def test_deploy_on_the_primary_replicates_and_the_standby_still_refuses(
    primary: Server, standby: Server, tmp_path: Path
) -> None:
    names = Names.new()

    env, proc = deploy(primary, names, tmp_path / "primary", PRIMARY)
    assert proc.returncode == 0, combined(proc)
    assert host_outcomes(combined(proc), PRIMARY) == ["Success"] * 3
    wait_replayed(primary, standby)

    replica = snapshot(standby, env)
    assert replica.in_recovery
    assert {names.migrator, names.runtime} <= set(replica.roles)
    assert replica.database is not None and replica.database.owner == names.migrator
    assert replica.schemas[SCHEMA].owner == names.migrator
    assert replica.indexes["idx_checklistresponse_answers_gin"].valid
    assert cluster_objects(standby) == cluster_objects(primary)

    _, again = deploy(standby, names, tmp_path / "standby", REPLICA)

    assert_refused_as_standby(again, REPLICA)
    assert cluster_objects(standby) == cluster_objects(primary)
