"""The JSONB GIN index on app.checklistresponse(answers), owned by the deploy: created when
missing, left alone when it matches, rebuilt concurrently and swapped in when it is INVALID or
has another operator class, with leftovers of an interrupted rebuild cleaned up, and without
interrupting readers while the swap runs.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest

from tests.deploykit import env_data, login, run_api
from tests.e2e.migration_helpers import GIN_INDEX, execute, query

pytestmark = pytest.mark.db

TEMP_INDEX = GIN_INDEX + "_new"


@dataclass(frozen=True)
class IndexInfo:
    table: str
    access_method: str
    opclasses: tuple[str, ...]
    valid: bool
    ready: bool
    table_owner: str
    index_owner: str
    columns: tuple[str, ...]


def index_info(server, env, name: str = GIN_INDEX) -> IndexInfo | None:
    rows = query(
        server,
        env,
        """
        SELECT t.relname, am.amname,
               ARRAY(SELECT o.opcname FROM unnest(x.indclass) WITH ORDINALITY k(oid, n)
                     JOIN pg_opclass o ON o.oid = k.oid ORDER BY k.n),
               x.indisvalid, x.indisready,
               pg_get_userbyid(t.relowner), pg_get_userbyid(i.relowner),
               ARRAY(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY k(attnum, n)
                     JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
                     ORDER BY k.n)
        FROM pg_index x
        JOIN pg_class i ON i.oid = x.indexrelid
        JOIN pg_class t ON t.oid = x.indrelid
        JOIN pg_am am ON am.oid = i.relam
        JOIN pg_namespace n ON n.oid = i.relnamespace
        WHERE n.nspname = 'app' AND i.relname = %s
        """,
        (name,),
    )
    if not rows:
        return None
    table, am, opclasses, valid, ready, table_owner, index_owner, columns = rows[0]
    return IndexInfo(
        table, am, tuple(opclasses), valid, ready, table_owner, index_owner, tuple(columns)
    )


def invalidate(server, env) -> None:
    execute(
        server,
        env,
        f"UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'app.{GIN_INDEX}'::regclass",
    )


def test_missing_index_is_created_valid_with_jsonb_ops(pg_server, names, tmp_path):
    env = env_data(pg_server, names, tmp_path)

    result = run_api(env.data)

    assert result.success, result
    assert result.changed["gin_index"] is True
    info = index_info(pg_server, env)
    assert info == IndexInfo(
        table="checklistresponse",
        access_method="gin",
        opclasses=("jsonb_ops",),
        valid=True,
        ready=True,
        table_owner=names.migrator,
        index_owner=names.migrator,
        columns=("answers",),
    )
    assert index_info(pg_server, env, TEMP_INDEX) is None


def test_index_dropped_by_hand_is_recreated(pg_server, names, tmp_path):
    env = env_data(pg_server, names, tmp_path)
    assert run_api(env.data).success
    execute(pg_server, env, f"DROP INDEX app.{GIN_INDEX}")

    result = run_api(env.data)

    assert result.success, result
    assert result.changed == {"provision": False, "migrate": False, "gin_index": True}
    info = index_info(pg_server, env)
    assert info is not None and info.valid and info.opclasses == ("jsonb_ops",)


def test_matching_index_is_left_alone(pg_server, names, tmp_path):
    env = env_data(pg_server, names, tmp_path)
    assert run_api(env.data).success
    oid_before = query(pg_server, env, f"SELECT 'app.{GIN_INDEX}'::regclass::oid")

    result = run_api(env.data)

    assert result.success, result
    assert result.changed["gin_index"] is False
    assert result.commands["gin_index"] == 0
    assert query(pg_server, env, f"SELECT 'app.{GIN_INDEX}'::regclass::oid") == oid_before


def test_invalid_index_is_rebuilt_and_valid_afterwards(pg_server, names, tmp_path):
    env = env_data(pg_server, names, tmp_path)
    assert run_api(env.data).success
    invalidate(pg_server, env)
    assert index_info(pg_server, env).valid is False

    result = run_api(env.data)

    assert result.success, result
    assert result.changed["gin_index"] is True
    info = index_info(pg_server, env)
    assert info.valid and info.ready
    assert info.opclasses == ("jsonb_ops",)
    assert index_info(pg_server, env, TEMP_INDEX) is None
    assert run_api(env.data).changed["gin_index"] is False


def test_switching_to_jsonb_path_ops_rebuilds_under_the_same_name(pg_server, names, tmp_path):
    env = env_data(pg_server, names, tmp_path)
    assert run_api(env.data).success
    switched = {**env.data, "pg_gin_opclass": "jsonb_path_ops"}

    result = run_api(switched)

    assert result.success, result
    assert result.changed == {"provision": False, "migrate": False, "gin_index": True}
    info = index_info(pg_server, env)
    assert info.opclasses == ("jsonb_path_ops",)
    assert info.valid and info.access_method == "gin"
    assert info.table_owner == names.migrator
    assert info.index_owner == names.migrator
    assert index_info(pg_server, env, TEMP_INDEX) is None
    assert run_api(switched).changed["gin_index"] is False


def test_switching_back_to_jsonb_ops_rebuilds_again(pg_server, names, tmp_path):
    env = env_data(pg_server, names, tmp_path, pg_gin_opclass="jsonb_path_ops")
    assert run_api(env.data).success
    assert index_info(pg_server, env).opclasses == ("jsonb_path_ops",)

    result = run_api({**env.data, "pg_gin_opclass": "jsonb_ops"})

    assert result.success, result
    assert index_info(pg_server, env).opclasses == ("jsonb_ops",)


def test_leftover_temporary_index_is_dropped(pg_server, names, tmp_path):
    env = env_data(pg_server, names, tmp_path)
    assert run_api(env.data).success
    execute(
        pg_server, env, f"CREATE INDEX {TEMP_INDEX} ON app.checklistresponse USING gin (answers)"
    )

    result = run_api(env.data)

    assert result.success, result
    assert result.changed["gin_index"] is True
    assert index_info(pg_server, env, TEMP_INDEX) is None
    assert index_info(pg_server, env).valid
    assert run_api(env.data).changed["gin_index"] is False


def test_leftover_of_an_interrupted_rebuild_is_dropped_and_the_rebuild_completes(
    pg_server, names, tmp_path
):
    env = env_data(pg_server, names, tmp_path)
    assert run_api(env.data).success
    execute(
        pg_server,
        env,
        f"CREATE INDEX {TEMP_INDEX} ON app.checklistresponse USING gin (answers jsonb_path_ops)",
    )
    execute(
        pg_server,
        env,
        f"UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'app.{TEMP_INDEX}'::regclass",
    )

    result = run_api({**env.data, "pg_gin_opclass": "jsonb_path_ops"})

    assert result.success, result
    info = index_info(pg_server, env)
    assert info.valid and info.opclasses == ("jsonb_path_ops",)
    assert index_info(pg_server, env, TEMP_INDEX) is None


# --- Readers during the swap ----------------------------------------------------------------

ROWS = 3000
MATCHING = "SELECT id FROM checklistresponse WHERE answers @> %s::jsonb ORDER BY id"
PROBE = '{"q1": "yes"}'


class Reader(threading.Thread):
    """Loops the containment query as the runtime role until stopped; keeps every result."""

    def __init__(self, server, env) -> None:
        super().__init__(daemon=True)
        self.server, self.env = server, env
        self.stop = threading.Event()
        self.results: list[tuple[int, ...]] = []
        self.errors: list[str] = []

    def run(self) -> None:
        try:
            with login(
                self.server,
                self.env.data["pg_runtime"],
                self.env.passwords["runtime"],
                self.env.data["pg_database"],
                autocommit=True,
            ) as conn:
                # Prefer the index whenever one exists, so the reads go through the swap.
                conn.execute("SET enable_seqscan = off")
                while not self.stop.is_set():
                    try:
                        rows = conn.execute(MATCHING, (PROBE,)).fetchall()
                        self.results.append(tuple(r[0] for r in rows))
                    except Exception as exc:
                        self.errors.append(f"{type(exc).__name__}: {exc}")
                    time.sleep(0.002)
        except Exception as exc:
            self.errors.append(f"connect: {type(exc).__name__}: {exc}")


def seed_responses(server, env, count: int) -> None:
    execute(
        server,
        env,
        f"""
        SET ROLE "{env.data["pg_migrator"]}";
        INSERT INTO app.checklist (name, version, is_active, created_at, updated_at)
        VALUES ('swap', 1, true, now(), now());
        INSERT INTO app.checklistresponse (answers, created_at, updated_at, checklist_id)
        SELECT jsonb_build_object('q1', CASE WHEN g % 7 = 0 THEN 'yes' ELSE 'no' END, 'n', g),
               now(), now(), (SELECT id FROM app.checklist WHERE name = 'swap')
        FROM generate_series(1, {count}) g;
        RESET ROLE;
        ANALYZE app.checklistresponse;
        """,
    )


def test_readers_keep_working_and_see_the_same_rows_while_the_index_is_swapped(
    pg_server, names, tmp_path
):
    env = env_data(pg_server, names, tmp_path)
    assert run_api(env.data).success
    seed_responses(pg_server, env, ROWS)
    expected = tuple(
        r[0] for r in query(pg_server, env, MATCHING.replace("FROM ", "FROM app."), (PROBE,))
    )
    assert len(expected) == ROWS // 7

    reader = Reader(pg_server, env)
    reader.start()
    while not reader.results and not reader.errors:
        time.sleep(0.01)
    result = run_api({**env.data, "pg_gin_opclass": "jsonb_path_ops"})
    reads_during = len(reader.results)
    time.sleep(0.1)
    reader.stop.set()
    reader.join(timeout=10)

    assert result.success, result
    assert result.changed["gin_index"] is True
    assert index_info(pg_server, env).opclasses == ("jsonb_path_ops",)
    assert reader.errors == []
    assert reads_during > 5
    assert set(reader.results) == {expected}
