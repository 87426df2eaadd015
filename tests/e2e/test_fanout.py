"""Many environments in parallel: one inventory group of eight ``@db/env1`` … ``@db/env8``
hosts, each administering its own local cluster from the controller, deployed by the real
pyinfra CLI in one run.

Every test deploys environments with names of its own, so the clusters (small ones:
``shared_buffers``/``max_connections`` kept low) are shared by the module, and a cluster's
fingerprint (all roles and databases) shows whether a run touched it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.deploykit import DeployEnv, env_data, secret_file, snapshot
from tests.e2e.clusters import (
    all_started_before_any_finished,
    cluster_objects,
    host_outcomes,
    run_pyinfra,
    write_group_inventory,
)
from tests.e2e.helpers import MIGRATIONS, SCHEMA, TABLE_PRIVILEGES, combined, privileges
from tests.pgserver import Names, Server, local_server

HOSTS = [f"@db/env{n}" for n in range(1, 9)]
SMALL = {"shared_buffers": "16MB", "max_connections": "20"}
# Concurrency is asserted from the output order (every host starts its migration before any
# finishes); wall-clock ratios are bench/deploy.py's business, not a test's.
GIN_INDEX = "idx_checklistresponse_answers_gin"


@pytest.fixture(scope="module")
def servers() -> Iterator[list[Server]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(local_server("15", SMALL)) for _ in HOSTS]


def environments(
    servers: list[Server], names: Names, directory: Path, hosts: list[str] = HOSTS
) -> dict[str, DeployEnv]:
    """The environment of ``names`` on each host's own cluster (host N -> cluster N)."""
    envs = {}
    for host in hosts:
        subdir = directory / host.removeprefix("@db/")
        subdir.mkdir(parents=True, exist_ok=True)
        envs[host] = env_data(servers[HOSTS.index(host)], names, subdir)
    return envs


def inventory(directory: Path, envs: dict[str, DeployEnv]) -> Path:
    return write_group_inventory(
        directory / "inventory.py", "envs", [(host, env.data) for host, env in envs.items()]
    )


def server_of(servers: list[Server], host: str) -> Server:
    return servers[HOSTS.index(host)]


def assert_converged(server: Server, env: DeployEnv) -> None:
    names = env.data
    snap = snapshot(server, env)
    assert snap.database is not None and snap.database.owner == names["pg_migrator"]
    assert snap.schemas[SCHEMA].owner == names["pg_migrator"]
    assert snap.migrations == MIGRATIONS
    assert snap.indexes[GIN_INDEX].valid
    checklist = snap.relation(SCHEMA, "checklist")
    assert privileges(checklist, names["pg_runtime"]) == TABLE_PRIVILEGES


def test_limit_provisions_only_that_host(servers: list[Server], tmp_path: Path) -> None:
    envs = environments(servers, Names.new(), tmp_path)
    before = {host: cluster_objects(server_of(servers, host)) for host in HOSTS}

    proc, _ = run_pyinfra(inventory(tmp_path, envs), "--limit", "@db/env3")

    output = combined(proc)
    assert proc.returncode == 0, output
    assert host_outcomes(output, "@db/env3") == ["Success"] * 3
    assert_converged(server_of(servers, "@db/env3"), envs["@db/env3"])
    for host in HOSTS:
        if host != "@db/env3":
            assert f"[{host}]" not in output
            assert cluster_objects(server_of(servers, host)) == before[host], host


def test_eight_hosts_converge_in_one_concurrent_run(servers: list[Server], tmp_path: Path) -> None:
    envs = environments(servers, Names.new(), tmp_path)

    proc, _ = run_pyinfra(inventory(tmp_path, envs))

    output = combined(proc)
    assert proc.returncode == 0, output
    for host, env in envs.items():
        assert host_outcomes(output, host) == ["Success"] * 3, host
        assert_converged(server_of(servers, host), env)
    # A serial run finishes one host's migrations before the next host's start.
    assert all_started_before_any_finished(output, HOSTS, "+ apply migration", "  applied ")


def stop_server(servers: list[Server], host: str, envs: dict[str, DeployEnv]) -> Callable:
    cluster = server_of(servers, host).cluster
    assert cluster is not None
    cluster.stop()

    def fix() -> None:
        cluster.start()
        assert cluster.port == server_of(servers, host).port, "restarted on another port"

    return fix


def wrong_admin_password(servers: list[Server], host: str, envs: dict[str, DeployEnv]) -> Callable:
    data = envs[host].data
    right = data["pg_admin_password"]
    wrong = secret_file(Path(right.removeprefix("file:")).parent, "wrong_admin", "not-the-pw")
    data["pg_admin_password"] = f"file:{wrong}"

    def fix() -> None:
        data["pg_admin_password"] = right

    return fix


@pytest.mark.parametrize("breakage", [stop_server, wrong_admin_password], ids=lambda b: b.__name__)
def test_a_failing_host_is_named_while_the_others_converge_and_a_rerun_fixes_it(
    servers: list[Server], tmp_path: Path, breakage: Callable
) -> None:
    broken = "@db/env5"
    names = Names.new()
    envs = environments(servers, names, tmp_path)
    fix = breakage(servers, broken, envs)
    try:
        proc, _ = run_pyinfra(inventory(tmp_path, envs))
    finally:
        fix()

    output = combined(proc)
    assert proc.returncode != 0, output
    assert "Traceback" not in output
    assert host_outcomes(output, broken) == ["Error"], output
    assert [line for line in output.splitlines() if f"[{broken}]" in line and "catalog" in line]
    for host, env in envs.items():
        if host != broken:
            assert host_outcomes(output, host) == ["Success"] * 3, host
            assert_converged(server_of(servers, host), env)
    untouched = cluster_objects(server_of(servers, broken))
    assert not [name for name in untouched if names.prefix in name]

    rerun, _ = run_pyinfra(inventory(tmp_path, envs))

    output = combined(rerun)
    assert rerun.returncode == 0, output
    assert host_outcomes(output, broken) == ["Success"] * 3, output
    assert_converged(server_of(servers, broken), envs[broken])
    for host in HOSTS:
        if host != broken:
            assert host_outcomes(output, host) == ["No changes"] * 3, host
