"""Predefined roles are privileges: a membership in pg_signal_backend (its member terminates the
service's sessions), pg_maintain (18: ACCESS EXCLUSIVE locks, VACUUM FULL) or any other
predefined role, held by a managed role, a reader or a role holding a privilege in the
database, is named by the audit and revoked by the deploy unless ``pg_predefined_roles``
declares it; declared ones of the managed roles are granted and stay. An admin that may not
grant or revoke a predefined role (16+: no ADMIN OPTION on it) leaves it and says so."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg import sql

from tests.deploykit import DeployEnv, env_data, run_api, run_cli, write_inventory
from tests.e2e.helpers import (
    assert_one_clear_line,
    combined,
    console,
    lines_with,
    managed_admin_env,
)
from tests.pgserver import Names, Server, drop_prefixed

pytestmark = pytest.mark.db


def memberships(server: Server, *members: str) -> set[tuple[str, str]]:
    """(member, predefined role) of each member's direct memberships in pg_* roles."""
    with server.connect() as conn:
        rows = conn.execute(
            "SELECT pg_get_userbyid(m.member)::text, g.rolname::text FROM pg_auth_members m"
            " JOIN pg_roles g ON g.oid = m.roleid"
            " WHERE g.rolname LIKE 'pg\\_%%' AND pg_get_userbyid(m.member) = ANY (%s)",
            (list(members),),
        ).fetchall()
    return {tuple(row) for row in rows}


def grant(server: Server, role: str, *members: str) -> None:
    with server.connect() as conn:
        for member in members:
            conn.execute(
                sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), sql.Identifier(member))
            )


@pytest.fixture
def env(pg_server: Server, names: Names, tmp_path: Path) -> Iterator[DeployEnv]:
    """An environment with a reader, the runtime declared a member of pg_read_all_settings,
    and a stranger, ``names.role("x")``, that holds SELECT on an app table."""
    data = env_data(
        pg_server,
        names,
        tmp_path,
        pg_readers=[names.role("rd")],
        pg_predefined_roles={"runtime": ["pg_read_all_settings"]},
    )
    try:
        yield data
    finally:
        drop_prefixed(pg_server, names.prefix)


def test_undeclared_predefined_memberships_are_named_and_revoked_declared_ones_stay(
    env: DeployEnv, pg_server: Server, names: Names, tmp_path: Path
) -> None:
    runtime, reader, stranger = names.runtime, names.role("rd"), names.role("x")
    first = run_api(env.data)
    assert first.success, first
    assert memberships(pg_server, runtime) == {(runtime, "pg_read_all_settings")}
    with pg_server.connect(names.database) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(stranger)))
        conn.execute(sql.SQL("GRANT SELECT ON app.unit TO {}").format(sql.Identifier(stranger)))
    planted = ["pg_signal_backend"] + (["pg_maintain"] if pg_server.major >= 17 else [])
    for role in planted:
        grant(pg_server, role, runtime, reader, stranger)
    inventory = write_inventory(tmp_path, env.data)

    audit = console("pgprov-verify", inventory, "--no-probes")
    assert audit.returncode == 1, audit.stdout + audit.stderr
    for role in planted:
        for member in (runtime, reader, stranger):
            assert lines_with(audit.stdout, "DRIFT", member, f"role {role}"), (
                member,
                role,
                audit.stdout,
            )
    assert lines_with(audit.stdout, "OK", runtime, "role pg_read_all_settings")

    repair = run_api(env.data)
    assert repair.success and repair.changed["provision"], repair
    assert memberships(pg_server, runtime, reader, stranger) == {(runtime, "pg_read_all_settings")}
    again = run_api(env.data)
    assert again.success and not any(again.changed.values()), again
    audit = console("pgprov-verify", inventory, "--no-probes")
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_a_predefined_role_reached_through_a_group_is_named_and_left_or_revoked(
    env: DeployEnv, pg_server: Server, names: Names, tmp_path: Path
) -> None:
    """A reader and the runtime reach pg_signal_backend through groups: one holding nothing in
    the database (the deploy leaves its membership, says so in one line; the audit names both
    members), one holding SELECT on an app table (in scope: its membership is revoked). Once the
    first group is declared to hold it, the audit passes."""
    runtime, reader = names.runtime, names.role("rd")
    outside, inside = names.role("ops"), names.role("etl")
    assert run_api(env.data).success
    with pg_server.connect(names.database) as conn:
        for group in (outside, inside):
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(group)))
        conn.execute(sql.SQL("GRANT SELECT ON app.unit TO {}").format(sql.Identifier(inside)))
    grant(pg_server, "pg_signal_backend", outside, inside)
    grant(pg_server, outside, reader)
    grant(pg_server, inside, runtime)
    inventory = write_inventory(tmp_path, env.data)

    audit = console("pgprov-verify", inventory, "--no-probes")
    assert audit.returncode == 1, audit.stdout + audit.stderr
    assert lines_with(audit.stdout, "DRIFT", reader, "role pg_signal_backend", f"through {outside}")
    deploy = run_cli(tmp_path, env.data)
    assert deploy.returncode == 0, combined(deploy)
    [notice] = lines_with(combined(deploy), "the deploy leaves these groups' memberships")
    assert f"{reader} reaches pg_signal_backend through {outside}" in notice
    assert inside not in notice
    assert memberships(pg_server, outside, inside) == {(outside, "pg_signal_backend")}
    audit = console("pgprov-verify", inventory, "--no-probes")
    assert audit.returncode == 1, audit.stdout + audit.stderr
    assert not lines_with(audit.stdout, "DRIFT", runtime, "role pg_signal_backend")

    predefined = {**env.data["pg_predefined_roles"], outside: ["pg_signal_backend"]}
    declared = {**env.data, "pg_predefined_roles": predefined}
    audit = console("pgprov-verify", write_inventory(tmp_path, declared), "--no-probes")
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_a_declared_predefined_role_the_server_lacks_stops_the_run_in_one_line(
    env: DeployEnv, pg_server: Server, names: Names, tmp_path: Path
) -> None:
    newest = "pg_signal_autovacuum_worker"  # PostgreSQL 18
    lacking = newest if pg_server.major < 18 else None
    if lacking is None:
        # 18 has every role pgprov knows: the declared one is granted instead.
        data = {**env.data, "pg_predefined_roles": {"runtime": [newest]}}
        assert run_api(data).success
        assert (names.runtime, newest) in memberships(pg_server, names.runtime)
        return
    data = {**env.data, "pg_predefined_roles": {"runtime": [lacking]}}
    plan = console("pgprov-plan", write_inventory(tmp_path, data))
    assert plan.returncode == 2, combined(plan)
    assert_one_clear_line(plan, "pg_predefined_roles", lacking, "exists from PostgreSQL 18")
    assert memberships(pg_server, names.runtime) == set()  # nothing was changed


def test_an_admin_without_admin_option_on_a_predefined_role_leaves_it_and_says_so(
    pg_server: Server, names: Names, tmp_path: Path
) -> None:
    env = managed_admin_env(pg_server, names, tmp_path)
    admin, runtime = names.role("admin"), names.runtime
    try:
        assert run_api(env.data).success
        grant(pg_server, "pg_signal_backend", runtime)
        deploy = run_cli(tmp_path, env.data)
        assert deploy.returncode == 0, combined(deploy)
        notices = lines_with(combined(deploy), f"the admin {admin} may not grant or revoke")
        if pg_server.major >= 16:
            # CREATEROLE no longer reaches a role the admin holds no ADMIN OPTION on.
            assert len(notices) == 1 and f"{runtime} in pg_signal_backend" in notices[0]
            assert memberships(pg_server, runtime) == {(runtime, "pg_signal_backend")}
            audit = console("pgprov-verify", write_inventory(tmp_path, env.data), "--no-probes")
            assert audit.returncode == 1
            assert lines_with(audit.stdout, "DRIFT", runtime, "role pg_signal_backend")
        else:
            # On 15 CREATEROLE may revoke any role but a superuser's.
            assert notices == []
            assert memberships(pg_server, runtime) == set()
    finally:
        drop_prefixed(pg_server, names.prefix)
