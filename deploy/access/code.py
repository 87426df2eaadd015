"""Code is never adopted: routines, triggers, rules and event triggers that others control.

Ownership repair is right for tables and sequences, but for code it is adoption: whoever wrote
a body keeps control of what the new owner's rights do. So the access model judges code by
who controls it (the plan removes it, the audit names it; one definition for both):

- a **foreign routine** is owned by a role the deploy does not trust: not a managed role or
  reader, not the admin, not a ``pg_privileged_roles`` role. It is never reassigned. It is
  dropped when nothing but triggers the deploy also drops depends on it; anything else that
  uses it (a column default, a constraint, an index, a view) stops the deploy, naming both,
  since dropping it would take data or schema with it.
- a **foreign trigger** runs a foreign routine, or sits on a table owned by an untrusted role
  (it was that role's to create); a **foreign rule** sits on such a table (rules have no owner
  of their own and run as the table's). Both are dropped before any owner changes, on the
  tables the deploy repairs.
- an **event trigger** runs its function inside the DDL that fires it, with the rights of
  whoever runs that DDL: the deploy's admin included. One whose function a non-superuser owns
  (that role may replace the body) stops the deploy while it is enabled; the audit names every
  event trigger with its function's owner.

    foreign = foreign_code(spec, snap)      # what the audit reports and the plan removes
    problem = code_problem(spec, snap)      # None, or the one line that stops the deploy
"""

from __future__ import annotations

from dataclasses import dataclass

from pgprov.access.privileges import left_to_its_owner, trusted_owners
from pgprov.catalog.state import EventTriggerState, FunctionState, RuleState, Snapshot, TriggerState
from pgprov.model.spec import Spec

TRIGGER_CATALOG = "pg_trigger"


@dataclass(frozen=True)
class ForeignCode:
    """Everything untrusted roles control in the database, and what the deploy may remove."""

    routines: tuple[FunctionState, ...]
    triggers: tuple[TriggerState, ...]
    rules: tuple[RuleState, ...]
    event_triggers: tuple[EventTriggerState, ...]  # enabled, with a non-superuser's function

    @property
    def droppable_routines(self) -> tuple[FunctionState, ...]:
        """Foreign routines nothing depends on but triggers that are dropped with them."""
        dropped = {t.describe for t in self.triggers}
        return tuple(
            fn
            for fn in self.routines
            if all(kind == TRIGGER_CATALOG and what in dropped for kind, what in fn.dependents)
        )


def _repaired_table(spec: Spec, snap: Snapshot, schema: str, table: str) -> bool:
    """A table whose owner the deploy repairs (see ``undeclared_owners``)."""
    owner = _table_owner(snap, schema, table)
    return owner is None or not left_to_its_owner(spec, snap, schema, owner)


def _table_owner(snap: Snapshot, schema: str, table: str) -> str | None:
    rel = snap.relation(schema, table)
    return rel.owner if rel else None


def foreign_code(spec: Spec, snap: Snapshot) -> ForeignCode:
    trusted = trusted_owners(spec, snap)
    routines = tuple(fn for fn in snap.functions if fn.owner not in trusted)
    triggers = tuple(
        t
        for t in snap.triggers
        if _repaired_table(spec, snap, t.schema, t.table)
        and (
            t.function_owner not in trusted or _table_owner(snap, t.schema, t.table) not in trusted
        )
    )
    rules = tuple(
        r
        for r in snap.rules
        if _repaired_table(spec, snap, r.schema, r.table) and r.table_owner not in trusted
    )
    event_triggers = tuple(e for e in snap.event_triggers if e.enabled and not e.owner_is_superuser)
    return ForeignCode(routines, triggers, rules, event_triggers)


def code_problem(spec: Spec, snap: Snapshot) -> str | None:
    """The first foreign code the deploy cannot remove safely, as one line naming inventory,
    host and what stands in the way; None when it can remove all of it."""
    where = f"{spec.inventory}: host {spec.host}"
    foreign = foreign_code(spec, snap)
    for event in foreign.event_triggers:
        schema, name, args = event.function
        return (
            f"{where}: event trigger {event.name} ({event.event}) runs {schema}.{name}({args}), "
            f"owned by {event.function_owner}, which is not a superuser: it would run inside "
            "the deploy's DDL with the admin's rights; a superuser must drop or disable it "
            "(ALTER EVENT TRIGGER ... DISABLE) or give its function to a superuser; "
            "nothing was changed"
        )
    droppable = set(foreign.droppable_routines)
    dropped_triggers = {t.describe for t in foreign.triggers}
    for fn in foreign.routines:
        if fn not in droppable:
            uses = [what for kind, what in fn.dependents if what not in dropped_triggers]
            return (
                f"{where}: routine {fn.signature}, owned by {fn.owner} (a role this deploy "
                f"does not manage), is used by {'; '.join(uses)}: dropping it would take "
                "those with it, and it is never handed to a managed role; remove that use or "
                "the routine by hand; nothing was changed"
            )
        if not snap.is_superuser and not fn.admin_can_drop:
            return (
                f"{where}: routine {fn.signature} is owned by {fn.owner} (a role this deploy "
                f"does not manage) and the admin {snap.current_user} cannot drop it; drop it "
                "as its owner or a superuser; nothing was changed"
            )
    return None
