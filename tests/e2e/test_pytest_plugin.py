"""The pytest plugin as the service's test suite uses it: a consumer project with no conftest of
pgprov's, the ``pgprov_database`` fixture from the ``pytest11`` entry point, run in its own
pytest process (pytester) on the backend PGPROV_TEST_BACKEND chooses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.helpers import build_wheel, pip, prefixed_objects
from tests.pgserver import Server

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.db

REPO = Path(__file__).resolve().parents[2]

CONSUMER = """
import asyncio

import psycopg
import pytest
from psycopg import errors


def test_runtime_can_write_rows_but_not_create_tables(pgprov_database):
    with psycopg.connect(pgprov_database.runtime_url, autocommit=True) as conn:
        user = conn.execute("SELECT current_user").fetchone()[0]
        assert user == pgprov_database.runtime
        conn.execute("INSERT INTO unit (name, symbol) VALUES ('bar', 'bar')")
        assert conn.execute("SELECT count(*) FROM unit").fetchone()[0] == 1
        conn.execute("UPDATE unit SET symbol = 'Bar' WHERE name = 'bar'")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE scratch (id int)")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE public.scratch (id int)")
        conn.execute("DELETE FROM unit WHERE name = 'bar'")


def test_the_runtime_url_works_for_tortoise(pgprov_database):
    from tortoise import Tortoise
    from pgprov.app_schema.config import MODEL_MODULES
    from pgprov.app_schema.models.checklist import Unit

    async def scenario():
        await Tortoise.init(db_url=pgprov_database.runtime_url, modules={"models": list(MODEL_MODULES)})
        try:
            await Unit.create(name="degC", symbol="C")
            return await Unit.filter(name="degC").count()
        finally:
            await Tortoise.close_connections()

    assert asyncio.run(scenario()) == 1


def test_the_database_is_production_shaped(pgprov_database):
    with psycopg.connect(pgprov_database.migrator_url, autocommit=True) as conn:
        owner = conn.execute(
            "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'app'"
        ).fetchone()[0]
        assert owner == pgprov_database.migrator
        applied = conn.execute("SELECT count(*) FROM app.aerich").fetchone()[0]
        assert applied >= 1
        index = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'idx_checklistresponse_answers_gin'"
        ).fetchone()[0]
        assert "gin (answers)" in index
    secret = pgprov_database.runtime_url.split(":")[2].split("@")[0]
    assert secret not in repr(pgprov_database)
"""


def test_consumer_suite_runs_as_the_least_privileged_runtime(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_service=CONSUMER)
    # The consumer's pytest finds pgprov through the installed entry point only; PYTHONPATH
    # gives it the service's models and migrations (this repo's app_schema).
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", timeout=600)
    result.assert_outcomes(passed=3)


def test_on_a_shared_server_the_fixture_uses_private_names_and_drops_them(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, pg_server: Server
) -> None:
    """PGPROV_TEST_BACKEND=dsn: someone else's server, so nothing may be left behind on it."""
    before = prefixed_objects(pg_server, "")
    pytester.makepyfile(test_service=CONSUMER)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("PGPROV_TEST_BACKEND", "dsn")
    monkeypatch.setenv("PGPROV_TEST_DSN", pg_server.dsn())
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", timeout=600)
    result.assert_outcomes(passed=3)
    assert prefixed_objects(pg_server, "") == before  # every role and database as it was


FROM_THE_WHEEL = """
import os
from pathlib import Path

import pgprov.sql.render


def test_pgprov_is_the_installed_one_not_a_checkout():
    site = Path(os.environ["PGPROV_WHEEL_SITE"])
    assert Path(pgprov.sql.render.__file__).is_relative_to(site)
    assert (pgprov.sql.render.TEMPLATE_DIR / "inspect.sql.j2").is_file()
"""


def test_an_installed_wheel_carries_everything_the_plugin_needs(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The service installs pgprov as a dependency, without a checkout: its pytest plugin must
    find the SQL templates and the migrations inside the installed package."""
    wheel = build_wheel(tmp_path)
    site = tmp_path / "site"
    pip("install", "--no-deps", "--no-index", "--target", str(site), str(wheel))
    templates = sorted(p.name for p in (site / "pgprov" / "sql_templates").glob("*.sql.j2"))
    assert templates == sorted(p.name for p in (REPO / "sql_templates").glob("*.sql.j2"))

    pytester.makepyfile(test_service=CONSUMER, test_installed=FROM_THE_WHEEL)
    monkeypatch.setenv("PYTHONPATH", str(site))
    monkeypatch.setenv("PGPROV_WHEEL_SITE", str(site))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", timeout=600)
    result.assert_outcomes(passed=4)


SLOW_CONSUMER = """
import json, os, time
from pathlib import Path
import psycopg

def test_waits(pgprov_database):
    with psycopg.connect(pgprov_database.migrator_url) as conn:
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        # Read while the connection is open: the backend exits as soon as it closes.
        stat = Path(f"/proc/{backend}/stat").read_text()
    postmaster = int(stat.rsplit(")", 1)[1].split()[1])
    Path(os.environ["PGPROV_PLUGIN_OUT"]).write_text(json.dumps({"pid": postmaster}))
    time.sleep(120)
"""


def alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_terminated_consumer_session_stops_its_server(tmp_path: Path) -> None:
    """A CI timeout sends SIGTERM to pytest: the fixture's local server must not outlive it."""
    (tmp_path / "test_slow.py").write_text(SLOW_CONSUMER)
    out = tmp_path / "server.json"
    env = {
        **os.environ,
        "PGPROV_TEST_BACKEND": "local",
        "PGPROV_PLUGIN_OUT": str(out),
        "PYTHONPATH": str(REPO),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not out.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        if not out.exists():
            proc.kill()
            output = proc.communicate()[0]
            pytest.fail(f"the consumer never got its database:\n{output}")
        postmaster = json.loads(out.read_text())["pid"]
        assert alive(postmaster)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    if alive(postmaster):
        os.kill(postmaster, signal.SIGTERM)  # fail, but leave no server behind
        pytest.fail("the postmaster outlived the terminated session")


def test_plugin_import_is_cheap_and_starts_nothing() -> None:
    """Loaded by every pytest run of an environment where pgprov is installed (this repo's too)."""
    heavy = ("pyinfra", "psycopg", "pgprov.local.embedded", "testcontainers", "docker", "tortoise")
    probe = (
        "import sys, pgprov.testing.plugin\n"
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert proc.stdout.strip() == ""
