"""The GIN index decisions: create, leave alone, rebuild and swap; the bookkeeping revoke."""

from __future__ import annotations

import dataclasses

import pytest

from deploy.gin import (
    TEMP_INDEX,
    IndexPlanError,
    bookkeeping_items,
    expected_definition,
    gin_items,
)
from deploy.spec import GIN_INDEX, Spec
from deploy.state import IndexState, Snapshot
from tests.unit.test_plan import converged_split, single_spec, split_spec

JSONB_OPS = (
    "CREATE INDEX idx_checklistresponse_answers_gin ON app.checklistresponse USING gin (answers)"
)
PATH_OPS = JSONB_OPS.replace("(answers)", "(answers jsonb_path_ops)")


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
    return "".join(i.sql for i in gin_items(spec, snap, table_will_exist=table_will_exist))


def test_expected_definition_matches_pg_get_indexdef() -> None:
    assert expected_definition(split_spec()) == JSONB_OPS
    assert expected_definition(split_spec(pg_gin_opclass="jsonb_path_ops")) == PATH_OPS


def test_missing_index_is_created_concurrently_by_the_owner() -> None:
    items = gin_items(split_spec(), snap_with(), table_will_exist=False)
    assert len(items) == 1
    assert items[0].description.startswith(f"create GIN index {GIN_INDEX}")
    lines = items[0].sql.splitlines()
    assert lines[0] == 'SET ROLE "app_migrator";'
    assert lines[1].startswith(f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{GIN_INDEX}"')
    assert lines[-1] == "RESET ROLE;"
    assert "DROP" not in items[0].sql


def test_missing_table_that_pending_migrations_create_still_gets_the_index() -> None:
    assert "CREATE INDEX CONCURRENTLY" in sql_of(
        split_spec(), snap_with(table=False), table_will_exist=True
    )


@pytest.mark.parametrize(
    ("opclass", "definition"), [("jsonb_ops", JSONB_OPS), ("jsonb_path_ops", PATH_OPS)]
)
def test_valid_index_with_the_declared_opclass_needs_nothing(opclass: str, definition: str) -> None:
    spec = split_spec(pg_gin_opclass=opclass)
    assert gin_items(spec, snap_with(index(definition)), table_will_exist=False) == []


def test_invalid_index_is_rebuilt_and_swapped() -> None:
    items = gin_items(
        split_spec(), snap_with(index(JSONB_OPS, valid=False)), table_will_exist=False
    )
    assert len(items) == 1
    assert items[0].description.endswith("it is INVALID")
    sql = items[0].sql
    assert f'CREATE INDEX CONCURRENTLY "{TEMP_INDEX}"' in sql
    assert f'DROP INDEX CONCURRENTLY "app"."{GIN_INDEX}";' in sql
    assert f'ALTER INDEX "app"."{TEMP_INDEX}" RENAME TO "{GIN_INDEX}";' in sql
    assert sql.index("CREATE INDEX") < sql.index("DROP INDEX") < sql.index("RENAME")


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
    items = gin_items(spec, snap_with(index(existing)), table_will_exist=False)
    assert len(items) == 1
    assert "has another definition" in items[0].description
    assert f"USING gin {wanted_clause};" in items[0].sql
    assert "RENAME TO" in items[0].sql


def test_leftover_temporary_index_is_dropped_when_the_index_is_fine() -> None:
    snap = snap_with(index(JSONB_OPS), index(JSONB_OPS, valid=False, name=TEMP_INDEX))
    items = gin_items(split_spec(), snap, table_will_exist=False)
    assert [i.description for i in items] == [f"drop leftover index {TEMP_INDEX}"]
    assert f'DROP INDEX CONCURRENTLY IF EXISTS "app"."{TEMP_INDEX}";' in items[0].sql
    assert "CREATE INDEX" not in items[0].sql


def test_leftover_is_dropped_before_a_rebuild_reuses_its_name() -> None:
    snap = snap_with(index(JSONB_OPS, valid=False), index(JSONB_OPS, name=TEMP_INDEX))
    sql = sql_of(split_spec(), snap)
    assert sql.index("DROP INDEX CONCURRENTLY IF EXISTS") < sql.index(
        f'CREATE INDEX CONCURRENTLY "{TEMP_INDEX}"'
    )


def test_leftover_is_dropped_before_creating_a_missing_index() -> None:
    sql = sql_of(split_spec(), snap_with(index(JSONB_OPS, name=TEMP_INDEX)))
    assert sql.index("DROP INDEX CONCURRENTLY IF EXISTS") < sql.index("CREATE INDEX")


def test_single_user_index_is_built_by_the_app_user() -> None:
    sql = sql_of(single_spec(), snap_with())
    assert sql.startswith('SET ROLE "hinfelaar_fastapi_db_user";')


def test_missing_table_and_no_pending_migration_is_a_one_line_error() -> None:
    with pytest.raises(IndexPlanError) as caught:
        gin_items(split_spec(), snap_with(table=False), table_will_exist=False)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("db1: table app.checklistresponse does not exist")


# --- bookkeeping revoke ----------------------------------------------------------------------------


def test_bookkeeping_revoke_runs_for_split_when_migrations_run() -> None:
    items = bookkeeping_items(split_spec(), migrations_will_run=True)
    assert [i.sql for i in items] == [
        'REVOKE ALL ON TABLE "app"."aerich" FROM "app_runtime";\n'
        'REVOKE ALL ON SEQUENCE "app"."aerich_id_seq" FROM "app_runtime";\n'
    ]


@pytest.mark.parametrize(
    ("spec", "running"),
    [
        pytest.param(split_spec(), False, id="split-nothing-pending"),
        pytest.param(single_spec(), True, id="single-user"),
        pytest.param(split_spec(pg_schema_mode="generate"), True, id="prototype-mode"),
    ],
)
def test_bookkeeping_revoke_is_skipped_otherwise(spec: Spec, running: bool) -> None:
    assert bookkeeping_items(spec, migrations_will_run=running) == []


def test_index_in_a_schema_named_like_a_keyword_converges() -> None:
    spec = split_spec(pg_schema="order")
    existing = index(JSONB_OPS.replace("ON app.", 'ON "order".'))
    assert gin_items(spec, snap_with(existing), table_will_exist=False) == []
