"""What a converged deploy costs: one catalog query, and none of the libraries only a
changing run needs (psycopg, Tortoise, Aerich, asyncpg, dotenv).

Timings are bench/deploy.py's business; these tests pin the cuts behind them, through the
real pyinfra CLI on a converged environment.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pgprov.catalog.psql import local_psql

from tests.deploykit import REPO, DeployEnv, run_cli
from tests.e2e.helpers import combined, drop_default_names, provisioned
from tests.pgserver import Server

ONLY_FOR_CHANGES = {"psycopg", "tortoise", "aerich", "asyncpg", "dotenv"}
BIN = Path(sys.executable).parent
IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*([\w.]+)$")


class Converged:
    def __init__(self, env: DeployEnv, directory: Path, log: Path) -> None:
        self.env = env
        self.directory = directory
        self.log = log

    def psql_starts(self) -> list[str]:
        """Each psql start's last argument: ``-`` for a session reading SQL from stdin, an empty
        string for the probe that only asks whether event triggers may be switched off."""
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture(scope="module")
def converged(pg_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Converged]:
    directory = tmp_path_factory.mktemp("noop")
    log = directory / "psql.starts"
    shim = directory / "psql"
    shim.write_text(
        f'#!/bin/sh\nfor a; do last=$a; done\necho "start $last" >> "{log}"\n'
        f'exec {local_psql()} "$@"\n'
    )
    shim.chmod(0o755)
    with provisioned(pg_server, directory, pg_psql=str(shim)) as (env, _names):
        yield Converged(env, directory, log)


def test_converged_deploy_runs_exactly_one_psql_session(converged: Converged) -> None:
    before = converged.psql_starts()
    proc = run_cli(converged.directory, converged.env.data)
    output = combined(proc)
    assert proc.returncode == 0, output
    assert output.count("No changes") == 3, output
    # One session runs the catalog query; the run's first session is preceded by one probe
    # connection that runs nothing (pgprov.catalog.session).
    assert converged.psql_starts()[len(before) :] == ["start ", "start -"]


def test_converged_deploy_imports_nothing_only_changes_need(converged: Converged) -> None:
    proc = run_cli(converged.directory, converged.env.data, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert proc.returncode == 0, combined(proc)
    imported = imports_of(proc)
    assert {"pyinfra", "pydantic", "jinja2"} <= imported  # the import log was captured
    assert imported & ONLY_FOR_CHANGES == set()


def imports_of(proc: subprocess.CompletedProcess[str]) -> set[str]:
    return {
        match.group(1).split(".")[0]
        for line in proc.stderr.splitlines()
        if (match := IMPORT_LINE.match(line))
    }


def test_local_inventory_converged_deploy_and_its_urls_import_no_psycopg(
    pg_server: Server,
) -> None:
    """What `make deploy` runs, inventories/local.py pointed at the test server (PGHOST): the
    inventory imports pgprov.local.embedded, which must not pull psycopg in."""
    env = {
        **{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        **pg_server.libpq_env(),
        "APP_MIGRATOR_PASSWORD": secrets.token_urlsafe(18),
        "APP_RUNTIME_PASSWORD": secrets.token_urlsafe(18),
    }

    def run(*argv: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, cwd=REPO, env={**env, **extra}, capture_output=True, text=True, timeout=300
        )

    drop_default_names(pg_server)
    try:
        deploy = [str(BIN / "pyinfra"), "-y", "inventories/local.py", "deploy/provision.py"]
        cold = run(*deploy)
        assert cold.returncode == 0, combined(cold)
        converged = run(*deploy, PYTHONPROFILEIMPORTTIME="1")
        assert converged.returncode == 0, combined(converged)
        assert combined(converged).count("No changes") == 3, combined(converged)
        urls = run(
            str(BIN / "pgprov-local"), "urls", "inventories/local.py", PYTHONPROFILEIMPORTTIME="1"
        )
        assert urls.returncode == 0, combined(urls)
        for proc in (converged, urls):
            imported = imports_of(proc)
            assert {"pgprov", "pydantic"} <= imported  # the import log was captured
            assert imported & ONLY_FOR_CHANGES == set()
    finally:
        drop_default_names(pg_server)
