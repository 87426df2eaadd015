"""The plan from hand-built snapshots: converged is empty; each drift yields exactly its fix.

The converged snapshots mirror what the catalog query returns after a real provisioning run
and the initial migration: ACLs as ``aclexplode`` lists them (owner entries included),
per-schema default ACLs holding only the runtime's entries, ``search_path=app, public`` as
``pg_db_role_setting`` stores it, schema public owned by ``pg_database_owner`` with
``PUBLIC USAGE``, and the runtime's rights on ``aerich`` revoked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from pgprov.access.roles import MANAGED_MARK
from pgprov.catalog.state import (
    PUBLIC,
    AclEntry,
    DatabaseState,
    DefaultAclState,
    RelationState,
    RoleState,
    SchemaState,
    Snapshot,
)
from pgprov.model.secrets import StoredPassword
from pgprov.model.spec import Spec, build_spec
from pgprov.sql.locks import LockPolicy, session_setup
from pgprov.steps.plan import Plan, build_plan

DB = "hinfelaar_fastapi"
MIGRATOR = "app_migrator"
RUNTIME = "app_runtime"
APP_USER = "hinfelaar_fastapi_db_user"
TABLE_ALL = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
RUNTIME_TABLE = ("SELECT", "INSERT", "UPDATE", "DELETE")
SEQUENCE_ALL = ("USAGE", "SELECT", "UPDATE")
FIXED_VERIFIER = "SCRAM-SHA-256$4096:c2FsdA==$stored:server"


# --- builders (shared with test_privileges, test_gin_plan and test_golden) ---------------------


def split_spec(**data: Any) -> Spec:
    base = {
        "pg_environment": "staging",
        "pg_profile": "split",
        "pg_migrator_password": "env:APP_MIGRATOR_PASSWORD",
        "pg_runtime_password": "env:APP_RUNTIME_PASSWORD",
    }
    return build_spec({**base, **data}, inventory="inventories/staging.py", host="db1")


def single_spec(**data: Any) -> Spec:
    base = {
        "pg_environment": "dev",
        "pg_profile": "single_user",
        "pg_createdb": True,
        "pg_app_user_password": "env:APP_DB_PASSWORD",
    }
    return build_spec({**base, **data}, inventory="inventories/dev.py", host="@local")


def acl(*entries: tuple[str, str] | tuple[str, str, bool]) -> tuple[AclEntry, ...]:
    return AclEntry.parse_list([(e[0], e[1], e[2] if len(e) == 3 else False) for e in entries])


def owner_acl(owner: str, privileges: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(owner, p) for p in privileges]


def table_owner_privileges(major: int) -> tuple[str, ...]:
    return (*TABLE_ALL, "MAINTAIN") if major >= 17 else TABLE_ALL


def verifier_of(role: str) -> StoredPassword:
    """What the snapshot reports for a role whose password is already the declared one."""
    return StoredPassword("4096:c2FsdA==", f"digest-of-{role}")


def role(name: str, **changes: Any) -> RoleState:
    base = RoleState(
        name=name,
        has_password=True,
        settings={DB: ("search_path=app, public",)},
        password=verifier_of(name),
        comment=MANAGED_MARK,
    )
    return dataclasses.replace(base, **changes)


def public_schema(major: int) -> SchemaState:
    if major >= 15:
        owner = "pg_database_owner"
        entries = [(owner, "USAGE"), (owner, "CREATE"), (PUBLIC, "USAGE")]
    else:  # owned by the bootstrap superuser; our run revoked PUBLIC CREATE
        owner = "postgres"
        entries = [(owner, "USAGE"), (owner, "CREATE"), (PUBLIC, "USAGE")]
    return SchemaState("public", owner, acl(*entries))


def base_snapshot(major: int, roles: dict[str, RoleState], **fields: Any) -> Snapshot:
    return Snapshot(
        server_version_num=major * 10000 + 4,
        in_recovery=False,
        current_user="postgres",
        is_superuser=True,
        can_create_role=True,
        passwords_readable=True,
        roles=roles,
        **fields,
    )


def fresh_snapshot(major: int = 16) -> Snapshot:
    """A cluster where nothing of the environment exists yet."""
    return base_snapshot(major, {}, database=None)


def converged_split(major: int = 16) -> Snapshot:
    owner_table = table_owner_privileges(major)
    relations = (
        RelationState("app", "aerich", "table", MIGRATOR, acl(*owner_acl(MIGRATOR, owner_table))),
        # The bookkeeping table's id sequence: the runtime holds nothing on it either.
        RelationState(
            "app",
            "aerich_id_seq",
            "sequence",
            MIGRATOR,
            acl(*owner_acl(MIGRATOR, SEQUENCE_ALL)),
            owned_by="aerich",
        ),
        RelationState(
            "app",
            "checklistresponse",
            "table",
            MIGRATOR,
            acl(*owner_acl(MIGRATOR, owner_table), *owner_acl(RUNTIME, RUNTIME_TABLE)),
        ),
        RelationState(
            "app",
            "checklistresponse_id_seq",
            "sequence",
            MIGRATOR,
            acl(*owner_acl(MIGRATOR, SEQUENCE_ALL), *owner_acl(RUNTIME, SEQUENCE_ALL)),
            owned_by="checklistresponse",
        ),
    )
    return base_snapshot(
        major,
        {MIGRATOR: role(MIGRATOR), RUNTIME: role(RUNTIME)},
        database=DatabaseState(
            DB,
            MIGRATOR,
            acl(*owner_acl(MIGRATOR, ("CREATE", "TEMPORARY", "CONNECT")), (RUNTIME, "CONNECT")),
        ),
        schemas={
            "app": SchemaState(
                "app", MIGRATOR, acl((MIGRATOR, "USAGE"), (MIGRATOR, "CREATE"), (RUNTIME, "USAGE"))
            ),
            "public": public_schema(major),
        },
        relations=relations,
        default_acls=(
            # Functions the migrator creates later are not executable by PUBLIC.
            DefaultAclState(MIGRATOR, None, "f", acl((MIGRATOR, "EXECUTE"))),
            DefaultAclState(MIGRATOR, "app", "S", acl(*owner_acl(RUNTIME, SEQUENCE_ALL))),
            DefaultAclState(MIGRATOR, "app", "r", acl(*owner_acl(RUNTIME, RUNTIME_TABLE))),
        ),
        gin_table_exists=True,
        migrations=("0_20261126165205_init.py",),
    )


def converged_single(major: int = 16) -> Snapshot:
    owner_table = table_owner_privileges(major)
    return base_snapshot(
        major,
        {APP_USER: role(APP_USER, createdb=True)},
        database=DatabaseState(
            DB, APP_USER, acl(*owner_acl(APP_USER, ("CREATE", "TEMPORARY", "CONNECT")))
        ),
        schemas={
            "app": SchemaState("app", APP_USER, acl((APP_USER, "USAGE"), (APP_USER, "CREATE"))),
            "public": public_schema(major),
        },
        relations=(
            RelationState(
                "app",
                "checklistresponse",
                "table",
                APP_USER,
                acl(*owner_acl(APP_USER, owner_table)),
            ),
            RelationState(
                "app",
                "checklistresponse_id_seq",
                "sequence",
                APP_USER,
                acl(*owner_acl(APP_USER, SEQUENCE_ALL)),
            ),
        ),
        default_acls=(DefaultAclState(APP_USER, None, "f", acl((APP_USER, "EXECUTE"))),),
        gin_table_exists=True,
        migrations=("0_20261126165205_init.py",),
    )


def plan_for(spec: Spec, snap: Snapshot) -> Plan:
    return build_plan(
        spec,
        snap,
        LockPolicy.of(spec),
        verifier_for=lambda name: FIXED_VERIFIER,
        password_matches=lambda name, stored: stored == verifier_of(name),
    )


def with_relation(snap: Snapshot, name: str, **changes: Any) -> Snapshot:
    relations = tuple(
        dataclasses.replace(r, **changes) if r.name == name else r for r in snap.relations
    )
    return dataclasses.replace(snap, relations=relations)


def with_role(snap: Snapshot, name: str, **changes: Any) -> Snapshot:
    roles = dict(snap.roles)
    roles[name] = dataclasses.replace(roles[name], **changes)
    return dataclasses.replace(snap, roles=roles)


def with_schema(snap: Snapshot, name: str, **changes: Any) -> Snapshot:
    schemas = dict(snap.schemas)
    schemas[name] = dataclasses.replace(schemas[name], **changes)
    return dataclasses.replace(snap, schemas=schemas)


def items_of(plan: Plan) -> list[tuple[str, str]]:
    return [(item.description, item.sql.strip()) for item in plan.items]


# --- converged ---------------------------------------------------------------------------------


@pytest.mark.parametrize("major", [14, 15, 16, 17, 18])
def test_converged_split_environment_has_an_empty_plan(major: int) -> None:
    plan = plan_for(split_spec(), converged_split(major))
    assert items_of(plan) == []
    assert plan.empty
    assert plan.script() == ""


@pytest.mark.parametrize("major", [15, 18])
def test_converged_single_user_environment_has_an_empty_plan(major: int) -> None:
    plan = plan_for(single_spec(), converged_single(major))
    assert items_of(plan) == []


# --- drift: exactly the fix, nothing else -------------------------------------------------------

TABLE = '"app"."checklistresponse"'


def _table_acl(*runtime: tuple[str, ...] | str, grantable: bool = False) -> tuple[AclEntry, ...]:
    privileges = [p for group in runtime for p in ((group,) if isinstance(group, str) else group)]
    return acl(*owner_acl(MIGRATOR, TABLE_ALL), *[(RUNTIME, p, grantable) for p in privileges])


SPLIT_DRIFTS: list[Any] = [
    pytest.param(
        lambda s: with_relation(s, "checklistresponse", acl=_table_acl(RUNTIME_TABLE, "TRUNCATE")),
        [
            (
                "revoke TRUNCATE on table app.checklistresponse for role app_runtime",
                f'REVOKE TRUNCATE ON TABLE {TABLE} FROM "app_runtime";',
            )
        ],
        id="extra-truncate",
    ),
    pytest.param(
        lambda s: with_relation(s, "checklistresponse", acl=_table_acl(TABLE_ALL)),
        [
            (
                "revoke TRUNCATE, REFERENCES, TRIGGER on table app.checklistresponse "
                "for role app_runtime",
                f'REVOKE TRUNCATE, REFERENCES, TRIGGER ON TABLE {TABLE} FROM "app_runtime";',
            )
        ],
        id="all-on-a-table",
    ),
    pytest.param(
        lambda s: with_relation(s, "checklistresponse", acl=_table_acl(("SELECT", "INSERT"))),
        [
            (
                "grant UPDATE, DELETE on table app.checklistresponse for role app_runtime",
                f'GRANT UPDATE, DELETE ON TABLE {TABLE} TO "app_runtime";',
            )
        ],
        id="missing-table-privileges",
    ),
    pytest.param(
        lambda s: with_relation(
            s,
            "checklistresponse",
            acl=(
                *_table_acl(("INSERT", "UPDATE", "DELETE")),
                AclEntry(RUNTIME, "SELECT", grantable=True),
            ),
        ),
        [
            (
                "revoke SELECT WITH GRANT OPTION on table app.checklistresponse "
                "for role app_runtime",
                f'REVOKE SELECT ON TABLE {TABLE} FROM "app_runtime" CASCADE;',
            ),
            (
                "grant SELECT on table app.checklistresponse for role app_runtime",
                f'GRANT SELECT ON TABLE {TABLE} TO "app_runtime";',
            ),
        ],
        id="with-grant-option",
    ),
    pytest.param(
        lambda s: with_relation(
            s,
            "aerich",
            acl=acl(*owner_acl(MIGRATOR, TABLE_ALL), *owner_acl(RUNTIME, RUNTIME_TABLE)),
        ),
        [
            (
                "revoke SELECT, INSERT, UPDATE, DELETE on table app.aerich for role app_runtime",
                'REVOKE SELECT, INSERT, UPDATE, DELETE ON TABLE "app"."aerich" FROM "app_runtime";',
            )
        ],
        id="runtime-on-aerich",
    ),
    pytest.param(
        lambda s: with_relation(
            s, "checklistresponse", acl=(*_table_acl(RUNTIME_TABLE), AclEntry(PUBLIC, "SELECT"))
        ),
        [
            (
                "PUBLIC loses SELECT on table app.checklistresponse",
                f"REVOKE SELECT ON TABLE {TABLE} FROM PUBLIC;",
            )
        ],
        id="public-select-on-app-table",
    ),
    pytest.param(
        lambda s: with_role(s, RUNTIME, superuser=True),
        [("set NOSUPERUSER on role app_runtime", 'ALTER ROLE "app_runtime" NOSUPERUSER;')],
        id="superuser",
    ),
    pytest.param(
        lambda s: with_role(s, MIGRATOR, createrole=True, bypassrls=True, login=False),
        [
            (
                "set NOCREATEROLE, NOBYPASSRLS, LOGIN on role app_migrator",
                'ALTER ROLE "app_migrator" NOCREATEROLE NOBYPASSRLS LOGIN;',
            )
        ],
        id="attributes-both-ways",
    ),
    pytest.param(
        lambda s: with_role(s, RUNTIME, member_of=("pg_read_all_data",)),
        [
            (
                "revoke undeclared membership of role app_runtime in pg_read_all_data",
                'REVOKE "pg_read_all_data" FROM "app_runtime";',
            )
        ],
        id="extra-membership",
    ),
    pytest.param(
        lambda s: dataclasses.replace(
            s,
            database=dataclasses.replace(
                s.database, owner="postgres", acl=acl((RUNTIME, "CONNECT"))
            ),
        ),
        [
            (
                f"change the owner of database {DB} from postgres to app_migrator",
                f'ALTER DATABASE "{DB}" OWNER TO "app_migrator";',
            )
        ],
        id="database-owner",
    ),
    pytest.param(
        lambda s: with_schema(
            s, "app", owner="postgres", acl=acl(("postgres", "USAGE"), (RUNTIME, "USAGE"))
        ),
        [
            (
                "change the owner of schema app from postgres to app_migrator",
                'ALTER SCHEMA "app" OWNER TO "app_migrator";',
            )
        ],
        id="schema-owner",
    ),
    pytest.param(
        lambda s: with_relation(
            s, "checklistresponse", owner=RUNTIME, acl=acl(*owner_acl(RUNTIME, TABLE_ALL))
        ),
        [
            (
                "change the owner of table app.checklistresponse from app_runtime to app_migrator",
                f'ALTER TABLE {TABLE} OWNER TO "app_migrator";',
            ),
            (
                "grant SELECT, INSERT, UPDATE, DELETE on table app.checklistresponse "
                "for role app_runtime",
                f'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE {TABLE} TO "app_runtime";',
            ),
        ],
        id="table-owned-by-runtime",
    ),
    pytest.param(
        lambda s: dataclasses.replace(
            s,
            default_acls=(
                *s.default_acls[:2],
                DefaultAclState(
                    MIGRATOR, "app", "r", acl(*owner_acl(RUNTIME, ("INSERT", "UPDATE", "DELETE")))
                ),
            ),
        ),
        [
            (
                "grant SELECT on future tables created by app_migrator in schema app "
                "for role app_runtime",
                'ALTER DEFAULT PRIVILEGES FOR ROLE "app_migrator" IN SCHEMA "app" '
                'GRANT SELECT ON TABLES TO "app_runtime";',
            )
        ],
        id="missing-default-privilege",
    ),
    pytest.param(
        lambda s: dataclasses.replace(
            s,
            default_acls=(
                *s.default_acls,
                DefaultAclState(
                    MIGRATOR,
                    None,
                    "r",
                    acl(*owner_acl(MIGRATOR, TABLE_ALL), (RUNTIME, "TRUNCATE")),
                ),
            ),
        ),
        [
            (
                "revoke TRUNCATE on future tables created by app_migrator for role app_runtime",
                'ALTER DEFAULT PRIVILEGES FOR ROLE "app_migrator" '
                'REVOKE TRUNCATE ON TABLES FROM "app_runtime";',
            )
        ],
        id="global-default-privilege",
    ),
    pytest.param(
        lambda s: with_schema(
            s, "public", acl=(*s.schemas["public"].acl, AclEntry(RUNTIME, "CREATE"))
        ),
        [
            (
                "revoke CREATE on schema public for role app_runtime",
                'REVOKE CREATE ON SCHEMA "public" FROM "app_runtime";',
            )
        ],
        id="create-on-public-to-runtime",
    ),
    pytest.param(
        lambda s: with_schema(
            s, "public", acl=(*s.schemas["public"].acl, AclEntry(PUBLIC, "CREATE"))
        ),
        [
            (
                "PUBLIC loses CREATE on schema public",
                'REVOKE CREATE ON SCHEMA "public" FROM PUBLIC;',
            )
        ],
        id="public-create-on-public",
    ),
    pytest.param(
        lambda s: dataclasses.replace(
            s,
            database=dataclasses.replace(
                s.database, acl=(*s.database.acl, AclEntry(PUBLIC, "CONNECT"))
            ),
        ),
        [
            (
                f"PUBLIC loses CONNECT on database {DB}",
                f'REVOKE CONNECT ON DATABASE "{DB}" FROM PUBLIC;',
            )
        ],
        id="public-connect",
    ),
    pytest.param(
        lambda s: dataclasses.replace(
            s,
            relations=(
                *s.relations,
                RelationState(
                    "public",
                    "secrets",
                    "table",
                    "postgres",
                    acl(*owner_acl("postgres", TABLE_ALL), (RUNTIME, "SELECT")),
                ),
            ),
        ),
        [
            (
                "revoke SELECT on table public.secrets for role app_runtime",
                'REVOKE SELECT ON TABLE "public"."secrets" FROM "app_runtime";',
            )
        ],
        id="runtime-grant-outside-the-schema",
    ),
    pytest.param(
        lambda s: with_role(s, RUNTIME, settings={DB: ("search_path=public",)}),
        [
            (
                f"set search_path of role app_runtime in database {DB} to app, public (was public)",
                f'ALTER ROLE "app_runtime" IN DATABASE "{DB}" SET "search_path" TO '
                "'app', 'public';",
            )
        ],
        id="search-path",
    ),
    pytest.param(
        lambda s: with_role(s, MIGRATOR, settings={"": ("search_path=app, public",)}),
        [
            (
                f"set search_path of role app_migrator in database {DB} to app, public",
                f'ALTER ROLE "app_migrator" IN DATABASE "{DB}" SET "search_path" TO '
                "'app', 'public';",
            ),
            (
                "reset undeclared search_path of role app_migrator in all databases "
                "(was app, public)",
                'ALTER ROLE "app_migrator" RESET "search_path";',
            ),
        ],
        id="search-path-only-cluster-wide",
    ),
]


@pytest.mark.parametrize(("drift", "expected"), SPLIT_DRIFTS)
def test_drift_yields_exactly_its_fix(
    drift: Callable[[Snapshot], Snapshot], expected: list[tuple[str, str]]
) -> None:
    assert items_of(plan_for(split_spec(), drift(converged_split()))) == expected


def test_quoted_search_path_as_stored_by_postgres_counts_as_converged() -> None:
    snap = with_role(converged_split(), RUNTIME, settings={DB: ('search_path="app", public',)})
    assert plan_for(split_spec(), snap).empty


def test_usage_on_schema_public_is_given_back_to_public() -> None:
    snap = with_schema(
        converged_split(),
        "public",
        acl=acl(("pg_database_owner", "USAGE"), ("pg_database_owner", "CREATE")),
    )
    [(_, sql)] = items_of(plan_for(split_spec(), snap))
    assert sql == 'GRANT USAGE ON SCHEMA "public" TO PUBLIC;'


def test_grant_to_public_is_described_as_a_grant() -> None:
    snap = with_schema(
        converged_split(),
        "public",
        acl=acl(("pg_database_owner", "USAGE"), ("pg_database_owner", "CREATE")),
    )
    [(description, _)] = items_of(plan_for(split_spec(), snap))
    assert description == "PUBLIC gets USAGE on schema public"


def test_grants_to_roles_nobody_declared_are_revoked() -> None:
    snap = with_relation(
        converged_split(),
        "checklistresponse",
        acl=(*_table_acl(RUNTIME_TABLE), AclEntry("reporting", "SELECT")),
    )
    assert items_of(plan_for(split_spec(), snap)) == [
        (
            "revoke SELECT on table app.checklistresponse for role reporting",
            f'REVOKE SELECT ON TABLE {TABLE} FROM "reporting";',
        )
    ]


def test_runtime_can_create_adds_create_on_the_schema() -> None:
    plan = plan_for(split_spec(pg_runtime_can_create=True), converged_split())
    assert items_of(plan) == [
        (
            "grant CREATE on schema app for role app_runtime",
            'GRANT CREATE ON SCHEMA "app" TO "app_runtime";',
        )
    ]


def test_create_on_the_schema_is_revoked_when_not_declared() -> None:
    snap = with_schema(
        converged_split(),
        "app",
        acl=(*converged_split().schemas["app"].acl, AclEntry(RUNTIME, "CREATE")),
    )
    assert items_of(plan_for(split_spec(), snap)) == [
        (
            "revoke CREATE on schema app for role app_runtime",
            'REVOKE CREATE ON SCHEMA "app" FROM "app_runtime";',
        )
    ]


def test_new_table_gets_runtime_privileges() -> None:
    snap = converged_split()
    snap = dataclasses.replace(
        snap,
        relations=(
            *snap.relations,
            RelationState("app", "rating", "table", MIGRATOR, acl(*owner_acl(MIGRATOR, TABLE_ALL))),
        ),
    )
    assert [sql for _, sql in items_of(plan_for(split_spec(), snap))] == [
        'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE "app"."rating" TO "app_runtime";'
    ]


def test_runtime_gets_nothing_on_the_bookkeeping_sequence() -> None:
    # What the default privileges leave behind when Aerich creates its table.
    snap = with_relation(
        converged_split(),
        "aerich_id_seq",
        acl=acl(*owner_acl(MIGRATOR, SEQUENCE_ALL), *owner_acl(RUNTIME, SEQUENCE_ALL)),
    )
    plan = plan_for(split_spec(), snap)
    assert [sql for _, sql in items_of(plan)] == [
        'REVOKE USAGE, SELECT, UPDATE ON SEQUENCE "app"."aerich_id_seq" FROM "app_runtime";'
    ]


def test_single_user_createdb_is_aligned_both_ways() -> None:
    snap = with_role(converged_single(), APP_USER, createdb=False)
    assert items_of(plan_for(single_spec(), snap)) == [
        (f"set CREATEDB on role {APP_USER}", f'ALTER ROLE "{APP_USER}" CREATEDB;')
    ]
    assert items_of(plan_for(single_spec(pg_createdb=False), converged_single())) == [
        (f"set NOCREATEDB on role {APP_USER}", f'ALTER ROLE "{APP_USER}" NOCREATEDB;')
    ]


def test_single_user_revokes_privileges_granted_to_public_in_the_schema() -> None:
    snap = with_relation(
        converged_single(),
        "checklistresponse",
        acl=(*converged_single().relations[0].acl, AclEntry(PUBLIC, "SELECT")),
    )
    assert items_of(plan_for(single_spec(), snap)) == [
        (
            "PUBLIC loses SELECT on table app.checklistresponse",
            f"REVOKE SELECT ON TABLE {TABLE} FROM PUBLIC;",
        )
    ]


def test_pg14_fresh_database_loses_public_create_on_schema_public() -> None:
    sql = plan_for(split_spec(), fresh_snapshot(14)).script()
    assert 'REVOKE CREATE ON SCHEMA "public" FROM PUBLIC;' in sql
    assert (
        'REVOKE CREATE ON SCHEMA "public"'
        not in plan_for(split_spec(), fresh_snapshot(15)).script()
    )


def test_existing_roles_without_database_get_only_the_database_work() -> None:
    snap = dataclasses.replace(
        converged_split(), database=None, schemas={}, relations=(), default_acls=()
    )
    plan = plan_for(split_spec(), snap)
    assert plan.roles == []
    assert [i.description for i in plan.create_database] == [
        f"create database {DB} owned by app_migrator"
    ]
    # No roles transaction: after the session setup, the locked check-and-create.
    script = plan.script().removeprefix(session_setup())
    assert script.startswith(
        "SELECT pg_catalog.pg_advisory_lock(1885827186) \\g /dev/null\nSELECT 'CREATE DATABASE"
    )


# --- passwords -----------------------------------------------------------------------------------


def password_items(plan: Plan) -> list[tuple[str, str]]:
    return [(d, s) for d, s in items_of(plan) if "password" in d]


def test_readable_matching_verifier_needs_no_password_item() -> None:
    assert password_items(plan_for(split_spec(), converged_split())) == []


def test_readable_mismatching_verifier_sets_the_password_once() -> None:
    snap = with_role(converged_split(), RUNTIME, password=StoredPassword("4096:b2xk", "old"))
    plan = plan_for(split_spec(), snap)
    assert items_of(plan) == [
        (
            "set the password of role app_runtime (SCRAM-SHA-256 verifier)",
            unlogged(f"ALTER ROLE \"app_runtime\" PASSWORD '{FIXED_VERIFIER}';"),
        )
    ]
    assert plan.items[0].display.strip() == unlogged(
        "ALTER ROLE \"app_runtime\" PASSWORD '<redacted>';"
    )
    assert FIXED_VERIFIER not in plan.script(mask=True)


def unlogged(statement: str) -> str:
    """``statement`` between the settings that keep it out of the server log (superuser)."""
    return (
        "SET log_statement = 'none'; SET log_min_duration_statement = -1; "
        "SET log_min_duration_sample = -1; SET log_min_error_statement = 'panic'; "
        "SET log_error_verbosity = 'terse'; SET log_transaction_sample_rate = 0; "
        "SET pg_stat_statements.track = 'none'; SET pgaudit.log = 'none'; "
        "SET pgaudit.role = ''; SET auto_explain.log_min_duration = -1;\n"
        f"{statement}\n"
        "RESET auto_explain.log_min_duration; RESET pgaudit.role; RESET pgaudit.log; "
        "RESET pg_stat_statements.track; RESET log_transaction_sample_rate; "
        "RESET log_error_verbosity; "
        "RESET log_min_error_statement; RESET log_min_duration_sample; "
        "RESET log_min_duration_statement; RESET log_statement;"
    )


def test_a_non_superuser_admin_sends_the_password_without_log_settings() -> None:
    """It cannot set them (managed services): the README says what the provider may log."""
    snap = with_role(converged_split(), RUNTIME, password=StoredPassword("4096:b2xk", "old"))
    snap = dataclasses.replace(snap, is_superuser=False)
    plan = plan_for(split_spec(), snap)
    passwords = [sql for description, sql in items_of(plan) if "password" in description]
    assert passwords == [f"ALTER ROLE \"app_runtime\" PASSWORD '{FIXED_VERIFIER}';"]
    assert "log_transaction_sample_rate" not in plan.script()


def test_a_superuser_admin_keeps_the_roles_transaction_out_of_log_sampling() -> None:
    snap = with_role(converged_split(), RUNTIME, password=StoredPassword("4096:b2xk", "old"))
    script = plan_for(split_spec(), snap).script()
    # Sampling is decided at BEGIN: it is off before the roles transaction starts.
    assert script.index("SET log_transaction_sample_rate = 0;\nBEGIN;") < script.index("BEGIN;")
    assert "COMMIT;\nRESET log_transaction_sample_rate;\n" in script


def _unreadable(snap: Snapshot, *, has_password: bool) -> Snapshot:
    roles = {
        name: dataclasses.replace(r, password=None, has_password=has_password)
        for name, r in snap.roles.items()
    }
    return dataclasses.replace(snap, passwords_readable=False, roles=roles)


def test_unreadable_on_create_with_a_password_leaves_it_alone() -> None:
    snap = _unreadable(converged_split(), has_password=True)
    assert plan_for(split_spec(), snap).empty


def test_unreadable_on_create_without_a_password_sets_one() -> None:
    snap = _unreadable(converged_split(), has_password=False)
    assert [d for d, _ in password_items(plan_for(split_spec(), snap))] == [
        "set the password of role app_migrator (SCRAM-SHA-256 verifier)",
        "set the password of role app_runtime (SCRAM-SHA-256 verifier)",
    ]


def test_unreadable_always_sets_each_password_once() -> None:
    snap = _unreadable(converged_split(), has_password=True)
    plan = plan_for(split_spec(pg_password_update="always"), snap)
    assert [sql for _, sql in items_of(plan)] == [
        unlogged(f"ALTER ROLE \"{name}\" PASSWORD '{FIXED_VERIFIER}';")
        for name in (MIGRATOR, RUNTIME)
    ]


def test_new_role_is_created_with_its_verifier_and_no_separate_password_item() -> None:
    snap = dataclasses.replace(converged_split(), roles={MIGRATOR: role(MIGRATOR)})
    plan = plan_for(split_spec(), snap)
    assert [i.description for i in plan.roles] == [
        "create role app_runtime (LOGIN, INHERIT) with a SCRAM-SHA-256 password"
    ]
    assert f"PASSWORD '{FIXED_VERIFIER}'" in plan.roles[0].sql
    assert "PASSWORD '<redacted>'" in plan.roles[0].display


def test_a_plan_and_its_items_never_show_a_verifier_in_their_repr() -> None:
    plan = plan_for(split_spec(), fresh_snapshot())
    assert FIXED_VERIFIER in plan.script()
    assert FIXED_VERIFIER not in repr(plan)
    assert FIXED_VERIFIER not in repr(plan.items)
