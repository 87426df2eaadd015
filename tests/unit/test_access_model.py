"""The access model for every role, without a server: readers and privileged roles in the spec,
the new snapshot sections, and the plan items that close undeclared paths."""

from __future__ import annotations

import dataclasses
import json

import pytest
from pgprov.access.privileges import Grant, current_grants, diff, undeclared_owners, wanted_grants
from pgprov.audit.audit import (
    access_checks,
    bypass_checks,
    code_checks,
    membership_checks,
    ownership_checks,
)
from pgprov.catalog.state import (
    PUBLIC,
    AclEntry,
    ColumnAclState,
    DefaultAclState,
    FunctionState,
    MembershipState,
    PrivilegedRole,
    RelationState,
    SchemaState,
    Snapshot,
)
from pgprov.model.spec import SpecError
from pgprov.sql.render import render

from tests.unit.test_plan import (
    MIGRATOR,
    RUNTIME,
    TABLE,
    converged_split,
    items_of,
    plan_for,
    split_spec,
)

READER = "bi_readers"


# --- spec -------------------------------------------------------------------------------------


def test_readers_and_privileged_roles_are_host_data() -> None:
    spec = split_spec(pg_readers=[READER, "auditors"], pg_privileged_roles=["rds_superuser"])
    assert spec.readers == (READER, "auditors")
    assert spec.privileged_roles == ("rds_superuser",)


@pytest.mark.parametrize("bad", [RUNTIME, MIGRATOR, "PUBLIC", "public", "pg_monitor", "Bad-Name"])
def test_bad_reader_name_is_one_line_naming_inventory_host_and_key(bad: str) -> None:
    with pytest.raises(SpecError) as caught:
        split_spec(pg_readers=[READER, bad])
    message = str(caught.value)
    assert message.startswith("inventories/staging.py: host db1: pg_readers: ")
    assert "\n" not in message


# --- state ------------------------------------------------------------------------------------


def test_public_pseudo_role_is_null_and_a_role_named_public_stays_a_role() -> None:
    lines = [
        json.dumps(
            {
                "cluster": {
                    "server_version_num": 180001,
                    "in_recovery": False,
                    "current_user": "postgres",
                    "is_superuser": True,
                    "can_create_role": True,
                }
            }
        ),
        json.dumps({"roles": []}),
        json.dumps(
            {
                "columns": [
                    {
                        "schema": "app",
                        "table": "t",
                        "column": "c",
                        "acl": [[None, "SELECT", False], ["PUBLIC", "UPDATE", False]],
                    }
                ]
            }
        ),
        json.dumps(
            {
                "functions": [
                    {
                        "schema": "app",
                        "name": "f",
                        "args": "a integer",
                        "kind": "f",
                        "owner": MIGRATOR,
                        "security_definer": True,
                        "acl": [[None, "EXECUTE", False]],
                    }
                ]
            }
        ),
        json.dumps(
            {
                "memberships": [
                    {
                        "role": MIGRATOR,
                        "member": "x",
                        "grantor": "y",
                        "admin": True,
                        "inherit": False,
                        "set": True,
                        "via": None,
                    }
                ]
            }
        ),
        json.dumps({"privileged": [{"name": "postgres", "reasons": ["SUPERUSER"]}]}),
    ]
    snap = Snapshot.parse(lines)
    assert snap.columns[0].acl == (AclEntry(PUBLIC, "SELECT"), AclEntry("PUBLIC", "UPDATE"))
    assert snap.functions[0].security_definer and snap.functions[0].acl == (
        AclEntry(PUBLIC, "EXECUTE"),
    )
    assert snap.memberships == (MembershipState(MIGRATOR, "x", "y", True, False, True, None),)
    assert snap.privileged == (PrivilegedRole("postgres", ("SUPERUSER",)),)


def test_grantee_filter_writes_the_keyword_only_for_the_pseudo_role() -> None:
    out = render(
        "privileges.sql.j2",
        revoke=[
            dataclasses.replace(_group("TABLE", "PUBLIC")),
            dataclasses.replace(_group("TABLE", PUBLIC)),
        ],
        grant=[],
    )
    assert out.splitlines() == [
        f'REVOKE SELECT ON TABLE {TABLE} FROM "PUBLIC";',
        f"REVOKE SELECT ON TABLE {TABLE} FROM PUBLIC;",
    ]


def _group(object_type: str, grantee: str):
    from pgprov.access.privileges import GrantGroup

    return GrantGroup(object_type, "app", "checklistresponse", ("SELECT",), grantee)


# --- plan -------------------------------------------------------------------------------------


def test_column_and_function_grants_to_anyone_are_revoked_with_their_own_syntax() -> None:
    snap = dataclasses.replace(
        converged_split(),
        columns=(ColumnAclState("app", "aerich", "version", (AclEntry(RUNTIME, "UPDATE"),)),),
        functions=(
            FunctionState(
                "app",
                "f",
                "n integer",
                "f",
                MIGRATOR,
                True,
                (
                    AclEntry(MIGRATOR, "EXECUTE"),
                    AclEntry(PUBLIC, "EXECUTE"),
                    AclEntry("bi", "EXECUTE"),
                ),
            ),
        ),
    )
    assert items_of(plan_for(split_spec(), snap)) == [
        (
            "revoke UPDATE on column app.aerich(version) for role app_runtime",
            'REVOKE UPDATE ("version") ON TABLE "app"."aerich" FROM "app_runtime";',
        ),
        (
            "PUBLIC loses EXECUTE on function app.f(n integer)",
            'REVOKE EXECUTE ON ROUTINE "app"."f"(n integer) FROM PUBLIC;',
        ),
        (
            "revoke EXECUTE on function app.f(n integer) for role bi",
            'REVOKE EXECUTE ON ROUTINE "app"."f"(n integer) FROM "bi";',
        ),
    ]


def test_public_execute_on_functions_outside_the_app_schema_is_postgres_default() -> None:
    snap = dataclasses.replace(
        converged_split(),
        functions=(
            FunctionState(
                "public", "g", "", "f", "postgres", False, (AclEntry(PUBLIC, "EXECUTE"),)
            ),
        ),
    )
    assert plan_for(split_spec(), snap).empty


@pytest.mark.parametrize(("major", "granted_by"), [(15, ""), (16, ' GRANTED BY "delegate"')])
def test_undeclared_members_of_managed_roles_are_revoked_naming_the_grantor_on_16(
    major: int, granted_by: str
) -> None:
    snap = dataclasses.replace(
        converged_split(major),
        memberships=(
            MembershipState(RUNTIME, "delegate", "postgres", admin=True),
            MembershipState(RUNTIME, "other", "delegate"),
            MembershipState(RUNTIME, "deep", "postgres", via="other"),
        ),
    )
    items = items_of(plan_for(split_spec(), snap))
    # The grant made by the delegate goes before the delegate's own membership.
    assert items == [
        (
            "revoke undeclared membership of role other in app_runtime (granted by delegate)",
            f'REVOKE "app_runtime" FROM "other"{granted_by};',
        ),
        (
            "revoke undeclared membership of role delegate in app_runtime (granted by postgres)",
            'REVOKE "app_runtime" FROM "delegate"'
            + (' GRANTED BY "postgres"' if major >= 16 else "")
            + ";",
        ),
    ]


def test_the_non_superuser_admins_own_membership_is_declared() -> None:
    snap = dataclasses.replace(
        converged_split(),
        is_superuser=False,
        current_user="admin",
        memberships=(MembershipState(MIGRATOR, "admin", "admin"),),
    )
    assert plan_for(split_spec(), snap).empty


def test_every_object_kind_in_the_schema_is_handed_to_the_owner() -> None:
    snap = dataclasses.replace(
        converged_split(),
        relations=(
            *converged_split().relations,
            RelationState("app", "loose", "sequence", "other", relkind="S"),
            RelationState("app", "v", "table", "other", relkind="v"),
            RelationState("app", "owned_seq", "sequence", "other", owned_by="v", relkind="S"),
        ),
        functions=(FunctionState("app", "f", "", "f", "other", False, ()),),
    )
    items = [sql for _, sql in items_of(plan_for(split_spec(), snap))]
    assert [sql for sql in items if "OWNER" in sql] == [
        'ALTER SEQUENCE "app"."loose" OWNER TO "app_migrator";',
        'ALTER VIEW "app"."v" OWNER TO "app_migrator";',
    ]
    # Another role's routine is its author's code: dropped, never handed to the owner.
    assert 'DROP ROUTINE "app"."f"();' in items


def foreign_owned(**changes: object) -> Snapshot:
    """A converged split environment plus a schema of another role's, with its objects, and
    objects in ``public`` owned by the admin, another role and the owner."""
    base = converged_split()
    snap = dataclasses.replace(
        base,
        schemas={**base.schemas, "side": SchemaState("side", "other")},
        relations=(
            *base.relations,
            RelationState("public", "admins", "table", "postgres", relkind="r"),
            RelationState("public", "mine", "table", MIGRATOR, relkind="r"),
            RelationState("public", "theirs", "table", "other", relkind="r"),
            RelationState("side", "m", "table", "other", relkind="m"),
            RelationState("side", "t_id_seq", "sequence", "other", owned_by="t", relkind="S"),
            RelationState("side", "t", "table", "other", relkind="p"),
        ),
        functions=(
            FunctionState("side", "f", "n integer", "f", "other", False, ()),
            FunctionState("public", "g", "", "f", "postgres", False, ()),
        ),
    )
    return dataclasses.replace(snap, **changes)


def test_other_schemas_and_their_objects_belong_to_the_owner() -> None:
    items = [sql for _, sql in items_of(plan_for(split_spec(), foreign_owned()))]
    assert [sql for sql in items if "OWNER" in sql] == [
        'ALTER SCHEMA "side" OWNER TO "app_migrator";',
        'ALTER TABLE "public"."theirs" OWNER TO "app_migrator";',
        'ALTER MATERIALIZED VIEW "side"."m" OWNER TO "app_migrator";',
        'ALTER TABLE "side"."t" OWNER TO "app_migrator";',
    ]
    assert 'DROP ROUTINE "side"."f"(n integer);' in items


def test_what_the_admin_or_a_declared_privileged_role_owns_outside_the_app_is_theirs() -> None:
    snap = foreign_owned(current_user="rdsadmin")
    fixes = {o.object_text(): o.owner for o in undeclared_owners(split_spec(), snap)}
    assert fixes["table public.admins"] == "postgres"
    # Not the admin here, nor declared: its routine is foreign code, never reassigned.
    assert "function public.g()" not in fixes
    declared = split_spec(pg_privileged_roles=["postgres"])
    fixes = {o.object_text() for o in undeclared_owners(declared, snap)}
    assert "table public.admins" not in fixes and "function public.g()" not in fixes
    # In the app's schema the admin is no exception.
    in_app = dataclasses.replace(
        snap, relations=(*snap.relations, RelationState("app", "x", "table", "postgres"))
    )
    assert "table app.x" in {o.object_text() for o in undeclared_owners(declared, in_app)}


def test_foreign_owners_are_drift_rows_and_access_rows_name_what_a_role_owns() -> None:
    snap = foreign_owned()
    drift = [c for c in ownership_checks("db1", split_spec(), snap) if c.is_difference]
    assert [(c.object, c.declared, c.actual) for c in drift] == [
        ("schema side", MIGRATOR, "other"),
        ("table public.theirs", MIGRATOR, "other"),
        ("materialized view side.m", MIGRATOR, "other"),
        ("table side.t", MIGRATOR, "other"),
    ]
    code = [c for c in code_checks("db1", split_spec(), snap) if c.is_difference]
    assert [(c.object, c.actual) for c in code] == [("function side.f(n integer)", "other")]
    rows = {c.subject: c for c in access_checks("db1", split_spec(), snap)}
    assert rows["other"].actual == "owner of schema, table x3, sequence, function"
    assert rows["postgres"].actual == "owner of table, function"
    clean = ownership_checks("db1", split_spec(), converged_split())
    assert not [c for c in clean if c.is_difference]
    assert not [c for c in clean if "public" in c.object]


def test_reader_gets_connect_usage_select_and_default_select_and_nothing_else() -> None:
    spec = split_spec(pg_readers=[READER])
    snap = converged_split()
    wanted = {g for g in wanted_grants(spec, snap) if g.grantee == READER}
    assert {(g.object_type, g.privilege) for g in wanted} == {
        ("DATABASE", "CONNECT"),
        ("SCHEMA", "USAGE"),
        ("TABLE", "SELECT"),
        ("SEQUENCE", "SELECT"),
        ("DEFAULT", "SELECT"),
    }
    assert {g.name for g in wanted if g.object_type == "TABLE"} == {"aerich", "checklistresponse"}
    assert {g.objects for g in wanted if g.object_type == "DEFAULT"} == {"TABLES", "SEQUENCES"}
    assert all(g.for_role == MIGRATOR for g in wanted if g.object_type == "DEFAULT")


def test_missing_reader_is_created_nologin() -> None:
    plan = plan_for(split_spec(pg_readers=[READER]), converged_split())
    assert plan.roles[0].description == (
        f"create role {READER} (NOLOGIN), a read-only group for schema app"
    )
    assert f'CREATE ROLE "{READER}" NOLOGIN;' in plan.roles[0].sql


def test_default_privileges_naming_a_removed_reader_are_revoked() -> None:
    snap = dataclasses.replace(
        converged_split(),
        default_acls=(
            *converged_split().default_acls,
            DefaultAclState(MIGRATOR, "app", "S", (AclEntry(READER, "SELECT"),)),
        ),
    )
    to_revoke, to_grant = diff(
        wanted_grants(split_spec(), snap), current_grants(split_spec(), snap)
    )
    assert to_revoke == [Grant("DEFAULT", "app", MIGRATOR, "SELECT", READER, objects="SEQUENCES")]
    assert to_grant == []


# --- audit ------------------------------------------------------------------------------------


def test_bypassing_roles_fail_unless_expected() -> None:
    spec = split_spec(pg_privileged_roles=["rds_superuser"])
    snap = dataclasses.replace(
        converged_split(),
        privileged=(
            PrivilegedRole("postgres", ("SUPERUSER",)),
            PrivilegedRole("rds_superuser", ("BYPASSRLS",)),
            PrivilegedRole("etl", ("member of pg_read_all_data",)),
        ),
        memberships=(MembershipState(MIGRATOR, "intruder", "postgres"),),
    )
    verdicts = {c.subject: (c.verdict, c.actual) for c in bypass_checks("db1", spec, snap)}
    assert verdicts == {
        "postgres": ("OK", "bypasses privileges: SUPERUSER"),
        "rds_superuser": ("OK", "bypasses privileges: BYPASSRLS"),
        "etl": ("DRIFT", "bypasses privileges: member of pg_read_all_data"),
        "intruder": ("DRIFT", f"bypasses privileges: member of the owner {MIGRATOR}"),
    }


def test_members_are_judged_and_reader_members_are_listed() -> None:
    spec = split_spec(pg_readers=[READER])
    snap = dataclasses.replace(
        converged_split(),
        memberships=(
            MembershipState(MIGRATOR, "grp", "postgres"),
            MembershipState(MIGRATOR, "alice", "postgres", via="grp"),
            MembershipState(READER, "bob", "postgres"),
        ),
    )
    rows = [(c.verdict, c.subject, c.object, c.check) for c in membership_checks("db1", spec, snap)]
    assert ("DRIFT", "grp", f"role {MIGRATOR}", "member") in rows
    assert ("DRIFT", "alice", f"role {MIGRATOR}", "member through grp") in rows
    assert ("NOTE", "bob", f"role {READER}", "member") in rows
    assert ("DRIFT", READER, "role", "exists") in rows  # declared, not created yet


def test_access_rows_summarise_each_roles_privileges_per_object_kind() -> None:
    snap = converged_split()
    rows = {c.subject: c for c in access_checks("db1", split_spec(), snap)}
    assert rows[MIGRATOR].actual == "owner of everything"
    assert rows[RUNTIME].actual == (
        "database CONNECT; schema USAGE; table SELECT, INSERT, UPDATE, DELETE; "
        "sequence USAGE, SELECT, UPDATE"
    )
    assert rows[RUNTIME].declared == rows[RUNTIME].actual
    assert rows["PUBLIC"].actual == "schema USAGE"


def test_access_rows_say_how_members_and_bypassing_roles_reach_the_data() -> None:
    snap = dataclasses.replace(
        converged_split(),
        relations=(
            *converged_split().relations,
            RelationState("app", "t", "table", MIGRATOR, (AclEntry("other", "SELECT"),)),
        ),
        memberships=(
            MembershipState(MIGRATOR, "other", "postgres"),
            MembershipState(MIGRATOR, "admin", "postgres"),
            MembershipState(MIGRATOR, "admin", "admin"),
        ),
        privileged=(PrivilegedRole("postgres", ("SUPERUSER",)),),
    )
    rows = {c.subject: c for c in access_checks("db1", split_spec(), snap)}
    assert rows["other"].declared == "none"
    assert rows["other"].actual == f"table SELECT; member of {MIGRATOR}"
    assert rows["admin"].actual == f"member of {MIGRATOR}"
    assert rows["postgres"].actual == "bypasses privileges: SUPERUSER"
    assert all(c.verdict == "NOTE" for c in rows.values())


@pytest.mark.parametrize(("major", "granted_by"), [(15, ""), (18, ' GRANTED BY "delegate"')])
def test_a_managed_roles_own_membership_is_revoked_naming_its_grantor_on_16(
    major: int, granted_by: str
) -> None:
    snap = converged_split(major)
    roles = {**snap.roles, RUNTIME: dataclasses.replace(snap.roles[RUNTIME], member_of=("grp",))}
    snap = dataclasses.replace(
        snap, roles=roles, memberships=(MembershipState("grp", RUNTIME, "delegate"),)
    )
    assert items_of(plan_for(split_spec(), snap)) == [
        (
            "revoke undeclared membership of role app_runtime in grp (granted by delegate)",
            f'REVOKE "grp" FROM "app_runtime"{granted_by};',
        )
    ]


@pytest.mark.parametrize("major", [16, 17, 18])
def test_maintain_is_judged_as_a_table_privilege_where_the_server_has_it(major: int) -> None:
    """MAINTAIN exists from 17: there the owner holds it (converged plans stay empty) and the
    runtime's is revoked; before 17 the server has no such privilege, so no snapshot carries it
    and no statement names it. Never declared for anyone."""
    snap = converged_split(major)
    plain = [sql for _, sql in items_of(plan_for(split_spec(), snap))]
    assert plain == []
    table = snap.relation("app", "checklistresponse")
    held = {"MAINTAIN", "TRUNCATE"} if major >= 17 else {"TRUNCATE"}
    extra = tuple(AclEntry(RUNTIME, p) for p in sorted(held))
    snap = dataclasses.replace(
        snap,
        relations=tuple(
            dataclasses.replace(r, acl=tuple(sorted((*r.acl, *extra)))) if r is table else r
            for r in snap.relations
        ),
    )
    items = [sql for _, sql in items_of(plan_for(split_spec(), snap))]
    revoked = ", ".join(p for p in ("TRUNCATE", "MAINTAIN") if p in held)
    assert items == [f'REVOKE {revoked} ON TABLE {TABLE} FROM "app_runtime";']
    assert not any(g.privilege == "MAINTAIN" for g in wanted_grants(split_spec(), snap))
