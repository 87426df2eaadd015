"""Golden files: the exact psql scripts a DBA reviews, for a fresh environment and the GIN index.

The files under ``tests/unit/golden/`` were read and judged correct SQL; a change to them is a
change to what runs on production databases and deserves the same review. Regenerate after
an intended change with ``PGPROV_UPDATE_GOLDEN=1 pytest tests/unit/test_golden.py`` and read
the diff.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from pgprov.catalog.state import IndexState, Snapshot
from pgprov.migrate.upgrade import bookkeeping_revoke_sql
from pgprov.model.spec import GIN_INDEX, Spec
from pgprov.sql.locks import LockPolicy
from pgprov.steps.gin import TEMP_INDEX, gin_items
from pgprov.steps.plan import Item, Plan, build_plan

from tests.unit.test_plan import fresh_snapshot, single_spec, split_spec

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("PGPROV_UPDATE_GOLDEN") == "1"
# Not a real verifier: a constant keeps the scripts byte-for-byte stable.
VERIFIER = "SCRAM-SHA-256$4096:Zml4ZWQtc2FsdA==$fixed-stored-key=:fixed-server-key="


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    assert path.is_file(), f"{path} is missing; run with PGPROV_UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text(), f"{name} differs from its golden file"


def fresh_plan(spec: Spec) -> Plan:
    return build_plan(
        spec,
        fresh_snapshot(16),
        LockPolicy.of(spec),
        verifier_for=lambda role: VERIFIER,
        password_matches=lambda role, stored: False,
    )


def annotated(items: list[Item]) -> str:
    """Each item's SQL preceded by its description as an SQL comment."""
    return "".join(f"-- {item.description}\n{item.sql}" for item in items)


PROFILES = [
    pytest.param(split_spec, "fresh_split", id="split"),
    pytest.param(single_spec, "fresh_single_user", id="single_user"),
]


@pytest.mark.parametrize(("make_spec", "name"), PROFILES)
def test_fresh_environment_script(make_spec, name: str) -> None:
    check_golden(f"{name}.sql", fresh_plan(make_spec()).script())


@pytest.mark.parametrize(("make_spec", "name"), PROFILES)
def test_fresh_environment_masked_script(make_spec, name: str) -> None:
    masked = fresh_plan(make_spec()).script(mask=True)
    assert VERIFIER not in masked
    check_golden(f"{name}.masked.sql", masked)


@pytest.mark.parametrize(("make_spec", "name"), PROFILES)
def test_fresh_environment_descriptions(make_spec, name: str) -> None:
    plan = fresh_plan(make_spec())
    check_golden(f"{name}.plan.txt", "".join(f"{i.description}\n" for i in plan.items))


def test_masked_script_differs_from_the_real_one_only_in_passwords() -> None:
    plan = fresh_plan(split_spec())
    assert plan.script(mask=True) == plan.script().replace(VERIFIER, "<redacted>")


# --- GIN index and bookkeeping -------------------------------------------------------------------


def index(definition_suffix: str, *, valid: bool = True, name: str = GIN_INDEX) -> IndexState:
    return IndexState(
        name,
        "checklistresponse",
        f"CREATE INDEX {name} ON app.checklistresponse USING gin (answers{definition_suffix})",
        valid,
        ("jsonb_path_ops" if "jsonb_path_ops" in definition_suffix else "jsonb_ops",),
    )


def with_indexes(*indexes: IndexState) -> Snapshot:
    return dataclasses.replace(
        fresh_snapshot(16), gin_table_exists=True, indexes={i.name: i for i in indexes}
    )


GIN_CASES = [
    pytest.param(split_spec(), with_indexes(), "gin_create_jsonb_ops", id="create-jsonb_ops"),
    pytest.param(
        split_spec(pg_gin_opclass="jsonb_path_ops"),
        with_indexes(),
        "gin_create_jsonb_path_ops",
        id="create-jsonb_path_ops",
    ),
    pytest.param(
        single_spec(),
        with_indexes(index("", valid=False)),
        "gin_rebuild_invalid",
        id="rebuild-invalid",
    ),
    pytest.param(
        split_spec(pg_gin_opclass="jsonb_path_ops"),
        with_indexes(index(""), index("", valid=False, name=TEMP_INDEX)),
        "gin_rebuild_opclass_with_leftover",
        id="rebuild-opclass-with-leftover",
    ),
    pytest.param(
        split_spec(),
        with_indexes(index(""), index("", valid=False, name=TEMP_INDEX)),
        "gin_drop_leftover",
        id="drop-leftover",
    ),
]


@pytest.mark.parametrize(("spec", "snap", "name"), GIN_CASES)
def test_gin_index_script(spec: Spec, snap: Snapshot, name: str) -> None:
    check_golden(
        f"{name}.sql", annotated(gin_items(spec, snap, LockPolicy.of(spec), table_will_exist=False))
    )


def test_bookkeeping_revoke_script() -> None:
    check_golden("bookkeeping_split.sql", bookkeeping_revoke_sql("app", "app_runtime"))
