"""Running the real deploy from tests: host data for a test environment, pyinfra API and CLI runs,
catalog snapshots and role logins.

    data = env_data(pg_server, names, tmp_path)          # split profile, unique names
    result = run_api(data)                               # pyinfra API, in-process
    assert result.success and result.changed["provision"]
    proc = run_cli(tmp_path, data, "--dry")               # the pyinfra CLI, as users run it
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from pgprov.catalog.state import Snapshot
from pgprov.model.secrets import new_password_key
from pgprov.model.spec import build_spec

from tests.pgserver import Names, Server

REPO = Path(__file__).resolve().parent.parent
PYINFRA = str(Path(sys.executable).parent / "pyinfra")
SNAPSHOT_KEY = new_password_key()


def secret_file(directory: Path, name: str, value: str) -> Path:
    path = directory / f"{name}.secret"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return path


@dataclass
class DeployEnv:
    """Host data for one test environment plus the plaintext passwords it uses."""

    data: dict[str, Any]
    passwords: dict[str, str] = field(default_factory=dict)

    def spec(self):
        return build_spec(self.data, inventory="test inventory", host="@local")


def env_data(
    server: Server,
    names: Names,
    directory: Path,
    *,
    profile: str = "split",
    **overrides: Any,
) -> DeployEnv:
    """A split (or single_user) environment on the test server, with unique names."""
    admin_password = secret_file(directory, "admin", server.password)
    passwords = {
        "migrator": f"mig-{names.prefix}-Pw1",
        "runtime": f"run-{names.prefix}-Pw2",
        "app_user": f"usr-{names.prefix}-Pw3",
    }
    data: dict[str, Any] = {
        "pg_inventory": "tests/inventory.py",
        "pg_environment": "test",
        "pg_profile": profile,
        "pg_database": names.database,
        "pg_migrator": names.migrator,
        "pg_runtime": names.runtime,
        "pg_app_user": names.app_user,
        "pg_admin_host": server.host,
        "pg_admin_port": server.port,
        "pg_admin_user": server.superuser,
        "pg_admin_password": f"file:{admin_password}",
        "pg_app_host": server.host,
        "pg_app_port": server.port,
        "pg_migrator_password": f"file:{secret_file(directory, 'migrator', passwords['migrator'])}",
        "pg_runtime_password": f"file:{secret_file(directory, 'runtime', passwords['runtime'])}",
        "pg_app_user_password": f"file:{secret_file(directory, 'app_user', passwords['app_user'])}",
    }
    data.update(overrides)
    return DeployEnv(data={k: v for k, v in data.items() if v is not None}, passwords=passwords)


@dataclass
class DeployResult:
    success: bool
    changed: dict[str, bool]  # step -> whether it executed any command
    commands: dict[str, int]  # step -> commands executed
    error: str | None = None

    @property
    def any_change(self) -> bool:
        return any(self.changed.values())


STEPS = {"Provision database": "provision", "Schema ": "migrate", "JSONB GIN index": "gin_index"}


def _step(names: set[str]) -> str:
    for name in names:
        short = name.split(" | ", 1)[-1]
        for prefix, step in STEPS.items():
            if short.startswith(prefix):
                return step
    return sorted(names)[0]


def run_api(data: dict[str, Any], *, dry: bool = False) -> DeployResult:
    """Run the deploy through pyinfra's API against @local, in this process."""
    from pgprov.steps.environment import environment
    from pyinfra.api import Config, Inventory, State
    from pyinfra.api.connect import connect_all, disconnect_all
    from pyinfra.api.deploy import add_deploy
    from pyinfra.api.exceptions import PyinfraError
    from pyinfra.api.operations import run_ops

    inventory = Inventory((["@local"], data))
    state = State(inventory, Config())
    host = inventory.get_host("@local")
    try:
        connect_all(state)
        add_deploy(state, environment)
        if not dry:
            run_ops(state)
    except PyinfraError as exc:
        return DeployResult(False, {}, {}, error=str(exc))
    finally:
        disconnect_all(state)
    changed: dict[str, bool] = {}
    commands: dict[str, int] = {}
    success = True
    for op_hash in state.get_op_order():
        meta = state.get_op_data_for_host(host, op_hash).operation_meta
        step = _step(state.get_op_meta(op_hash).names)
        if dry:
            changed[step] = bool(meta._maybe_is_change)
            commands[step] = 0
            continue
        if not meta.is_complete():
            success = False
            continue
        success = success and meta.did_succeed()
        changed[step] = meta.did_change()
        commands[step] = len(meta._commands or [])
    success = success and state.get_results_for_host(host).error_ops == 0
    return DeployResult(success, changed, commands)


def write_inventory(directory: Path, data: dict[str, Any], host: str = "@local") -> Path:
    path = directory / "inventory.py"
    path.write_text(f"hosts = [({host!r}, {data!r})]\n")
    return path


def run_cli(
    directory: Path,
    data: dict[str, Any],
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """``pyinfra -y <inventory> deploy/provision.py`` as users run it (``--dry`` drops -y)."""
    inventory = write_inventory(directory, data)
    flags = list(args) if "--dry" in args else ["-y", *args]
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [PYINFRA, *flags, str(inventory), "deploy/provision.py"],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_module(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m <module> <args>`` from the repository, as CI runs the audit and verify."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def snapshot(server: Server, env: DeployEnv) -> Snapshot:
    """The same catalog snapshot the deploy reads, taken with psql as the superuser (with
    its ``password_key``, so ``stored_password_matches`` works on its roles). One key per
    test process, so two snapshots of an unchanged password compare equal."""
    import dataclasses

    from pgprov.catalog.facts import inspect_script

    key = SNAPSHOT_KEY

    proc = subprocess.run(
        [
            "psql",
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            server.host,
            "-p",
            str(server.port),
            "-U",
            server.superuser,
            "-d",
            "postgres",
            "-f",
            "-",
        ],
        input=inspect_script(env.spec(), key),
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PGPASSFILE": str(server.passfile)},
    )
    return dataclasses.replace(Snapshot.parse(proc.stdout.splitlines()), password_key=key)


def stored_verifiers(server: Server, *roles: str) -> dict[str, str]:
    """The SCRAM verifiers pg_authid holds for ``roles`` (to search output and logs for)."""
    with server.connect() as conn:
        rows = conn.execute(
            "SELECT rolname, rolpassword FROM pg_catalog.pg_authid"
            " WHERE rolname = ANY(%s) AND rolpassword IS NOT NULL",
            (list(roles),),
        ).fetchall()
    return dict(rows)


def login(
    server: Server, role: str, password: str, dbname: str, **kwargs: Any
) -> psycopg.Connection:
    """A real password login over TCP (scram), as the application would connect."""
    return psycopg.connect(
        host=server.host,
        port=server.port,
        user=role,
        password=password,
        dbname=dbname,
        require_auth="scram-sha-256",
        **kwargs,
    )
