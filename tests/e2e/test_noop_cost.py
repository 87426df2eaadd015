"""What a converged deploy costs: one catalog query, and none of the libraries only a
changing run needs (psycopg, Tortoise, Aerich, asyncpg, dotenv).

Timings are bench/deploy.py's business; these tests pin the cuts behind them, through the
real pyinfra CLI on a converged environment.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from pgprov.catalog.psql import local_psql

from tests.deploykit import DeployEnv, run_cli
from tests.e2e.helpers import combined, provisioned
from tests.pgserver import Server

ONLY_FOR_CHANGES = {"psycopg", "tortoise", "aerich", "asyncpg", "dotenv"}
IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*([\w.]+)$")


class Converged:
    def __init__(self, env: DeployEnv, directory: Path, log: Path) -> None:
        self.env = env
        self.directory = directory
        self.log = log

    def psql_starts(self) -> int:
        return len(self.log.read_text().splitlines()) if self.log.exists() else 0


@pytest.fixture(scope="module")
def converged(pg_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Converged]:
    directory = tmp_path_factory.mktemp("noop")
    log = directory / "psql.starts"
    shim = directory / "psql"
    shim.write_text(f'#!/bin/sh\necho start >> "{log}"\nexec {local_psql()} "$@"\n')
    shim.chmod(0o755)
    with provisioned(pg_server, directory, pg_psql=str(shim)) as (env, _names):
        yield Converged(env, directory, log)


def test_converged_deploy_runs_exactly_one_psql_session(converged: Converged) -> None:
    before = converged.psql_starts()
    proc = run_cli(converged.directory, converged.env.data)
    output = combined(proc)
    assert proc.returncode == 0, output
    assert output.count("No changes") == 3, output
    assert converged.psql_starts() - before == 1


def test_converged_deploy_imports_nothing_only_changes_need(converged: Converged) -> None:
    proc = run_cli(converged.directory, converged.env.data, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert proc.returncode == 0, combined(proc)
    imported = {
        match.group(1).split(".")[0]
        for line in proc.stderr.splitlines()
        if (match := IMPORT_LINE.match(line))
    }
    assert {"pyinfra", "pydantic", "jinja2"} <= imported  # the import log was captured
    assert imported & ONLY_FOR_CHANGES == set()
