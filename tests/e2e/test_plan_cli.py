"""``pgprov-plan`` as CI runs it: exit codes and the three formats on a fresh, a converged and a
drifted environment, bad input in one line, and no secret in any artifact.

The console script runs as a subprocess against real PostgreSQL; environments are provisioned
through pyinfra's API and drifted by hand as the superuser.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.deploykit import (
    REPO,
    env_data,
    run_api,
    run_cli,
    secret_file,
    snapshot,
    stored_verifiers,
    write_inventory,
)
from tests.e2e.helpers import MIGRATIONS, assert_one_clear_line, prefixed_objects, superuser_sql
from tests.e2e.test_bad_input import closed_port
from tests.pgserver import Names, Server, drop_prefixed, make_base

pytestmark = pytest.mark.db

PLAN = str(Path(sys.executable).parent / "pgprov-plan")
FORMATS = ("text", "markdown", "json")


@dataclass
class Artifacts:
    """One pgprov-plan run per format, each written with --output."""

    codes: dict[str, int]
    files: dict[str, str]
    logs: dict[str, str]  # stdout + stderr of each run

    @property
    def code(self) -> int:
        codes = set(self.codes.values())
        assert len(codes) == 1, f"the formats disagree on the exit code: {self.codes}"
        return codes.pop()

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.files["json"])

    def everything(self) -> str:
        return "\n".join([*self.files.values(), *self.logs.values()])


def run_plan(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PLAN, *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def plan_all(inventory: Path, directory: Path, *extra: str) -> Artifacts:
    codes, files, logs = {}, {}, {}
    for fmt in FORMATS:
        output = directory / f"plan.{fmt}"
        proc = run_plan(str(inventory), "--format", fmt, "--output", str(output), *extra)
        codes[fmt] = proc.returncode
        logs[fmt] = proc.stdout + proc.stderr
        files[fmt] = output.read_text() if output.exists() else ""
    return Artifacts(codes, files, logs)


def assert_no_secret(artifacts: Artifacts, secrets: dict[str, str]) -> None:
    text = artifacts.everything()
    for label, value in secrets.items():
        assert value not in text, f"{label} appears in a plan artifact"
    assert "SCRAM-SHA-256$" not in text, "a SCRAM verifier appears in a plan artifact"


def test_fresh_environment_plans_everything_and_lists_pending_migrations_by_name(
    pg_server: Server, names: Names, tmp_path: Path
):
    env = env_data(pg_server, names, tmp_path)
    inventory = write_inventory(tmp_path, env.data)

    artifacts = plan_all(inventory, tmp_path)

    assert artifacts.code == 1, artifacts.logs
    host = artifacts.json["hosts"][0]
    assert host["status"] == "changes"
    assert host["pending_migrations"] == list(MIGRATIONS)
    steps = {change["step"] for change in host["changes"]}
    assert steps == {"provision", "migrate", "gin_index"}
    descriptions = [change["description"] for change in host["changes"]]
    assert (
        f"create role {names.runtime} (LOGIN, INHERIT) with a SCRAM-SHA-256 password"
        in descriptions
    )
    for name in MIGRATIONS:
        assert f"apply migration {name} as {names.migrator}" in artifacts.files["text"]
        assert f"`{name}`" in artifacts.files["markdown"]
    markdown = artifacts.files["markdown"]
    assert "### `@local`:" in markdown
    assert (
        f'```sql\nCREATE SCHEMA IF NOT EXISTS "app" AUTHORIZATION "{names.migrator}";\n```'
        in markdown
    )
    assert artifacts.json["summary"]["changes"] == len(host["changes"])
    assert "Plan: " in artifacts.logs["json"]  # the CI log shows the summary with --output
    assert_no_secret(artifacts, {**env.passwords, "admin password": pg_server.password})
    # The same plan as `pyinfra --dry`, sentence for sentence and line for line of SQL.
    dry = run_cli(tmp_path, env.data, "--dry")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    shown = [
        line.split("[@local] ", 1)[1]
        for line in (dry.stdout + dry.stderr).splitlines()
        if "[@local]   " in line
    ]
    planned = []
    for change in host["changes"]:
        planned.append(f"  + {change['description']}")
        planned += [f"      {line}" for line in change["sql"].rstrip("\n").splitlines()]
    assert shown == planned
    # A plan changes nothing.
    assert prefixed_objects(pg_server, names.prefix) == []


def test_converged_environment_exits_0_with_a_no_changes_line(
    pg_server: Server, names: Names, tmp_path: Path
):
    env = env_data(pg_server, names, tmp_path)
    assert run_api(env.data).success
    inventory = write_inventory(tmp_path, env.data)

    artifacts = plan_all(inventory, tmp_path)

    assert artifacts.code == 0, artifacts.logs
    text_lines = artifacts.files["text"].splitlines()
    assert text_lines[-1] == f"@local: No changes (database {names.database} is as declared)"
    assert artifacts.json["hosts"][0] | {"admin": None} == {
        "host": "@local",
        "status": "converged",
        "database": names.database,
        "admin": None,
        "error": None,
        "pending_migrations": [],
        "changes": [],
        "notices": [],
    }
    assert "### `@local`: no changes" in artifacts.files["markdown"]
    assert "```sql" not in artifacts.files["markdown"]

    # `make plan` prints the text plan and passes.
    proc = subprocess.run(
        ["make", "-s", "plan", f"INVENTORY={inventory}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == text_lines[-1]


def test_drift_and_a_password_change_show_the_sql_that_closes_them_without_secrets(
    pg_server: Server, names: Names, tmp_path: Path
):
    """Two hosts in one inventory: one converged, one drifted (an extra grant, an extra
    attribute, a rotated password); one section each, and only the drifted one has changes."""
    drifted = env_data(pg_server, names, tmp_path)
    assert run_api(drifted.data).success
    other_names = Names.new()
    try:
        (tmp_path / "clean").mkdir()
        clean = env_data(pg_server, other_names, tmp_path / "clean")
        assert run_api(clean.data).success
        superuser_sql(
            pg_server, names.database, "GRANT TRUNCATE ON app.checklist TO {runtime}", names
        )
        superuser_sql(pg_server, "postgres", "ALTER ROLE {runtime} CREATEDB", names)
        rotated = f"{drifted.passwords['runtime']}-Rotated7"
        secret_file(tmp_path, "runtime", rotated)
        stored = stored_verifiers(pg_server, names.runtime)[names.runtime]
        assert stored.startswith("SCRAM-SHA-256$")
        inventory = tmp_path / "two.py"
        inventory.write_text(
            f"hosts = [('@db/drifted', {drifted.data!r}), ('@db/clean', {clean.data!r})]\n"
        )
        before = snapshot(pg_server, drifted)

        artifacts = plan_all(inventory, tmp_path)

        assert artifacts.code == 1, artifacts.logs
        by_host = {h["host"]: h for h in artifacts.json["hosts"]}
        assert by_host["@db/clean"]["status"] == "converged"
        assert by_host["@db/drifted"]["status"] == "changes"
        changes = {c["description"]: c["sql"] for c in by_host["@db/drifted"]["changes"]}
        assert (
            changes[f"set NOCREATEDB on role {names.runtime}"]
            .strip()
            .endswith(f'ALTER ROLE "{names.runtime}" NOCREATEDB;')
        )
        revoke = next(
            sql for d, sql in changes.items() if "TRUNCATE" in d and d.startswith("revoke")
        )
        assert f'REVOKE TRUNCATE ON TABLE "app"."checklist" FROM "{names.runtime}";' in revoke
        assert f"set the password of role {names.runtime} (SCRAM-SHA-256 verifier)" in changes
        markdown = artifacts.files["markdown"]
        assert "### `@db/drifted`: 3 changes" in markdown
        assert "### `@db/clean`: no changes" in markdown
        assert (
            f'```sql\nREVOKE TRUNCATE ON TABLE "app"."checklist" FROM "{names.runtime}";\n```'
            in markdown
        )
        assert artifacts.files["text"].splitlines()[-1].startswith("@db/clean: No changes")
        assert_no_secret(
            artifacts,
            {
                **drifted.passwords,
                "rotated password": rotated,
                "stored verifier": stored,
                "admin password": pg_server.password,
            },
        )
        assert snapshot(pg_server, drifted) == before, "a plan must change nothing"
    finally:
        drop_prefixed(pg_server, other_names.prefix)


def test_missing_inventory_is_one_line(tmp_path: Path):
    proc = run_plan(str(tmp_path / "nope.py"), "--format", "json")
    assert proc.returncode == 2
    assert_one_clear_line(proc, "nope.py", "no such inventory file")
    assert proc.stdout == ""


def test_inventory_that_does_not_load_is_one_line(tmp_path: Path):
    inventory = tmp_path / "broken.py"
    inventory.write_text("hosts = [('@local', {'pg_profile': 'split'})\n")
    proc = run_plan(str(inventory))
    assert proc.returncode == 2
    assert_one_clear_line(proc, "broken.py", "cannot load the inventory")


@pytest.mark.parametrize(
    ("overrides", "needles"),
    [
        ({"pg_schema": "app;drop"}, ("pg_schema", "not a valid identifier")),
        ({"pg_runtime_password": "env:NOT_SET_XYZ"}, ("NOT_SET_XYZ", "not set")),
    ],
    ids=["invalid_identifier", "missing_secret"],
)
def test_bad_key_is_one_line_naming_inventory_host_and_key(
    pg_server: Server, names: Names, tmp_path: Path, overrides: dict, needles: tuple[str, ...]
):
    env = env_data(pg_server, names, tmp_path, **overrides)
    proc = run_plan(str(write_inventory(tmp_path, env.data)), "--format", "markdown")
    assert proc.returncode == 2
    assert_one_clear_line(proc, "tests/inventory.py", "@local", *needles)


def test_unreachable_server_is_one_line(pg_server: Server, names: Names, tmp_path: Path):
    env = env_data(pg_server, names, tmp_path, pg_admin_port=closed_port())
    output = tmp_path / "plan.json"
    proc = run_plan(
        str(write_inventory(tmp_path, env.data)), "--format", "json", "--output", str(output)
    )
    assert proc.returncode == 2
    assert_one_clear_line(proc, "@local", "cannot read the catalog", "Connection refused")
    assert json.loads(output.read_text())["hosts"][0]["status"] == "error"


def test_unreachable_ssh_host_is_one_line(tmp_path: Path):
    data = {
        "pg_environment": "staging",
        "pg_profile": "split",
        "pg_migrator_password": "literal:x",
        "pg_runtime_password": "literal:y",
        "ssh_port": closed_port(),
        "ssh_look_for_keys": False,
        "ssh_allow_agent": False,
    }
    proc = run_plan(str(write_inventory(tmp_path, data, host="127.0.0.1")), "--format", "text")
    assert proc.returncode == 2
    assert_one_clear_line(proc, "127.0.0.1", "cannot connect")


def test_limit_matching_nothing_is_one_line(pg_server: Server, names: Names, tmp_path: Path):
    env = env_data(pg_server, names, tmp_path)
    proc = run_plan(str(write_inventory(tmp_path, env.data)), "--limit", "@db/nope")
    assert proc.returncode == 2
    assert_one_clear_line(proc, "--limit @db/nope", "matches no host")


@pytest.fixture
def ssh_staging() -> Iterator[tuple[Any, Server]]:
    from tests.e2e.sshhost import (
        MISSING_TOOLS_HINT,
        TargetUnavailable,
        check_prerequisites,
        cluster_on_target,
        ssh_target,
    )

    try:
        check_prerequisites()
    except TargetUnavailable as exc:
        message = f"no SSH target here: {exc} ({MISSING_TOOLS_HINT})"
        if os.environ.get("PGPROV_REQUIRE_SSH") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    base = make_base("pgprov-plan-ssh-")
    try:
        with (
            ssh_target(base / "ssh", trace=False) as ssh,
            cluster_on_target(base, os.environ.get("PGPROV_TEST_PG") or None) as server,
        ):
            yield ssh, server
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_ssh_target_is_planned_through_pyinfra(ssh_staging: tuple[Any, Server], tmp_path: Path):
    """The staging shape: psql on the target through sudo (peer auth), nothing local."""
    from tests.e2e.sshhost import ssh_inventory

    ssh, server = ssh_staging
    assert server.cluster is not None
    names = Names.new()
    data = {
        "pg_inventory": "inventories/staging.py",
        "pg_environment": "staging",
        "pg_profile": "split",
        "pg_database": names.database,
        "pg_migrator": names.migrator,
        "pg_runtime": names.runtime,
        "pg_admin_sudo_user": "pgprov",
        "pg_admin_host": str(server.cluster.sockdir),
        "pg_admin_port": server.cluster.port,
        "pg_app_host": "127.0.0.1",
        "pg_app_port": server.cluster.port,
        "pg_tunnel": True,
        "pg_migrator_password": "env:APP_MIGRATOR_PASSWORD",
        "pg_runtime_password": "env:APP_RUNTIME_PASSWORD",
    }
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "HOME": str(home),
        "APP_MIGRATOR_PASSWORD": "mig-Secret-1",
        "APP_RUNTIME_PASSWORD": "run-Secret-2",
    }
    inventory = ssh_inventory(tmp_path, ssh, data)
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    proc = subprocess.run(
        [PLAN, str(inventory), "--format", "json"],
        cwd=REPO,
        env={**clean_env, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    host = json.loads(proc.stdout)["hosts"][0]
    assert host["host"] == "127.0.0.1"
    assert host["admin"].startswith("sudo -u pgprov (peer)")
    assert host["pending_migrations"] == list(MIGRATIONS)
    assert "mig-Secret-1" not in proc.stdout + proc.stderr
    assert prefixed_objects(server, names.prefix) == []
