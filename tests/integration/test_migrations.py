"""The committed Aerich migrations against real PostgreSQL, run as a non-superuser migrator.

Each Aerich/Tortoise step runs in its own ``asyncio.run``: Tortoise keeps its state in a
context variable of that run, so nothing leaks from one test (or step) into the next.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aerich import Command
from pgprov.app_schema.config import APP_LABEL, MIGRATIONS_LOCATION, tortoise_config
from psycopg import sql
from tortoise import Tortoise

from tests.pgserver import MODEL_TABLES, Names, Server

pytestmark = pytest.mark.db

SCHEMA = "app"
MIGRATION_DIR = Path(MIGRATIONS_LOCATION, APP_LABEL)
INITIAL = next(MIGRATION_DIR.glob("0_*.py")).name


@dataclass(frozen=True)
class Target:
    """A database owned by a fresh LOGIN migrator, as the deploy leaves it before migrating."""

    database: str
    migrator: str
    url: str


def provision(
    server: Server, database: str, migrator: str, *, role_search_path: bool = True
) -> Target:
    """Migrator role + database + schema ``app`` it owns; optionally its search_path there."""
    password = secrets.token_urlsafe(18)
    with server.connect() as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(migrator), sql.Literal(password)
            )
        )
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(database), sql.Identifier(migrator)
            )
        )
        if role_search_path:
            conn.execute(
                sql.SQL("ALTER ROLE {} IN DATABASE {} SET search_path = {}").format(
                    sql.Identifier(migrator), sql.Identifier(database), sql.Identifier(SCHEMA)
                )
            )
    with server.connect(database) as conn:
        conn.execute(
            sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(
                sql.Identifier(SCHEMA), sql.Identifier(migrator)
            )
        )
    url = f"postgres://{migrator}:{password}@{server.host}:{server.port}/{database}"
    return Target(database, migrator, url)


def aerich_upgrade(url: str) -> list[str]:
    """Aerich's own upgrade, as the deploy runs it: Command API, online init, upgrade."""

    async def run() -> list[str]:
        command = Command(tortoise_config(url, SCHEMA), app=APP_LABEL, location=MIGRATIONS_LOCATION)
        async with command:
            return await command.upgrade(run_in_transaction=True)

    return asyncio.run(run())


def aerich_downgrade_to_nothing(url: str) -> list[str]:
    async def run() -> list[str]:
        command = Command(tortoise_config(url, SCHEMA), app=APP_LABEL, location=MIGRATIONS_LOCATION)
        async with command:
            return await command.downgrade(version=0, delete=False)

    return asyncio.run(run())


def tortoise_generate_schemas(url: str) -> None:
    async def run() -> None:
        await Tortoise.init(config=tortoise_config(url, SCHEMA))
        try:
            await Tortoise.generate_schemas(safe=False)
        finally:
            await Tortoise.close_connections()

    asyncio.run(run())


def tables(conn: psycopg.Connection, schema: str) -> set[str]:
    rows = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relkind IN ('r', 'p')",
        (schema,),
    ).fetchall()
    return {name for (name,) in rows}


def relations(conn: psycopg.Connection, schema: str) -> list[str]:
    rows = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s",
        (schema,),
    ).fetchall()
    return sorted(name for (name,) in rows)


def on_delete_actions(conn: psycopg.Connection, schema: str) -> dict[tuple[str, str], str]:
    """(table, column) -> FK delete action letter: c=CASCADE, n=SET NULL, r=RESTRICT."""
    rows = conn.execute(
        "SELECT t.relname, a.attname, k.confdeltype::text"
        " FROM pg_constraint k JOIN pg_class t ON t.oid = k.conrelid"
        " JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]"
        " WHERE k.contype = 'f' AND k.connamespace = %s::regnamespace",
        (schema,),
    ).fetchall()
    return {(table, column): action for table, column, action in rows}


def describe_schema(conn: psycopg.Connection, schema: str) -> dict[str, Any]:
    """A comparable description of ``schema`` minus Aerich's table, from the catalog.

    Defaults, constraint and index definitions lose their schema qualification, so the
    description does not depend on the schema name or on the reader's search_path.
    """
    args = {"schema": schema}
    where = "n.nspname = %(schema)s AND c.relname <> 'aerich'"
    columns = conn.execute(
        "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,"
        " pg_get_expr(d.adbin, d.adrelid), a.attidentity, col_description(c.oid, a.attnum)"
        " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
        f" WHERE {where} AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped"
        " ORDER BY 1, a.attnum",
        args,
    ).fetchall()
    constraints = conn.execute(
        "SELECT c.relname, k.conname, k.contype::text, pg_get_constraintdef(k.oid)"
        " FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        f" WHERE {where} ORDER BY 1, 2",
        args,
    ).fetchall()
    indexes = conn.execute(
        "SELECT c.relname, i.relname, pg_get_indexdef(i.oid)"
        " FROM pg_index x JOIN pg_class c ON c.oid = x.indrelid"
        " JOIN pg_class i ON i.oid = x.indexrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        f" WHERE {where} ORDER BY 1, 2",
        args,
    ).fetchall()
    comments = conn.execute(
        "SELECT c.relname, obj_description(c.oid, 'pg_class') FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        f" WHERE {where} AND c.relkind = 'r' ORDER BY 1",
        args,
    ).fetchall()
    sequences = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        f" WHERE {where} AND c.relkind = 'S' AND c.relname NOT LIKE 'aerich%%' ORDER BY 1",
        args,
    ).fetchall()
    qualified = re.compile(rf"\b{re.escape(schema)}\.")

    def unqualified(text: str | None) -> str | None:
        return None if text is None else qualified.sub("", text)

    return {
        "columns": [(*row[:4], unqualified(row[4]), *row[5:]) for row in columns],
        "constraints": [(t, name, kind, unqualified(d)) for t, name, kind, d in constraints],
        "indexes": [(t, name, unqualified(d)) for t, name, d in indexes],
        "comments": comments,
        "sequences": sequences,
    }


def test_upgrade_as_migrator_creates_every_table_in_schema_app_and_nothing_in_public(
    pg_server: Server, names: Names
) -> None:
    target = provision(pg_server, names.database, names.migrator)

    applied = aerich_upgrade(target.url)

    assert applied == [INITIAL]
    with pg_server.connect(target.database) as conn:
        assert tables(conn, SCHEMA) == MODEL_TABLES | {"aerich"}
        assert relations(conn, "public") == []
        owners = conn.execute(
            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = %s", (SCHEMA,)
        ).fetchall()
        assert owners == [(target.migrator,)]
        assert conn.execute("SELECT app, version FROM app.aerich").fetchall() == [
            (APP_LABEL, INITIAL)
        ]


def test_second_upgrade_applies_nothing(pg_server: Server, names: Names) -> None:
    target = provision(pg_server, names.database, names.migrator)
    aerich_upgrade(target.url)

    assert aerich_upgrade(target.url) == []
    with pg_server.connect(target.database) as conn:
        assert conn.execute("SELECT count(*) FROM app.aerich").fetchone() == (1,)


def test_upgrade_declares_the_foreign_key_delete_rules_of_the_models(
    pg_server: Server, names: Names
) -> None:
    target = provision(pg_server, names.database, names.migrator)
    aerich_upgrade(target.url)

    with pg_server.connect(target.database) as conn:
        actions = on_delete_actions(conn, SCHEMA)
    assert actions == {
        ("workorder_rating", "user_id"): "n",
        ("question", "checklist_id"): "c",
        ("question", "answer_type_id"): "r",
        ("question", "unit_id"): "n",
        ("listoption", "question_id"): "c",
        ("questiondependency", "question_id"): "c",
        ("questiondependency", "depends_on_id"): "c",
        ("checklistresponse", "checklist_id"): "r",
        ("checklistresponse", "user_id"): "n",
    }


def test_migrator_can_add_the_deploys_gin_index_on_checklistresponse_answers(
    pg_server: Server, names: Names
) -> None:
    target = provision(pg_server, names.database, names.migrator)
    aerich_upgrade(target.url)

    gin = "idx_checklistresponse_answers_gin"
    with psycopg.connect(target.url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE INDEX {} ON checklistresponse USING GIN (answers)").format(
                sql.Identifier(gin)
            )
        )
        (schema,) = conn.execute(
            "SELECT schemaname FROM pg_indexes WHERE indexname = %s", (gin,)
        ).fetchone()
        (column_type,) = conn.execute(
            "SELECT data_type FROM information_schema.columns"
            " WHERE table_name = 'checklistresponse' AND column_name = 'answers'"
        ).fetchone()
    assert (schema, column_type) == (SCHEMA, "jsonb")


def test_committed_downgrade_drops_every_model_table_in_foreign_key_order(
    pg_server: Server, names: Names
) -> None:
    target = provision(pg_server, names.database, names.migrator)
    aerich_upgrade(target.url)

    reverted = aerich_downgrade_to_nothing(target.url)

    assert reverted == [INITIAL]
    with pg_server.connect(target.database) as conn:
        # Aerich keeps its bookkeeping table and only deletes the reverted version's row.
        assert tables(conn, SCHEMA) == {"aerich"}
        assert conn.execute("SELECT count(*) FROM app.aerich").fetchone() == (0,)
    assert (MIGRATION_DIR / INITIAL).is_file()


def test_upgrade_after_downgrade_rebuilds_the_schema(pg_server: Server, names: Names) -> None:
    target = provision(pg_server, names.database, names.migrator)
    aerich_upgrade(target.url)
    aerich_downgrade_to_nothing(target.url)

    assert aerich_upgrade(target.url) == [INITIAL]
    with pg_server.connect(target.database) as conn:
        assert tables(conn, SCHEMA) == MODEL_TABLES | {"aerich"}


def test_migrations_build_the_same_schema_as_tortoise_generate_schemas(
    pg_server: Server, names: Names
) -> None:
    migrated = provision(pg_server, names.database, names.migrator)
    # No role-level search_path here: only the config's schema credential (the connection's
    # search_path) can put the generated tables into "app" rather than the migrator's public.
    generated = provision(
        pg_server, names.role("generated_db"), names.role("generator"), role_search_path=False
    )
    aerich_upgrade(migrated.url)
    tortoise_generate_schemas(generated.url)

    with pg_server.connect(migrated.database) as conn:
        from_migrations = describe_schema(conn, SCHEMA)
    with pg_server.connect(generated.database) as conn:
        from_models = describe_schema(conn, SCHEMA)
        assert relations(conn, "public") == []

    assert {row[0] for row in from_models["columns"]} == MODEL_TABLES
    assert from_migrations == from_models
