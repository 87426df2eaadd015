"""Benchmarks GIN on checklistresponse.answers: run PYTHONPATH=. .venv/bin/python bench/gin.py

    cd /work/main && PYTHONPATH=. .venv/bin/python bench/gin.py [--rows 200000] [--pg 15|18]
        [--repeat 15] [--builds 3] [--seed 7] [--set name=value ...]

Compares no index, ``jsonb_ops`` and ``jsonb_path_ops``. A throwaway local cluster
(``tests.pgserver.local_server``) gets a table shaped like the service's ``checklistresponse``,
loaded by COPY with seeded, realistic answers: 60 checklists whose popularity falls off like
Zipf, each drawing its questions from 200 keys (a shared core, a domain block, a few strays;
some are follow-ups asked only after a "defect"), so a response holds about 20-40 keys: small
string vocabularies, ints, floats, booleans, nulls, multi-select arrays and an occasional
nested ``{"photo": {"count": n}}``.

For each variant it reports the median build time (after VACUUM ANALYZE), the index size, and
the median latency and EXPLAIN plan of a containment query (``answers @> %s``) and a
key-existence query (``answers ? %s``). Query parameters are chosen from the loaded data so that
each matches 0.1-1% of the rows; the same parameters run against every variant, and the row
counts are printed so the selectivity and the agreement between variants can be checked.
``jsonb_path_ops`` cannot serve ``?``, so that query falls back to a scan there, as shown.

The server is always destroyed at the end, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import os
import random
import shlex
import signal
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from tests.pgserver import local_server

TABLE_DDL = """
CREATE TABLE checklistresponse (
    id serial PRIMARY KEY,
    checklist_id integer NOT NULL,
    user_id integer,
    answers jsonb NOT NULL,
    submitted_at timestamptz NOT NULL DEFAULT now()
)
"""
INDEX_NAME = "idx_checklistresponse_answers_gin"
CONTAINMENT_SQL = "SELECT id FROM checklistresponse WHERE answers @> %s"
EXISTENCE_SQL = "SELECT id FROM checklistresponse WHERE answers ? %s"

QUESTION_KEYS = [f"q_{i}" for i in range(1, 201)]
CORE_KEYS = QUESTION_KEYS[:8]
DOMAINS = 8
CHECKLISTS = 60
USERS = 500
WARMUPS = 2
PARAMS_PER_QUERY = 5
SELECTIVITY = (0.001, 0.01)
CHOICE_VOCAB = ("ok", "defect", "n/a")
REMARK_VOCAB = (
    "none",
    "cleaned",
    "tightened",
    "replaced filter",
    "see photo",
    "reported to supervisor",
    "spare part ordered",
)
DEFECT_OPTIONS = ("rust", "dent", "leak", "crack", "loose", "missing", "dirty")


@dataclass(frozen=True)
class Variant:
    """One way of indexing ``answers``; ``index_sql`` None means no index at all."""

    name: str
    index_sql: str | None


VARIANTS = (
    Variant("no index", None),
    Variant("jsonb_ops", f"CREATE INDEX {INDEX_NAME} ON checklistresponse USING GIN (answers)"),
    Variant(
        "jsonb_path_ops",
        f"CREATE INDEX {INDEX_NAME} ON checklistresponse USING GIN (answers jsonb_path_ops)",
    ),
)


@dataclass(frozen=True)
class QueryResult:
    """Latency and plan of one query shape over all of its parameter values."""

    median_ms: float
    plan: str
    rows: tuple[int, ...]
    per_param_ms: tuple[float, ...]


@dataclass(frozen=True)
class VariantResult:
    variant: Variant
    size_bytes: int
    build_s: float | None
    containment: QueryResult
    existence: QueryResult


# --- data ------------------------------------------------------------------------------------


Answer = Callable[[random.Random], Any]


def _choice(rng: random.Random) -> str:
    r = rng.random()
    return "ok" if r < 0.80 else "defect" if r < 0.93 else "n/a"


def _multi(rng: random.Random) -> list[str]:
    return rng.sample(DEFECT_OPTIONS, 1 + int(rng.random() * 3))


ANSWER_KINDS: tuple[tuple[Answer, int], ...] = (
    (_choice, 8),
    (lambda rng: rng.random() < 0.85, 4),
    (lambda rng: int(rng.random() * 13), 2),
    (lambda rng: round(rng.gauss(4.0, 1.5), 1), 2),
    (lambda rng: round(rng.uniform(1.8, 3.2), 2), 1),
    (_multi, 2),
    (lambda rng: REMARK_VOCAB[int(rng.random() * len(REMARK_VOCAB))], 1),
)


@dataclass(frozen=True)
class Question:
    """A question of one checklist; a follow-up is asked only after its parent got "defect"."""

    key: str
    answer: Answer
    parent: str | None = None


@dataclass(frozen=True)
class Checklist:
    id: int
    questions: tuple[Question, ...]


def make_checklists(rng: random.Random) -> tuple[list[Checklist], list[float]]:
    """The checklists and their cumulative popularity (Zipf-like: a few dominate)."""
    kinds = [kind for kind, weight in ANSWER_KINDS for _ in range(weight)]
    kind_of = {key: rng.choice(kinds) for key in QUESTION_KEYS}
    rest = QUESTION_KEYS[len(CORE_KEYS) :]
    follow_ups = set(rest[3::4])
    block = len(rest) // DOMAINS
    checklists = []
    for number in range(CHECKLISTS):
        domain = rest[(number % DOMAINS) * block : (number % DOMAINS + 1) * block]
        strays = [key for key in rest if key not in domain]
        keys = (
            rng.sample(CORE_KEYS, rng.randint(6, len(CORE_KEYS)))
            + rng.sample(domain, rng.randint(18, len(domain)))
            + rng.sample(strays, rng.randint(4, 12))
        )
        questions, parent = [], None
        for key in keys:
            is_follow_up = key in follow_ups and parent is not None
            questions.append(Question(key, kind_of[key], parent if is_follow_up else None))
            if kind_of[key] is _choice:
                parent = key
        checklists.append(Checklist(number + 1, tuple(questions)))
    weights = [1 / rank for rank in range(1, CHECKLISTS + 1)]
    total = sum(weights)
    cumulative, running = [], 0.0
    for weight in weights:
        running += weight / total
        cumulative.append(running)
    return checklists, cumulative


def generate_rows(count: int, seed: int) -> Iterator[tuple[int, int | None, str, datetime]]:
    """``count`` responses, in submission order, identical for the same seed."""
    rng = random.Random(seed)
    checklists, cumulative = make_checklists(rng)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    step = timedelta(days=730) / count
    for i in range(count):
        checklist = checklists[min(bisect.bisect(cumulative, rng.random()), CHECKLISTS - 1)]
        answers: dict[str, Any] = {}
        for question in checklist.questions:
            if question.parent is not None and answers.get(question.parent) != "defect":
                continue
            r = rng.random()
            if r < 0.06:
                continue  # optional question skipped: the key is absent
            answers[question.key] = None if r < 0.10 else question.answer(rng)
        if "defect" in answers.values() and rng.random() < 0.5:
            answers["photo"] = {"count": 1 + int(rng.random() * 4)}
        user_id = None if rng.random() < 0.05 else 1 + int(rng.random() * USERS)
        submitted = start + step * i + timedelta(seconds=rng.random() * 600)
        yield checklist.id, user_id, json.dumps(answers, separators=(",", ":")), submitted


def load(conn: psycopg.Connection, count: int, seed: int) -> None:
    conn.execute(TABLE_DDL)
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY checklistresponse (checklist_id, user_id, answers, submitted_at) FROM STDIN"
        ) as copy,
    ):
        for row in generate_rows(count, seed):
            copy.write_row(row)
    conn.execute("VACUUM ANALYZE checklistresponse")


# --- parameters ------------------------------------------------------------------------------


def spread(candidates: list[tuple[Any, int]], rows: int, k: int) -> list[tuple[Any, int]]:
    """``k`` candidates evenly spread over the target selectivity band, nearest ones if short."""
    low, high = (rows * bound for bound in SELECTIVITY)
    inside = sorted((c for c in candidates if low <= c[1] <= high), key=lambda c: (c[1], str(c)))
    if len(inside) >= k:
        return [inside[round(i * (len(inside) - 1) / (k - 1))] for i in range(k)]
    centre = math.sqrt(low * high)
    outside = sorted(
        (c for c in candidates if c not in inside and c[1] > 0),
        key=lambda c: (abs(math.log(c[1] / centre)), str(c)),
    )
    return sorted(inside + outside[: k - len(inside)], key=lambda c: c[1])


def choose_parameters(
    conn: psycopg.Connection, rows: int
) -> tuple[list[tuple[Jsonb, str]], list[tuple[str, str]]]:
    """Containment and existence parameters (with a printable label) of 0.1-1% selectivity."""
    pairs = conn.execute(
        "SELECT e.key, e.value, count(*) FROM checklistresponse, jsonb_each(answers) e"
        " WHERE jsonb_typeof(e.value) IN ('string', 'boolean') GROUP BY 1, 2"
    ).fetchall()
    keys = conn.execute(
        "SELECT k, count(*) FROM checklistresponse, jsonb_object_keys(answers) k GROUP BY 1"
    ).fetchall()
    contained = spread([((key, value), n) for key, value, n in pairs], rows, PARAMS_PER_QUERY)
    existing = spread([(key, n) for key, n in keys], rows, PARAMS_PER_QUERY)
    containment = [(Jsonb({key: value}), json.dumps({key: value})) for (key, value), _ in contained]
    existence = [(key, repr(key)) for key, _ in existing]
    return containment, existence


# --- measuring -------------------------------------------------------------------------------


def plan_of(conn: psycopg.Connection, query: str, param: Any) -> str:
    """The access path EXPLAIN chooses for the table: Bitmap Index Scan, Seq Scan, ..."""
    (plan,) = conn.execute("EXPLAIN (FORMAT JSON) " + query, (param,)).fetchone()
    found: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        if node.get("Relation Name") == "checklistresponse" or "Index Name" in node:
            parallel = "Parallel " if node.get("Parallel Aware") else ""
            found.append(parallel + node["Node Type"])
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    index_scans = [name for name in found if "Index" in name]
    return index_scans[0] if index_scans else found[0]


def measure(
    conn: psycopg.Connection, query: str, params: Sequence[tuple[Any, str]], repeat: int
) -> QueryResult:
    """Median wall latency over ``repeat`` rounds of all parameters, after warm-ups."""
    plans = Counter(plan_of(conn, query, param) for param, _ in params)
    rows: list[int] = []
    for param, _ in params:
        for _ in range(WARMUPS):
            found = len(conn.execute(query, (param,)).fetchall())
        rows.append(found)
    timings: list[list[float]] = [[] for _ in params]
    for _ in range(repeat):
        for (param, _), runs in zip(params, timings, strict=True):
            started = time.perf_counter()
            conn.execute(query, (param,)).fetchall()
            runs.append((time.perf_counter() - started) * 1000)
    if len(plans) == 1:
        plan = next(iter(plans))
    else:
        plan = ", ".join(f"{name} {n}/{len(params)}" for name, n in plans.most_common())
    return QueryResult(
        statistics.median(t for runs in timings for t in runs),
        plan,
        tuple(rows),
        tuple(statistics.median(runs) for runs in timings),
    )


def run_variant(
    conn: psycopg.Connection,
    variant: Variant,
    containment: Sequence[tuple[Any, str]],
    existence: Sequence[tuple[Any, str]],
    repeat: int,
    builds: int,
) -> VariantResult:
    conn.execute(f"DROP INDEX IF EXISTS {INDEX_NAME}")
    build_s = None
    if variant.index_sql is not None:
        durations = []
        for attempt in range(builds):
            if attempt:
                conn.execute(f"DROP INDEX {INDEX_NAME}")
            conn.execute("CHECKPOINT")
            started = time.perf_counter()
            conn.execute(variant.index_sql)
            durations.append(time.perf_counter() - started)
        build_s = statistics.median(durations)
    (size,) = conn.execute(
        "SELECT coalesce(pg_relation_size(to_regclass(%s)), 0)", (INDEX_NAME,)
    ).fetchone()
    return VariantResult(
        variant,
        size,
        build_s,
        measure(conn, CONTAINMENT_SQL, containment, repeat),
        measure(conn, EXISTENCE_SQL, existence, repeat),
    )


# --- report ----------------------------------------------------------------------------------


def pretty_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def span(rows: Sequence[int]) -> str:
    return f"{min(rows):,}-{max(rows):,}"


def render(results: Sequence[VariantResult]) -> str:
    header = (
        "variant",
        "index size",
        "build (s)",
        "@> median (ms)",
        "@> plan",
        "? median (ms)",
        "? plan",
        "rows matched @> / ?",
    )
    lines = [
        (
            r.variant.name,
            pretty_bytes(r.size_bytes) if r.variant.index_sql else "-",
            f"{r.build_s:.2f}" if r.build_s is not None else "-",
            f"{r.containment.median_ms:.2f}",
            r.containment.plan,
            f"{r.existence.median_ms:.2f}",
            r.existence.plan,
            f"{span(r.containment.rows)} / {span(r.existence.rows)}",
        )
        for r in results
    ]
    return aligned(header, lines, numeric={1, 2, 3, 5})


def render_per_parameter(
    results: Sequence[VariantResult],
    containment: Sequence[tuple[Any, str]],
    existence: Sequence[tuple[Any, str]],
) -> str:
    """Median latency of each parameter value: where the medians above come from."""
    header = ("query", "rows", *(f"{r.variant.name} (ms)" for r in results))
    lines = []
    for op, params, pick in (
        ("@>", containment, lambda r: r.containment),
        ("?", existence, lambda r: r.existence),
    ):
        for i, (_, label) in enumerate(params):
            lines.append(
                (
                    f"{op} {label}",
                    f"{pick(results[0]).rows[i]:,}",
                    *(f"{pick(r).per_param_ms[i]:.2f}" for r in results),
                )
            )
    return aligned(header, lines, numeric=set(range(1, len(header))))


def aligned(header: Sequence[str], lines: Sequence[Sequence[str]], numeric: set[int]) -> str:
    """A plain-text table: numbers right-aligned, text left-aligned, two spaces apart."""
    widths = [max(len(row[i]) for row in (header, *lines)) for i in range(len(header))]

    def fmt(row: Sequence[str]) -> str:
        cells = (
            cell.rjust(width) if i in numeric else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([fmt(header), rule, *map(fmt, lines)])


def ratios(results: Sequence[VariantResult]) -> list[str]:
    by_name = {r.variant.name: r for r in results}
    base, ops, path = by_name["no index"], by_name["jsonb_ops"], by_name["jsonb_path_ops"]
    out = []
    for r in (ops, path):
        out.append(
            f"{r.variant.name}: @> {base.containment.median_ms / r.containment.median_ms:.1f}x"
            f" faster than no index, ? {base.existence.median_ms / r.existence.median_ms:.1f}x"
        )
    out.append(
        f"jsonb_path_ops vs jsonb_ops: size {100 * path.size_bytes / ops.size_bytes:.0f}%,"
        f" build time {100 * (path.build_s or 0) / (ops.build_s or 1):.0f}%,"
        f" @> latency {100 * path.containment.median_ms / ops.containment.median_ms:.0f}%"
    )
    if len({(r.containment.rows, r.existence.rows) for r in results}) != 1:
        out.append("WARNING: the variants returned different row counts for the same parameters")
    return out


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split(":")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="responses to load")
    parser.add_argument("--pg", choices=("15", "18"), default="15", help="PostgreSQL major")
    parser.add_argument("--repeat", type=int, default=15, help="timed rounds per query shape")
    parser.add_argument("--builds", type=int, default=3, help="index builds per variant")
    parser.add_argument("--seed", type=int, default=7, help="data generator seed")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="server setting for postgresql.conf, e.g. --set maintenance_work_mem=256MB",
    )
    args = parser.parse_args(argv)
    if args.rows < 1000 or args.repeat < 1 or args.builds < 1:
        parser.error("--rows must be at least 1000, --repeat and --builds at least 1")
    for item in args.set:
        if "=" not in item:
            parser.error(f"--set {item!r}: expected NAME=VALUE")
    return args


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    settings = dict(item.split("=", 1) for item in args.set)
    command = shlex.join(getattr(sys, "orig_argv", sys.argv))
    try:
        with local_server(args.pg, settings) as server, server.connect() as conn:
            conn.prepare_threshold = None  # plan every execution with its real parameter
            started = time.perf_counter()
            load(conn, args.rows, args.seed)
            loaded = time.perf_counter() - started
            print(f"loaded {args.rows:,} rows in {loaded:.1f} s; choosing parameters", flush=True)
            containment, existence = choose_parameters(conn, args.rows)
            results = []
            for variant in VARIANTS:
                print(f"measuring {variant.name}", flush=True)
                results.append(
                    run_variant(conn, variant, containment, existence, args.repeat, args.builds)
                )
            version, jsonb_bytes, table_bytes = conn.execute(
                "SELECT current_setting('server_version'), sum(pg_column_size(answers)),"
                " pg_table_size('checklistresponse') FROM checklistresponse"
            ).fetchone()
            knobs = conn.execute(
                "SELECT string_agg(name || '=' || setting || coalesce(unit, ''), ' ' ORDER BY name)"
                " FROM pg_settings WHERE name IN ('shared_buffers', 'maintenance_work_mem',"
                " 'work_mem', 'max_parallel_workers_per_gather',"
                " 'max_parallel_maintenance_workers', 'jit', 'fsync')"
            ).fetchone()[0]
            keys_per_row = conn.execute(
                "SELECT min(n), round(avg(n), 1), max(n) FROM"
                " (SELECT count(*) n FROM checklistresponse, jsonb_object_keys(answers)"
                "  GROUP BY id) s"
            ).fetchone()
    except KeyboardInterrupt:
        print("\ninterrupted; the server was stopped and removed", file=sys.stderr)
        return 130
    print()
    print(
        f"PostgreSQL {version} | {args.rows:,} rows | answers jsonb {pretty_bytes(jsonb_bytes)}"
        f" (table {pretty_bytes(table_bytes)}, keys/row {keys_per_row[0]}/{keys_per_row[1]}"
        f"/{keys_per_row[2]} min/avg/max) | nproc {os.cpu_count()}"
    )
    print(f"settings: {knobs}")
    print(f"command: {command}")
    print(
        f"latency: median of {args.repeat} rounds x {PARAMS_PER_QUERY} parameters after"
        f" {WARMUPS} warm-ups each; build: median of {args.builds}, after VACUUM ANALYZE"
    )
    print("@> params: " + ", ".join(label for _, label in containment))
    print("?  params: " + ", ".join(label for _, label in existence))
    print()
    print(render(results))
    print()
    print(render_per_parameter(results, containment, existence))
    print()
    for line in ratios(results):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
