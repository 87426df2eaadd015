"""The GIN index step: what the plan says it will do (create, leave alone, rebuild and swap,
reuse a built temporary index, drop leftovers) and the script that decides again from the
catalog under the GIN lock (its decisions are exercised on real servers in tests/e2e)."""

from __future__ import annotations

import dataclasses

import pytest
from pgprov.catalog.state import IndexState, Snapshot
from pgprov.migrate.upgrade import bookkeeping_revoke_sql
from pgprov.model.spec import GIN_INDEX, Spec
from pgprov.sql.locks import GIN_LOCK_KEY, LockPolicy
from pgprov.steps.gin import (
    TEMP_INDEX,
    IndexPlanError,
    expected_definition,
    gin_items,
)

from tests.unit.test_plan import converged_split, single_spec, split_spec

JSONB_OPS = (
    "CREATE INDEX idx_checklistresponse_answers_gin ON app.checklistresponse USING gin (answers)"
)
PATH_OPS = JSONB_OPS.replace("(answers)", "(answers jsonb_path_ops)")


POLICY = LockPolicy(0.5, 60.0)  # the defaults (pg_lock_timeout, pg_lock_wait)


def index(definition: str, *, valid: bool = True, name: str = GIN_INDEX) -> IndexState:
    # As the snapshot reports it: the definition text and the operator class per column.
    opclass = "jsonb_path_ops" if "jsonb_path_ops" in definition else "jsonb_ops"
    return IndexState(
        name, "checklistresponse", definition.replace(GIN_INDEX, name), valid, (opclass,)
    )


def snap_with(*indexes: IndexState, table: bool = True) -> Snapshot:
    return dataclasses.replace(
        converged_split(), gin_table_exists=table, indexes={i.name: i for i in indexes}
    )


def sql_of(spec: Spec, snap: Snapshot, *, table_will_exist: bool = False) -> str:
    policy = LockPolicy.of(spec)
    return "".join(i.sql for i in gin_items(spec, snap, policy, table_will_exist=table_will_exist))


def test_expected_definition_matches_pg_get_indexdef() -> None:
    assert expected_definition(split_spec()) == JSONB_OPS
    assert expected_definition(split_spec(pg_gin_opclass="jsonb_path_ops")) == PATH_OPS


def test_missing_index_is_created_concurrently_by_the_owner() -> None:
    items = gin_items(split_spec(), snap_with(), POLICY, table_will_exist=False)
    assert len(items) == 1
    assert items[0].description.startswith(f"create GIN index {GIN_INDEX}")
    sql = items[0].sql
    assert 'SET ROLE "app_migrator";' in sql
    assert f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{GIN_INDEX}"' in sql
    assert sql.rstrip().endswith(f"pg_advisory_unlock({GIN_LOCK_KEY}) \\g /dev/null")


def test_the_script_takes_the_gin_lock_before_reading_the_catalog_and_changing_anything() -> None:
    sql = sql_of(split_spec(), snap_with())
    lock = sql.index(f"pg_try_advisory_lock({GIN_LOCK_KEY})")
    assert lock < sql.index("\\gset pgprov_") < sql.index("CREATE INDEX CONCURRENTLY")
    assert sql.index("SET application_name = 'pgprov deploy'") < lock


def test_drop_and_rename_wait_at_most_lock_timeout_but_builds_do_not() -> None:
    sql = sql_of(split_spec(pg_lock_timeout="250ms"), snap_with())
    statements = [line for line in sql.splitlines() if not line.startswith(("\\", " "))]

    def timeout_before(keyword: str) -> str:
        at = next(i for i, line in enumerate(statements) if line.startswith(keyword))
        return next(
            line for line in reversed(statements[:at]) if line.startswith("SET lock_timeout")
        )

    assert timeout_before("DROP INDEX CONCURRENTLY IF EXISTS") == "SET lock_timeout = 250;"
    assert timeout_before(f'DROP INDEX CONCURRENTLY "app"."{GIN_INDEX}"') == (
        "SET lock_timeout = 250;"
    )
    assert timeout_before("ALTER INDEX") == "SET lock_timeout = 250;"
    assert timeout_before("CREATE INDEX CONCURRENTLY") == "SET lock_timeout = 0;"


def test_missing_table_that_pending_migrations_create_still_gets_the_index() -> None:
    assert "CREATE INDEX CONCURRENTLY" in sql_of(
        split_spec(), snap_with(table=False), table_will_exist=True
    )


@pytest.mark.parametrize(
    ("opclass", "definition"), [("jsonb_ops", JSONB_OPS), ("jsonb_path_ops", PATH_OPS)]
)
def test_valid_index_with_the_declared_opclass_needs_nothing(opclass: str, definition: str) -> None:
    spec = split_spec(pg_gin_opclass=opclass)
    assert gin_items(spec, snap_with(index(definition)), POLICY, table_will_exist=False) == []


def test_invalid_index_is_rebuilt_and_swapped() -> None:
    items = gin_items(
        split_spec(), snap_with(index(JSONB_OPS, valid=False)), POLICY, table_will_exist=False
    )
    assert len(items) == 1
    assert items[0].description.endswith("it is INVALID")
    sql = items[0].sql
    assert f'CREATE INDEX CONCURRENTLY "{TEMP_INDEX}"' in sql
    assert f'DROP INDEX CONCURRENTLY "app"."{GIN_INDEX}";' in sql
    assert f'ALTER INDEX "app"."{TEMP_INDEX}" RENAME TO "{GIN_INDEX}";' in sql
    assert sql.index("CREATE INDEX") < sql.index('DROP INDEX CONCURRENTLY "app"."idx')
    assert sql.index('DROP INDEX CONCURRENTLY "app"."idx') < sql.index("RENAME")


@pytest.mark.parametrize(
    ("opclass", "existing", "wanted_clause"),
    [
        ("jsonb_path_ops", JSONB_OPS, '("answers" "jsonb_path_ops")'),
        ("jsonb_ops", PATH_OPS, '("answers")'),
    ],
)
def test_index_with_another_opclass_is_rebuilt_with_the_declared_one(
    opclass: str, existing: str, wanted_clause: str
) -> None:
    spec = split_spec(pg_gin_opclass=opclass)
    items = gin_items(spec, snap_with(index(existing)), POLICY, table_will_exist=False)
    assert len(items) == 1
    assert "has another definition" in items[0].description
    assert f"USING gin {wanted_clause};" in items[0].sql
    assert f"= '{opclass}'" in items[0].sql  # the catalog check looks for the declared class
    assert "RENAME TO" in items[0].sql


def test_leftover_temporary_index_is_dropped_when_the_index_is_fine() -> None:
    snap = snap_with(index(JSONB_OPS), index(JSONB_OPS, valid=False, name=TEMP_INDEX))
    items = gin_items(split_spec(), snap, POLICY, table_will_exist=False)
    assert [i.description for i in items] == [f"drop leftover index {TEMP_INDEX}"]
    assert f'DROP INDEX CONCURRENTLY IF EXISTS "app"."{TEMP_INDEX}";' in items[0].sql


def test_valid_temporary_index_with_the_declared_definition_is_swapped_in_not_rebuilt() -> None:
    snap = snap_with(index(JSONB_OPS, valid=False), index(JSONB_OPS, name=TEMP_INDEX))
    items = gin_items(split_spec(), snap, POLICY, table_will_exist=False)
    assert len(items) == 1
    assert items[0].description.startswith(f"swap in the already built {TEMP_INDEX}")


def test_temporary_index_with_another_definition_is_named_as_a_leftover() -> None:
    snap = snap_with(index(JSONB_OPS, valid=False), index(PATH_OPS, name=TEMP_INDEX))
    (item,) = gin_items(split_spec(), snap, POLICY, table_will_exist=False)
    assert item.description.startswith("rebuild GIN index")
    assert item.description.endswith(f"drop the leftover {TEMP_INDEX}")


def test_single_user_index_is_built_by_the_app_user() -> None:
    assert 'SET ROLE "hinfelaar_fastapi_db_user";' in sql_of(single_spec(), snap_with())


def test_missing_table_and_no_pending_migration_is_a_one_line_error() -> None:
    with pytest.raises(IndexPlanError) as caught:
        gin_items(split_spec(), snap_with(table=False), POLICY, table_will_exist=False)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("db1: table app.checklistresponse does not exist")


# --- bookkeeping revoke (run by the migrations' child after every upgrade) -------------------


def test_bookkeeping_revoke_takes_everything_on_the_table_and_its_sequence() -> None:
    assert bookkeeping_revoke_sql("app", "app_runtime") == (
        'REVOKE ALL ON TABLE "app"."aerich" FROM "app_runtime";\n'
        'REVOKE ALL ON SEQUENCE "app"."aerich_id_seq" FROM "app_runtime";\n'
    )


def test_index_in_a_schema_named_like_a_keyword_converges() -> None:
    spec = split_spec(pg_schema="order")
    existing = index(JSONB_OPS.replace("ON app.", 'ON "order".'))
    assert gin_items(spec, snap_with(existing), POLICY, table_will_exist=False) == []
