"""Code is never adopted, decided from the spec and the snapshot (no server)."""

from __future__ import annotations

import dataclasses

import pytest
from pgprov.access.code import code_problem, foreign_code
from pgprov.access.privileges import undeclared_owners
from pgprov.catalog.state import (
    PUBLIC,
    AclEntry,
    EventTriggerState,
    FunctionState,
    RelationState,
    RuleState,
    Snapshot,
    TriggerState,
)

from tests.unit.test_plan import converged_split, items_of, plan_for, split_spec

PREFIX = "inventories/staging.py: host db1"
GRAB = FunctionState(
    "public",
    "grab",
    "",
    "f",
    "stranger",
    security_definer=True,
    dependents=(("pg_trigger", "trigger t on table app.unit"),),
)
TRIGGER = TriggerState(
    "app", "unit", "t", "trigger t on table app.unit", ("public", "grab", ""), "stranger"
)


def with_code(snap: Snapshot, **fields: object) -> Snapshot:
    return dataclasses.replace(snap, **fields)


def test_a_strangers_trigger_and_its_function_are_dropped_not_reassigned() -> None:
    snap = with_code(converged_split(), functions=(GRAB,), triggers=(TRIGGER,))
    spec = split_spec()
    assert code_problem(spec, snap) is None
    assert not [o for o in undeclared_owners(spec, snap) if o.name == "grab"]
    assert items_of(plan_for(spec, snap)) == [
        (
            "drop trigger t on app.unit: it runs public.grab() owned by stranger, code this "
            "deploy does not trust",
            'DROP TRIGGER "t" ON "app"."unit";',
        ),
        (
            "drop routine public.grab() owned by stranger (never handed to a managed role)",
            'DROP ROUTINE "public"."grab"();',
        ),
    ]


def test_the_admins_and_a_managed_roles_routines_are_not_foreign() -> None:
    routines = (
        dataclasses.replace(GRAB, owner="postgres", dependents=()),
        dataclasses.replace(GRAB, name="mine", owner="app_migrator", dependents=()),
        dataclasses.replace(GRAB, name="provider", owner="rds_admin", dependents=()),
    )
    snap = with_code(converged_split(), functions=routines)
    foreign = foreign_code(split_spec(pg_privileged_roles=["rds_admin"]), snap)
    assert foreign.routines == ()


def test_a_trigger_on_a_strangers_table_is_foreign_even_with_a_trusted_function() -> None:
    table = RelationState("app", "log", "table", "stranger", ())
    trigger = dataclasses.replace(
        TRIGGER, table="log", describe="trigger t on table app.log", function_owner="app_migrator"
    )
    snap = with_code(
        converged_split(),
        relations=(*converged_split().relations, table),
        triggers=(trigger,),
        rules=(RuleState("app", "log", "r", "stranger"),),
    )
    foreign = foreign_code(split_spec(), snap)
    assert foreign.triggers == (trigger,)
    assert foreign.rules == (RuleState("app", "log", "r", "stranger"),)
    sql = plan_for(split_spec(), snap).script()
    # Code first, then the table's owner: its author loses the table after losing the code.
    assert sql.index('DROP RULE "r"') < sql.index('ALTER TABLE "app"."log" OWNER')
    assert sql.index('DROP TRIGGER "t"') < sql.index('ALTER TABLE "app"."log" OWNER')


@pytest.mark.parametrize(
    ("dependent", "named"),
    [
        (("pg_attrdef", "default value for column symbol of table app.unit"), "default value"),
        (("pg_constraint", "constraint c on table app.unit"), "constraint c"),
        (("pg_class", "index app.unit_f_idx"), "index app.unit_f_idx"),
    ],
)
def test_a_foreign_routine_something_else_uses_stops_the_deploy(
    dependent: tuple[str, str], named: str
) -> None:
    fn = dataclasses.replace(GRAB, dependents=(dependent,))
    problem = code_problem(split_spec(), with_code(converged_split(), functions=(fn,)))
    assert problem is not None and problem.startswith(f"{PREFIX}: routine public.grab()"), problem
    assert named in problem and "stranger" in problem and "\n" not in problem


def test_a_non_superuser_admin_that_cannot_drop_a_foreign_routine_says_so() -> None:
    fn = dataclasses.replace(GRAB, dependents=(), admin_can_drop=False)
    snap = with_code(converged_split(), functions=(fn,), is_superuser=False)
    problem = code_problem(split_spec(), snap)
    assert problem is not None and "cannot drop it" in problem, problem


@pytest.mark.parametrize(
    ("owner_is_superuser", "enabled", "refused"),
    [(False, True, True), (True, True, False), (False, False, False)],
)
def test_an_enabled_event_trigger_a_non_superuser_controls_stops_the_deploy(
    owner_is_superuser: bool, enabled: bool, refused: bool
) -> None:
    event = EventTriggerState(
        "audit_ddl", "ddl_command_start", enabled, ("public", "f", ""), "x", owner_is_superuser
    )
    problem = code_problem(split_spec(), with_code(converged_split(), event_triggers=(event,)))
    assert (problem is not None) == refused
    if refused:
        assert problem is not None and problem.startswith(f"{PREFIX}: event trigger audit_ddl")


def test_a_dropped_routines_grants_are_not_revoked_first() -> None:
    fn = dataclasses.replace(GRAB, schema="app", acl=(AclEntry(PUBLIC, "EXECUTE"),), dependents=())
    items = items_of(plan_for(split_spec(), with_code(converged_split(), functions=(fn,))))
    assert [sql for _, sql in items] == ['DROP ROUTINE "app"."grab"();']
