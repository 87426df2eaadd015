"""Objects that hold data or feed other systems (``pgprov.access.kept``) without a server: the
host keys that declare them, and the audit's verdicts and the deploy's lines for each kind."""

from __future__ import annotations

import json

import pytest
from pgprov.access.kept import KEPT, undeclared
from pgprov.catalog.state import Snapshot
from pgprov.model.spec import PUBLIC, SpecError, build_spec
from pgprov.steps.plan import kept_notices

BASE = {
    "pg_environment": "staging",
    "pg_profile": "split",
    "pg_migrator_password": "env:M",
    "pg_runtime_password": "env:R",
}
BY_KEY = {kind.key: kind for kind in KEPT}


def spec(**extra: object):
    return build_spec({**BASE, **extra}, inventory="inv.py", host="h")


def snapshot(*, major: int = 15, superuser: bool = True, **sections: list[dict]) -> Snapshot:
    """A snapshot holding ``sections`` (name -> rows), of a ``major`` server."""
    lines = [
        {"cluster": {"server_version_num": major * 10000, "in_recovery": False,
                     "current_user": "postgres", "is_superuser": superuser,
                     "can_create_role": True, "password_encryption": "scram-sha-256"}},
        {"roles": []},
        {"database": {"name": "hinfelaar_fastapi", "owner": "app_migrator", "acl": []}},
        *({name: rows} for name, rows in sections.items()),
    ]  # fmt: skip
    return Snapshot.parse(json.dumps(line) for line in lines)


def verdicts(key: str, s, snap) -> dict[tuple[str, str], str]:
    return {(k.subject, k.object): k.verdict for k in BY_KEY[key].find(s, snap)}


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        ("pg_user_mappings", {"remote": ["Bad"]}, "pg_user_mappings: remote.0"),
        ("pg_user_mappings", ["remote"], "pg_user_mappings"),
        ("pg_subscriptions", {"feed": "Bad Owner"}, "pg_subscriptions: feed: 'Bad Owner'"),
        (
            "pg_subscriptions",
            {"feed": {"owner": "etl", "publications": []}},
            "pg_subscriptions: feed.publications: ",
        ),
        (
            "pg_subscriptions",
            {"feed": {"owner": "etl", "tables": ["app.unit"]}},
            "pg_subscriptions: feed.",
        ),
        (
            "pg_publications",
            {"cdc": {"owner": "etl", "tables": ["unit"]}},
            "pg_publications: cdc.tables: 'unit' is",
        ),
        (
            "pg_publications",
            {"cdc": {"owner": "etl", "tables": "some"}},
            "pg_publications: cdc.tables: 'some': give",
        ),
        (
            "pg_publications",
            {"cdc": {"owner": "etl"}},
            "pg_publications: cdc.tables: Field required",
        ),
        (
            "pg_publications",
            {"cdc": "Etl"},
            "pg_publications: cdc: 'Etl' is not a valid identifier",
        ),
        (
            "pg_large_objects",
            {"migrator": {"runtime": ["DELETE"]}},
            "pg_large_objects: migrator.runtime.0",
        ),
        ("pg_large_objects", {"Bad-Name": {}}, "pg_large_objects: Bad-Name"),
        ("pg_large_objects", ["migrator"], "pg_large_objects"),
    ],
)
def test_the_keys_are_checked_in_one_line_naming_host_and_field(
    key: str, value: object, field: str
) -> None:
    with pytest.raises(SpecError) as caught:
        spec(**{key: value})
    message = str(caught.value)
    assert message.startswith(f"inv.py: host h: {field}") and "\n" not in message, message


def test_user_mappings_are_declared_by_server_with_logical_names_and_public() -> None:
    s = spec(pg_user_mappings={"remote": ["runtime", "public", "etl"]})
    assert s.declared_user_mappings() == {
        ("remote", "app_runtime"),
        ("remote", PUBLIC),
        ("remote", "etl"),
    }
    snap = snapshot(
        user_mappings=[
            {"server": "remote", "user": "app_runtime"},
            {"server": "remote", "user": None},
            {"server": "other", "user": "app_runtime"},
        ]
    )
    assert verdicts("pg_user_mappings", s, snap) == {
        ("app_runtime", "server remote"): "OK",
        ("PUBLIC", "server remote"): "OK",
        ("etl", "server remote"): "NOTE",  # declared, absent: pgprov creates none
        ("app_runtime", "server other"): "DRIFT",
    }
    [notice] = kept_notices(s, snap)
    assert notice.startswith("user mappings nobody declared in pg_user_mappings are left for a")
    assert notice.endswith("names them: app_runtime on server other")


def test_subscriptions_are_declared_by_name_with_their_owner() -> None:
    rows = [
        {"name": "feed", "owner": "etl", "enabled": True, "publications": ["orders"]},
        {"name": "stray", "owner": "etl", "enabled": False, "publications": ["a", "b"]},
    ]
    s = spec(pg_subscriptions={"feed": "etl", "stray": "someone_else"})
    snap = snapshot(subscriptions=rows)
    kinds = BY_KEY["pg_subscriptions"]
    [left] = undeclared(kinds, s, snap)
    assert (left.subject, left.actual) == ("stray", "owner etl; publications a, b (disabled)")
    assert left.declared == "declared, owner someone_else"
    assert verdicts("pg_subscriptions", s, snap)[("feed", "database hinfelaar_fastapi")] == "OK"
    assert kept_notices(spec(pg_subscriptions={"feed": "etl", "stray": "etl"}), snap) == []


def test_a_subscription_declared_with_publications_passes_only_with_exactly_those() -> None:
    rows = [
        {"name": "feed", "owner": "etl", "enabled": True, "publications": ["orders", "items"]},
        {"name": "wider", "owner": "etl", "enabled": True, "publications": ["orders", "users"]},
    ]
    snap = snapshot(subscriptions=rows)
    declared = {"owner": "etl", "publications": ["items", "orders"]}
    s = spec(pg_subscriptions={"feed": declared, "wider": {**declared, "publications": ["orders"]}})
    assert verdicts("pg_subscriptions", s, snap) == {
        ("feed", "database hinfelaar_fastapi"): "OK",  # order does not matter
        ("wider", "database hinfelaar_fastapi"): "DRIFT",
    }
    [left] = undeclared(BY_KEY["pg_subscriptions"], s, snap)
    assert left.declared == "declared, owner etl; publications orders"
    assert left.actual == "owner etl; publications orders, users (enabled)"
    [notice] = kept_notices(s, snap)
    assert notice.endswith("wider (owner etl, publications orders, users (enabled))"), notice


def test_a_publication_declared_with_tables_passes_only_with_exactly_those() -> None:
    row = {"name": "cdc", "owner": "etl", "all_tables": False, "tables": ["app.unit", "app.b"]}
    every = {"name": "all", "owner": "etl", "all_tables": True, "tables": ["app.unit"]}
    snap = snapshot(publications=[row, every])
    s = spec(
        pg_publications={
            "cdc": {"owner": "etl", "tables": ["app.unit", "app.b"]},
            "all": {"owner": "etl", "tables": "all"},
        }
    )
    assert verdicts("pg_publications", s, snap) == {
        ("all", "database hinfelaar_fastapi"): "OK",
        ("cdc", "database hinfelaar_fastapi"): "OK",
    }
    narrower = spec(pg_publications={"cdc": {"owner": "etl", "tables": ["app.unit"]}, "all": "etl"})
    [left] = undeclared(BY_KEY["pg_publications"], narrower, snap)
    assert (left.subject, left.declared) == ("cdc", "declared, owner etl; app.unit")
    assert left.actual == "owner etl; app.b, app.unit"
