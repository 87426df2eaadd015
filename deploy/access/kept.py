"""Objects that hold data or feed other systems: the deploy never drops one.

``lo_unlink`` deletes a large object's data; a CDC tool (Debezium) depends on its publication;
a subscription is another system's feed into this database; a user mapping is how foreign
tables reach their server. So for these kinds the host data declares the ones that belong
(``pg_publications``, ``pg_subscriptions``, ``pg_user_mappings``, ``pg_large_objects``);
every other one is named by the audit (DRIFT) and listed by the deploy, in one line per kind,
as left for a person. A declared one that does not exist is a note: pgprov creates none.
Privileges *on* them (large objects') are ordinary grants (``access.privileges``): undeclared
ones are revoked, which is never destructive.

One function per kind turns the snapshot into ``Kept`` rows, and ``KEPT`` lists them with the
host key that declares them; the audit (``audit.kept_checks``) and the plan
(``plan.kept_notices``) iterate over ``KEPT``. A new kind of this sort: its registry entry
(``catalog/kinds.py``) and query, a function here, its entry in ``KEPT``, its host key in
``model/spec.py``.

    for kind in KEPT:
        left = undeclared(kind, spec, snap)    # what the audit fails on and the deploy leaves
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pgprov.catalog.state import Snapshot, display_grantee
from pgprov.model.spec import Spec, published, subscribed

MISSING = "missing (pgprov creates none)"


@dataclass(frozen=True)
class Kept:
    """One object (or, for large objects, one owner's objects) as the audit shows it."""

    subject: str  # the audit row's subject: the publication's name, the objects' owner, ...
    object: str  # where it is: "database d", "server s"
    check: str  # what it is: "publication", "large objects owned", ...
    declared: str  # what the host data says, in words
    actual: str  # what is there, in words
    summary: str  # how the deploy's one line names it
    exists: bool
    ok: bool  # declared as it is

    @property
    def verdict(self) -> str:
        return "NOTE" if not self.exists else "OK" if self.ok else "DRIFT"


@dataclass(frozen=True)
class KeptKind:
    plural: str  # "publications"
    key: str  # the host key that declares them
    why: str  # why the deploy never drops one
    find: Callable[[Spec, Snapshot], list[Kept]]


def _owned_by_name(
    key: str,
    noun: str,
    declared: dict[str, tuple[str, str | None]],
    found: dict[str, tuple[str, ...]],
    where: str,
) -> list[Kept]:
    """Objects declared by name with their owner, and optionally with what they do: ``found``
    is name -> (owner, what it does, and optionally its state, shown but never judged);
    ``declared`` name -> (owner, what it does; None: not judged)."""
    rows = []
    for name in sorted({*found, *declared}):
        owner, detail = declared.get(name, (None, None))
        held = found.get(name)
        actual = summary = MISSING
        if held is not None:
            shown = held[1] + "".join(f" ({state})" for state in held[2:])
            actual, summary = f"owner {held[0]}; {shown}", f"{name} (owner {held[0]}, {shown})"
        said = f"not declared ({key})"
        if owner is not None:
            said = f"declared, owner {owner}" + (f"; {detail}" if detail is not None else "")
        ok = held is not None and owner == held[0] and detail in (None, held[1])
        rows.append(Kept(name, where, noun, said, actual, summary, held is not None, ok))
    return rows


def publications(spec: Spec, snap: Snapshot) -> list[Kept]:
    """Publications, declared by name with their owner and, if declared, their tables; shown
    with the tables they publish."""
    found = {
        p.name: (p.owner, published("all" if p.all_tables else p.tables)) for p in snap.publications
    }
    declared = spec.declared_publications()
    where = f"database {spec.database}"
    return _owned_by_name("pg_publications", "publication", declared, found, where)


def subscriptions(spec: Spec, snap: Snapshot) -> list[Kept]:
    """Subscriptions into this database, declared by name with their owner and, if declared,
    their publications; shown with what they subscribe to and whether they run (never their
    connection string)."""
    found = {
        s.name: (s.owner, subscribed(s.publications), "enabled" if s.enabled else "disabled")
        for s in snap.subscriptions
    }
    declared = spec.declared_subscriptions()
    where = f"database {spec.database}"
    return _owned_by_name("pg_subscriptions", "subscription", declared, found, where)


def user_mappings(spec: Spec, snap: Snapshot) -> list[Kept]:
    """User mappings, declared per foreign server by role (never their options)."""
    found = {(m.server, m.user) for m in snap.user_mappings}
    declared = spec.declared_user_mappings()
    rows = []
    for server, user in sorted({*found, *declared}):
        who, held = display_grantee(user), (server, user) in found
        ok = (server, user) in declared
        said = f"{'declared' if ok else 'not declared'} (pg_user_mappings)"
        rows.append(
            Kept(
                who,
                f"server {server}",
                "user mapping",
                said,
                "exists" if held else MISSING,
                f"{who} on server {server}",
                held,
                ok,
            )
        )
    return rows


def large_objects(spec: Spec, snap: Snapshot) -> list[Kept]:
    """Large objects, aggregated per owner (there may be millions), declared by owner."""
    where = f"database {spec.database}"
    found = {lo.owner: lo for lo in snap.large_objects}
    declared = spec.declared_large_objects()
    rows = []
    for owner in sorted({*found, *declared}):
        held = found.get(owner)
        actual = summary = "none"
        if held is not None:
            actual = f"{held.count} (oids {held.first}..{held.last})"
            summary = f"{held.count} owned by {owner} (oids {held.first}..{held.last})"
        said = "declared (pg_large_objects)" if owner in declared else "none (pg_large_objects)"
        ok = held is not None and owner in declared
        rows.append(
            Kept(owner, where, "large objects owned", said, actual, summary, bool(held), ok)
        )
    return rows


KEPT: tuple[KeptKind, ...] = (
    KeptKind(
        "publications",
        "pg_publications",
        "a publication feeds another system; the deploy never drops one",
        publications,
    ),
    KeptKind(
        "subscriptions",
        "pg_subscriptions",
        "a subscription is another system's feed into this database; the deploy never drops one",
        subscriptions,
    ),
    KeptKind(
        "user mappings",
        "pg_user_mappings",
        "a user mapping holds the credentials foreign tables use; the deploy never drops one",
        user_mappings,
    ),
    KeptKind(
        "large objects",
        "pg_large_objects",
        "they hold data; the deploy never unlinks one",
        large_objects,
    ),
)


def undeclared(kind: KeptKind, spec: Spec, snap: Snapshot) -> list[Kept]:
    """The objects of ``kind`` that exist and that the host data does not declare as they are."""
    return [k for k in kind.find(spec, snap) if k.exists and not k.ok]
