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


def snapshot(**sections: list[dict]) -> Snapshot:
    lines = [
        {"cluster": {"server_version_num": 150000, "in_recovery": False,
                     "current_user": "postgres", "is_superuser": True,
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
        ("pg_subscriptions", {"feed": "Bad Owner"}, "pg_subscriptions"),
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
    assert (left.subject, left.actual) == ("stray", "owner etl; disabled, publications a, b")
    assert left.declared == "declared, owner someone_else"
    assert verdicts("pg_subscriptions", s, snap)[("feed", "database hinfelaar_fastapi")] == "OK"
    assert kept_notices(spec(pg_subscriptions={"feed": "etl", "stray": "etl"}), snap) == []
