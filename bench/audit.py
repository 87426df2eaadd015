"""Benchmark of the audit on a large schema: `python -m pgprov.audit.audit` wall time, medians.

    PYTHONPATH=. .venv/bin/python bench/audit.py [--runs 7] [--pg 15|18] [--tables 1000]

One local cluster; the environment is deployed once, then ``--tables`` extra tables (each
with a serial column, so a sequence too) are created in schema ``app`` by the migrator and a
second deploy grants them. Rows: the audit of that environment (catalog only, and with the
login probes), and the no-op deploy of it. The audit's own start-up is included, as CI pays it.

``--baseline DIR`` (another checkout, e.g. ``git archive <commit> | tar -x -C DIR``) runs the
same commands from DIR's code, interleaved run by run with this checkout's, so both see the
same machine load; the ratio column is this checkout over the baseline.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.pgserver import Server, local_server  # noqa: E402

PYTHON = sys.executable
PYINFRA = str(Path(sys.executable).parent / "pyinfra")
SMALL = {"shared_buffers": "'64MB'", "max_connections": "40", "wal_level": "minimal",
         "max_wal_senders": "0"}  # fmt: skip


def secret(directory: Path, name: str, value: str) -> str:
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return f"file:{path}"


def inventory(server: Server, directory: Path) -> Path:
    data = {
        "pg_environment": "bench",
        "pg_profile": "split",
        "pg_database": "bench_db",
        "pg_migrator": "bench_migrator",
        "pg_runtime": "bench_runtime",
        "pg_admin_host": server.host,
        "pg_admin_port": server.port,
        "pg_admin_user": server.superuser,
        "pg_admin_password": secret(directory, "admin", server.password),
        "pg_app_host": server.host,
        "pg_app_port": server.port,
        "pg_migrator_password": secret(directory, "migrator", "m-bench-pw"),
        "pg_runtime_password": secret(directory, "runtime", "r-bench-pw"),
    }
    path = directory / "inventory.py"
    path.write_text(f"hosts = [('@db/bench', {data!r})]\n")
    return path


def timed(argv: list[str], ok: tuple[int, ...] = (0,), repo: Path = REPO) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        argv,
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode not in ok:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout[-3000:]}"
                           f"\n{proc.stderr[-2000:]}")  # fmt: skip
    return elapsed


def extra_tables(server: Server, count: int) -> None:
    with server.connect("bench_db") as conn:
        conn.execute("SET ROLE bench_migrator")
        for i in range(count):
            conn.execute(f"CREATE TABLE app.extra_{i} (id serial PRIMARY KEY, note text)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--pg", choices=["15", "18"], default="15")
    parser.add_argument("--tables", type=int, default=1000)
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with")
    args = parser.parse_args()
    repos = {"": REPO}
    if args.baseline:
        repos["baseline "] = args.baseline.resolve()
    work = Path(tempfile.mkdtemp(prefix="pgprov-bench-audit-"))
    rows: dict[str, list[float]] = {}
    with local_server(args.pg, SMALL) as server:
        inv = inventory(server, work)
        timed([PYINFRA, "-y", str(inv), "deploy/provision.py"])
        extra_tables(server, args.tables)
        timed([PYINFRA, "-y", str(inv), "deploy/provision.py"])
        audit = [PYTHON, "-m", "pgprov.audit.audit", str(inv)]
        for _ in range(args.runs):
            for tag, repo in repos.items():
                # A baseline may judge this checkout's catalog differently: time, not verdict.
                audited = (0, 1) if tag else (0,)
                rows.setdefault(f"{tag}audit, catalog only", []).append(
                    timed([*audit, "--no-probes"], audited, repo)
                )
                rows.setdefault(f"{tag}audit with probes", []).append(timed(audit, audited, repo))
                no_op = [PYINFRA, "-y", str(inv), "deploy/provision.py"]
                rows.setdefault(f"{tag}deploy no-op", []).append(timed(no_op, repo=repo))
    print(
        f"pgprov audit benchmark: PostgreSQL {args.pg}, {args.tables} extra tables in app, "
        f"{os.cpu_count()} cores, median of {args.runs} runs"
    )
    print(f"{'case':<34} {'median (s)':>10} {'min (s)':>8} {'vs baseline':>11}")
    for name, values in rows.items():
        base = rows.get(f"baseline {name}")
        ratio = f"{statistics.median(values) / statistics.median(base):.2f}x" if base else ""
        print(f"{name:<34} {statistics.median(values):>10.3f} {min(values):>8.3f} {ratio:>11}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
