"""The application as the deploy meets it in production: a reader loop measuring how long each
query takes, a transaction that holds a lock (or a snapshot) for as long as the test says,
and deploys started in their own process group so a test can SIGKILL all of them at once.

    with AppReader(pg_server, env, "SELECT count(*) FROM app.checklist") as reader: ...
    reader.latencies                # seconds, one per query
    blocker = Blocker(pg_server, env, "SELECT FROM app.checklist LIMIT 1"); blocker.pid
    proc = start_deploy(tmp_path, env.data); kill_when(proc, lambda: ...); proc.output()
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.deploykit import PYINFRA, REPO, DeployEnv, login, write_inventory
from tests.pgserver import Server


def runtime_login(server: Server, env: DeployEnv, **kwargs: Any):
    """A real application connection: the runtime role (split) or the app user."""
    which = "runtime" if env.data.get("pg_profile", "split") == "split" else "app_user"
    return login(
        server,
        env.data[f"pg_{which}"],
        env.passwords[which],
        env.data["pg_database"],
        application_name="hinfelaar_fastapi",
        **kwargs,
    )


class AppReader(threading.Thread):
    """Runs ``query`` in a loop as the application; records each query's latency."""

    def __init__(self, server: Server, env: DeployEnv, query: str, pause: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.server, self.env, self.query, self.pause = server, env, query, pause
        self.stop = threading.Event()
        self.latencies: list[float] = []
        self.errors: list[str] = []

    def run(self) -> None:
        try:
            with runtime_login(self.server, self.env, autocommit=True) as conn:
                conn.execute("SET statement_timeout = '60s'")
                while not self.stop.is_set():
                    started = time.monotonic()
                    try:
                        conn.execute(self.query).fetchall()
                    except Exception as exc:
                        self.errors.append(f"{type(exc).__name__}: {exc}")
                    self.latencies.append(time.monotonic() - started)
                    time.sleep(self.pause)
        except Exception as exc:
            self.errors.append(f"connect: {type(exc).__name__}: {exc}")

    def __enter__(self) -> AppReader:
        self.start()
        deadline = time.monotonic() + 30
        while not self.latencies and not self.errors and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join(timeout=60)

    def figures(self) -> dict[str, float]:
        """p50 / p99 / max latency in milliseconds."""
        ordered = sorted(self.latencies)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return {
            "p50": statistics.median(ordered) * 1000,
            "p99": p99 * 1000,
            "max": ordered[-1] * 1000,
        }


class Blocker:
    """An open application transaction that ran ``statement`` and holds what it took."""

    def __init__(self, server: Server, env: DeployEnv, statement: str, isolation: str = "") -> None:
        self.conn = runtime_login(server, env)
        if isolation:
            self.conn.execute(f"SET TRANSACTION ISOLATION LEVEL {isolation}")
        self.conn.execute(statement).fetchall()
        self.pid = self.conn.info.backend_pid
        self.released_at: float | None = None

    def release(self) -> None:
        if self.released_at is None:
            self.conn.rollback()
            self.conn.close()
            self.released_at = time.monotonic()

    def release_after(self, seconds: float) -> threading.Timer:
        timer = threading.Timer(seconds, self.release)
        timer.start()
        return timer


class Deploy(subprocess.Popen[str]):
    """A running deploy; ``output()`` is what it printed (stdout and stderr)."""

    log: Path

    def output(self) -> str:
        return self.log.read_text()


def start_deploy(
    directory: Path, data: dict[str, Any], *, env: dict[str, str] | None = None
) -> Deploy:
    """``pyinfra -y inventory deploy/provision.py`` in its own process group (as CI runs a
    job), output to a file in ``directory``."""
    name = f"deploy-{time.monotonic_ns()}"
    inventory = write_inventory(directory, data)
    renamed = inventory.with_name(f"{name}.py")
    inventory.rename(renamed)
    log_path = directory / f"{name}.log"
    with open(log_path, "w") as log:
        proc = Deploy(
            [PYINFRA, "-y", str(renamed), "deploy/provision.py"],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    proc.log = log_path
    return proc


def kill_when(
    proc: Deploy,
    condition: Callable[[], bool],
    *,
    timeout: float = 120,
    interval: float = 0.005,
) -> bool:
    """SIGKILL the deploy's whole process group as soon as ``condition()`` holds; False when
    the deploy ended (or the time ran out) first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if condition():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(interval)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return False
