"""The object-kind registry: every entry's query exists, names its section, and is in the one
snapshot script; generic kinds' rows parse into ObjectState and reach the access model."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from pgprov.access.privileges import Grant, Ownership, current_grants, undeclared_owners
from pgprov.catalog.facts import inspect_script
from pgprov.catalog.kinds import GENERIC, KINDS
from pgprov.catalog.state import Snapshot
from pgprov.model.spec import PUBLIC, build_spec

REPO = Path(__file__).resolve().parents[2]
SPEC = build_spec(
    {
        "pg_environment": "staging",
        "pg_profile": "split",
        "pg_migrator_password": "env:M",
        "pg_runtime_password": "env:R",
    },
    inventory="inv.py",
    host="h",
)


def test_every_kind_has_its_query_and_the_snapshot_runs_it() -> None:
    script = inspect_script(SPEC)
    assert len({k.section for k in KINDS}) == len(KINDS)
    for kind in KINDS:
        text = (REPO / "sql_templates" / kind.template).read_text()
        assert f"pg_catalog.json_build_object('{kind.section}'" in text, kind
        assert f"pg_catalog.json_build_object('{kind.section}'" in script, kind


def snapshot_with(section: str, rows: list[dict]) -> Snapshot:
    lines = [
        {"cluster": {"server_version_num": 150000, "in_recovery": False,
                     "current_user": "postgres", "is_superuser": True,
                     "can_create_role": True, "password_encryption": "scram-sha-256"}},
        {"roles": []},
        {"database": {"name": SPEC.database, "owner": SPEC.owner, "acl": []}},
        {section: rows},
    ]  # fmt: skip
    return Snapshot.parse(json.dumps(line) for line in lines)


def test_a_generic_kinds_rows_reach_grants_and_owners() -> None:
    [kind] = [k for k in GENERIC if k.section == "types"]
    snap = snapshot_with(
        kind.section,
        [
            {"schema": "app", "name": "mood", "keyword": "TYPE", "owner": "stranger",
             "acl": [[None, "USAGE", False], ["stranger", "USAGE", False]]},
            {"schema": "app", "name": "pos", "keyword": "DOMAIN", "owner": SPEC.owner,
             "acl": [[None, "USAGE", False], ["app_runtime", "USAGE", True]]},
        ],
    )  # fmt: skip
    assert [o.kind for o in snap.objects] == ["types", "types"]
    grants = {g for g in current_grants(SPEC, snap) if g.object_type in ("TYPE", "DOMAIN")}
    # The owner's own USAGE is not judged; PUBLIC's built-in USAGE is left as it is.
    assert grants == {Grant("DOMAIN", "app", "pos", "USAGE", "app_runtime", grantable=True)}
    assert not any(g.grantee == PUBLIC for g in grants)
    assert Ownership("TYPE", "app", "mood", "stranger") in undeclared_owners(SPEC, snap)
    assert all(o.name != "pos" for o in undeclared_owners(SPEC, snap))


def test_the_wheel_carries_every_template_the_registry_names() -> None:
    """A kind's query lives in sql_templates/kinds/: the wheel's package data must say so, or
    an installed pgprov cannot render its snapshot."""
    import fnmatch
    import tomllib

    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["pgprov.sql_templates"]
    root = REPO / "sql_templates"
    for path in root.rglob("*.sql.j2"):
        relative = path.relative_to(root).as_posix()
        assert any(
            fnmatch.fnmatch(relative, p) and relative.count("/") == p.count("/") for p in patterns
        ), relative


def test_system_functions_granted_since_initdb_are_revoked_but_the_privileged_roles() -> None:
    """Only what pg_init_privs does not hold reaches the snapshot; of that, a grant to the admin
    or a pg_privileged_roles role is theirs, any other (PUBLIC's too) is revoked, and only a
    superuser admin may revoke it (else one line, and the audit names it)."""
    from pgprov.steps.plan import grant_items, parameters_notice

    rows = [
        {"schema": "pg_catalog", "name": "lo_export", "keyword": "FUNCTION",
         "args": "oid, text", "owner": "postgres",
         "acl": [["app_runtime", "EXECUTE", False], ["provider_admin", "EXECUTE", False]]},
        {"schema": "pg_catalog", "name": "pg_read_file", "keyword": "FUNCTION",
         "args": "text", "owner": "postgres", "acl": [[None, "EXECUTE", False]]},
    ]  # fmt: skip
    spec = SPEC.model_copy(update={"privileged_roles": ("provider_admin",)})
    snap = snapshot_with("system_functions", rows)
    grants = {g for g in current_grants(spec, snap) if g.schema == "pg_catalog"}
    assert grants == {
        Grant("FUNCTION", "pg_catalog", "lo_export", "EXECUTE", "app_runtime", args="oid, text"),
        Grant("FUNCTION", "pg_catalog", "pg_read_file", "EXECUTE", PUBLIC, args="text"),
    }
    statements = [item.sql.strip() for item in grant_items(spec, snap)]
    assert 'REVOKE EXECUTE ON ROUTINE "pg_catalog"."lo_export"(oid, text) FROM "app_runtime";' in (
        statements
    )
    assert parameters_notice(spec, snap) is None
    managed = dataclasses.replace(snap, is_superuser=False)
    assert not any("pg_catalog" in s for s in (i.sql for i in grant_items(spec, managed)))
    notice = parameters_notice(spec, managed)
    assert notice is not None and "EXECUTE on function pg_catalog.lo_export(oid, text)" in notice
