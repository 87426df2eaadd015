"""The JSONB GIN index and the bookkeeping revoke that follow migrations: decisions only.

The index belongs to the deploy, not to the models: its operator class is an environment
decision (``gin_opclass``). Missing: created. Valid with the declared definition: left
alone. INVALID (a failed concurrent build) or another operator class: rebuilt CONCURRENTLY
under a temporary name and swapped in.

    items = gin_items(spec, snapshot, table_will_exist=bool(pending))
"""

from __future__ import annotations

from deploy.plan import Item, make_item
from deploy.spec import GIN_COLUMN, GIN_INDEX, GIN_TABLE, Spec
from deploy.state import IndexState, Snapshot

TEMP_INDEX = GIN_INDEX + "_new"
BOOKKEEPING_TABLE = "aerich"


class IndexPlanError(RuntimeError):
    """The index cannot be planned (its table does not exist and nothing will create it)."""


def expected_definition(spec: Spec, name: str = GIN_INDEX) -> str:
    """The definition as pg_get_indexdef prints it for the declared operator class."""
    opclass = " jsonb_path_ops" if spec.gin_opclass == "jsonb_path_ops" else ""
    return (
        f"CREATE INDEX {name} ON {spec.schema_name}.{GIN_TABLE} USING gin ({GIN_COLUMN}{opclass})"
    )


def matches(spec: Spec, index: IndexState) -> bool:
    """The index has the declared shape: GIN, on the table's JSONB column, with the opclass.

    Compared structurally (pg_get_indexdef quotes keyword-like names, so text would not do)."""
    return (
        index.table == GIN_TABLE
        and " USING gin (" in index.definition
        and index.definition.rstrip(")").split("(", 1)[1].split()[0].strip('"') == GIN_COLUMN
        and index.opclasses == (spec.gin_opclass,)
    )


def gin_items(spec: Spec, snap: Snapshot, *, table_will_exist: bool) -> list[Item]:
    if not snap.gin_table_exists and not table_will_exist:
        raise IndexPlanError(
            f"{spec.host}: table {spec.schema_name}.{GIN_TABLE} does not exist and no pending "
            "migration creates it"
        )
    existing = snap.indexes.get(GIN_INDEX)
    leftover = TEMP_INDEX in snap.indexes
    context = {
        "owner": spec.owner,
        "schema": spec.schema_name,
        "table": GIN_TABLE,
        "column": GIN_COLUMN,
        "index": GIN_INDEX,
        "temp_index": TEMP_INDEX,
        "opclass": "jsonb_path_ops" if spec.gin_opclass == "jsonb_path_ops" else None,
        "drop_leftover": leftover,
    }
    where = f"{spec.schema_name}.{GIN_TABLE}({GIN_COLUMN} {spec.gin_opclass})"
    if existing is None:
        return [
            make_item(
                f"create GIN index {GIN_INDEX} on {where} concurrently",
                "gin_index.sql.j2",
                action="create",
                **context,
            )
        ]
    if existing.valid and matches(spec, existing):
        if leftover:
            return [
                make_item(
                    f"drop leftover index {TEMP_INDEX}",
                    "gin_index.sql.j2",
                    action="none",
                    **context,
                )
            ]
        return []
    reason = (
        "is INVALID" if not existing.valid else f"has another definition ({existing.definition})"
    )
    return [
        make_item(
            f"rebuild GIN index {GIN_INDEX} on {where} concurrently and swap it in: it {reason}",
            "gin_index.sql.j2",
            action="rebuild",
            **context,
        )
    ]


def bookkeeping_items(spec: Spec, *, migrations_will_run: bool) -> list[Item]:
    """Revoke what the default privileges give the runtime on ``aerich`` as it is created."""
    runtime = spec.runtime_role
    if runtime is None or not migrations_will_run or spec.schema_mode != "migrate":
        return []
    return [
        make_item(
            f"revoke every privilege of role {runtime} on {spec.schema_name}.{BOOKKEEPING_TABLE} "
            "(the migrations' bookkeeping)",
            "bookkeeping.sql.j2",
            schema=spec.schema_name,
            table=BOOKKEEPING_TABLE,
            runtime=runtime,
        )
    ]
