"""The JSONB GIN index that follows migrations: decisions only.

The index belongs to the deploy, not to the models: its operator class is an environment
decision (``gin_opclass``). Missing: created. Valid with the declared definition: left
alone. INVALID (a failed concurrent build) or another operator class: rebuilt CONCURRENTLY
under a temporary name and swapped in. A valid temporary index with the declared definition
(a killed deploy's) is reused; any other is dropped.

    items = gin_items(spec, snapshot, policy, table_will_exist=bool(pending))
"""

from __future__ import annotations

from pgprov.catalog.state import IndexState, Snapshot
from pgprov.model.spec import GIN_COLUMN, GIN_INDEX, GIN_TABLE, Spec
from pgprov.sql.locks import GIN_LOCK_KEY, LockPolicy, session_setup
from pgprov.steps.plan import Item, make_item

TEMP_INDEX = GIN_INDEX + "_new"


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


def gin_items(
    spec: Spec, snap: Snapshot, policy: LockPolicy, *, table_will_exist: bool
) -> list[Item]:
    """The index step as one item: what the snapshot says it will do, and the script, which
    decides again from the catalog once it holds the GIN lock (deploy/sql/locks.py)."""
    if not snap.gin_table_exists and not table_will_exist:
        raise IndexPlanError(
            f"{spec.host}: table {spec.schema_name}.{GIN_TABLE} does not exist and no pending "
            "migration creates it"
        )
    existing = snap.indexes.get(GIN_INDEX)
    leftover = snap.indexes.get(TEMP_INDEX)
    reusable = leftover is not None and leftover.valid and matches(spec, leftover)
    where = f"{spec.schema_name}.{GIN_TABLE}({GIN_COLUMN} {spec.gin_opclass})"
    if existing is not None and existing.valid and matches(spec, existing):
        if leftover is None:
            return []
        description = f"drop leftover index {TEMP_INDEX}"
    elif reusable:
        description = (
            f"swap in the already built {TEMP_INDEX} as {GIN_INDEX} on {where} "
            "(left by an interrupted deploy)"
        )
    elif existing is None:
        description = f"create GIN index {GIN_INDEX} on {where} concurrently"
    else:
        reason = (
            "is INVALID"
            if not existing.valid
            else f"has another definition ({existing.definition})"
        )
        description = (
            f"rebuild GIN index {GIN_INDEX} on {where} concurrently and swap it in: it {reason}"
        )
    if leftover is not None and not reusable and description.startswith(("create", "rebuild")):
        description += f"; drop the leftover {TEMP_INDEX}"
    return [
        make_item(
            description,
            "gin_index.sql.j2",
            session=session_setup(),
            lock_key=GIN_LOCK_KEY,
            lock_timeout_ms=policy.lock_timeout_ms,
            owner=spec.owner,
            schema=spec.schema_name,
            table=GIN_TABLE,
            column=GIN_COLUMN,
            index=GIN_INDEX,
            temp_index=TEMP_INDEX,
            opclass="jsonb_path_ops" if spec.gin_opclass == "jsonb_path_ops" else None,
            opclass_name=spec.gin_opclass,
        )
    ]
