"""Large objects without a server: the key's validation, the aggregated snapshot rows, which
privileges the deploy revokes or grants (a declared one counts once every object carries it),
and the plan's batches after the database transaction."""

from __future__ import annotations

from pgprov.access.kept import KEPT, undeclared
from pgprov.access.privileges import Grant, current_grants, diff, wanted_grants
from pgprov.audit.audit import access_checks
from pgprov.catalog.state import AclEntry, Snapshot
from pgprov.model.spec import PUBLIC
from pgprov.sql.locks import LockPolicy
from pgprov.steps.plan import build_plan, kept_notices, large_objects_notice

from tests.unit.test_kept import snapshot as kept_snapshot
from tests.unit.test_kept import spec

[LARGE_OBJECTS] = [kind for kind in KEPT if kind.key == "pg_large_objects"]


def snapshot(large_objects: list[dict], *, superuser: bool = True) -> Snapshot:
    return kept_snapshot(major=18, superuser=superuser, large_objects=large_objects)


def owned(owner: str, count: int, *acl: tuple[str | None, str, bool, int]) -> dict:
    return {"owner": owner, "count": count, "first": 100, "last": 99 + count, "acl": list(acl)}


def large_object_changes(s, snap) -> tuple[set[tuple], set[tuple]]:
    revoke, grant = diff(wanted_grants(s, snap), current_grants(s, snap))
    key = lambda g: (g.name, g.grantee, g.privilege, g.grantable)  # noqa: E731
    only = [g for g in revoke if g.object_type == "LARGE OBJECT"]
    return {key(g) for g in only}, {key(g) for g in grant if g.object_type == "LARGE OBJECT"}


def test_logical_names_are_resolved_on_both_sides() -> None:
    s = spec(pg_large_objects={"migrator": {"runtime": ["SELECT"]}, "files": {"runtime": []}})
    assert s.declared_large_objects() == {
        "app_migrator": {"app_runtime": frozenset({"SELECT"})},
        "files": {"app_runtime": frozenset()},
    }


def test_every_privilege_on_undeclared_owners_objects_is_revoked_and_they_are_named() -> None:
    snap = snapshot(
        [
            owned(
                "app_migrator", 3, ["app_runtime", "SELECT", False, 3], [None, "UPDATE", False, 1]
            ),
            owned("stranger", 2, ["app_runtime", "SELECT", True, 2]),
        ]
    )
    s = spec()
    revoke, grant = large_object_changes(s, snap)
    assert revoke == {
        ("app_migrator", "app_runtime", "SELECT", False),
        ("app_migrator", PUBLIC, "UPDATE", False),
        ("stranger", "app_runtime", "SELECT", True),
    }
    assert grant == set()
    assert [k.subject for k in undeclared(LARGE_OBJECTS, s, snap)] == ["app_migrator", "stranger"]
    [notice] = kept_notices(s, snap)
    assert notice.startswith("large objects nobody declared in pg_large_objects are left for")
    assert "3 owned by app_migrator (oids 100..102)" in notice and "2 owned by stranger" in notice


def test_a_declared_privilege_is_held_only_once_every_object_of_the_owner_carries_it() -> None:
    s = spec(pg_large_objects={"migrator": {"runtime": ["SELECT"]}})
    partial = snapshot([owned("app_migrator", 3, ["app_runtime", "SELECT", False, 2])])
    assert large_object_changes(s, partial) == (
        set(),
        {("app_migrator", "app_runtime", "SELECT", False)},
    )
    complete = snapshot([owned("app_migrator", 3, ["app_runtime", "SELECT", False, 3])])
    assert large_object_changes(s, complete) == (set(), set())
    assert undeclared(LARGE_OBJECTS, s, complete) == []
    assert kept_notices(s, complete) == []
    # Declared without its grant option: the option is revoked (CASCADE), the privilege granted.
    option = snapshot([owned("app_migrator", 3, ["app_runtime", "SELECT", True, 3])])
    assert large_object_changes(s, option) == (
        {("app_migrator", "app_runtime", "SELECT", True)},
        {("app_migrator", "app_runtime", "SELECT", False)},
    )


def test_the_snapshot_row_is_one_per_owner_with_counts() -> None:
    snap = snapshot([owned("app_runtime", 2_000_000, [None, "SELECT", False, 5])])
    [lo] = snap.large_objects
    assert (lo.owner, lo.count, lo.first, lo.last) == ("app_runtime", 2_000_000, 100, 2_000_099)
    assert lo.acl == ((AclEntry(PUBLIC, "SELECT"), 5),)
    assert Grant("LARGE OBJECT", None, "app_runtime", "SELECT", PUBLIC).object_text() == (
        "large objects owned by app_runtime"
    )


def test_the_plan_changes_them_in_batches_after_the_database_transaction() -> None:
    s = spec()
    snap = snapshot([owned("stranger", 5, ["app_runtime", "SELECT", False, 5])])
    plan = build_plan(s, snap, LockPolicy.of(s), lambda role: "v", lambda role, stored: True)
    [item] = plan.batches
    assert (
        item.description == "revoke SELECT on large objects owned by stranger for role app_runtime"
    )
    assert "REVOKE SELECT ON LARGE OBJECT " in item.sql and "COMMIT;" in item.sql
    script = plan.script()
    # The batches commit on their own, so they follow the database transaction's COMMIT, in
    # the environment's database, under the session's advisory lock.
    assert script.index("REVOKE SELECT ON LARGE OBJECT") > script.rindex("\nCOMMIT;\n")
    assert '\\connect "hinfelaar_fastapi"' in script
    assert "pg_advisory_lock" in script[script.rindex("\nCOMMIT;\n") :]


def test_an_admin_without_the_owners_privileges_leaves_them_and_says_so() -> None:
    s = spec()
    snap = snapshot([owned("stranger", 5, ["app_runtime", "SELECT", False, 5])], superuser=False)
    plan = build_plan(s, snap, LockPolicy.of(s), lambda role: "v", lambda role, stored: True)
    assert plan.batches == []
    notice = large_objects_notice(s, snap)
    assert notice is not None and "does not have the owners' privileges" in notice
    assert "SELECT on large objects owned by stranger for role app_runtime" in notice


def test_access_rows_count_objects_not_owners() -> None:
    """The "reach" rows: an owner of 25,000 large objects is said to own 25,000, and a grantee
    holding privileges on two owners' objects is told so (the grants are per owner)."""
    snap = snapshot(
        [
            owned("stranger", 25_000, ["app_runtime", "SELECT", False, 25_000]),
            owned("files", 3, ["app_runtime", "UPDATE", False, 1]),
        ]
    )
    rows = {c.subject: c.actual for c in access_checks("h", spec(), snap)}
    assert "owner of large object x25000" in rows["stranger"], rows
    assert rows["files"] == "owner of large object x3", rows
    assert "large object SELECT, UPDATE (objects of 2 owners)" in rows["app_runtime"], rows
    one = snapshot([owned("files", 3, ["app_runtime", "SELECT", False, 3])])
    reach = {c.subject: c.actual for c in access_checks("h", spec(), one)}["app_runtime"]
    assert "large object SELECT (objects of files)" in reach, reach
