"""The admin's sessions run no one else's code (CVE-2018-1058 class), tested as an attacker.

After a first deploy, the migrator (the credential a pipeline carries) plants in ``public`` and
``app`` what could capture a session that trusts its search_path: ``=`` operators on varchar,
regrole, regclass, text and name; a copy of every pg_catalog function the toolkit's SQL names,
signature for signature, and overloads that match a name, varchar, regrole, regclass or oid
argument better than pg_catalog's; shadow types (domains named like catalog types); views named
like catalog relations and app tables. Each planted body writes a marker file into the data
directory (``COPY ... TO``), which only a superuser can, so a marker proves the admin ran it.
Then the plan, the audit with its probes, a drift repair with a GIN rebuild, a converged deploy
and a migration run, without and with ``ALTER DATABASE ... SET search_path = public,
pg_catalog`` (which the migrator may run as the database's owner): no marker may exist.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.deploykit import REPO, DeployEnv, env_data, run_api, write_inventory
from tests.e2e.helpers import console, login
from tests.e2e.migration_helpers import MIGRATIONS_ENV, migration_source, migrations_copy
from tests.pgserver import Names, Server, drop_prefixed

pytestmark = pytest.mark.db

BIN = Path(sys.executable).parent
GIN_INDEX = "idx_checklistresponse_answers_gin"
ADD_PRIORITY = "1_20270101000000_add_priority.py"
ADD_PRIORITY_SQL = 'ALTER TABLE "checklist" ADD COLUMN "priority" INT;'
# Argument types a catalog column or literal may have where pg_catalog's function or operator
# needs an implicit cast: an overload on them is a better match than pg_catalog's.
BETTER_MATCH_TYPES = ("name", "varchar", "regrole", "regclass", "oid")
CANONICAL = {"varchar": "character varying"}  # as regtype prints it
OPERATOR_TYPES = ("varchar", "regrole", "regclass", "text", "name")
SHADOW_TYPES = ("text", "name", "oid", "regrole", "regclass", "json", "jsonb", "aclitem")
SHADOW_RELATIONS = (
    "pg_roles",
    "pg_authid",
    "pg_auth_members",
    "pg_class",
    "pg_namespace",
    "pg_database",
    "pg_proc",
    "pg_default_acl",
    "pg_db_role_setting",
    "pg_stat_activity",
    "pg_locks",
    "pg_index",
    "aerich",
    "checklistresponse",
)
# pg_catalog functions whose copies would capture nothing (the toolkit never calls them
# unqualified with their exact types) but cannot be written in PL/pgSQL.
UNCOPYABLE_TYPES = ('"any"', "internal", "cstring", "anyenum", "anyrange", "anymultirange")


def called_function_names() -> set[str]:
    """Every identifier followed by ``(`` in the SQL templates and the toolkit's Python: a
    superset of the functions its SQL calls (the catalog decides which ones exist)."""
    names: set[str] = set()
    sources = [*REPO.glob("sql_templates/**/*.sql.j2"), *REPO.glob("deploy/**/*.py")]
    for path in sources:
        names |= set(re.findall(r"\b([a-z_][a-z0-9_]*)\s*\(", path.read_text()))
    return names


def marker_function(schema: str, prefix: str) -> sql.Composable:
    """``<schema>.pgprov_marker(tag)``: a file named for the tag, written only by a superuser."""
    return sql.SQL(
        """
CREATE FUNCTION {schema}.pgprov_marker(tag text) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $body$
BEGIN
  IF pg_catalog.current_setting('is_superuser') OPERATOR(pg_catalog.=) 'on' THEN
    EXECUTE pg_catalog.format('COPY (SELECT 1) TO %L', pg_catalog.concat_ws('/',
      pg_catalog.current_setting('data_directory'), {prefix} OPERATOR(pg_catalog.||) tag));
  END IF;
  RETURN true;
END $body$;
"""
    ).format(schema=sql.Identifier(schema), prefix=sql.Literal(f"pgprov_planted_{prefix}_"))


def copies_of_catalog_functions(conn: psycopg.Connection, schema: str) -> list[sql.Composable]:
    """Each overload of each function the toolkit names, re-created in ``schema`` with the same
    signature: with ``public`` before pg_catalog on the path, the copy is the one called."""
    rows = conn.execute(
        """
        SELECT p.proname, pg_get_function_arguments(p.oid), pg_get_function_result(p.oid),
               p.pronargs, p.provariadic <> 0, p.proretset,
               p.prorettype = 'record'::regtype AND NOT p.proretset,
               ARRAY(SELECT t::regtype::text FROM unnest(p.proargtypes) t)
        FROM pg_proc p
        WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.prokind = 'f'
          AND p.proname = ANY (%s)
        """,
        (sorted(called_function_names()),),
    ).fetchall()
    statements = []
    for name, arguments, result, nargs, variadic, retset, plain_record, types in rows:
        if plain_record or any(t in UNCOPYABLE_TYPES for t in types) or result in UNCOPYABLE_TYPES:
            continue
        if result in ("trigger", "event_trigger", "void", "language_handler"):
            continue
        args = [f"${i + 1}" for i in range(nargs)]
        if variadic and args:
            args[-1] = "VARIADIC " + args[-1]
        call = f"pg_catalog.{sql.Identifier(name).as_string()}({', '.join(args)})"
        body = f"RETURN QUERY SELECT * FROM {call};" if retset else f"RETURN {call};"
        tag = f"{schema}_copy_{name}"
        statements.append(
            sql.SQL(
                "CREATE FUNCTION {schema}.{name}("
                + arguments
                + ") RETURNS "
                + result
                + " LANGUAGE plpgsql AS $body$ BEGIN PERFORM {schema}.pgprov_marker({tag}); "
                + body
                + " END $body$"
            ).format(schema=sql.Identifier(schema), name=sql.Identifier(name), tag=sql.Literal(tag))
        )
    return statements


def better_matches(conn: psycopg.Connection, schema: str) -> list[sql.Composable]:
    """Overloads of each function the toolkit names taking only name, varchar, regrole, regclass
    or oid, for every arity pg_catalog has: an exact match where pg_catalog's needs a cast."""
    rows = conn.execute(
        """
        SELECT p.proname, p.pronargs,
               ARRAY(SELECT t::regtype::text FROM unnest(p.proargtypes) t)
        FROM pg_proc p
        WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.prokind = 'f'
          AND p.proname = ANY (%s) AND p.pronargs > 0
        """,
        (sorted(called_function_names()),),
    ).fetchall()
    existing = {(name, tuple(types)) for name, _, types in rows}
    wanted = sorted({(name, nargs) for name, nargs, _ in rows})
    statements = []
    for name, nargs in wanted:
        for type_name in BETTER_MATCH_TYPES:
            signature = (type_name,) * nargs
            if (name, (CANONICAL.get(type_name, type_name),) * nargs) in existing:
                continue
            tag = f"{schema}_better_{name}_{type_name}"
            statements.append(
                sql.SQL(
                    "CREATE FUNCTION {schema}.{name}(" + ", ".join(signature) + ") RETURNS text"
                    " LANGUAGE plpgsql AS $body$ BEGIN PERFORM {schema}.pgprov_marker({tag});"
                    " RETURN NULL; END $body$"
                ).format(
                    schema=sql.Identifier(schema), name=sql.Identifier(name), tag=sql.Literal(tag)
                )
            )
    return statements


def operators(schema: str) -> list[sql.Composable]:
    """``=`` on each type, answering as pg_catalog's would, after leaving the marker."""
    statements = []
    for type_name in OPERATOR_TYPES:
        function = sql.Identifier(schema, f"pgprov_eq_{type_name}")
        compare = "$1::text OPERATOR(pg_catalog.=) $2::text"
        if type_name in ("regrole", "regclass"):
            compare = "$1::oid OPERATOR(pg_catalog.=) $2::oid"
        statements += [
            sql.SQL(
                "CREATE FUNCTION {f}(" + f"{type_name}, {type_name}" + ") RETURNS boolean"
                " LANGUAGE plpgsql AS $body$ BEGIN PERFORM {schema}.pgprov_marker({tag}); RETURN "
                + compare
                + "; END $body$"
            ).format(
                f=function,
                schema=sql.Identifier(schema),
                tag=sql.Literal(f"{schema}_operator_{type_name}"),
            ),
            sql.SQL(
                "CREATE OPERATOR {schema}.= (LEFTARG = "
                + type_name
                + ", RIGHTARG = "
                + type_name
                + ", FUNCTION = {f})"
            ).format(schema=sql.Identifier(schema), f=function),
        ]
    return statements


def shadows(schema: str) -> list[sql.Composable]:
    """Domains named like catalog types (their CHECK runs on every cast) and views named like
    catalog relations and app tables (their function runs on every read)."""
    statements: list[sql.Composable] = []
    for type_name in SHADOW_TYPES:
        statements.append(
            sql.SQL(
                "CREATE DOMAIN {domain} AS pg_catalog."
                + type_name
                + " CHECK ({schema}.pgprov_marker({tag}))"
            ).format(
                domain=sql.Identifier(schema, type_name),
                schema=sql.Identifier(schema),
                tag=sql.Literal(f"{schema}_type_{type_name}"),
            )
        )
    for relation in SHADOW_RELATIONS:
        if schema == "app" and relation in ("aerich", "checklistresponse"):
            continue  # the real ones live there
        source = sql.Identifier("pg_catalog", relation)
        if relation in ("aerich", "checklistresponse"):
            source = sql.Identifier("app", relation)
        statements.append(
            sql.SQL(
                "CREATE VIEW {view} AS SELECT * FROM {source} WHERE {schema}.pgprov_marker({tag})"
            ).format(
                view=sql.Identifier(schema, relation),
                source=source,
                schema=sql.Identifier(schema),
                tag=sql.Literal(f"{schema}_relation_{relation}"),
            )
        )
    return statements


def plant(server: Server, env: DeployEnv, names: Names) -> int:
    """Everything above, as the migrator, in public and app; returns how many objects."""
    with login(server, env, names, "migrator") as conn:
        statements: list[sql.Composable] = []
        for schema in ("public", "app"):
            statements.append(marker_function(schema, names.prefix))
            statements += operators(schema)
            statements += copies_of_catalog_functions(conn, schema)
            statements += better_matches(conn, schema)
            statements += shadows(schema)
        with conn.transaction():
            for statement in statements:
                conn.execute(statement)
    return len(statements)


def markers(server: Server, prefix: str) -> list[str]:
    with server.connect() as conn:
        return sorted(
            name
            for (name,) in conn.execute("SELECT pg_ls_dir('.')").fetchall()
            if name.startswith(f"pgprov_planted_{prefix}_")
        )


@pytest.fixture
def planted(pg_server: Server, names: Names, tmp_path: Path) -> Iterator[tuple[DeployEnv, int]]:
    # The migrator's large objects belong (the repair below revokes a privilege on one).
    env = env_data(pg_server, names, tmp_path, pg_large_objects={"migrator": {}})
    assert run_api(env.data).success
    try:
        yield env, plant(pg_server, env, names)
    finally:
        drop_prefixed(pg_server, names.prefix)


@pytest.mark.parametrize("database_path", [False, True], ids=["as-is", "public-first"])
def test_the_admins_sessions_run_none_of_the_migrators_code(
    planted: tuple[DeployEnv, int],
    pg_server: Server,
    names: Names,
    tmp_path: Path,
    database_path: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env, count = planted
    assert count > 200, count
    database = sql.Identifier(names.database)
    if database_path:
        with login(pg_server, env, names, "migrator") as conn:
            conn.execute(
                sql.SQL("ALTER DATABASE {} SET search_path = public, pg_catalog").format(database)
            )
    # The planted code is live: a superuser session that trusts the path runs it.
    with pg_server.connect(names.database) as conn:
        conn.execute("SET search_path = public, pg_catalog")
        conn.execute("SELECT 'a'::varchar = 'b'::varchar")
    assert f"pgprov_planted_{names.prefix}_public_operator_varchar" in markers(
        pg_server, names.prefix
    )
    seen = set(markers(pg_server, names.prefix))

    inventory = write_inventory(tmp_path, env.data)

    def ran_nothing(step: str) -> None:
        planted_ran = sorted(set(markers(pg_server, names.prefix)) - seen)
        assert not planted_ran, f"{step} ran the migrator's code as the admin: {planted_ran}"

    plan = console("pgprov-plan", inventory, "--format", "text")
    ran_nothing("pgprov-plan")
    assert plan.returncode in (0, 1), plan.stdout + plan.stderr
    audit = console("pgprov-verify", inventory)
    ran_nothing("pgprov-verify")
    assert audit.returncode in (0, 1), audit.stdout + audit.stderr
    assert "LOGIN" in audit.stdout  # the probes ran

    # Drift for the deploy to repair, a GIN index to rebuild and a migration to apply, then a
    # converged deploy.
    monkeypatch.setenv(
        MIGRATIONS_ENV,
        str(migrations_copy(tmp_path, {ADD_PRIORITY: migration_source(ADD_PRIORITY_SQL)})),
    )
    with pg_server.connect(names.database) as conn:
        conn.execute(
            sql.SQL("GRANT CREATE ON SCHEMA app TO {}").format(sql.Identifier(names.runtime))
        )
        conn.execute(sql.SQL("DROP INDEX app.{}").format(sql.Identifier(GIN_INDEX)))
    # The migrator's large object readable by the runtime: the repair's batch (a DO block in
    # the admin's session, after the database transaction) revokes it.
    runtime = sql.Identifier(names.runtime)
    with login(pg_server, env, names, "migrator") as conn:
        oid = conn.execute("SELECT lo_from_bytea(0, 'x')").fetchone()[0]
        conn.execute(sql.SQL(f"GRANT SELECT ON LARGE OBJECT {oid} TO {{}}").format(runtime))
    repair = run_api(env.data)
    ran_nothing("the repairing deploy")
    assert repair.success and repair.changed["provision"] and repair.changed["gin_index"], repair
    assert repair.changed["migrate"], repair
    with pg_server.connect(names.database) as conn:
        acl = conn.execute("SELECT lomacl::text FROM pg_largeobject_metadata WHERE oid = %s", [oid])
        assert acl.fetchone() == (f"{{{names.migrator}=rw/{names.migrator}}}",)
    converged = run_api(env.data)
    ran_nothing("the converged deploy")
    assert converged.success, converged
    audit = console("pgprov-verify", inventory)
    ran_nothing("the last audit")
    assert audit.returncode == 0, audit.stdout + audit.stderr
