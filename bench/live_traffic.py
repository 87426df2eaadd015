"""The application's read latency while a deploy needs a lock on the table it reads.

    PYTHONPATH=. .venv/bin/python bench/live_traffic.py [--runs 3] [--pg 15] [--hold 4]
        [--repo /path/to/another/checkout]   # e.g. the code before lock discipline

Each run: a deployed environment whose app.checklist was handed to another role (ownership
drift: the repair is ALTER TABLE ... OWNER, ACCESS EXCLUSIVE); an application reader loops
``SELECT count(*) FROM app.checklist`` as the runtime role (one query every 20 ms) while
``pyinfra -y`` repairs it, from ``--repo``. Two cases: no other transaction, and an
application transaction that read the table and stays open for ``--hold`` seconds of the
deploy. Prints p50/p99/max of every read during the deploys (all runs together), the
slowest read per run (median) and the deploy's wall time (median).
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

from tests.deploykit import PYINFRA, env_data, write_inventory  # noqa: E402
from tests.e2e.helpers import superuser_sql  # noqa: E402
from tests.e2e.traffic import AppReader, Blocker  # noqa: E402
from tests.pgserver import Names, Server, drop_prefixed, local_server  # noqa: E402

READ = "SELECT count(*) FROM app.checklist"
HOLD = "SELECT FROM app.checklist LIMIT 1"


def deploy(repo: Path, directory: Path, data: dict) -> tuple[int, float]:
    inventory = write_inventory(directory, data)
    started = time.monotonic()
    proc = subprocess.run(
        [PYINFRA, "-y", str(inventory), "deploy/provision.py"],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.returncode, time.monotonic() - started


def one_run(server: Server, repo: Path, hold: float | None) -> tuple[list[float], int, float]:
    names = Names.new()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp)
            env = env_data(server, names, directory)
            code, _ = deploy(repo, directory, env.data)
            assert code == 0, "the first deploy failed"
            intruder = names.role("intruder")
            superuser_sql(server, "postgres", "CREATE ROLE {intruder}", names, intruder=intruder)
            superuser_sql(
                server,
                names.database,
                "ALTER TABLE app.checklist OWNER TO {intruder}",
                names,
                intruder=intruder,
            )
            blocker = Blocker(server, env, HOLD) if hold is not None else None
            with AppReader(server, env, READ) as reader:
                first = len(reader.latencies)
                timer = blocker.release_after(hold) if blocker and hold is not None else None
                code, seconds = deploy(repo, directory, env.data)
                during = reader.latencies[first:]
                if timer:
                    timer.join()
            if blocker:
                blocker.release()
            return during, code, seconds
    finally:
        drop_prefixed(server, names.prefix)


def figures(latencies: list[float]) -> tuple[float, float, float]:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1000, p99 * 1000, ordered[-1] * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pg", default=os.environ.get("PGPROV_TEST_PG", "15"))
    parser.add_argument("--hold", type=float, default=4.0)
    parser.add_argument("--repo", type=Path, default=REPO)
    args = parser.parse_args()
    print(f"deploying from {args.repo}, PostgreSQL {args.pg}, {args.runs} runs per case")
    print(f"{'case':<34}{'exit':>6}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
          f"{'max/run ms':>12}{'deploy s':>10}")  # fmt: skip
    with local_server(args.pg) as server:
        for label, hold in (("no blocker", None), (f"blocker holding {args.hold:g} s", args.hold)):
            runs = [one_run(server, args.repo, hold) for _ in range(args.runs)]
            every = [t for during, _, _ in runs for t in during]
            p50, p99, worst = figures(every)
            per_run = statistics.median(max(during) * 1000 for during, _, _ in runs)
            codes = "/".join(sorted({str(code) for _, code, _ in runs}))
            seconds = statistics.median(s for _, _, s in runs)
            print(f"{label:<34}{codes:>6}{p50:>9.1f}{p99:>9.1f}{worst:>9.1f}"
                  f"{per_run:>12.1f}{seconds:>10.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
