"""Predefined roles as privileges, without a server: the key's validation, the scope, and the
version differences on both sides (16 and 17 cannot run here)."""

from __future__ import annotations

import json

import pytest
from pgprov.access.privileges import (
    missing_predefined,
    predefined_out_of_reach,
    predefined_problem,
    predefined_through_groups,
    undeclared_predefined,
)
from pgprov.catalog.state import Snapshot
from pgprov.model.spec import PREDEFINED_ROLES, SpecError, build_spec

BASE = {
    "pg_environment": "staging",
    "pg_profile": "split",
    "pg_migrator_password": "env:M",
    "pg_runtime_password": "env:R",
    "pg_readers": ["analysts"],
}


def spec(**extra: object):
    return build_spec({**BASE, **extra}, inventory="inv.py", host="h")


def snapshot(
    major: int,
    predefined: list[tuple[str, str]],
    *,
    admin_may: bool = True,
    through: list[tuple[str, str, str]] = (),
) -> Snapshot:
    present = [r for r, since in PREDEFINED_ROLES.items() if since <= major]
    present += ["pg_read_all_data", "pg_execute_server_program"]
    lines = [
        {"cluster": {"server_version_num": major * 10000, "in_recovery": False,
                     "current_user": "postgres", "is_superuser": admin_may,
                     "can_create_role": True, "password_encryption": "scram-sha-256"}},
        {"roles": []},
        {"database": {"name": "hinfelaar_fastapi", "owner": "app_migrator", "acl": [
            ["stranger", "CONNECT", False]]}},
        {"predefined": [{"role": r, "member": m, "grantor": "postgres"} for m, r in predefined],
         "predefined_roles": {r: admin_may for r in present}},
        {"predefined_through": [{"role": r, "member": m, "via": v} for m, r, v in through]},
    ]  # fmt: skip
    return Snapshot.parse(json.dumps(line) for line in lines)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["pg_read_all_data"], "bypasses privileges: a role holding it belongs in pg_privileged"),
        (["pg_execute_server_program"], "bypasses privileges"),
        (["pg_foo"], "'pg_foo' is not a predefined role pgprov knows"),
    ],
)
def test_the_key_takes_only_predefined_roles_that_do_not_bypass(
    value: list[str], message: str
) -> None:
    with pytest.raises(SpecError, match=r"^inv.py: host h: pg_predefined_roles: runtime.0: .*"):
        spec(pg_predefined_roles={"runtime": value})
    with pytest.raises(SpecError, match=message):
        spec(pg_predefined_roles={"runtime": value})


def test_logical_names_resolve_and_declared_ones_of_managed_roles_are_granted() -> None:
    s = spec(pg_predefined_roles={"runtime": ["pg_monitor"], "analysts": ["pg_read_all_stats"]})
    assert s.declared_predefined() == {
        "app_runtime": frozenset({"pg_monitor"}),
        "analysts": frozenset({"pg_read_all_stats"}),
    }
    snap = snapshot(15, [("app_runtime", "pg_monitor")])
    assert missing_predefined(s, snap) == [("analysts", "pg_read_all_stats")]


def test_scope_managed_roles_readers_and_holders_but_bypass_roles_of_strangers() -> None:
    snap = snapshot(
        15,
        [
            ("app_runtime", "pg_signal_backend"),
            ("analysts", "pg_signal_backend"),
            ("app_runtime", "pg_read_all_data"),  # a managed role never bypasses
            ("stranger", "pg_signal_backend"),  # holds CONNECT on the database: in scope
            ("stranger", "pg_read_all_data"),  # a stranger's bypass: the bypass rows'
            ("elsewhere", "pg_signal_backend"),  # holds nothing here: not this deploy's
            ("postgres", "pg_signal_backend"),  # the admin: left to it
        ],
    )
    found = {(p.member, p.role) for p in undeclared_predefined(spec(), snap)}
    assert found == {
        ("app_runtime", "pg_signal_backend"),
        ("analysts", "pg_signal_backend"),
        ("app_runtime", "pg_read_all_data"),
        ("stranger", "pg_signal_backend"),
    }


@pytest.mark.parametrize(
    ("role", "lacking_on", "present_on"),
    [
        ("pg_checkpoint", 14, 15),
        ("pg_create_subscription", 15, 16),
        ("pg_use_reserved_connections", 15, 16),
        ("pg_maintain", 16, 17),
        ("pg_signal_autovacuum_worker", 17, 18),
    ],
)
def test_a_declared_role_is_checked_against_the_servers_version_on_both_sides(
    role: str, lacking_on: int, present_on: int
) -> None:
    s = spec(pg_predefined_roles={"runtime": [role]})
    problem = predefined_problem(s, snapshot(lacking_on, []))
    assert problem == (
        f"inv.py: host h: pg_predefined_roles: app_runtime: {role} exists from PostgreSQL "
        f"{present_on}; this server is {lacking_on} (nothing was changed)"
    )
    assert predefined_problem(s, snapshot(present_on, [])) is None


def test_roles_the_admin_may_not_grant_are_out_of_reach() -> None:
    assert predefined_out_of_reach(snapshot(16, [], admin_may=True)) == set()
    assert "pg_signal_backend" in predefined_out_of_reach(snapshot(16, [], admin_may=False))


def test_a_predefined_role_reached_through_a_group_is_judged_for_roles_in_scope() -> None:
    through = [
        ("app_runtime", "pg_signal_backend", "ops"),  # managed: in scope
        ("analysts", "pg_monitor", "ops"),  # a reader
        ("nobody", "pg_signal_backend", "ops"),  # holds nothing in the database
        ("analysts", "pg_read_all_data", "ops"),  # bypasses: the bypass rows' business
        ("app_runtime", "pg_read_all_stats", "declared_group"),
    ]
    s = spec(pg_predefined_roles={"declared_group": ["pg_read_all_stats"]})
    snap = snapshot(16, [], through=through)
    found = {(p.member, p.role, p.via) for p in predefined_through_groups(s, snap)}
    assert found == {
        ("app_runtime", "pg_signal_backend", "ops"),
        ("analysts", "pg_monitor", "ops"),
    }
    # Declared for the member itself, it passes too.
    declared = {
        "runtime": ["pg_signal_backend", "pg_read_all_stats"],
        "analysts": ["pg_monitor"],
    }
    s = spec(pg_predefined_roles=declared)
    assert predefined_through_groups(s, snap) == []
