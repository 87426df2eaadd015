"""``pgprov-verify``, the console script CI calls, exits 0 clean, 1 on drift, 2 on error.

Run as CI runs it: the script pip installed into the virtualenv's bin/, from another
directory and without PYTHONPATH, against real PostgreSQL: a freshly provisioned
environment, the same after a seeded drift, an inventory with a bad value, and one whose
server does not answer.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pgprov.local.embedded import free_port
from psycopg import sql

from tests.deploykit import env_data, run_api, write_inventory
from tests.pgserver import Names, Server

SCRIPT = Path(sys.executable).parent / "pgprov-verify"


def verify(inventory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if not SCRIPT.exists():
        pytest.fail(f"{SCRIPT} is not installed: run `make venv` (pyproject [project.scripts])")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [str(SCRIPT), str(inventory), "--no-probes", *args],
        cwd=inventory.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.strip()]


def test_clean_then_drift_exit_0_then_1(pg_server: Server, names: Names, tmp_path: Path) -> None:
    env = env_data(pg_server, names, tmp_path)
    assert run_api(env.data).success
    inventory = write_inventory(tmp_path, env.data)

    clean = verify(inventory)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert " 0 differences" in clean.stdout

    with pg_server.connect(names.database) as conn:
        conn.execute(
            sql.SQL("GRANT CREATE ON SCHEMA app TO {}").format(sql.Identifier(names.runtime))
        )
    drift = verify(inventory)
    assert drift.returncode == 1, drift.stdout + drift.stderr
    assert any(
        line.startswith("    DRIFT") and names.runtime in line and "CREATE" in line
        for line in drift.stdout.splitlines()
    ), drift.stdout


def test_bad_input_exits_2_with_one_line(pg_server: Server, names: Names, tmp_path: Path) -> None:
    env = env_data(pg_server, names, tmp_path, pg_schema="app;drop")
    proc = verify(write_inventory(tmp_path, env.data))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    [line] = error_lines(proc)
    assert "pg_schema" in line and "tests/inventory.py" in line, line


def test_unreachable_server_exits_2_naming_the_host(
    pg_server: Server, names: Names, tmp_path: Path
) -> None:
    env = env_data(pg_server, names, tmp_path, pg_admin_port=free_port())
    proc = verify(write_inventory(tmp_path, env.data))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    [line] = error_lines(proc)
    assert "host @local" in line and "cannot read the catalog" in line, line


def test_a_usage_error_exits_2(tmp_path: Path) -> None:
    proc = verify(tmp_path / "missing.py")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "missing.py" in proc.stderr
