"""Runs Aerich upgrades (and Tortoise generate_schemas in prototype mode) as the migrator.

The deploy decides from the catalog snapshot alone whether anything is pending (the applied
versions come with it), so a converged run never starts Aerich or Tortoise. When work is
needed, the upgrade runs in a child process (``python -m pgprov.migrate.upgrade``) that receives its
connection, password included, as JSON on stdin — never in argv — and holds a session
advisory lock around Aerich, which takes none, so concurrent deploys apply each migration
exactly once.

    pending_migrations(snapshot.migrations)  # ['1_20261201_add_priority.py']
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pgprov.app_schema.config import APP_LABEL, MIGRATIONS_LOCATION
from pgprov.model.spec import DEFAULT_LOCK_TIMEOUT, DEFAULT_LOCK_WAIT

if TYPE_CHECKING:
    from pgprov.model.secrets import Secret
    from pgprov.sql.locks import LockPolicy

BLOCKERS_PLACEHOLDER = "<blocking sessions>"  # filled in by the deploy (run_upgrade)
_VERSION_FILE = re.compile(r"^(\d+)_.*\.py$")


class MigrationError(RuntimeError):
    """An upgrade failed; the message names the migration and the database error."""


def migrations_location() -> str:
    """Where the migration files are: the app's, or ``PGPROV_MIGRATIONS_LOCATION``.

    The override lets an environment run a different history (and the tests a broken one);
    the child process inherits it, so planning and applying read the same folder."""
    import os

    return os.environ.get("PGPROV_MIGRATIONS_LOCATION") or MIGRATIONS_LOCATION


def migration_files(location: str | None = None, app: str = APP_LABEL) -> list[str]:
    """The version files Aerich would apply, in its order (by the numeric prefix)."""
    directory = Path(location or migrations_location()) / app
    files = [p.name for p in directory.glob("*.py") if _VERSION_FILE.match(p.name)]
    return sorted(files, key=lambda name: int(_VERSION_FILE.match(name).group(1)))  # type: ignore[union-attr]


def pending_migrations(
    applied: Sequence[str] | None, files: Sequence[str] | None = None
) -> list[str]:
    """Files not yet recorded in the ``aerich`` table (``applied`` None: no table yet)."""
    files = migration_files() if files is None else files
    done = set(applied or ())
    return [name for name in files if name not in done]


@dataclass(frozen=True)
class Target:
    """Where and as whom the child connects; ``password`` travels on stdin only."""

    host: str
    port: int
    user: str
    password: str
    database: str
    schema: str
    mode: str = "migrate"  # or "generate"
    location: str = ""  # migrations folder; "" for migrations_location()
    runtime: str = ""  # the role that must hold nothing on the bookkeeping table
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT  # seconds, one wait for a lock
    lock_wait: float = DEFAULT_LOCK_WAIT  # seconds, every try of the upgrade together

    def url(self) -> str:
        from urllib.parse import quote

        return (
            f"postgres://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
            f"@{self.host}:{self.port}/{quote(self.database, safe='')}"
        )


async def _upgrade(target: Target) -> list[str]:
    from pgprov.catalog.session import connect_async
    from pgprov.sql.locks import MIGRATION_APPLICATION_NAME, MIGRATION_LOCK_KEY, MIGRATION_LOCK_SQL

    lock = await connect_async(
        host=target.host,
        port=target.port,
        user=target.user,
        password=target.password,
        dbname=target.database,
        application_name=MIGRATION_APPLICATION_NAME,
        autocommit=True,
    )
    try:
        # PostgreSQL 14+: a killed deploy's sessions end, lock wait included, within 1 s.
        settings = {"application_name": MIGRATION_APPLICATION_NAME}
        if lock.info.server_version >= 140000:
            settings["client_connection_check_interval"] = "1s"
            await lock.execute("SET client_connection_check_interval = '1s'")
        await lock.execute(MIGRATION_LOCK_SQL, (MIGRATION_LOCK_KEY,))
        try:
            return await _upgrade_locked(target, lock, settings)
        finally:
            if target.runtime and target.mode == "migrate":
                await _revoke_bookkeeping(lock, target)
    finally:
        await lock.close()


async def _upgrade_locked(target: Target, lock, settings: dict[str, str]) -> list[str]:
    """The upgrade, under the migration lock; each migration waits at most lock_timeout for a
    lock, and the upgrade as a whole is retried (Aerich applies each version in its own
    transaction, so a try that timed out left that version unapplied) within lock_wait."""
    from aerich import Command
    from pgprov.app_schema.config import tortoise_config
    from pgprov.sql.locks import LockPolicy, LockTimeout, retry_on_lock_timeout_async
    from tortoise import Tortoise

    policy = LockPolicy(target.lock_timeout, target.lock_wait)
    config = tortoise_config(target.url(), target.schema, with_aerich=target.mode == "migrate")
    credentials = config["connections"]["default"]["credentials"]
    credentials["server_settings"] = {
        **credentials.get("server_settings", {}),
        **settings,
        "lock_timeout": f"{policy.lock_timeout_ms}ms",
    }
    if target.mode == "generate":
        await Tortoise.init(config=config)
        try:
            await Tortoise.generate_schemas(safe=True)
        finally:
            await Tortoise.close_connections()
        return ["generate_schemas"]
    location = target.location or migrations_location()
    command = Command(tortoise_config=config, app=APP_LABEL, location=location)
    applied: list[str] = []
    try:
        async with command:

            async def once() -> None:
                try:
                    applied.extend(await command.upgrade(run_in_transaction=True))
                except Exception as exc:
                    if _lock_timed_out(exc):
                        raise LockTimeout(str(exc)) from exc
                    raise

            await retry_on_lock_timeout_async(once, policy)
            return applied
    except LockTimeout as exc:
        failed = await _first_pending(lock, target)
        # The blocking sessions are named by the deploy, as the admin: the migrator may not
        # see other roles' sessions.
        raise MigrationError(
            f"migration {failed}: locks not granted within pg_lock_wait ({policy.lock_wait:g} s, "
            f"pg_lock_timeout {policy.lock_timeout:g} s each); rolled back; "
            f"blocking sessions: {BLOCKERS_PLACEHOLDER}"
        ) from exc
    except Exception as exc:
        # Aerich applies in order and records each in its own transaction: the first
        # version still pending afterwards is the one that failed.
        failed = await _first_pending(lock, target)
        raise MigrationError(f"migration {failed} failed: {_one_line(exc)}") from exc


def _lock_timed_out(exc: BaseException) -> bool:
    """Whether a lock wait timed out somewhere in the exception's chain (SQLSTATE 55P03)."""
    from pgprov.sql.locks import LOCK_NOT_AVAILABLE

    seen: BaseException | None = exc
    while seen is not None:
        if getattr(seen, "sqlstate", None) == LOCK_NOT_AVAILABLE or "lock timeout" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


async def _first_pending(lock, target: Target) -> str:
    after = await _applied(lock, target.schema)
    remaining = pending_migrations(after, migration_files(target.location or None))
    return remaining[0] if remaining else "unknown"


async def _revoke_bookkeeping(lock, target: Target) -> None:
    """Take back what the default privileges gave the runtime on Aerich's table as it was
    created: here, after every upgrade, applied or failed, so the runtime never keeps it."""
    exists = await (
        await lock.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{target.schema}.aerich",))
    ).fetchone()
    if exists[0]:
        await lock.execute(bookkeeping_revoke_sql(target.schema, target.runtime))


def bookkeeping_revoke_sql(schema: str, runtime: str) -> str:
    from pgprov.sql.render import render

    return render("bookkeeping.sql.j2", schema=schema, table="aerich", runtime=runtime)


async def _applied(conn, schema: str) -> list[str]:
    from psycopg import sql

    exists = await (
        await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{schema}.aerich",))
    ).fetchone()
    if not exists[0]:
        return []
    rows = await (
        await conn.execute(
            sql.SQL("SELECT version FROM {}.aerich WHERE app = %s").format(sql.Identifier(schema)),
            (APP_LABEL,),
        )
    ).fetchall()
    return [r[0] for r in rows]


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def upgrade_one(target: Target) -> dict:
    """Run one upgrade in this process; the result as the JSON-able reply."""
    try:
        return {"applied": asyncio.run(_upgrade(target))}
    except MigrationError as exc:
        return {"error": str(exc)}
    except Exception as exc:  # every failure becomes one line for the deploy to print
        return {"error": _one_line(exc)}


def serve() -> int:
    """Fork server: import Aerich and Tortoise once, then fork one child per request.

    Requests and replies are JSON lines (``{"id": n, "target": {...}}`` in, ``{"id": n, ...}``
    out). Each child has Tortoise's and Aerich's global state to itself, so environments
    upgrade in parallel without paying the imports again (they are most of a run's CPU).
    """
    import contextlib
    import os
    import signal

    import aerich  # noqa: F401 - imported before forking, on purpose
    import pgprov.app_schema.config  # noqa: F401
    import psycopg  # noqa: F401
    import tortoise  # noqa: F401

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children reap themselves
    children: dict[int, int] = {}  # request id -> child pid
    for line in sys.stdin:
        request = json.loads(line)
        if "cancel" in request:
            # The controller gave up waiting: end the child, and with it its sessions (the
            # server drops a lock wait on the closed connection; 14+ within 1 s).
            pid = children.pop(request["cancel"], None)
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            continue
        pid = os.fork()
        if pid == 0:
            reply = {"id": request["id"], **upgrade_one(Target(**request["target"]))}
            data = (json.dumps(reply)[: 4000 - 1] + "\n").encode()
            os.write(1, data)  # one write below PIPE_BUF: replies never interleave
            os._exit(0)
        children[request["id"]] = pid
    return 0


def main(argv: list[str]) -> int:
    """``--serve``: the fork server; otherwise one Target as JSON on stdin, one reply out."""
    if argv == ["--serve"]:
        return serve()
    reply = upgrade_one(Target(**json.loads(sys.stdin.readline())))
    print(json.dumps(reply))
    return 0 if "applied" in reply else 1


def model_tables() -> list[str]:
    """The service's table names, from the models (prototype mode checks these exist)."""
    import importlib

    from pgprov.app_schema.config import MODEL_MODULES
    from tortoise.models import Model

    tables = []
    for module_name in MODEL_MODULES:
        module = importlib.import_module(module_name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, Model)
                and value is not Model
                and value.__module__ == module_name
                and not value._meta.abstract
            ):
                tables.append(value._meta.db_table or value.__name__.lower())
    return sorted(tables)


class _Server:
    """The controller's handle on one fork server, shared by every host of the run."""

    def __init__(self) -> None:
        import os

        import gevent
        from gevent import subprocess as gsubprocess

        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.proc = gsubprocess.Popen(
            [sys.executable, "-m", "pgprov.migrate.upgrade", "--serve"],
            stdin=gsubprocess.PIPE,
            stdout=gsubprocess.PIPE,
            stderr=gsubprocess.PIPE,
            text=True,
            env=env,
            cwd=root,
        )
        self.waiting: dict[int, object] = {}
        self.next_id = 0
        self.reader = gevent.spawn(self._read)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                reply = json.loads(line)
            except json.JSONDecodeError:
                continue
            waiter = self.waiting.pop(reply.get("id"), None)
            if waiter is not None:
                waiter.set(reply)  # type: ignore[attr-defined]
        stderr = self.proc.stderr.read() if self.proc.stderr else ""
        last = (stderr.strip().splitlines() or ["the migration server exited"])[-1]
        for waiter in self.waiting.values():
            waiter.set({"error": last})  # type: ignore[attr-defined]
        self.waiting.clear()

    def alive(self) -> bool:
        return self.proc.poll() is None and not self.reader.dead

    def request(self, target: Target, timeout: float) -> dict:
        from gevent import Timeout
        from gevent.event import AsyncResult

        self.next_id += 1
        waiter = AsyncResult()
        self.waiting[self.next_id] = waiter
        assert self.proc.stdin is not None
        request_id = self.next_id
        self.proc.stdin.write(json.dumps({"id": request_id, "target": asdict(target)}) + "\n")
        self.proc.stdin.flush()
        try:
            return waiter.get(timeout=timeout)
        except Timeout:
            # gevent's Timeout is a BaseException: left alone it escapes every
            # ``except Exception`` up the stack while the child goes on (and may take the
            # migration lock later). Stop the child and fail this host in one line.
            self.waiting.pop(request_id, None)
            if self.alive():
                self.proc.stdin.write(json.dumps({"cancel": request_id}) + "\n")
                self.proc.stdin.flush()
            return {"error": f"no result from the upgrade within {timeout:g} s; it was stopped"}

    def close(self) -> None:
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()


_SERVER: _Server | None = None


def _server() -> _Server:
    """The run's fork server, started once (greenlets of several hosts may ask at once)."""
    global _SERVER
    if _SERVER is None or not _SERVER.alive():
        import atexit

        server = _Server()
        if _SERVER is None or not _SERVER.alive():
            _SERVER = server
            atexit.register(server.close)
        else:
            server.close()
    return _SERVER


def warm_up() -> None:
    """Start the fork server now, so its imports overlap the provisioning that precedes it."""
    _server()


def run_child(target: Target, *, timeout: float = 3600) -> list[str]:
    """Run the upgrade in a forked child of the shared migration server.

    Returns the applied versions or raises MigrationError with the child's one-line error.
    """
    if not target.location:
        target = Target(**{**asdict(target), "location": migrations_location()})
    reply = _server().request(target, timeout)
    if "applied" not in reply:
        raise MigrationError(str(reply.get("error", "no reply from the migration server")))
    return list(reply["applied"])


def run_upgrade(
    state,
    host,
    spec,
    password: Secret,
    policy: LockPolicy,
    blockers: Callable[[Any, Any], str],
) -> bool:
    """pyinfra callback: upgrade as the owner (``password``, the run's resolved secret), each
    lock wait bounded by ``policy``, through an SSH tunnel when the spec asks.

    ``blockers(state, host)`` names the sessions that held the locks a migration waited for;
    the steps pass their own (migrate never imports the steps that sequence it)."""
    from pyinfra import logger

    def target(host_name: str, port: int) -> Target:
        return Target(
            host=host_name,
            port=port,
            user=spec.owner,
            password=password.reveal(),
            database=spec.database,
            schema=spec.schema_name,
            mode=spec.schema_mode,
            runtime=spec.runtime_role or "",
            lock_timeout=policy.lock_timeout,
            lock_wait=policy.lock_wait,
        )

    try:
        if spec.tunnel:
            from pgprov.catalog.tunnel import forward

            transport = host.connector.client.get_transport()
            with forward(transport, spec.app_host, spec.app_port) as tunnel:
                try:
                    applied = run_child(target("127.0.0.1", tunnel.port))
                except MigrationError as exc:
                    if tunnel.errors:
                        raise MigrationError(f"{exc} (SSH tunnel: {tunnel.errors[0]})") from exc
                    raise
        else:
            applied = run_child(target(spec.app_host, spec.app_port))
    except MigrationError as exc:
        message = str(exc)
        if BLOCKERS_PLACEHOLDER in message:
            message = message.replace(BLOCKERS_PLACEHOLDER, blockers(state, host))
        logger.error(f"{host.print_prefix}{message}")
        return False
    for version in applied:
        logger.info(f"{host.print_prefix}  applied {version}")
    return True


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
