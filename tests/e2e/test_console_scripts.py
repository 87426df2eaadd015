"""Every console script as a user runs it: the installed script, ``PYTHONPATH`` unset, from the
directory that holds the inventories' package, exactly as the README and the example pipeline
show it; exit 0 on a converged environment, 1 on drift, 2 on bad input.

Two places it is run from: this repository's root with ``inventories/production.py`` pointed at
the test server through the libpq variables, and a consumer project that installed the built
wheel into a virtualenv of its own and keeps an ``inventories/`` package whose inventory imports
a ``common.py`` beside it. Both load the inventory as pyinfra does: the working directory is on
``sys.path``, nothing else is needed.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import sysconfig
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from tests.deploykit import REPO, env_data, run_api
from tests.e2e.helpers import DEFAULT_NAMES, build_wheel, drop_default_names, pip
from tests.pgserver import Names, Server

pytestmark = pytest.mark.db

BIN = Path(sys.executable).parent
# The scripts that load an inventory, each with the arguments the README shows. Later console
# scripts join here.
SCRIPTS = {
    "pgprov-verify": ("--format", "junit", "--output", "{out}/verify.xml"),
    "pgprov-plan": ("--format", "markdown", "--output", "{out}/plan.md"),
}


@dataclass
class Place:
    """Where a user runs the scripts from: the directory, the scripts' bin/ and the environment."""

    cwd: Path
    bin: Path
    env: dict[str, str]
    inventory: str

    def run(
        self,
        script: str,
        out: Path,
        *,
        env: dict[str, str | None] | None = None,
        inventory: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        args = [a.format(out=out) for a in SCRIPTS[script]]
        return subprocess.run(
            [str(self.bin / script), inventory or self.inventory, *args],
            cwd=self.cwd,
            env={k: v for k, v in {**self.env, **(env or {})}.items() if v is not None},
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )


def without_pythonpath(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(extra)
    return env


def assert_exits(place: Place, code: int, tmp_path: Path, says: str = "", **kwargs: Any) -> None:
    """Every script exits ``code``; an error (2) is one line on stderr that ``says`` its cause."""
    for script in SCRIPTS:
        out = tmp_path / f"{script}-{code}"
        out.mkdir(exist_ok=True)
        proc = place.run(script, out, **kwargs)
        assert proc.returncode == code, f"{script}: {proc.stdout}{proc.stderr}"
        if code == 2:
            lines = [line for line in proc.stderr.splitlines() if line.strip()]
            assert len(lines) == 1 and says in lines[0], f"{script}: {proc.stderr}"


@pytest.fixture
def production(pg_server: Server, tmp_path: Path) -> Iterator[Place]:
    """``inventories/production.py`` from the repository root, pointed at the test server."""
    drop_default_names(pg_server)
    env = without_pythonpath(
        DB_TARGET="@local",
        APP_MIGRATOR_PASSWORD=secrets.token_urlsafe(18),
        APP_RUNTIME_PASSWORD=secrets.token_urlsafe(18),
        **pg_server.libpq_env(),
    )
    try:
        yield Place(REPO, BIN, env, "inventories/production.py")
    finally:
        drop_default_names(pg_server)


def test_production_inventory_from_the_repository_root(
    production: Place, pg_server: Server, tmp_path: Path
) -> None:
    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, cwd=REPO, env=production.env, capture_output=True, text=True, timeout=300
        )

    deploy = run(str(BIN / "pyinfra"), "-y", production.inventory, "deploy/provision.py")
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr

    assert_exits(production, 0, tmp_path)
    urls = run(str(BIN / "pgprov-local"), "urls", production.inventory)
    assert urls.returncode == 0, urls.stdout + urls.stderr
    assert "postgres://app_runtime@" in urls.stdout
    assert production.env["APP_RUNTIME_PASSWORD"] not in urls.stdout + urls.stderr
    with pg_server.connect(DEFAULT_NAMES["database"]) as conn:
        conn.execute("GRANT CREATE ON SCHEMA app TO app_runtime")
    assert_exits(production, 1, tmp_path)
    assert_exits(
        production, 2, tmp_path, "APP_RUNTIME_PASSWORD", env={"APP_RUNTIME_PASSWORD": None}
    )
    assert_exits(production, 2, tmp_path, "missing.py", inventory="inventories/missing.py")


CONSUMER_COMMON = '''\
"""The consumer's shared inventory data (imported by every inventory of its package)."""

DATA = {data!r}


def environment() -> list:
    return [("@local", dict(DATA))]
'''

CONSUMER_INVENTORY = """\
from inventories.common import environment

hosts = environment()
"""


@pytest.fixture
def consumer(pg_server: Server, names: Names, tmp_path: Path) -> Place:
    """A service repository: its own virtualenv with the wheel installed (console scripts in its
    bin/), its pgprov dependencies borrowed from this one, and ``inventories/{common,ci}.py``."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # The wheel first, into an environment that sees no other pgprov (pip would otherwise find
    # this checkout's editable install and skip it); then pgprov's dependencies, not pgprov: a
    # .pth line adds a directory without running the editable checkout's finder, so only the
    # wheel provides pgprov.
    pip("install", "--no-deps", "--no-index", str(build_wheel(tmp_path)), python=str(python))
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    project = tmp_path / "service"
    (project / "inventories").mkdir(parents=True)
    (project / "inventories" / "__init__.py").write_text("")
    env = env_data(pg_server, names, tmp_path, pg_inventory="inventories/ci.py")
    (project / "inventories" / "common.py").write_text(CONSUMER_COMMON.format(data=env.data))
    (project / "inventories" / "ci.py").write_text(CONSUMER_INVENTORY)
    (project / "inventories" / "broken.py").write_text(
        CONSUMER_INVENTORY + "hosts[0][1]['pg_schema'] = 'app;drop'\n"
    )
    assert run_api(env.data).success
    return Place(project, venv / "bin", without_pythonpath(), "inventories/ci.py")


def test_consumer_project_with_the_installed_wheel(
    consumer: Place, pg_server: Server, names: Names, tmp_path: Path
) -> None:
    probe = subprocess.run(
        [str(consumer.bin / "python"), "-c", "import pgprov; print(pgprov.__file__)"],
        cwd=tmp_path,
        env=consumer.env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(probe.stdout.strip()).is_relative_to(tmp_path / "venv"), probe.stdout

    assert_exits(consumer, 0, tmp_path)
    with pg_server.connect(names.database) as conn:
        conn.execute(
            sql.SQL("GRANT CREATE ON SCHEMA app TO {}").format(sql.Identifier(names.runtime))
        )
    assert_exits(consumer, 1, tmp_path)
    assert_exits(consumer, 2, tmp_path, "pg_schema", inventory="inventories/broken.py")


def test_every_console_script_names_itself_in_its_help() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert {"pgprov-verify", "pgprov-plan", "pgprov-local", "pgprov-check-migrations"} <= set(
        scripts
    )
    for name in scripts:
        proc = subprocess.run(
            [str(BIN / name), "--help"],
            env=without_pythonpath(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(f"usage: {name} "), proc.stdout
