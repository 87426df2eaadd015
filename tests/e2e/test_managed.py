"""Managed-database mode: the deploy's admin is no superuser, only ``LOGIN CREATEROLE CREATEDB``
(what managed PostgreSQL services hand out), reaching the server over TCP with a password.

Provisioning, migrations, the GIN index, drift repair and the audit all work as that admin on
PostgreSQL 18 (where a CREATEROLE creator gets only ADMIN OPTION on the roles it creates) and
on PostgreSQL 15. Each major has its own local server for this module.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pgprov.catalog.state import PUBLIC
from psycopg import sql

from tests.deploykit import DeployEnv, login, run_api, snapshot
from tests.deploykit import write_inventory as write_single_inventory
from tests.e2e.clusters import cluster_objects, host_outcomes, run_audit, run_pyinfra
from tests.e2e.helpers import (
    APP_TABLES,
    BOOKKEEPING,
    MIGRATIONS,
    SCHEMA,
    SEQUENCE_PRIVILEGES,
    TABLE_PRIVILEGES,
    app_relations,
    assert_one_clear_line,
    combined,
    default_privileges,
    managed_admin_env,
    privileges,
)
from tests.pgserver import Names, Server, local_server

MANAGED_ADMIN = ("LOGIN", "CREATEROLE", "CREATEDB")
WITHOUT_CREATEROLE = ("LOGIN", "CREATEDB")
HOST = "@db/managed"
GIN_INDEX = "idx_checklistresponse_answers_gin"


@pytest.fixture(scope="module", params=["18", "15"], ids=lambda major: f"pg{major}")
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    with local_server(request.param) as started:
        yield started


@dataclass
class Managed:
    server: Server
    names: Names
    admin: str
    env: DeployEnv
    directory: Path

    def inventory(self) -> Path:
        return write_single_inventory(self.directory, self.env.data, host=HOST)


def managed_env(
    server: Server, directory: Path, attributes: tuple[str, ...] = MANAGED_ADMIN
) -> Managed:
    """A fresh environment whose admin is a new role with exactly ``attributes``."""
    names = Names.new()
    env = managed_admin_env(server, names, directory, attributes)
    admin = names.role("admin")
    return Managed(server, names, admin, env, directory)


@pytest.fixture
def managed(server: Server, tmp_path: Path) -> Managed:
    return managed_env(server, tmp_path)


def test_admin_is_neither_superuser_nor_member_of_anything_beforehand(managed: Managed) -> None:
    with managed.server.connect() as conn:
        row = conn.execute(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls,"
            " (SELECT count(*) FROM pg_auth_members m WHERE m.member = r.oid)"
            " FROM pg_roles r WHERE rolname = %s",
            (managed.admin,),
        ).fetchone()
    assert row == (False, True, True, False, False, 0)


def test_first_run_creates_the_declared_state(managed: Managed) -> None:
    names = managed.names

    result = run_api(managed.env.data)

    assert result.success, result
    assert result.changed == {"provision": True, "migrate": True, "gin_index": True}
    snap = snapshot(managed.server, managed.env)
    assert snap.database is not None and snap.database.owner == names.migrator
    assert snap.schemas[SCHEMA].owner == names.migrator
    for role in (names.migrator, names.runtime):
        state = snap.roles[role]
        assert state.login and not (state.superuser or state.createrole or state.createdb)
    assert snap.migrations == MIGRATIONS
    tables = app_relations(snap, "table")
    assert set(tables) == APP_TABLES | {BOOKKEEPING}
    assert {t.owner for t in tables.values()} == {names.migrator}
    for name, table in tables.items():
        expected = set() if name == BOOKKEEPING else set(TABLE_PRIVILEGES)
        assert privileges(table, names.runtime) == expected, name
    for name, sequence in app_relations(snap, "sequence").items():
        bookkeeping = name.startswith(f"{BOOKKEEPING}_")
        expected = set() if bookkeeping else set(SEQUENCE_PRIVILEGES)
        assert privileges(sequence, names.runtime) == expected, name
    assert default_privileges(snap, names.migrator, "r", names.runtime) == TABLE_PRIVILEGES
    assert default_privileges(snap, names.migrator, "S", names.runtime) == SEQUENCE_PRIVILEGES
    assert privileges(snap.database, PUBLIC) == set()
    assert privileges(snap.database, names.runtime) == {"CONNECT"}
    index = snap.indexes[GIN_INDEX]
    assert index.valid and index.opclasses == ("jsonb_ops",)
    with login(
        managed.server, names.runtime, managed.env.passwords["runtime"], names.database
    ) as conn:
        assert conn.execute("SHOW search_path").fetchone() == ("app, public",)
        conn.execute("SELECT count(*) FROM checklist")


def test_second_run_changes_nothing(managed: Managed) -> None:
    assert run_api(managed.env.data).success
    before = snapshot(managed.server, managed.env)

    proc, _ = run_pyinfra(managed.inventory())

    assert proc.returncode == 0, combined(proc)
    assert host_outcomes(combined(proc), HOST) == ["No changes"] * 3, combined(proc)
    assert snapshot(managed.server, managed.env) == before


def test_admin_revokes_a_privilege_the_superuser_granted_by_hand(managed: Managed) -> None:
    names = managed.names
    assert run_api(managed.env.data).success
    with managed.server.connect(names.database) as conn:
        conn.execute(
            sql.SQL("GRANT TRUNCATE ON {}.checklist TO {}").format(
                sql.Identifier(SCHEMA), sql.Identifier(names.runtime)
            )
        )
    drifted = snapshot(managed.server, managed.env).relation(SCHEMA, "checklist")
    assert "TRUNCATE" in privileges(drifted, names.runtime)

    result = run_api(managed.env.data)

    assert result.success, result
    assert result.changed["provision"]
    repaired = snapshot(managed.server, managed.env)
    assert privileges(repaired.relation(SCHEMA, "checklist"), names.runtime) == TABLE_PRIVILEGES
    assert not run_api(managed.env.data).any_change


def test_audit_exits_zero_after_the_managed_deploy(managed: Managed) -> None:
    assert run_api(managed.env.data).success

    proc = run_audit(managed.inventory())

    assert proc.returncode == 0, combined(proc)
    assert ", 0 differences" in proc.stdout, proc.stdout


def test_audit_fails_on_the_providers_superuser_until_the_inventory_declares_it(
    managed: Managed,
) -> None:
    assert run_api(managed.env.data).success
    undeclared = {k: v for k, v in managed.env.data.items() if k != "pg_privileged_roles"}
    proc = run_audit(write_single_inventory(managed.directory, undeclared, host=HOST))
    assert proc.returncode == 1, combined(proc)
    superuser = managed.server.superuser
    bypass = [line for line in proc.stdout.splitlines() if line.strip().startswith("DRIFT")]
    assert len(bypass) == 1, proc.stdout
    assert superuser in bypass[0] and "bypasses privileges: SUPERUSER" in bypass[0]
    # The deploy's own admin reaches everything through the owner, and is expected.
    assert any(
        managed.admin in line and "member of the owner" in line and line.strip().startswith("OK")
        for line in proc.stdout.splitlines()
    ), proc.stdout


def test_admin_without_createrole_changes_nothing(server: Server, tmp_path: Path) -> None:
    managed = managed_env(server, tmp_path, attributes=WITHOUT_CREATEROLE)
    before = cluster_objects(server)

    proc, _ = run_pyinfra(managed.inventory())

    assert proc.returncode != 0, combined(proc)
    assert "Success" not in host_outcomes(combined(proc), HOST)
    assert cluster_objects(server) == before


def test_admin_without_createrole_fails_with_one_clear_line(server: Server, tmp_path: Path) -> None:
    managed = managed_env(server, tmp_path, attributes=WITHOUT_CREATEROLE)

    proc, _ = run_pyinfra(managed.inventory())

    assert_one_clear_line(proc, f"[{HOST}]", managed.admin, "CREATEROLE")


def test_failed_role_creation_does_not_print_the_password_verifier(
    server: Server, tmp_path: Path
) -> None:
    managed = managed_env(server, tmp_path, attributes=WITHOUT_CREATEROLE)

    proc, _ = run_pyinfra(managed.inventory())

    assert proc.returncode != 0
    assert "SCRAM-SHA-256$" not in combined(proc)


def test_admin_converges_in_one_run_whatever_its_createrole_self_grant(
    server: Server, tmp_path: Path
) -> None:
    managed = managed_env(server, tmp_path)
    if server.major >= 16:
        # Creating a role then already makes the admin a member with SET and INHERIT.
        with server.connect() as conn:
            conn.execute(
                sql.SQL("ALTER ROLE {} SET createrole_self_grant = 'set, inherit'").format(
                    sql.Identifier(managed.admin)
                )
            )

    first = run_api(managed.env.data)
    second = run_api(managed.env.data)

    assert first.success, first
    assert second.success and not second.any_change, second
    snap = snapshot(server, managed.env)
    assert snap.database is not None and snap.database.owner == managed.names.migrator
    assert snap.indexes[GIN_INDEX].valid


def _can_set(server: Server, admin: str, role: str) -> bool:
    privilege = "SET" if server.major >= 16 else "MEMBER"
    with server.connect() as conn:
        row = conn.execute("SELECT pg_has_role(%s, %s, %s)", (admin, role, privilege)).fetchone()
    return bool(row and row[0])


def test_admin_acting_as_the_migrator_is_checked_with_set_not_bare_membership(
    managed: Managed,
) -> None:
    server, admin, migrator = managed.server, managed.admin, managed.names.migrator
    assert run_api(managed.env.data).success
    if server.major >= 16:
        # INHERIT without SET: still a member, but the admin cannot SET ROLE to the migrator.
        with server.connect() as conn:
            conn.execute(
                sql.SQL("GRANT {} TO {} WITH INHERIT TRUE, SET FALSE GRANTED BY {}").format(
                    sql.Identifier(migrator), sql.Identifier(admin), sql.Identifier(admin)
                )
            )
    assert _can_set(server, admin, migrator) is (server.major < 16)

    repair = run_api(managed.env.data)
    assert repair.success, repair
    # On 16+ the admin gets SET back in one run; on 15 membership alone is SET already.
    assert repair.changed["provision"] is (server.major >= 16), repair
    assert _can_set(server, admin, migrator)
    assert not run_api(managed.env.data).any_change
