"""Benchmark of large objects at scale: what the snapshot reads and what a revoke costs.

    PYTHONPATH=. .venv/bin/python bench/large_objects.py [--runs 3] [--pg 15|18]
        [--sizes 0,10000,100000,1000000] [--compare REV] [--acls shared|distinct]

One local cluster; the environment is deployed once, declaring the runtime as an owner of
large objects. For each size (cumulative: the runtime creates large objects up to it), every
one of them is made readable by a stranger (pg_largeobject_metadata.lomacl set directly, which
is setup, not what is measured). Rows per size: the snapshot's large-object query alone (psql,
its JSON line's size: it must not grow with the objects), the catalog-only audit end to end
(which then fails: the stranger's privileges are drift), and the deploy that revokes them all
(batches of 1,000, each committed), with the objects per second. Medians of ``--runs``; the
ratio column is each size's median over the first size's, measured in the same run. With
``--compare REV`` the query as it was at git revision REV runs beside it, alternately, on the
same objects: its median and the ratio of this one's over it. ``--acls distinct`` is the
query's worst case: each object also readable by its own subset of 20 more roles (by its oid's
bits), so nearly every object has an ACL of its own; the revoke deploy is then not run.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pgprov.sql.render import render  # noqa: E402

from bench.audit import PYINFRA, PYTHON, SMALL, inventory, timed  # noqa: E402
from tests.pgserver import Server, local_server  # noqa: E402

STRANGER = "bench_stranger"
GROUPS = [f"bench_g{bit}" for bit in range(20)]  # --acls distinct: 2**20 different ACLs


def declare_owner(path: Path) -> None:
    """The bench inventory, with the runtime declared as an owner of large objects."""
    text = path.read_text().replace("})]", ", 'pg_large_objects': {'runtime': {}}})]")
    path.write_text(text)


def grow(server: Server, count: int, distinct: bool) -> None:
    """Large objects of the runtime up to ``count``, each readable by the stranger."""
    with server.connect("bench_db") as conn:
        have = conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()[0]
        conn.execute("SET ROLE bench_runtime")
        for start in range(have, count, 50_000):
            n = min(50_000, count - start)
            conn.execute(f"SELECT lo_create(0) FROM generate_series(1, {n})")
        conn.execute("RESET ROLE")
    expose(server, distinct)


def expose(server: Server, distinct: bool) -> None:
    shared = f"'{{bench_runtime=rw/bench_runtime,{STRANGER}=r/bench_runtime}}'::aclitem[]"
    own = (
        "ARRAY(SELECT pg_catalog.format('bench_g%s=r/bench_runtime', b)::aclitem"
        " FROM generate_series(0, 19) b WHERE (oid::bigint >> b) & 1 = 1)"
    )
    with server.connect("bench_db") as conn:
        conn.execute(
            f"UPDATE pg_largeobject_metadata SET lomacl = {shared}"
            + (f" || {own}" if distinct else "")
        )


TEMPLATE = "kinds/large_objects.sql.j2"


def query_at(revision: str) -> str:
    """The large-object query as it was at git ``revision`` (it takes no variables: only its
    comments are Jinja)."""
    show = ["git", "show", f"{revision}:sql_templates/{TEMPLATE}"]
    text = subprocess.run(show, cwd=REPO, capture_output=True, text=True, check=True).stdout
    return re.sub(r"\{#.*?#\}", "", text, flags=re.S)


def query_seconds(server: Server, sql: str) -> tuple[float, int]:
    """One large-object query alone, through psql: seconds and its output's first line's
    bytes."""
    env = {**os.environ, "PGPASSWORD": server.password}
    argv = ["psql", "-X", "-q", "-A", "-t", "-h", server.host, "-p", str(server.port),
            "-U", server.superuser, "-d", "bench_db", "-c", sql]  # fmt: skip
    start = time.perf_counter()
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
    return time.perf_counter() - start, len(out.splitlines()[0].encode())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pg", choices=["15", "18"], default="15")
    parser.add_argument("--sizes", default="0,10000,100000,1000000")
    parser.add_argument("--compare", metavar="REV", help="time the query of git revision REV too")
    parser.add_argument("--acls", choices=["shared", "distinct"], default="shared")
    args = parser.parse_args()
    distinct = args.acls == "distinct"
    sizes = [int(s) for s in args.sizes.split(",")]
    current = render(TEMPLATE)
    earlier = query_at(args.compare) if args.compare else None
    compared: list[float] = []
    work = Path(tempfile.mkdtemp(prefix="pgprov-bench-lo-"))
    results: list[tuple[int, float, int, float, float]] = []
    with local_server(args.pg, SMALL) as server:
        inv = inventory(server, work)
        declare_owner(inv)
        with server.connect() as conn:
            for role in [STRANGER, *(GROUPS if distinct else [])]:
                conn.execute(f"CREATE ROLE {role}")
        deploy = [PYINFRA, "-y", str(inv), "deploy/provision.py"]
        timed(deploy)
        audit = [PYTHON, "-m", "pgprov.audit.audit", str(inv), "--no-probes"]
        for size in sizes:
            grow(server, size, distinct)
            queries, audits, revokes, before, line = [], [], [], [], 0
            for run in range(args.runs):
                expose(server, distinct)
                query_seconds(server, current)  # the updated rows' first read sets hint bits
                # Alternately first, so neither always meets the other's warm cache.
                lengths = set()
                for sql, into in [(current, queries), (earlier, before)][:: 1 if run % 2 else -1]:
                    if sql is not None:
                        seconds, line = query_seconds(server, sql)
                        into.append(seconds)
                        lengths.add(line)
                assert len(lengths) == 1, f"the two queries' lines differ: {lengths}"
                audits.append(timed(audit, (0, 1) if size else (0,)))
                revokes.append(float("nan") if distinct else timed(deploy))
            with server.connect("bench_db") as conn:
                left = conn.execute(
                    "SELECT count(*) FROM pg_largeobject_metadata WHERE cardinality(lomacl) > 1"
                ).fetchone()[0]
            assert distinct or left == 0, f"{left} large objects still readable by the stranger"
            med = statistics.median
            results.append((size, med(queries), line, med(audits), med(revokes)))
            if before:
                compared.append(med(before))
    print(
        f"pgprov large-object benchmark: PostgreSQL {args.pg}, {os.cpu_count()} cores, "
        f"median of {args.runs} runs; ratios over {sizes[0]:,} objects, same run"
    )
    print(f"{'objects':>10} {'LO query (s)':>12} {'JSON bytes':>10} {'audit (s)':>9} "
          f"{'x':>6} {'revoke deploy (s)':>17} {'objects/s':>10}")  # fmt: skip
    _, _, _, audit0, _ = results[0]
    for size, query, line, audit_s, revoke in results:
        rate = f"{size / revoke:,.0f}" if size and not distinct else ""
        print(f"{size:>10,} {query:>12.3f} {line:>10,} {audit_s:>9.3f} "
              f"{audit_s / audit0:>5.2f}x {revoke:>17.3f} {rate:>10}")  # fmt: skip
    if compared:
        print(f"the LO query at {args.compare}, alternating with this one on the same objects:")
        print(f"{'objects':>10} {args.compare[:12]:>12} {'this one':>9} {'ratio':>7}")
        for (size, query, *_), then in zip(results, compared, strict=True):
            print(f"{size:>10,} {then:>12.3f} {query:>9.3f} {query / then:>6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
