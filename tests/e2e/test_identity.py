"""No managed role can be the admin, a predefined role, or a superuser pgprov did not create.

With an admin that is not called ``postgres`` (as on managed services): the admin named as the
runtime (its name reaching the deploy only through ``PGUSER``, so the catalog must tell), a
predefined role as the runtime, an existing superuser as the migrator, one role under two
keys, a managed role listed as privileged. Each is refused by the deploy, the plan and the
audit with one line naming the inventory, host and key (exit 2 from the console scripts), on
a fresh cluster (no database created, no role) and on a converged one (nothing altered).
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from tests.deploykit import DeployEnv, env_data, run_api, run_cli, secret_file, snapshot
from tests.deploykit import write_inventory as write
from tests.e2e.helpers import assert_one_clear_line, comparable, console
from tests.pgserver import Names, Server

pytestmark = pytest.mark.db

BIN = Path(sys.executable).parent


@dataclass
class Admin:
    name: str
    password: str
    password_file: Path


@pytest.fixture
def admin(pg_server: Server, names: Names, tmp_path: Path) -> Iterator[Admin]:
    """A second superuser, named like a provider's admin, not ``postgres``."""
    name, password = names.role("dba"), secrets.token_urlsafe(18)
    with pg_server.connect() as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(password)
            )
        )
    yield Admin(name, password, secret_file(tmp_path, "dba", password))


@dataclass(frozen=True)
class Case:
    """Host data changes, environment changes and what the one line must say."""

    data: Callable[[Names, Admin], dict[str, Any]]
    env: Callable[[Admin], dict[str, str]]
    says: Callable[[Names, Admin], tuple[str, ...]]
    setup: str = ""  # SQL run as the superuser first, {role} is the case's own role


def no_env(admin: Admin) -> dict[str, str]:
    return {}


CASES = {
    "admin-as-runtime": Case(
        # The admin's name reaches the deploy through PGUSER only: the catalog must tell.
        data=lambda names, admin: {
            "pg_runtime": admin.name,
            "pg_admin_user": None,
            "pg_admin_password": None,
        },
        env=lambda admin: {"PGUSER": admin.name, "PGPASSWORD": admin.password},
        says=lambda names, admin: ("pg_runtime", admin.name, "the admin this deploy connects as"),
    ),
    "predefined-as-runtime": Case(
        data=lambda names, admin: {"pg_runtime": "pg_signal_backend"},
        env=no_env,
        says=lambda names, admin: ("pg_runtime", "pg_signal_backend", "reserved"),
    ),
    "superuser-as-migrator": Case(
        data=lambda names, admin: {"pg_migrator": names.role("boss")},
        env=no_env,
        says=lambda names, admin: ("pg_migrator", names.role("boss"), "SUPERUSER"),
        setup="CREATE ROLE {role} LOGIN SUPERUSER",
    ),
    "createrole-as-reader": Case(
        data=lambda names, admin: {"pg_readers": [names.role("boss")]},
        env=no_env,
        says=lambda names, admin: ("pg_readers", names.role("boss"), "CREATEROLE"),
        setup="CREATE ROLE {role} NOLOGIN CREATEROLE",
    ),
    "one-role-two-keys": Case(
        data=lambda names, admin: {"pg_migrator": names.runtime},
        env=no_env,
        says=lambda names, admin: ("pg_runtime", names.runtime, "must differ"),
    ),
    "managed-as-privileged": Case(
        data=lambda names, admin: {"pg_privileged_roles": [names.runtime]},
        env=no_env,
        says=lambda names, admin: ("pg_privileged_roles", names.runtime),
    ),
}


def state_of(server: Server, env: DeployEnv, names: Names) -> str:
    with server.connect() as conn:
        roles = conn.execute(
            "SELECT rolname, rolsuper, rolcreaterole, shobj_description(oid, 'pg_authid')"
            " FROM pg_roles WHERE rolname LIKE %s ORDER BY 1",
            (names.prefix + "%",),
        ).fetchall()
        databases = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (names.prefix + "%",)
        ).fetchall()
    text = f"{roles}\n{databases}"
    if databases:
        text += "\n" + comparable(snapshot(server, env), names)
    return text


@pytest.mark.parametrize("converged", [False, True], ids=["fresh", "converged"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_with_one_line_and_nothing_changed(
    pg_server: Server,
    names: Names,
    admin: Admin,
    tmp_path: Path,
    case: str,
    converged: bool,
) -> None:
    spec = CASES[case]
    base = env_data(
        pg_server,
        names,
        tmp_path,
        pg_admin_user=admin.name,
        pg_admin_password=f"file:{admin.password_file}",
    )
    if converged:
        assert run_api(base.data).success
    if spec.setup:
        with pg_server.connect() as conn:
            conn.execute(sql.SQL(spec.setup).format(role=sql.Identifier(names.role("boss"))))
    data = {**base.data, **spec.data(names, admin)}
    data = {k: v for k, v in data.items() if v is not None}
    env = spec.env(admin)
    says = spec.says(names, admin)
    before = state_of(pg_server, base, names)

    deploy = run_cli(tmp_path, data, env=env)
    assert_one_clear_line(deploy, "tests/inventory.py", *says)
    for script in ("pgprov-plan", "pgprov-verify"):
        proc = console(script, write(tmp_path, data), "--format", "text", env=env)
        assert proc.returncode == 2, f"{script}: {proc.stdout}{proc.stderr}"
        assert_one_clear_line(proc, "tests/inventory.py", *says)

    assert state_of(pg_server, base, names) == before


def test_an_environment_from_before_the_mark_is_marked_by_its_next_deploy(
    pg_server: Server, names: Names, tmp_path: Path
) -> None:
    env = env_data(pg_server, names, tmp_path, pg_readers=[names.role("bi")])
    assert run_api(env.data).success
    with pg_server.connect() as conn:
        for role in (names.migrator, names.role("bi")):
            conn.execute(sql.SQL("COMMENT ON ROLE {} IS NULL").format(sql.Identifier(role)))
        # A marked role that drifted to SUPERUSER is still the deploy's to repair.
        conn.execute(sql.SQL("ALTER ROLE {} SUPERUSER").format(sql.Identifier(names.runtime)))
    inventory = write(tmp_path, env.data)
    audit = console("pgprov-verify", inventory)
    assert audit.returncode == 1, audit.stdout + audit.stderr
    assert any(
        "DRIFT" in line and names.migrator in line and "managed by pgprov" in line
        for line in audit.stdout.splitlines()
    ), audit.stdout

    repaired = run_api(env.data)
    assert repaired.success and repaired.changed["provision"], repaired
    assert not run_api(env.data).changed["provision"]
    audit = console("pgprov-verify", inventory)
    assert audit.returncode == 0, audit.stdout + audit.stderr
