"""The provisioning deploy on real PostgreSQL: declared state, idempotence, dry runs, drift repair,
and what the roles can and cannot do afterwards; both profiles.

Read-only checks share one deployed environment per profile (module fixtures); tests that
change the catalog get an environment of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from pgprov.catalog.state import PUBLIC, AclEntry, Snapshot
from pgprov.model.secrets import stored_password_matches
from psycopg import errors

from tests.deploykit import DeployEnv as DeployEnv
from tests.deploykit import env_data, login, run_api, run_cli, snapshot
from tests.e2e.helpers import (
    APP_TABLES,
    BOOKKEEPING,
    MIGRATIONS,
    SCHEMA,
    SEQUENCE_PRIVILEGES,
    TABLE_PRIVILEGES,
    app_relations,
    combined,
    default_privileges,
    grantees,
    prefixed_objects,
    privileges,
    provisioned,
    superuser_sql,
)
from tests.pgserver import Names, Server, drop_prefixed

NO_CHANGES = {"provision": False, "migrate": False, "gin_index": False}
NO_COMMANDS = {"provision": 0, "migrate": 0, "gin_index": 0}
SEARCH_PATH = "app, public"


@dataclass
class Deployed:
    env: DeployEnv
    names: Names
    snap: Snapshot


@pytest.fixture(scope="module")
def split(pg_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    with provisioned(pg_server, tmp_path_factory.mktemp("split")) as (env, names):
        yield Deployed(env, names, snapshot(pg_server, env))


@pytest.fixture(scope="module")
def single(pg_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    with provisioned(pg_server, tmp_path_factory.mktemp("single"), profile="single_user") as (
        env,
        names,
    ):
        yield Deployed(env, names, snapshot(pg_server, env))


def connect_as(server: Server, deployed: Deployed, which: str) -> psycopg.Connection:
    role = {
        "migrator": deployed.names.migrator,
        "runtime": deployed.names.runtime,
        "app_user": deployed.names.app_user,
    }[which]
    return login(
        server, role, deployed.env.passwords[which], deployed.names.database, autocommit=True
    )


# --- 1. a first run creates the declared state: split -------------------------------------


@pytest.mark.parametrize("which", ["migrator", "runtime"])
def test_split_roles_are_plain_login_roles_with_scram_passwords(split: Deployed, which: str):
    role = split.snap.roles[getattr(split.names, which)]
    assert role.login and role.inherit
    assert not (
        role.superuser or role.createdb or role.createrole or role.replication or role.bypassrls
    ), role
    assert role.member_of == ()
    assert role.password is not None and role.password.scram is not None
    assert role.password.scram.startswith("4096:")
    assert stored_password_matches(
        split.env.passwords[which], role.password, split.snap.password_key
    )


def test_split_migrator_owns_database_schema_and_every_app_relation(split: Deployed):
    migrator = split.names.migrator
    assert split.snap.database is not None and split.snap.database.owner == migrator
    assert split.snap.schemas[SCHEMA].owner == migrator
    owners = {r.name: r.owner for r in split.snap.relations if r.schema == SCHEMA}
    assert owners and set(owners.values()) == {migrator}, owners


def test_split_database_grants_only_connect_to_runtime_and_nothing_to_public(split: Deployed):
    database = split.snap.database
    assert database is not None
    assert grantees(database, besides=split.names.migrator) == {split.names.runtime}
    assert privileges(database, split.names.runtime) == {"CONNECT"}
    assert privileges(database, PUBLIC) == set(), "PUBLIC keeps CONNECT/TEMPORARY"


def test_split_runtime_has_only_usage_on_schema_app(split: Deployed):
    schema = split.snap.schemas[SCHEMA]
    assert grantees(schema, besides=split.names.migrator) == {split.names.runtime}
    assert privileges(schema, split.names.runtime) == {"USAGE"}


def test_split_schema_public_grants_nothing_beyond_public_usage(split: Deployed):
    public = split.snap.schemas["public"]
    assert privileges(public, PUBLIC) == {"USAGE"}
    assert privileges(public, split.names.runtime) == set()
    assert privileges(public, split.names.migrator) == set()


def test_split_default_privileges_make_future_tables_and_sequences_usable_by_runtime(
    split: Deployed,
):
    migrator, runtime = split.names.migrator, split.names.runtime
    assert default_privileges(split.snap, migrator, "r", runtime) == TABLE_PRIVILEGES
    assert default_privileges(split.snap, migrator, "S", runtime) == SEQUENCE_PRIVILEGES
    declared = {(d.role, d.schema, d.objtype) for d in split.snap.default_acls}
    # The global entry only takes PUBLIC's built-in EXECUTE on future functions away.
    assert declared == {(migrator, SCHEMA, "r"), (migrator, SCHEMA, "S"), (migrator, None, "f")}


@pytest.mark.parametrize("which", ["migrator", "runtime"])
def test_split_search_path_is_app_public_in_the_database_only(
    pg_server: Server, split: Deployed, which: str
):
    role = split.snap.roles[getattr(split.names, which)]
    assert role.setting(split.names.database, "search_path") == SEARCH_PATH
    assert set(role.settings) == {split.names.database}, "a setting leaked outside the database"
    with connect_as(pg_server, split, which) as conn:
        assert conn.execute("SHOW search_path").fetchone() == (SEARCH_PATH,)


def test_split_migrations_created_every_model_table_and_recorded_each_version(split: Deployed):
    tables = app_relations(split.snap, "table")
    assert set(tables) == {*APP_TABLES, BOOKKEEPING}
    assert split.snap.migrations == MIGRATIONS


def test_split_runtime_has_exactly_dml_on_every_app_table(split: Deployed):
    tables = app_relations(split.snap, "table")
    held = {name: privileges(rel, split.names.runtime) for name, rel in tables.items()}
    assert {name: held[name] for name in APP_TABLES} == dict.fromkeys(APP_TABLES, TABLE_PRIVILEGES)


def test_split_runtime_has_usage_select_update_on_every_app_sequence(split: Deployed):
    sequences = app_relations(split.snap, "sequence")
    wanted = {f"{table}_id_seq" for table in APP_TABLES}
    assert wanted <= set(sequences)
    held = {name: privileges(sequences[name], split.names.runtime) for name in wanted}
    assert held == dict.fromkeys(wanted, SEQUENCE_PRIVILEGES)


def test_split_runtime_has_nothing_on_the_aerich_table(pg_server: Server, split: Deployed):
    aerich = split.snap.relation(SCHEMA, BOOKKEEPING)
    assert aerich is not None
    assert privileges(aerich, split.names.runtime) == set()
    with (
        connect_as(pg_server, split, "runtime") as conn,
        pytest.raises(errors.InsufficientPrivilege),
    ):
        conn.execute("SELECT version FROM app.aerich")


def test_split_runtime_has_nothing_on_the_aerich_id_sequence(split: Deployed):
    # The bookkeeping table's serial sequence is bookkeeping too: with USAGE/UPDATE the
    # runtime could setval() it and make the next migration's INSERT into aerich collide.
    sequence = split.snap.relation(SCHEMA, f"{BOOKKEEPING}_id_seq")
    assert sequence is not None
    assert privileges(sequence, split.names.runtime) == set()


# --- 1. a first run creates the declared state: single_user -------------------------------


def test_single_user_role_is_a_plain_login_role_without_createdb_by_default(single: Deployed):
    role = single.snap.roles[single.names.app_user]
    assert role.login and role.inherit
    assert not (
        role.superuser or role.createdb or role.createrole or role.replication or role.bypassrls
    ), role
    assert role.member_of == ()
    assert stored_password_matches(
        single.env.passwords["app_user"], role.password, single.snap.password_key
    )


def test_single_user_creates_only_its_role_and_database(pg_server: Server, single: Deployed):
    names = single.names
    assert prefixed_objects(pg_server, names.prefix) == sorted([names.app_user, names.database])


def test_single_user_owns_database_schema_and_every_app_relation(single: Deployed):
    user = single.names.app_user
    assert single.snap.database is not None and single.snap.database.owner == user
    assert single.snap.schemas[SCHEMA].owner == user
    owners = {r.name: r.owner for r in single.snap.relations if r.schema == SCHEMA}
    assert set(owners) >= {*APP_TABLES, BOOKKEEPING}
    assert set(owners.values()) == {user}, owners


def test_single_user_grants_nothing_to_public_or_anyone_else(single: Deployed):
    user = single.names.app_user
    database = single.snap.database
    assert database is not None
    assert grantees(database, besides=user) == set(), "PUBLIC keeps CONNECT/TEMPORARY"
    assert grantees(single.snap.schemas[SCHEMA], besides=user) == set()
    assert privileges(single.snap.schemas["public"], PUBLIC) == {"USAGE"}
    others = {r.name: grantees(r, besides=user) for r in single.snap.relations}
    assert {name: g for name, g in others.items() if g} == {}
    # One global entry: the owner's future functions are executable by the owner alone.
    assert [(d.role, d.schema, d.objtype, d.acl) for d in single.snap.default_acls] == [
        (user, None, "f", (AclEntry(user, "EXECUTE"),))
    ]


def test_single_user_search_path_is_app_public(pg_server: Server, single: Deployed):
    role = single.snap.roles[single.names.app_user]
    assert role.setting(single.names.database, "search_path") == SEARCH_PATH
    with connect_as(pg_server, single, "app_user") as conn:
        assert conn.execute("SHOW search_path").fetchone() == (SEARCH_PATH,)


def test_single_user_migrations_created_every_model_table(single: Deployed):
    assert set(app_relations(single.snap, "table")) == {*APP_TABLES, BOOKKEEPING}
    assert single.snap.migrations == MIGRATIONS


# --- 1. a second run changes nothing ------------------------------------------------------


@pytest.mark.parametrize("profile", ["split", "single_user"])
def test_second_run_reports_no_changes(
    pg_server: Server, request: pytest.FixtureRequest, profile: str
):
    deployed: Deployed = request.getfixturevalue("split" if profile == "split" else "single")
    second = run_api(deployed.env.data)
    assert second.success, second
    assert second.changed == NO_CHANGES
    assert second.commands == NO_COMMANDS
    assert snapshot(pg_server, deployed.env) == deployed.snap


# --- 2. --dry changes nothing and shows the plan ------------------------------------------


@dataclass
class DryRun:
    names: Names
    env: DeployEnv
    before: Snapshot
    after: Snapshot
    output: str
    returncode: int


@pytest.fixture(scope="module")
def fresh_dry(pg_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DryRun]:
    names = Names.new()
    directory = tmp_path_factory.mktemp("dry")
    try:
        env = env_data(pg_server, names, directory)
        before = snapshot(pg_server, env)
        proc = run_cli(directory, env.data, "--dry")
        yield DryRun(names, env, before, snapshot(pg_server, env), combined(proc), proc.returncode)
    finally:
        drop_prefixed(pg_server, names.prefix)


def test_dry_run_on_a_fresh_environment_changes_nothing(pg_server: Server, fresh_dry: DryRun):
    assert fresh_dry.returncode == 0, fresh_dry.output
    assert fresh_dry.after == fresh_dry.before
    assert fresh_dry.after.database is None and fresh_dry.after.roles == {}
    assert prefixed_objects(pg_server, fresh_dry.names.prefix) == []


def test_dry_run_shows_the_sql_and_the_pending_migrations(fresh_dry: DryRun):
    names = fresh_dry.names
    for expected in (
        f'CREATE ROLE "{names.migrator}"',
        f'CREATE ROLE "{names.runtime}"',
        f'GRANT CONNECT ON DATABASE "{names.database}" TO "{names.runtime}"',
        *MIGRATIONS,
    ):
        assert expected in fresh_dry.output, f"{expected!r} not in the plan:\n{fresh_dry.output}"


def test_dry_run_masks_passwords_and_verifiers(fresh_dry: DryRun):
    assert "PASSWORD '<redacted>'" in fresh_dry.output
    for which, password in fresh_dry.env.passwords.items():
        assert password not in fresh_dry.output, f"the {which} password is printed"
    assert "SCRAM-SHA-256$" not in fresh_dry.output, "a password verifier is printed"


def test_dry_run_on_a_drifted_environment_changes_nothing_and_shows_the_repair(
    pg_server: Server, names: Names, tmp_path: Path
):
    env = env_data(pg_server, names, tmp_path)
    assert run_api(env.data).success
    superuser_sql(pg_server, names.database, "GRANT TRUNCATE ON app.checklist TO {runtime}", names)
    superuser_sql(pg_server, "postgres", "ALTER ROLE {runtime} CREATEROLE", names)
    before = snapshot(pg_server, env)
    proc = run_cli(tmp_path, env.data, "--dry")
    output = combined(proc)
    assert proc.returncode == 0, output
    assert snapshot(pg_server, env) == before
    assert f'REVOKE TRUNCATE ON TABLE "app"."checklist" FROM "{names.runtime}"' in output
    assert f'ALTER ROLE "{names.runtime}" NOCREATEROLE' in output


# --- 3. drift is repaired by the next run -------------------------------------------------


@dataclass(frozen=True)
class Drift:
    database: bool  # run in the environment's database (else in postgres)
    statements: tuple[str, ...]
    repaired: Callable[[Snapshot, Names], bool]


def _table_privileges(snap: Snapshot, names: Names) -> bool:
    return privileges(snap.relation(SCHEMA, "checklist"), names.runtime) == TABLE_PRIVILEGES


DRIFTS = {
    "truncate_on_app_table": Drift(
        True, ("GRANT TRUNCATE ON app.checklist TO {runtime}",), _table_privileges
    ),
    "superuser_on_runtime": Drift(
        False,
        ("ALTER ROLE {runtime} SUPERUSER",),
        lambda snap, names: not snap.roles[names.runtime].superuser,
    ),
    "database_owner_changed": Drift(
        False,
        ("CREATE ROLE {other}", "ALTER DATABASE {db} OWNER TO {other}"),
        lambda snap, names: snap.database is not None and snap.database.owner == names.migrator,
    ),
    "default_privilege_dropped": Drift(
        True,
        (
            "ALTER DEFAULT PRIVILEGES FOR ROLE {migrator} IN SCHEMA app "
            "REVOKE SELECT ON TABLES FROM {runtime}",
        ),
        lambda snap, names: (
            default_privileges(snap, names.migrator, "r", names.runtime) == TABLE_PRIVILEGES
        ),
    ),
    "extra_membership": Drift(
        False,
        ("GRANT {migrator} TO {runtime}",),
        lambda snap, names: snap.roles[names.runtime].member_of == (),
    ),
    "all_on_app_table": Drift(
        True, ("GRANT ALL ON TABLE app.checklist TO {runtime}",), _table_privileges
    ),
    "create_on_schema_public": Drift(
        True,
        ("GRANT CREATE ON SCHEMA public TO {runtime}",),
        lambda snap, names: privileges(snap.schemas["public"], names.runtime) == set(),
    ),
    "create_on_schema_app": Drift(
        True,
        ("GRANT CREATE ON SCHEMA app TO {runtime}",),
        lambda snap, names: privileges(snap.schemas[SCHEMA], names.runtime) == {"USAGE"},
    ),
}


@pytest.mark.parametrize("case", list(DRIFTS))
def test_drift_is_repaired_by_the_next_run(
    pg_server: Server, names: Names, tmp_path: Path, case: str
):
    drift = DRIFTS[case]
    env = env_data(pg_server, names, tmp_path)
    assert run_api(env.data).success
    declared = snapshot(pg_server, env)
    for statement in drift.statements:
        dbname = names.database if drift.database else "postgres"
        superuser_sql(pg_server, dbname, statement, names, other=names.role("other"))
    drifted = snapshot(pg_server, env)
    assert drifted != declared, "the drift was not seeded"
    assert not drift.repaired(drifted, names)

    repair = run_api(env.data)
    assert repair.success, repair
    assert repair.changed["provision"], repair
    repaired = snapshot(pg_server, env)
    assert drift.repaired(repaired, names)
    assert repaired == declared

    third = run_api(env.data)
    assert third.success, third
    assert third.changed == NO_CHANGES
    assert third.commands == NO_COMMANDS


def test_runtime_can_create_declares_create_on_schema_app_and_keeps_it(
    pg_server: Server, names: Names, tmp_path: Path
):
    env = env_data(pg_server, names, tmp_path, pg_runtime_can_create=True)
    assert run_api(env.data).success
    assert privileges(snapshot(pg_server, env).schemas[SCHEMA], names.runtime) == {
        "USAGE",
        "CREATE",
    }
    second = run_api(env.data)
    assert second.changed == NO_CHANGES, second

    superuser_sql(pg_server, names.database, "REVOKE CREATE ON SCHEMA app FROM {runtime}", names)
    repair = run_api(env.data)
    assert repair.success and repair.changed["provision"], repair
    assert "CREATE" in privileges(snapshot(pg_server, env).schemas[SCHEMA], names.runtime)
    with login(
        pg_server, names.runtime, env.passwords["runtime"], names.database, autocommit=True
    ) as conn:
        conn.execute("CREATE TABLE app.made_by_runtime (id int)")
        conn.execute("DROP TABLE app.made_by_runtime")


# --- 4. objects the migrator creates later are usable by the runtime at once --------------


def test_table_and_serial_sequence_created_later_by_migrator_are_usable_by_runtime(
    pg_server: Server, names: Names, tmp_path: Path
):
    env = env_data(pg_server, names, tmp_path)
    assert run_api(env.data).success
    with login(
        pg_server, names.migrator, env.passwords["migrator"], names.database, autocommit=True
    ) as conn:
        conn.execute("CREATE TABLE app.extra (id serial primary key, v text)")
    with login(
        pg_server, names.runtime, env.passwords["runtime"], names.database, autocommit=True
    ) as conn:
        inserted = conn.execute("INSERT INTO app.extra (v) VALUES ('x') RETURNING id").fetchone()
        assert inserted == (1,)
        assert conn.execute("SELECT v FROM app.extra").fetchall() == [("x",)]
        assert conn.execute("SELECT nextval('app.extra_id_seq')").fetchone() == (2,)
        conn.execute("UPDATE app.extra SET v = 'y'")
        conn.execute("DELETE FROM app.extra")


# --- 5. what the roles cannot (and can) do ------------------------------------------------

FORBIDDEN_TO_RUNTIME = {
    "create_table_in_app": "CREATE TABLE app.rt_made (id int)",
    "create_table_in_public": "CREATE TABLE public.rt_made (id int)",
    "create_temp_table": "CREATE TEMP TABLE rt_temp (id int)",
    "create_schema": "CREATE SCHEMA rt_schema",
    "drop_app_table": "DROP TABLE app.checklist",
    "alter_app_table": "ALTER TABLE app.checklist ADD COLUMN rt_extra int",
    "truncate_app_table": "TRUNCATE app.checklist",
    "read_aerich": "SELECT * FROM app.aerich",
    "create_database": "CREATE DATABASE {prefix}_rt_db",
}


@pytest.mark.parametrize("action", list(FORBIDDEN_TO_RUNTIME))
def test_runtime_is_refused(pg_server: Server, split: Deployed, action: str):
    statement = FORBIDDEN_TO_RUNTIME[action].format(prefix=split.names.prefix)
    with connect_as(pg_server, split, "runtime") as conn:
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(statement)
        # Still usable afterwards: the refusals are privilege checks, not broken sessions.
        conn.execute("SELECT count(*) FROM app.checklist")


def test_single_user_with_createdb_can_create_a_database(
    pg_server: Server, names: Names, tmp_path: Path
):
    env = env_data(pg_server, names, tmp_path, profile="single_user", pg_createdb=True)
    assert run_api(env.data).success
    assert snapshot(pg_server, env).roles[names.app_user].createdb
    made = names.role("made_db")
    with login(
        pg_server, names.app_user, env.passwords["app_user"], names.database, autocommit=True
    ) as conn:
        conn.execute(f'CREATE DATABASE "{made}"')
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (made,)).fetchone()
        conn.execute(f'DROP DATABASE "{made}"')


def test_single_user_without_createdb_cannot_create_a_database(pg_server: Server, single: Deployed):
    with (
        connect_as(pg_server, single, "app_user") as conn,
        pytest.raises(errors.InsufficientPrivilege),
    ):
        conn.execute(f'CREATE DATABASE "{single.names.prefix}_made_db"')
