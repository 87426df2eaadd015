"""Privileges as values: wanted and current are sets of frozen Grants; the plan is set arithmetic."""

from __future__ import annotations

import dataclasses

import pytest
from pgprov.access.privileges import (
    Grant,
    current_grants,
    diff,
    group,
    predicted_new_database,
    wanted_grants,
)
from pgprov.catalog.state import PUBLIC, AclEntry, DefaultAclState, RelationState

from tests.unit.test_plan import (
    DB,
    MIGRATOR,
    RUNTIME,
    converged_single,
    converged_split,
    fresh_snapshot,
    single_spec,
    split_spec,
)


def test_grant_is_a_frozen_hashable_value() -> None:
    a = Grant("TABLE", "app", "t", "SELECT", RUNTIME)
    assert a == Grant("TABLE", "app", "t", "SELECT", RUNTIME)
    assert len({a, Grant("TABLE", "app", "t", "SELECT", RUNTIME)}) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.privilege = "INSERT"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("grant", "target", "description"),
    [
        (
            Grant("TABLE", "app", "t", "SELECT", RUNTIME),
            ["app", "t"],
            "SELECT on table app.t for role app_runtime",
        ),
        (
            Grant("DATABASE", None, DB, "CONNECT", PUBLIC),
            [DB],
            f"CONNECT on database {DB} for PUBLIC",
        ),
        (
            Grant("SEQUENCE", "app", "s", "USAGE", RUNTIME, grantable=True),
            ["app", "s"],
            "USAGE WITH GRANT OPTION on sequence app.s for role app_runtime",
        ),
        (
            Grant("DEFAULT", None, MIGRATOR, "SELECT", RUNTIME, objects="TABLES"),
            [MIGRATOR],
            "SELECT on future tables created by app_migrator for role app_runtime",
        ),
    ],
)
def test_grant_names_its_target_and_describes_itself(
    grant: Grant, target: list[str], description: str
) -> None:
    assert grant.target == target
    assert grant.describe() == description


def test_split_wants_connect_usage_dml_and_default_privileges_for_the_runtime() -> None:
    wanted = wanted_grants(split_spec(), converged_split())
    runtime = {g for g in wanted if g.grantee == RUNTIME}
    assert Grant("DATABASE", None, DB, "CONNECT", RUNTIME) in runtime
    assert Grant("SCHEMA", None, "app", "USAGE", RUNTIME) in runtime
    on_table = {g.privilege for g in runtime if g.name == "checklistresponse"}
    assert on_table == {"SELECT", "INSERT", "UPDATE", "DELETE"}
    on_sequence = {g.privilege for g in runtime if g.name == "checklistresponse_id_seq"}
    assert on_sequence == {"USAGE", "SELECT", "UPDATE"}
    defaults = {(g.objects, g.privilege) for g in runtime if g.object_type == "DEFAULT"}
    assert defaults == {
        *(("TABLES", p) for p in ("SELECT", "INSERT", "UPDATE", "DELETE")),
        *(("SEQUENCES", p) for p in ("USAGE", "SELECT", "UPDATE")),
    }
    assert all(g.name == MIGRATOR and g.schema == "app" for g in runtime if g.objects)
    assert not any(g.name == "aerich" for g in wanted)
    assert not any(g.privilege == "CREATE" for g in wanted)
    assert {g for g in wanted if g.grantee == PUBLIC} == {
        Grant("SCHEMA", None, "public", "USAGE", PUBLIC)
    }


def test_single_user_wants_only_public_usage_on_schema_public() -> None:
    assert wanted_grants(single_spec(), converged_single()) == {
        Grant("SCHEMA", None, "public", "USAGE", PUBLIC)
    }


def test_current_grants_exclude_owners_but_not_other_roles() -> None:
    snap = converged_split()
    snap = dataclasses.replace(
        snap,
        relations=(
            *snap.relations,
            RelationState("app", "x", "table", MIGRATOR, (AclEntry("reporting", "SELECT"),)),
        ),
    )
    current = current_grants(split_spec(), snap)
    assert not any(g.grantee == MIGRATOR for g in current)
    assert not any(g.grantee == "pg_database_owner" for g in current)
    assert Grant("TABLE", "app", "x", "SELECT", "reporting") in current
    assert Grant("SCHEMA", None, "public", "USAGE", PUBLIC) in current


def test_default_acls_of_every_role_and_object_type_are_judged_but_the_admins() -> None:
    admin = converged_split().current_user
    snap = dataclasses.replace(
        converged_split(),
        default_acls=(
            DefaultAclState("someone_else", "app", "r", (AclEntry(RUNTIME, "SELECT"),)),
            DefaultAclState(MIGRATOR, None, "L", (AclEntry(RUNTIME, "SELECT"),)),
            DefaultAclState(MIGRATOR, "app", "T", (AclEntry(PUBLIC, "USAGE"),)),
            DefaultAclState(MIGRATOR, None, "n", (AclEntry("someone_else", "CREATE"),)),
            DefaultAclState(MIGRATOR, None, "f", (AclEntry(MIGRATOR, "EXECUTE"),)),
            DefaultAclState("someone_else", None, "f", (AclEntry(PUBLIC, "EXECUTE"),)),
            DefaultAclState(admin, None, "r", (AclEntry(RUNTIME, "SELECT"),)),
            DefaultAclState(MIGRATOR, None, "x", (AclEntry(RUNTIME, "SELECT"),)),
        ),
    )
    found = {g for g in current_grants(split_spec(), snap) if g.object_type == "DEFAULT"}
    assert found == {
        Grant("DEFAULT", "app", "someone_else", "SELECT", RUNTIME, objects="TABLES"),
        Grant("DEFAULT", None, MIGRATOR, "SELECT", RUNTIME, objects="LARGE OBJECTS"),
        Grant("DEFAULT", None, MIGRATOR, "CREATE", "someone_else", objects="SCHEMAS"),
    }
    # PUBLIC's built-in USAGE on types and another role's EXECUTE stay; the admin's own, an
    # owner's own privileges and an object type the model does not know are not judged.


def test_public_execute_on_the_owners_future_functions_is_revoked() -> None:
    snap = dataclasses.replace(
        converged_split(),
        default_acls=(
            *converged_split().default_acls,
            DefaultAclState(
                MIGRATOR,
                None,
                "f",
                (AclEntry(PUBLIC, "EXECUTE"), AclEntry(MIGRATOR, "EXECUTE")),
            ),
        ),
    )
    spec = split_spec()
    revoke = Grant("DEFAULT", None, MIGRATOR, "EXECUTE", PUBLIC, objects="FUNCTIONS")
    assert diff(wanted_grants(spec, snap), current_grants(spec, snap)) == ([revoke], [])


def test_no_global_function_default_means_the_builtin_public_execute() -> None:
    snap = dataclasses.replace(converged_split(), default_acls=converged_split().default_acls[1:])
    spec = split_spec()
    revoke = Grant("DEFAULT", None, MIGRATOR, "EXECUTE", PUBLIC, objects="FUNCTIONS")
    assert diff(wanted_grants(spec, snap), current_grants(spec, snap)) == ([revoke], [])


def test_per_schema_default_acl_to_any_role_is_managed() -> None:
    snap = dataclasses.replace(
        converged_split(),
        default_acls=(
            *converged_split().default_acls,
            DefaultAclState(MIGRATOR, "app", "f", (AclEntry("reporting", "EXECUTE"),)),
        ),
    )
    spec = split_spec()
    to_revoke, to_grant = diff(wanted_grants(spec, snap), current_grants(spec, snap))
    assert to_revoke == [
        Grant("DEFAULT", "app", MIGRATOR, "EXECUTE", "reporting", objects="FUNCTIONS")
    ]
    assert to_grant == []


@pytest.mark.parametrize(("major", "public_create"), [(14, True), (15, False), (18, False)])
def test_new_database_is_predicted_with_template0_defaults(major: int, public_create: bool) -> None:
    predicted = predicted_new_database(split_spec(), fresh_snapshot(major))
    assert Grant("DATABASE", None, DB, "CONNECT", PUBLIC) in predicted
    assert Grant("DATABASE", None, DB, "TEMPORARY", PUBLIC) in predicted
    assert Grant("SCHEMA", None, "public", "USAGE", PUBLIC) in predicted
    assert (Grant("SCHEMA", None, "public", "CREATE", PUBLIC) in predicted) is public_create


def test_diff_is_current_minus_wanted_then_wanted_minus_current_sorted() -> None:
    keep = Grant("SCHEMA", None, "app", "USAGE", RUNTIME)
    extra = [Grant("TABLE", "app", n, "TRUNCATE", RUNTIME) for n in ("b", "a")]
    missing = [Grant("TABLE", "app", n, "SELECT", RUNTIME) for n in ("d", "c")]
    to_revoke, to_grant = diff({keep, *missing}, {keep, *extra})
    assert to_revoke == sorted(extra)
    assert to_grant == sorted(missing)


def test_group_merges_privileges_per_object_and_grantee_in_readable_order() -> None:
    grants = [
        Grant("TABLE", "app", "t", p, RUNTIME) for p in ("DELETE", "SELECT", "UPDATE", "INSERT")
    ] + [
        Grant("DEFAULT", "app", MIGRATOR, "SELECT", RUNTIME, objects="TABLES"),
        Grant("DATABASE", None, DB, "TEMPORARY", PUBLIC),
        Grant("DATABASE", None, DB, "CONNECT", PUBLIC),
        Grant("TABLE", "app", "t", "SELECT", RUNTIME, grantable=True),
    ]
    groups = group(grants)
    # Grant options first: revoking one CASCADEs to what its holder granted.
    assert [(g.object_type, g.name, g.privileges, g.grantable) for g in groups] == [
        ("TABLE", "t", ("SELECT",), True),
        ("DATABASE", DB, ("CONNECT", "TEMPORARY"), False),
        ("TABLE", "t", ("SELECT", "INSERT", "UPDATE", "DELETE"), False),
        ("DEFAULT", MIGRATOR, ("SELECT",), False),
    ]
    assert groups[2].describe() == (
        "SELECT, INSERT, UPDATE, DELETE on table app.t for role app_runtime"
    )
    assert groups[2].target == ["app", "t"]
