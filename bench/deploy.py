"""Benchmark of the deploy against its floor: wall time and psql round trips, side by side.

    PYTHONPATH=. .venv/bin/python bench/deploy.py [--runs 5] [--pg 15|18] [--only production]

Rows (median of --runs runs each, all measured in this one run):
- production: the production inventory (inventories/production.py, DB_TARGET=@local and the
  libpq variables pointing at a local cluster), cold and no-op, each no-op run right after
  pyinfra's own empty deploy on the same ``@local`` target, so their ratio is same-run and
  interleaved (``--only production`` measures just these);
- cold: `pyinfra -y` on a fresh environment (roles, database, schema, privileges, Aerich
  migrations, GIN index), one host;
- no-op: the same deploy again on the converged environment;
- fan-out 1/4/8: cold and no-op deploys of an inventory of N `@db/envK` hosts, each its own
  local cluster, in parallel;
- floor: the same end state applied by one `psql -f` session of static idempotent SQL
  (cold: on a fresh environment; no-op: the same script again).
psql round trips are counted by a `psql` shim first on PATH that logs every start. The
deploy's CLI start-up (pyinfra, gevent, imports) is included, as users pay it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.pgserver import Server, local_server  # noqa: E402

PYINFRA = str(Path(sys.executable).parent / "pyinfra")
SMALL = {
    "shared_buffers": "'32MB'",
    "max_connections": "40",
    "max_wal_senders": "0",
    "wal_level": "minimal",
}


@dataclass
class Row:
    name: str
    seconds: list[float]
    round_trips: list[int]
    # user + system CPU seconds of the run and the processes it waited for (not the migration
    # fork server, which exits on its own): steadier than wall time on a shared machine
    cpu: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def trips(self) -> str:
        values = sorted(set(self.round_trips))
        return "/".join(str(v) for v in values)


class Shim:
    """Counting ``psql`` stand-ins: ``psql`` runs the one on PATH (on Debian, the Perl
    wrapper a DBA types), ``psql-direct`` runs the client binary the deploy itself picks."""

    def __init__(self, directory: Path) -> None:
        from pgprov.catalog.psql import local_psql

        self.directory = directory
        self.log = directory / "psql.count"
        on_path = subprocess.run(
            ["sh", "-c", "command -v psql"], capture_output=True, text=True
        ).stdout.strip()
        for name, real in (("psql", on_path), ("psql-direct", local_psql())):
            shim = directory / name
            shim.write_text(f'#!/bin/sh\necho 1 >> "{self.log}"\nexec {real} "$@"\n')
            shim.chmod(0o755)
        self.direct = str(directory / "psql-direct")

    def reset(self) -> None:
        self.log.write_text("")

    def count(self) -> int:
        return len(self.log.read_text().splitlines())

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PATH": f"{self.directory}:{os.environ['PATH']}",
            "PYTHONPATH": str(REPO),
        }


def secret(directory: Path, name: str, value: str) -> str:
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return f"file:{path}"


def host_data(server: Server, directory: Path, prefix: str, psql: str = "psql") -> dict:
    tag = f"{prefix}-{server.port}"
    return {
        "pg_psql": psql,
        "pg_environment": "bench",
        "pg_profile": "split",
        "pg_database": f"{prefix}_db",
        "pg_migrator": f"{prefix}_migrator",
        "pg_runtime": f"{prefix}_runtime",
        "pg_admin_host": server.host,
        "pg_admin_port": server.port,
        "pg_admin_user": server.superuser,
        "pg_admin_password": secret(directory, f"{tag}.admin", server.password),
        "pg_migrator_password": secret(directory, f"{tag}.migrator", f"m-{prefix}-pw"),
        "pg_runtime_password": secret(directory, f"{tag}.runtime", f"r-{prefix}-pw"),
    }


def write_inventory(directory: Path, hosts: list[tuple[str, dict]], name: str) -> Path:
    path = directory / f"{name}.py"
    path.write_text(f"envs = {hosts!r}\n")
    return path


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_deploy(
    inventory: Path | str,
    shim: Shim,
    deploy: str = "deploy/provision.py",
    env: dict[str, str] | None = None,
) -> tuple[float, int, float]:
    shim.reset()
    cpu = children_cpu()
    start = time.perf_counter()
    proc = subprocess.run(
        [PYINFRA, "-y", str(inventory), deploy],
        cwd=REPO,
        env=env or shim.env(),
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        log = shim.directory / f"{Path(inventory).stem}.log"
        log.write_text(proc.stdout + proc.stderr)
        errors = [line for line in proc.stdout.splitlines() if "rror" in line][:5]
        raise RuntimeError(f"deploy failed (full output in {log}):\n" + "\n".join(errors))
    return elapsed, shim.count(), children_cpu() - cpu


def floor_script(prefix: str) -> str:
    """The end state as static, idempotent SQL (what a careful DBA would write once)."""
    from pgprov.app_schema.config import MIGRATIONS_LOCATION
    from pgprov.migrate.upgrade import migration_files

    migration_sql = []
    for name in migration_files():
        text = (Path(MIGRATIONS_LOCATION) / "models" / name).read_text()
        migration_sql.append(text.split('return """', 1)[1].split('"""', 1)[0])
        version = name
    db, mig, run = f"{prefix}_db", f"{prefix}_migrator", f"{prefix}_runtime"
    return f"""
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{mig}') THEN
    CREATE ROLE "{mig}" LOGIN PASSWORD 'm-{prefix}-pw'; END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{run}') THEN
    CREATE ROLE "{run}" LOGIN PASSWORD 'r-{prefix}-pw'; END IF;
END $$;
SELECT 'CREATE DATABASE "{db}" OWNER "{mig}"'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{db}') \\gexec
\\connect "{db}"
BEGIN;
ALTER ROLE "{mig}" IN DATABASE "{db}" SET search_path TO app, public;
ALTER ROLE "{run}" IN DATABASE "{db}" SET search_path TO app, public;
CREATE SCHEMA IF NOT EXISTS app AUTHORIZATION "{mig}";
REVOKE CONNECT, TEMPORARY ON DATABASE "{db}" FROM PUBLIC;
GRANT CONNECT ON DATABASE "{db}" TO "{run}";
GRANT USAGE ON SCHEMA app TO "{run}";
ALTER DEFAULT PRIVILEGES FOR ROLE "{mig}" IN SCHEMA app
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO "{run}";
ALTER DEFAULT PRIVILEGES FOR ROLE "{mig}" IN SCHEMA app
  GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO "{run}";
SET LOCAL ROLE "{mig}";
SET LOCAL search_path TO app;
{"".join(migration_sql)}
INSERT INTO aerich (version, app, content)
SELECT '{version}', 'models', '{{}}' WHERE NOT EXISTS (SELECT FROM aerich WHERE version = '{version}');
REVOKE ALL ON TABLE aerich FROM "{run}";
COMMIT;
SET ROLE "{mig}";
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_checklistresponse_answers_gin
  ON app.checklistresponse USING gin (answers);
"""


def run_floor(
    server: Server, script: str, shim: Shim, psql: str = "psql"
) -> tuple[float, int, float]:
    shim.reset()
    env = {**shim.env(), "PGPASSFILE": str(server.passfile)}
    cpu = children_cpu()
    start = time.perf_counter()
    proc = subprocess.run(
        [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", server.host, "-p", str(server.port),
         "-U", server.superuser, "-d", "postgres", "-f", "-"],
        input=script, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"floor script failed: {proc.stderr[-2000:]}")
    return elapsed, shim.count(), children_cpu() - cpu


PRODUCTION_ROLES = ("app_runtime", "app_migrator")
BENCH_PASSWORDS = (secrets.token_urlsafe(18), secrets.token_urlsafe(18))


def production_env(server: Server, shim: Shim) -> dict[str, str]:
    """inventories/production.py pointed at ``server`` the documented way (DB_TARGET=@local,
    libpq variables, role passwords from the environment)."""
    env = {k: v for k, v in shim.env().items() if k != "PGPASSWORD"}
    env.update(
        DB_TARGET="@local",
        PGHOST=server.host,
        PGPORT=str(server.port),
        PGUSER=server.superuser,
        PGPASSFILE=str(server.passfile),
        # Throwaway cluster, but still no literal secrets: fresh ones per benchmark run.
        APP_MIGRATOR_PASSWORD=BENCH_PASSWORDS[0],
        APP_RUNTIME_PASSWORD=BENCH_PASSWORDS[1],
    )
    return env


def drop_production(server: Server) -> None:
    """Back to a fresh server for the production inventory's cold run."""
    from pgprov.model.spec import DEFAULT_DATABASE
    from psycopg import sql

    with server.connect() as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(DEFAULT_DATABASE)
            )
        )
        for role in PRODUCTION_ROLES:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def measure_production(
    server: Server, shim: Shim, work: Path, add: Callable[[str, float, int, float], None]
) -> None:
    """One round: cold, then pyinfra's empty deploys and the no-op back to back.

    The second empty deploy freezes the heap as deploy/provision.py does, so that what the
    freeze saves pyinfra itself is not counted as the deploy's own speed."""
    empty_deploy = work / "empty_deploy.py"
    empty_deploy.write_text("")
    frozen_deploy = work / "empty_frozen_deploy.py"
    frozen_deploy.write_text(
        "import atexit\nimport gc\n\ngc.freeze()\natexit.register(gc.freeze)\n"
    )
    empty_local = write_inventory(work, [("@local", {})], "empty_local")
    env = production_env(server, shim)
    inventory = "inventories/production.py"
    drop_production(server)
    add("production: cold", *run_deploy(inventory, shim, env=env))
    add("pyinfra: empty deploy (@local)", *run_deploy(empty_local, shim, str(empty_deploy)))
    add("production: no-op", *run_deploy(inventory, shim, env=env))
    add("pyinfra: empty, heap frozen", *run_deploy(empty_local, shim, str(frozen_deploy)))


@contextlib.contextmanager
def servers(count: int, major: str) -> Iterator[list[Server]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(local_server(major, SMALL)) for _ in range(count)]


def measure(runs: int, major: str, only: str | None = None) -> list[Row]:
    work = Path(tempfile.mkdtemp(prefix="pgprov-bench-"))
    shim = Shim(work)
    rows: dict[str, Row] = {}

    def add(name: str, seconds: float, trips: int, cpu: float) -> None:
        rows.setdefault(name, Row(name, [], [])).seconds.append(seconds)
        rows[name].round_trips.append(trips)
        rows[name].cpu.append(cpu)

    empty_deploy = work / "empty_deploy.py"
    empty_deploy.write_text("")
    empty_inventory = write_inventory(work, [("@db/empty", {})], "empty")
    with servers(1 if only == "production" else 8, major) as pool:
        for run in range(runs):
            measure_production(pool[0], shim, work, add)
            if only == "production":
                continue
            prefix = f"b{run}"
            # The floor: one psql -f session; cold, then the same script again.
            script = floor_script(f"{prefix}f")
            add("floor: static SQL, cold", *run_floor(pool[0], script, shim))
            add("floor: static SQL, no-op", *run_floor(pool[0], script, shim))
            direct = floor_script(f"{prefix}d")
            add("floor, psql binary: cold", *run_floor(pool[0], direct, shim, shim.direct))
            add("floor, psql binary: no-op", *run_floor(pool[0], direct, shim, shim.direct))
            # pyinfra's own start-up: an empty deploy on one @db host (no psql at all).
            add("pyinfra: empty deploy", *run_deploy(empty_inventory, shim, str(empty_deploy)))
            # One host: cold, then no-op.
            one = write_inventory(
                work,
                [("@db/env1", host_data(pool[0], work, f"{prefix}o", shim.direct))],
                f"one{run}",
            )
            add("deploy: cold (1 host)", *run_deploy(one, shim))
            add("deploy: no-op (1 host)", *run_deploy(one, shim))
            for n in (4, 8):
                hosts = [
                    (f"@db/env{i + 1}", host_data(pool[i], work, f"{prefix}n{n}", shim.direct))
                    for i in range(n)
                ]
                inv = write_inventory(work, hosts, f"fan{n}-{run}")
                add(f"fan-out: cold ({n} hosts)", *run_deploy(inv, shim))
                add(f"fan-out: no-op ({n} hosts)", *run_deploy(inv, shim))
    return list(rows.values())


PRODUCTION_ROWS = (
    "pyinfra: empty deploy (@local)",
    "pyinfra: empty, heap frozen",
    "production: no-op",
    "production: cold",
)


def report_production(by: dict[str, Row]) -> list[str]:
    """The production inventory against pyinfra's own empty deploy, from the same rounds."""
    empty, frozen, noop, cold = (by[name] for name in PRODUCTION_ROWS)

    def ratios(base: Row) -> str:
        wall = [n / e for e, n in zip(base.seconds, noop.seconds, strict=True)]
        return (
            f"{noop.median / base.median:.2f}x (median of each round's ratio "
            f"{statistics.median(wall):.2f}x; CPU {statistics.median(noop.cpu) / statistics.median(base.cpu):.2f}x)"
        )

    lines = [
        f"{'production inventory (@local)':<31} {'median (s)':>10} {'CPU (s)':>8}  runs (s)",
        f"{'-' * 31} {'-' * 10} {'-' * 8}  {'-' * 8}",
    ]
    for row in (empty, frozen, noop, cold):
        runs = " ".join(f"{v:.3f}" for v in row.seconds)
        cpu = statistics.median(row.cpu)
        lines.append(f"{row.name:<31} {row.median:>10.3f} {cpu:>8.3f}  {runs}")
    lines += [
        "",
        f"no-op / pyinfra's empty deploy: {ratios(empty)}; target <= 1.6x, stretch 1.3x",
        f"no-op / the empty deploy with the heap frozen as ours: {ratios(frozen)}",
    ]
    return lines


def report(rows: list[Row], runs: int, major: str) -> str:
    by = {r.name: r for r in rows}
    header = [
        f"pgprov deploy benchmark: PostgreSQL {major}, {os.cpu_count()} cores, median of {runs} runs",
        f"command: {' '.join([Path(sys.executable).name, *sys.argv])}",
        "",
        *report_production(by),
    ]
    if "floor: static SQL, cold" not in by:
        return "\n".join(header)
    floor_cold = by["floor: static SQL, cold"].median
    floor_noop = by["floor: static SQL, no-op"].median
    one_cold = by["deploy: cold (1 host)"].median
    one_noop = by["deploy: no-op (1 host)"].median
    lines = [
        *header,
        "",
        f"{'case':<28} {'median (s)':>10} {'psql round trips':>17} {'vs floor':>9}",
        f"{'-' * 28} {'-' * 10} {'-' * 17} {'-' * 9}",
    ]
    for row in rows:
        if row.name in PRODUCTION_ROWS:
            continue
        floor = floor_noop if "no-op" in row.name or "empty" in row.name else floor_cold
        ratio = "" if row.name.startswith("floor") else f"{row.median / floor:.1f}x"
        lines.append(f"{row.name:<28} {row.median:>10.3f} {row.trips:>17} {ratio:>9}")
    direct_noop = by["floor, psql binary: no-op"].median
    direct_cold = by["floor, psql binary: cold"].median
    fan8_cold = by["fan-out: cold (8 hosts)"].median
    fan8_noop = by["fan-out: no-op (8 hosts)"].median
    lines += [
        "",
        f"targets: no-op <= 13x floor: {one_noop / floor_noop:.1f}x; "
        f"cold <= 15x floor: {one_cold / floor_cold:.1f}x; "
        f"8 hosts <= 1.5x one host: cold {fan8_cold / one_cold:.2f}x, no-op {fan8_noop / one_noop:.2f}x",
        "ratios use the floor through `psql` on PATH (Debian's Perl wrapper, ~40 ms a start);",
        f"against the psql binary itself: no-op {one_noop / direct_noop:.1f}x, "
        f"cold {one_cold / direct_cold:.1f}x (the deploy starts the binary directly)",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pg", choices=["15", "18"], default="15")
    parser.add_argument(
        "--only", choices=["production"], help="measure only the production inventory rows"
    )
    args = parser.parse_args()
    rows = measure(args.runs, args.pg, args.only)
    print(report(rows, args.runs, args.pg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
