"""Bad input stops the CLI deploy before any change, with one clear line and no traceback.

Each case runs twice: against a fresh environment (afterwards no role or database of its
names exists) and against an existing one that has drifted (afterwards its catalog is exactly
as drifted: a run that got past the check would have repaired the drift).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.deploykit import env_data, run_api, run_cli, secret_file, snapshot
from tests.e2e.helpers import assert_one_clear_line, prefixed_objects, superuser_sql
from tests.pgserver import Names, Server

HOST = "@local"


def closed_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class BadInput:
    overrides: Callable[[Path], dict[str, Any]]
    needles: tuple[str, ...]  # what the one clear line must say (besides the host)


CASES = {
    "invalid_schema_identifier": BadInput(
        lambda _: {"pg_schema": "app;drop"}, ("pg_schema", "app;drop", "not a valid identifier")
    ),
    "injection_in_role_name": BadInput(
        lambda _: {"pg_runtime": 'app"; DROP ROLE postgres; --'},
        ("pg_runtime", "not a valid identifier"),
    ),
    "missing_password_variable": BadInput(
        lambda _: {"pg_runtime_password": "env:NOT_SET_XYZ"}, ("NOT_SET_XYZ", "not set")
    ),
    "unknown_profile": BadInput(lambda _: {"pg_profile": "cluster"}, ("pg_profile",)),
    "wrong_admin_password": BadInput(
        lambda directory: {
            "pg_admin_password": f"file:{secret_file(directory, 'wrong', 'not-the-password')}"
        },
        ("password authentication failed",),
    ),
    "unreachable_server": BadInput(
        lambda _: {"pg_admin_port": closed_port()}, ("Connection refused",)
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_on_a_fresh_environment_stops_with_one_line_and_creates_nothing(
    pg_server: Server, names: Names, tmp_path: Path, case: str
):
    bad = CASES[case]
    env = env_data(pg_server, names, tmp_path, **bad.overrides(tmp_path))
    proc = run_cli(tmp_path, env.data)
    assert_one_clear_line(proc, HOST, *bad.needles)
    assert prefixed_objects(pg_server, names.prefix) == []


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_on_an_existing_environment_stops_before_any_change(
    pg_server: Server, names: Names, tmp_path: Path, case: str
):
    good = env_data(pg_server, names, tmp_path)
    assert run_api(good.data).success
    superuser_sql(pg_server, names.database, "GRANT TRUNCATE ON app.checklist TO {runtime}", names)
    superuser_sql(pg_server, "postgres", "ALTER ROLE {migrator} CREATEROLE", names)
    drifted = snapshot(pg_server, good)
    objects = prefixed_objects(pg_server, names.prefix)

    bad = CASES[case]
    proc = run_cli(tmp_path, {**good.data, **bad.overrides(tmp_path)})
    assert_one_clear_line(proc, HOST, *bad.needles)
    assert snapshot(pg_server, good) == drifted
    assert prefixed_objects(pg_server, names.prefix) == objects


@pytest.mark.parametrize("case", ["wrong_admin_password", "unreachable_server"])
def test_a_plan_that_cannot_read_the_catalog_fails_instead_of_looking_empty(
    pg_server: Server, names: Names, tmp_path: Path, case: str
):
    # `make plan` in CI must not pass for "no changes" when it never reached the server.
    env = env_data(pg_server, names, tmp_path, **CASES[case].overrides(tmp_path))
    proc = run_cli(tmp_path, env.data, "--dry")
    assert proc.returncode != 0
    assert_one_clear_line(proc, HOST, *CASES[case].needles)
    assert prefixed_objects(pg_server, names.prefix) == []
