"""Proof with the service's own data layer: after a deploy, Tortoise connected with the RUNTIME
credentials (search_path through the connection, as the service does) reads and writes every
model, the models' constraints hold, JSONB containment returns the right rows, and with enough
rows the planner answers it from the deploy's GIN index.

Each Tortoise session runs in its own ``asyncio.run`` and closes its connections, so no global
Tortoise state leaks between tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pgprov.app_schema.config import tortoise_config

from tests.deploykit import env_data, login, run_api
from tests.e2e.migration_helpers import GIN_INDEX, SCHEMA, execute, query, role_url

pytestmark = pytest.mark.db


def with_tortoise(url: str, work: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``work`` inside an initialized Tortoise on ``url``; connections closed afterwards."""
    from tortoise import Tortoise

    async def run() -> Any:
        await Tortoise.init(config=tortoise_config(url, SCHEMA))
        try:
            return await work()
        finally:
            await Tortoise.close_connections()

    return asyncio.run(run())


async def build_inspection() -> dict[str, Any]:
    """A checklist with questions, list options, a dependency, responses and ratings."""
    from pgprov.app_schema.models.checklist import (
        AnswerType,
        Checklist,
        ChecklistResponse,
        ListOption,
        Question,
        QuestionDependency,
        Unit,
    )
    from pgprov.app_schema.models.rating import WorkOrderRating
    from pgprov.app_schema.models.user import User
    from tortoise.exceptions import IntegrityError, ValidationError

    alice = await User.create(email="alice@example.test", full_name="Alice")
    bob = await User.create(email="bob@example.test", full_name="Bob")
    boolean = await AnswerType.create(code="boolean", name="Yes/No")
    choice = await AnswerType.create(code="choice", name="Choice from a list")
    number = await AnswerType.create(code="number", name="Number")
    bar = await Unit.create(name="bar", symbol="bar")
    checklist = await Checklist.create(name="Boiler inspection")
    q_ok = await Question.create(checklist=checklist, order=1, text="OK?", answer_type=boolean)
    q_state = await Question.create(checklist=checklist, order=2, text="State", answer_type=choice)
    q_pressure = await Question.create(
        checklist=checklist, order=3, text="Pressure", answer_type=number, unit=bar
    )
    for position, value in enumerate(("good", "worn", "broken")):
        await ListOption.create(question=q_state, value=value, label=value.title(), order=position)
    await QuestionDependency.create(question=q_pressure, depends_on=q_ok, expected_value="yes")

    duplicate_order_rejected = False
    try:
        await Question.create(checklist=checklist, order=1, text="Again", answer_type=boolean)
    except IntegrityError:
        duplicate_order_rejected = True

    r1 = await ChecklistResponse.create(
        checklist=checklist,
        user=alice,
        work_order_id="WO-1",
        answers={str(q_ok.id): "yes", str(q_state.id): "worn", "tags": ["gas", "annual"]},
    )
    r2 = await ChecklistResponse.create(
        checklist=checklist,
        user=bob,
        work_order_id="WO-2",
        answers={str(q_ok.id): "no", str(q_state.id): "good", "tags": ["annual"]},
    )
    r3 = await ChecklistResponse.create(
        checklist=checklist,
        user=alice,
        work_order_id="WO-3",
        answers={str(q_ok.id): "yes", str(q_state.id): "good", str(q_pressure.id): 1.5},
    )
    await WorkOrderRating.create(work_order_id="WO-1", user=alice, rating=5, comment="fast")
    await WorkOrderRating.create(work_order_id="WO-1", user=bob, rating=3)

    duplicate_rating_rejected = False
    try:
        await WorkOrderRating.create(work_order_id="WO-1", user=alice, rating=4)
    except IntegrityError:
        duplicate_rating_rejected = True
    out_of_range_rejected = False
    try:
        await WorkOrderRating.create(work_order_id="WO-2", user=alice, rating=6)
    except ValidationError:
        out_of_range_rejected = True

    async def ids(**filters: Any) -> list[int]:
        return sorted(
            await ChecklistResponse.filter(**filters).values_list("id", flat=True)  # type: ignore[arg-type]
        )

    reloaded = await ChecklistResponse.get(id=r3.id).prefetch_related("checklist__questions")
    return {
        "ids": {"r1": r1.id, "r2": r2.id, "r3": r3.id},
        "ok_yes": await ids(answers__contains={str(q_ok.id): "yes"}),
        "state_good": await ids(answers__contains={str(q_state.id): "good"}),
        "yes_and_worn": await ids(answers__contains={str(q_ok.id): "yes", str(q_state.id): "worn"}),
        "tag_gas": await ids(answers__contains={"tags": ["gas"]}),
        "nothing": await ids(answers__contains={str(q_ok.id): "maybe"}),
        "question_orders": [q.order for q in await reloaded.checklist.questions.order_by("order")],
        "options": await ListOption.filter(question=q_state)
        .order_by("order")
        .values_list("value", flat=True),
        "dependency": await QuestionDependency.filter(question=q_pressure).values_list(
            "depends_on_id", "expected_value"
        ),
        "pressure_unit": (
            await Question.get(id=q_pressure.id).prefetch_related("unit")
        ).unit.symbol,
        "average_wo1": sorted(
            await WorkOrderRating.filter(work_order_id="WO-1").values_list("rating", flat=True)
        ),
        "duplicate_order_rejected": duplicate_order_rejected,
        "duplicate_rating_rejected": duplicate_rating_rejected,
        "out_of_range_rejected": out_of_range_rejected,
        "checklist_id": checklist.id,
    }


def test_runtime_role_reads_and_writes_every_model_through_tortoise(pg_server, names, tmp_path):
    env = env_data(pg_server, names, tmp_path)
    assert run_api(env.data).success

    seen = with_tortoise(role_url(pg_server, env, "runtime"), build_inspection)

    r1, r2, r3 = seen["ids"]["r1"], seen["ids"]["r2"], seen["ids"]["r3"]
    assert seen["ok_yes"] == [r1, r3]
    assert seen["state_good"] == [r2, r3]
    assert seen["yes_and_worn"] == [r1]
    assert seen["tag_gas"] == [r1]
    assert seen["nothing"] == []
    assert seen["question_orders"] == [1, 2, 3]
    assert list(seen["options"]) == ["good", "worn", "broken"]
    assert [tuple(d)[1] for d in seen["dependency"]] == ["yes"]
    assert seen["pressure_unit"] == "bar"
    assert seen["average_wo1"] == [3, 5]
    assert seen["duplicate_order_rejected"] is True
    assert seen["duplicate_rating_rejected"] is True
    assert seen["out_of_range_rejected"] is True
    # The rows are in schema app, reached through the connection's search_path.
    assert query(pg_server, env, "SELECT count(*) FROM app.checklistresponse") == [(3,)]
    assert query(pg_server, env, "SELECT to_regclass('public.checklistresponse')") == [(None,)]


def test_runtime_role_cannot_read_the_bookkeeping_or_change_the_schema(pg_server, names, tmp_path):
    env = env_data(pg_server, names, tmp_path)
    assert run_api(env.data).success

    async def attempts() -> dict[str, str]:
        from tortoise import Tortoise

        conn = Tortoise.get_connection("default")
        outcomes: dict[str, str] = {}
        for label, statement in (
            ("read aerich", "SELECT count(*) FROM aerich"),
            ("create table", "CREATE TABLE sneaky (id int)"),
            ("drop table", 'DROP TABLE "checklistresponse"'),
        ):
            try:
                await conn.execute_query(statement)
                outcomes[label] = "allowed"
            except Exception as exc:
                outcomes[label] = str(exc)
        return outcomes

    outcomes = with_tortoise(role_url(pg_server, env, "runtime"), attempts)

    assert "permission denied" in outcomes["read aerich"]
    assert "permission denied" in outcomes["create table"]
    assert "must be owner" in outcomes["drop table"]


ROWS = 30_000
RARE = {"q0": "rare"}


def seed_many(server, env, checklist_id: int, rows: int) -> None:
    """Insert ``rows`` responses quickly as the runtime role, answers keyed by question id as
    the service stores them (1000 questions); a handful match RARE. The notes give rows a
    realistic width, so a full scan costs what it would in production."""
    with login(
        server,
        env.data["pg_runtime"],
        env.passwords["runtime"],
        env.data["pg_database"],
        autocommit=True,
    ) as conn:
        conn.execute(
            "INSERT INTO checklistresponse (answers, created_at, updated_at, checklist_id) "
            "SELECT jsonb_build_object('q' || g %% 1000, "
            "CASE WHEN g %% 5000 = 0 THEN 'rare' ELSE 'yes' END, 'notes', repeat('x', 400)), "
            "now(), now(), %s FROM generate_series(1, %s) g",
            (checklist_id, rows),
        )
    execute(server, env, "ANALYZE app.checklistresponse")


@pytest.mark.parametrize("opclass", ["jsonb_ops", "jsonb_path_ops"])
def test_containment_query_uses_the_gin_index_with_enough_rows(pg_server, names, tmp_path, opclass):
    env = env_data(pg_server, names, tmp_path, pg_gin_opclass=opclass)
    assert run_api(env.data).success
    url = role_url(pg_server, env, "runtime")

    async def one_checklist() -> int:
        from pgprov.app_schema.models.checklist import Checklist

        return (await Checklist.create(name="Bulk")).id

    seed_many(pg_server, env, with_tortoise(url, one_checklist), ROWS)

    async def plan_and_rows() -> tuple[str, int]:
        from pgprov.app_schema.models.checklist import ChecklistResponse

        matching = ChecklistResponse.filter(answers__contains=RARE)
        plan = await matching.explain(output_fmt="text", costs=True)
        text = "\n".join(str(value) for row in plan for value in dict(row).values())
        return text, await matching.count()

    plan, count = with_tortoise(url, plan_and_rows)

    assert count == ROWS // 5000
    assert f"Bitmap Index Scan on {GIN_INDEX}" in plan, plan
