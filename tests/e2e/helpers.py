"""Helpers for the provisioning e2e tests: catalog reading, superuser SQL, CLI output checks.

privileges(snap.relation("app", "checklist"), names.runtime)   # {"SELECT", ...}
superuser_sql(pg_server, names.database, "GRANT ... TO {runtime}", names)
assert_one_clear_line(proc, "@local", "pg_schema")
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import psycopg
from pgprov.catalog.state import AclEntry, Snapshot
from pgprov.migrate.upgrade import migration_files, model_tables
from psycopg import sql

from tests.deploykit import REPO, DeployEnv, env_data, run_api
from tests.pgserver import Names, Server, drop_prefixed

SCHEMA = "app"
BOOKKEEPING = "aerich"
APP_TABLES = frozenset(model_tables())
MIGRATIONS = tuple(migration_files())
TABLE_PRIVILEGES = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE"})
SEQUENCE_PRIVILEGES = frozenset({"USAGE", "SELECT", "UPDATE"})


class HasAcl(Protocol):
    acl: tuple[AclEntry, ...]


def privileges(obj: HasAcl | None, grantee: str) -> set[str]:
    """The privileges ``grantee`` holds directly on a catalog object (empty when it is absent)."""
    if obj is None:
        return set()
    return {entry.privilege for entry in obj.acl if entry.grantee == grantee}


def grantees(obj: HasAcl, *, besides: str) -> set[str]:
    """Every grantee on the object other than ``besides`` (usually its owner)."""
    return {entry.grantee for entry in obj.acl if entry.grantee != besides}


def default_privileges(snap: Snapshot, for_role: str, objtype: str, grantee: str) -> set[str]:
    """Default privileges FOR ROLE ``for_role`` IN SCHEMA app on ``objtype`` (r, S) for ``grantee``."""
    found: set[str] = set()
    for dacl in snap.default_acls:
        if dacl.role == for_role and dacl.schema == SCHEMA and dacl.objtype == objtype:
            found |= privileges(dacl, grantee)
    return found


def app_relations(snap: Snapshot, kind: str) -> dict[str, Any]:
    return {r.name: r for r in snap.relations if r.schema == SCHEMA and r.kind == kind}


def identifiers(names: Names, **extra: str) -> dict[str, sql.Identifier]:
    """Quoted names for ``sql.SQL(...).format``: {db}, {migrator}, {runtime}, {user}, extras."""
    plain = {
        "db": names.database,
        "migrator": names.migrator,
        "runtime": names.runtime,
        "user": names.app_user,
        **extra,
    }
    return {key: sql.Identifier(value) for key, value in plain.items()}


def superuser_sql(
    server: Server, dbname: str, statement: str | tuple[str, ...], names: Names, **extra: str
) -> None:
    """Run one statement (or several, in order) as the superuser, with
    {db}/{migrator}/{runtime}/... filled in quoted."""
    quoted = identifiers(names, **extra)
    with server.connect(dbname) as conn:
        for one in (statement,) if isinstance(statement, str) else statement:
            conn.execute(sql.SQL(one).format(**quoted))  # type: ignore[arg-type]


def owners_and_acls(server: Server, dbname: str, query: str) -> dict[Any, tuple[str, list[str]]]:
    """``query``'s rows (key, owner, ACL as text[]) as key -> (owner, sorted ACL entries)."""
    with server.connect(dbname) as conn:
        rows = conn.execute(query).fetchall()
    return {key: (owner, sorted(acl)) for key, owner, acl in rows}


def prefixed_objects(server: Server, prefix: str) -> list[str]:
    """Every role and database whose name starts with ``prefix`` (what a deploy would create)."""
    with server.connect() as conn:
        rows = conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE %(p)s "
            "UNION ALL SELECT datname FROM pg_database WHERE datname LIKE %(p)s",
            {"p": prefix + "%"},
        ).fetchall()
    return sorted(r[0] for r in rows)


def without_passwords(snap: Snapshot) -> Snapshot:
    """The snapshot with stored verifiers blanked (their salts differ between two deploys)."""
    roles = {name: dataclasses.replace(role, password=None) for name, role in snap.roles.items()}
    return dataclasses.replace(snap, roles=roles)


def comparable(snap: Snapshot, names: Names) -> str:
    """A name-independent form of a snapshot, to compare two environments' catalogs."""
    snap = without_passwords(snap)
    text = repr(snap)
    for role in snap.roles.values():
        # settings are compare=False on RoleState; put them in the text explicitly.
        text += f"\n{role.name}: {sorted(role.settings.items())}"
    return text.replace(names.prefix, "<prefix>")


def combined(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout + proc.stderr


def lines_with(text: str, *needles: str) -> list[str]:
    return [line for line in text.splitlines() if all(n in line for n in needles)]


def assert_one_clear_line(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """The run failed, printed no traceback, and one line carries every needle; returns it."""
    output = combined(proc)
    assert proc.returncode != 0, f"the run should have failed:\n{output}"
    assert "Traceback" not in output, f"a Python traceback was printed:\n{output}"
    matching = lines_with(output, *needles)
    assert len(matching) == 1, f"expected one line with {needles}, got {matching}:\n{output}"
    return matching[0]


@contextlib.contextmanager
def provisioned(
    server: Server, directory: Path, *, profile: str = "split", **overrides: Any
) -> Iterator[tuple[DeployEnv, Names]]:
    """A deployed environment with its own names, for module-scoped fixtures; dropped after."""
    names = Names.new()
    try:
        env = env_data(server, names, directory, profile=profile, **overrides)
        result = run_api(env.data)
        assert result.success, result
        yield env, names
    finally:
        drop_prefixed(server, names.prefix)


@contextlib.contextmanager
def deployed_with_a_stranger(server: Server, names: Names, directory: Path) -> Iterator[DeployEnv]:
    """A deployed environment (the test's own names) and a role pgprov does not manage,
    ``names.role("x")``, to plant objects as; dropped after."""
    env = env_data(server, names, directory)
    assert run_api(env.data).success
    with server.connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(names.role("x"))))
    try:
        yield env
    finally:
        drop_prefixed(server, names.prefix)


def managed_admin_env(
    server: Server,
    names: Names,
    directory: Path,
    attributes: tuple[str, ...] = ("LOGIN", "CREATEROLE", "CREATEDB"),
) -> DeployEnv:
    """An environment whose admin, a new role ``names.role("admin")``, has exactly
    ``attributes`` (by default a managed service's: CREATEROLE and CREATEDB only); the
    provider keeps a superuser of its own, which the inventory declares as expected."""
    from tests.deploykit import secret_file
    from tests.e2e.clusters import create_admin

    admin, password = names.role("admin"), secrets.token_urlsafe(18)
    create_admin(server, admin, password, attributes)
    return env_data(
        server,
        names,
        directory,
        pg_admin_user=admin,
        pg_admin_password=f"file:{secret_file(directory, 'managed_admin', password)}",
        pg_privileged_roles=[server.superuser],
    )


# What a wheel is built from: the packages pyproject.toml lists, nothing of the checkout's
# state (.venv, .pgdata, caches); building in a copy leaves no build/ in the repository.
WHEEL_SOURCES = ("pyproject.toml", "deploy", "app_schema", "inventories", "sql_templates")


def pip(*args: str, python: str | None = None) -> None:
    """This virtualenv's pip; ``python`` installs into another interpreter's environment."""
    target = ["--python", python] if python else []
    done = subprocess.run(
        [sys.executable, "-m", "pip", *target, "--disable-pip-version-check", "-q", *args],
        # make test exports PYTHONPATH (the repository): pip must judge the target as it is.
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def build_wheel(directory: Path) -> Path:
    """``pip wheel --no-deps`` of a copy of the repository, written into ``directory``."""
    source = directory / "src"
    for name in WHEEL_SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(
                REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            source.mkdir(exist_ok=True)
            shutil.copy(REPO / name, source / name)
    pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(directory), str(source))
    (wheel,) = directory.glob("pgprov-*.whl")
    return wheel


# The inventories' default names (production, staging and local use them): a test that deploys
# one of those inventories on the session server drops them before and after.
DEFAULT_NAMES = {"database": "hinfelaar_fastapi", "roles": ("app_migrator", "app_runtime")}


def drop_default_names(server: Server) -> None:
    with server.connect() as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(DEFAULT_NAMES["database"])
            )
        )
        for role in DEFAULT_NAMES["roles"]:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


BIN = Path(sys.executable).parent


def console(
    script: str, inventory: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """A console script as users run it: installed in the virtualenv, from the inventory's
    directory, without PYTHONPATH."""
    return subprocess.run(
        [str(BIN / script), str(inventory), *args],
        cwd=inventory.parent,
        env={k: v for k, v in {**os.environ, **(env or {})}.items() if k != "PYTHONPATH"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def login(server: Server, env: DeployEnv, names: Names, which: str) -> psycopg.Connection:
    """An autocommit session as a managed role (``migrator`` or ``runtime``) with its password."""
    role = {"migrator": names.migrator, "runtime": names.runtime}[which]
    return psycopg.connect(
        host=server.host,
        port=server.port,
        user=role,
        password=env.passwords[which],
        dbname=names.database,
        autocommit=True,
    )
