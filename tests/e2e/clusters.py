"""Local clusters as remote-like targets: admin roles, streaming standbys, inventories of many
``@db/<name>`` hosts, and pyinfra CLI runs against them.

    with local_server("15") as primary:
        with standby_of(primary) as standby: ...                  # streaming, waited for
        inventory = write_group_inventory(path, "envs", [("@db/env1", data1), ...])
        proc, seconds = run_pyinfra(inventory, "--limit", "@db/env1")
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from psycopg import sql

from tests.deploykit import PYINFRA, REPO
from tests.pgserver import Server, make_base

STREAMING_TIMEOUT = 60.0


ROLE_ATTRIBUTES = frozenset({"LOGIN", "CREATEROLE", "CREATEDB", "REPLICATION", "BYPASSRLS"})


def create_admin(server: Server, name: str, password: str, attributes: Sequence[str]) -> None:
    """A login role for deploys, created by the superuser with exactly ``attributes``."""
    unknown = set(attributes) - ROLE_ATTRIBUTES
    assert not unknown, f"not a role attribute here: {unknown}"
    with server.connect() as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} {} PASSWORD {}").format(
                sql.Identifier(name),
                sql.SQL(" ").join(sql.SQL(keyword) for keyword in attributes),
                sql.Literal(password),
            )
        )


def cluster_objects(server: Server) -> list[str]:
    """Every non-system role and every database of the cluster: a fingerprint to compare."""
    with server.connect() as conn:
        rows = conn.execute(
            "SELECT 'role ' || rolname FROM pg_roles WHERE rolname !~ '^pg_' "
            "UNION ALL SELECT 'database ' || datname FROM pg_database"
        ).fetchall()
    return sorted(r[0] for r in rows)


@contextlib.contextmanager
def standby_of(primary: Server, *, timeout: float = STREAMING_TIMEOUT) -> Iterator[Server]:
    """A started streaming replica of ``primary`` (a local cluster), waited for; destroyed after."""
    assert primary.cluster is not None, "a standby needs a local primary"
    base = make_base("pgprov-standby-")
    cluster = primary.cluster.create_standby(base / "cluster")
    try:
        cluster.start()
        standby = Server.from_cluster(cluster)
        wait_streaming(standby, timeout)
        yield standby
    finally:
        cluster.destroy()
        shutil.rmtree(base, ignore_errors=True)


def wait_streaming(standby: Server, timeout: float = STREAMING_TIMEOUT) -> None:
    """Block until the standby's WAL receiver streams from its primary (AssertionError if not)."""
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        with standby.connect() as conn:
            row = conn.execute("SELECT status FROM pg_stat_wal_receiver").fetchone()
        status = row[0] if row else None
        if status == "streaming":
            return
        time.sleep(0.2)
    log = standby.cluster.logfile.read_text()[-1500:] if standby.cluster else ""
    raise AssertionError(f"standby not streaming after {timeout}s (status {status}):\n{log}")


def wait_replayed(primary: Server, standby: Server, timeout: float = STREAMING_TIMEOUT) -> None:
    """Block until the standby has replayed everything the primary has written so far."""
    with primary.connect() as conn:
        (target,) = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with standby.connect() as conn:
            (caught_up,) = conn.execute(
                "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (str(target),)
            ).fetchone()
        if caught_up:
            return
        time.sleep(0.1)
    raise AssertionError(f"standby did not replay up to {target} within {timeout}s")


def write_group_inventory(
    path: Path, group: str, hosts: Sequence[tuple[str, dict[str, Any]]]
) -> Path:
    """A pyinfra inventory file whose module-level list ``group`` holds every (host, data)."""
    path.write_text(f"{group} = {list(hosts)!r}\n")
    return path


def run_pyinfra(
    inventory: Path, *args: str, timeout: float = 300
) -> tuple[subprocess.CompletedProcess[str], float]:
    """``pyinfra -y <inventory> deploy/provision.py`` as users run it; (result, wall seconds)."""
    started = time.monotonic()
    proc = subprocess.run(
        [PYINFRA, "-y", *args, str(inventory), "deploy/provision.py"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return proc, time.monotonic() - started


def run_audit(inventory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m pgprov.audit.audit <inventory>`` as CI runs it."""
    return subprocess.run(
        [str(Path(PYINFRA).parent / "python"), "-m", "pgprov.audit.audit", str(inventory), *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def host_outcomes(output: str, host: str) -> list[str]:
    """What pyinfra reported for ``host`` per operation: "Success", "No changes" or "Error"."""
    pattern = re.compile(rf"^\s*\[{re.escape(host)}\] (Success|No changes|Error)(?::.*)?$", re.M)
    return pattern.findall(output)


def all_started_before_any_finished(
    output: str, hosts: Sequence[str], started: str, done: str
) -> bool:
    """Whether every host printed ``started`` before any host printed ``done`` (concurrency
    shown by output order alone: a serial run finishes one host before starting the next)."""
    lines = output.splitlines()
    first_done = min(
        (
            i
            for i, line in enumerate(lines)
            if done in line and any(f"[{h}]" in line for h in hosts)
        ),
        default=len(lines),
    )
    return all(
        any(started in line and f"[{host}]" in line for line in lines[:first_done])
        for host in hosts
    )
