"""Snapshot.parse: the JSON lines psql prints for inspect.sql.j2 become typed, frozen state."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pgprov.catalog.state import AclEntry, Snapshot, SnapshotError
from pgprov.model.secrets import StoredPassword

CLUSTER = {
    "cluster": {
        "server_version_num": 160004,
        "in_recovery": False,
        "current_user": "postgres",
        "is_superuser": True,
        "can_create_role": True,
        "password_encryption": "scram-sha-256",
    }
}
STORED = {"scram": "4096:c2FsdA==", "digest": "ab" * 32}


def role_json(name: str, **changes: Any) -> dict[str, Any]:
    raw = {
        "name": name,
        "superuser": False,
        "createdb": False,
        "createrole": False,
        "replication": False,
        "bypassrls": False,
        "login": True,
        "inherit": True,
        "connection_limit": -1,
        "has_password": True,
        "member_of": [],
        "admin_can_use": True,
        "admin_can_set": True,
        "settings": [{"database": "hinfelaar_fastapi", "config": ["search_path=app, public"]}],
    }
    return {**raw, **changes}


def provisioned_lines() -> list[str]:
    sections: list[dict[str, Any]] = [
        CLUSTER,
        {"passwords": {"app_migrator": STORED, "app_runtime": STORED}},
        {
            "roles": [
                role_json("app_migrator", settings=[]),
                role_json(
                    "app_runtime",
                    member_of=["pg_read_all_data"],
                    settings=[
                        {"database": None, "config": ["statement_timeout=5s"]},
                        {"database": "hinfelaar_fastapi", "config": ["search_path=app, public"]},
                    ],
                ),
            ]
        },
        {
            "database": {
                "name": "hinfelaar_fastapi",
                "owner": "app_migrator",
                "acl": [
                    ["app_migrator", "CONNECT", False],
                    ["app_migrator", "CREATE", False],
                    ["app_runtime", "CONNECT", False],
                ],
            }
        },
        {
            "schemas": [
                {"name": "app", "owner": "app_migrator", "acl": [["app_runtime", "USAGE", False]]},
                {
                    "name": "public",
                    "owner": "pg_database_owner",
                    "acl": [[None, "USAGE", False], ["pg_database_owner", "CREATE", False]],
                },
            ]
        },
        {
            "relations": [
                {
                    "schema": "app",
                    "name": "checklistresponse",
                    "kind": "table",
                    "owner": "app_migrator",
                    "acl": [["app_runtime", "SELECT", True]],
                },
                {
                    "schema": "app",
                    "name": "checklistresponse_id_seq",
                    "kind": "sequence",
                    "owner": "app_migrator",
                    "acl": [],
                },
            ]
        },
        {
            "default_acls": [
                {
                    "role": "app_migrator",
                    "schema": "app",
                    "objtype": "r",
                    "acl": [["app_runtime", "SELECT", False]],
                },
                {
                    "role": "app_migrator",
                    "schema": None,
                    "objtype": "f",
                    "acl": [[None, "EXECUTE", False]],
                },
            ]
        },
        {
            "indexes": [
                {
                    "name": "idx_checklistresponse_answers_gin",
                    "table": "checklistresponse",
                    "definition": "CREATE INDEX idx_checklistresponse_answers_gin ON "
                    "app.checklistresponse USING gin (answers)",
                    "valid": True,
                    "opclasses": ["jsonb_ops"],
                }
            ],
            "gin_table_exists": True,
        },
        {"migrations": ["0_20261126165205_init.py"]},
    ]
    return [json.dumps(s) for s in sections]


def test_provisioned_catalog_parses_into_typed_state() -> None:
    snap = Snapshot.parse(["", *provisioned_lines(), "   "])
    assert snap.major == 16
    assert snap.is_superuser and snap.passwords_readable
    runtime = snap.roles["app_runtime"]
    assert runtime.member_of == ("pg_read_all_data",)
    assert runtime.password == StoredPassword("4096:c2FsdA==", "ab" * 32)
    assert runtime.setting("hinfelaar_fastapi", "search_path") == "app, public"
    assert runtime.setting("", "statement_timeout") == "5s"
    assert runtime.setting("other", "search_path") is None
    assert snap.database is not None
    assert snap.database.owner == "app_migrator"
    assert AclEntry("app_runtime", "CONNECT") in snap.database.acl
    assert snap.schemas["public"].owner == "pg_database_owner"
    rel = snap.relation("app", "checklistresponse")
    assert rel is not None
    assert rel.acl == (AclEntry("app_runtime", "SELECT", grantable=True),)
    assert snap.relation("app", "missing") is None
    assert [(d.schema, d.objtype) for d in snap.default_acls] == [("app", "r"), (None, "f")]
    index = snap.indexes["idx_checklistresponse_answers_gin"]
    assert index.valid
    assert index.opclasses == ("jsonb_ops",)
    assert snap.gin_table_exists
    assert snap.migrations == ("0_20261126165205_init.py",)


def test_acl_entries_are_sorted_so_equal_acls_compare_equal() -> None:
    rows = [["b", "SELECT", False], ["a", "USAGE", False], ["a", "CREATE", False]]
    assert AclEntry.parse_list(rows) == AclEntry.parse_list(list(reversed(rows)))
    assert [e.grantee for e in AclEntry.parse_list(rows)] == ["a", "a", "b"]


def test_fresh_cluster_has_no_database_and_no_migrations() -> None:
    snap = Snapshot.parse(
        [json.dumps(CLUSTER), json.dumps({"roles": []}), json.dumps({"database": None})]
    )
    assert snap.database is None
    assert snap.roles == {}
    assert snap.schemas == {}
    assert snap.relations == ()
    assert snap.indexes == {}
    assert not snap.gin_table_exists
    assert snap.migrations is None
    assert not snap.passwords_readable


def test_database_without_aerich_table_has_migrations_none() -> None:
    lines = [line for line in provisioned_lines() if not line.startswith('{"migrations"')]
    assert Snapshot.parse(lines).migrations is None


def test_empty_aerich_table_is_an_empty_tuple_not_none() -> None:
    lines = [*provisioned_lines()[:-1], json.dumps({"migrations": []})]
    assert Snapshot.parse(lines).migrations == ()


def test_unreadable_pg_authid_leaves_passwords_unknown() -> None:
    lines = [line for line in provisioned_lines() if not line.startswith('{"passwords"')]
    snap = Snapshot.parse(lines)
    assert not snap.passwords_readable
    assert snap.roles["app_runtime"].password is None
    assert snap.roles["app_runtime"].has_password


@pytest.mark.parametrize(
    "lines",
    [
        pytest.param(["psql: error: connection to server failed"], id="psql-error-text"),
        pytest.param(['{"cluster": '], id="truncated-json"),
        pytest.param(["42"], id="json-not-an-object"),
        pytest.param([json.dumps(CLUSTER)], id="no-roles-section"),
        pytest.param([json.dumps({"roles": []})], id="no-cluster-section"),
        pytest.param([], id="no-output"),
    ],
)
def test_garbage_is_a_snapshot_error(lines: list[str]) -> None:
    with pytest.raises(SnapshotError):
        Snapshot.parse(lines)


@pytest.mark.parametrize(
    "lines",
    [
        pytest.param(
            [json.dumps({"cluster": {"server_version_num": 160004}, "roles": []})],
            id="cluster-missing-keys",
        ),
        pytest.param(
            [json.dumps(CLUSTER), json.dumps({"roles": [{"name": "app_runtime"}]})],
            id="role-missing-keys",
        ),
        pytest.param([json.dumps(CLUSTER), json.dumps({"roles": 7})], id="roles-not-a-list"),
    ],
)
def test_malformed_section_is_a_snapshot_error(lines: list[str]) -> None:
    with pytest.raises(SnapshotError):
        Snapshot.parse(lines)


def test_json_line_that_is_not_an_object_is_a_snapshot_error() -> None:
    with pytest.raises(SnapshotError):
        Snapshot.parse(['["ab"]', *provisioned_lines()])
