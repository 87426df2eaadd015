"""Lock discipline against a live database: the one helper every lock-taking step goes through.

A statement that needs a strong lock on a live table (ALTER ... OWNER, GRANT, DROP INDEX)
waits in the lock queue, and every application query on that table queues behind it. So,
as GitLab's ``with_lock_retries``: each try waits at most ``pg_lock_timeout`` for its locks,
a try that is not granted in time is rolled back (its locks released) and retried after a
growing pause, and when the next try would overrun ``pg_lock_wait`` the step stops with
one line naming the blocking sessions (pid, user, application_name, state, transaction age).

Three shapes, one policy (``LockPolicy.of(spec)``, built once per host by the deploy):

    with_lock_retries(body, policy, what="database app")   # SQL: a server-side retry loop
    retry_on_lock_timeout(run_once, policy)                 # controller: retry a whole step
    await retry_on_lock_timeout_async(run_once, policy)     # the same, for a coroutine
    blockers_query(policy)                                  # SQL naming the blockers

Every advisory lock pgprov takes is keyed here, and taken through these statements.

Deploy sessions call themselves ``pgprov ...`` (application_name) so that they can be
recognised, and on PostgreSQL 14+ set ``client_connection_check_interval``, so the server
stops their statements soon after a killed deploy's client is gone (``session_setup``).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from pgprov.model.spec import Spec
from pgprov.sql.render import render

# Advisory-lock keys, one per kind of work, so that kinds never wait on each other: the
# provisioning transaction ("pgpr"), the index step's session ("pggi": a concurrent build never
# blocks provisioning) and the migrations ("pgmi"; Aerich has no lock of its own).
PROVISION_LOCK_KEY = 0x7067_7072
GIN_LOCK_KEY = 0x7067_6769
MIGRATION_LOCK_KEY = 0x7067_6D69
# The migration lock, for psycopg (parameter: the key); held for the migrator's session.
MIGRATION_LOCK_SQL = "SELECT pg_catalog.pg_advisory_lock(%s)"
APPLICATION_NAME = "pgprov deploy"
MIGRATION_APPLICATION_NAME = "pgprov migrate"
LOCK_NOT_AVAILABLE = "55P03"
# The pause between tries doubles from FIRST_PAUSE up to MAX_PAUSE (seconds): long enough
# for the application's queued queries to run, short enough to catch a gap between its
# transactions.
FIRST_PAUSE = 0.1
MAX_PAUSE = 2.0

T = TypeVar("T")
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_\x80-\U0010ffff][A-Za-z0-9_\x80-\U0010ffff]*)?\$")
_IDENTIFIER_CHAR = re.compile(r"[A-Za-z0-9_$\x80-\U0010ffff]")


@dataclass(frozen=True)
class LockPolicy:
    """How long one try may wait for a lock, and all the tries of one step together."""

    lock_timeout: float  # seconds
    lock_wait: float  # seconds

    @classmethod
    def of(cls, spec: Spec) -> LockPolicy:
        return cls(spec.lock_timeout, spec.lock_wait)

    @property
    def lock_timeout_ms(self) -> int:
        return max(1, round(self.lock_timeout * 1000))

    @property
    def lock_wait_ms(self) -> int:
        return max(1, round(self.lock_wait * 1000))

    def pauses(self) -> list[float]:
        """The pauses between tries that fit in the budget (each try may wait lock_timeout)."""
        pauses: list[float] = []
        spent, pause = self.lock_timeout, FIRST_PAUSE
        while spent + pause + self.lock_timeout <= self.lock_wait:
            pauses.append(pause)
            spent += pause + self.lock_timeout
            pause = min(pause * 2, MAX_PAUSE)
        return pauses


def session_lock(key: int) -> str:
    """psql lines that hold ``key`` for the session (work that cannot be one transaction)."""
    return f"SELECT pg_catalog.pg_advisory_lock({key}) \\g /dev/null\n"


def session_unlock(key: int) -> str:
    return f"SELECT pg_catalog.pg_advisory_unlock({key}) \\g /dev/null\n"


def session_setup(application_name: str = APPLICATION_NAME) -> str:
    """psql lines that open every deploy session (application_name, connection checks)."""
    return render("session.sql.j2", application_name=application_name)


def dollar_tag(text: str, base: str) -> str:
    """A dollar-quote tag that does not occur in ``text`` (so the quoting cannot be broken)."""
    tag, n = f"${base}$", 0
    while tag in text:
        n += 1
        tag = f"${base}{n}$"
    return tag


def psql_meta_command(text: str) -> str | None:
    """The first psql meta-command psql would see in ``text``, or None.

    As psql's own lexer reads SQL: a backslash starts a meta-command only outside string
    literals (``E''`` strings with their backslash escapes), quoted identifiers, dollar quotes
    and comments. So a catalog name such as ``"evil \\g"``, quoted by ``ident``, is data."""
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "\\":
            return text[i:].split("\n", 1)[0]
        if char == "'":
            escapes = i > 0 and text[i - 1] in "eE"
            escapes = escapes and (i < 2 or not _IDENTIFIER_CHAR.match(text[i - 2]))
            i = _end_of_quote(text, i + 1, "'", escapes)
        elif char == '"':
            i = _end_of_quote(text, i + 1, '"', False)
        elif text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif char == "$" and (i == 0 or not _IDENTIFIER_CHAR.match(text[i - 1])):
            tag = _DOLLAR_TAG.match(text, i)
            if tag is None:
                i += 1
                continue
            end = text.find(tag.group(0), tag.end())
            i = n if end < 0 else end + len(tag.group(0))
        else:
            i += 1
    return None


def _end_of_quote(text: str, i: int, quote: str, escapes: bool) -> int:
    """Just past the quote that closes the literal or identifier whose content starts at i
    (a doubled quote is part of it; in an E'' string so is a backslash-escaped character)."""
    n = len(text)
    while i < n:
        if escapes and text[i] == "\\":
            i += 2
        elif text[i] == quote:
            if text.startswith(quote * 2, i):
                i += 2
            else:
                return i + 1
        else:
            i += 1
    return n


def with_lock_retries(body: str, policy: LockPolicy, *, what: str) -> str:
    """``body`` (SQL statements) as one DO block that retries it under the policy.

    Runs inside the caller's transaction; on exhaustion it raises lock_not_available with
    one line naming ``what`` and the blocking sessions, so the transaction rolls back."""
    body = body.rstrip("\n")
    if psql_meta_command(body):
        # The body runs on the server (EXECUTE): psql's meta-commands would be SQL errors.
        raise ValueError(f"{what}: a psql meta-command cannot run inside the lock-retry block")
    body_tag = dollar_tag(body, "pgprov_body")
    tag = dollar_tag(body + body_tag, "pgprov_retry")
    return render(
        "lock_retries.sql.j2",
        what=what,
        body=body,
        tag=tag,
        body_tag=body_tag,
        **retry_context(policy),
    )


def retry_context(policy: LockPolicy) -> dict[str, object]:
    """What a template that retries on the server under ``policy`` needs (lock_retries.sql.j2,
    and the batches of large_object_privileges.sql.j2)."""
    return {
        "lock_timeout_ms": policy.lock_timeout_ms,
        "lock_wait_ms": policy.lock_wait_ms,
        "seconds": policy.lock_timeout,
        "first_pause": FIRST_PAUSE,
        "max_pause": MAX_PAUSE,
    }


def blockers_query(policy: LockPolicy) -> str:
    """One query returning one text: the sessions that hold locks the deploy waited for."""
    return render("blockers.sql.j2", seconds=policy.lock_timeout)


class LockTimeout(RuntimeError):
    """One try was not granted its locks within lock_timeout."""


def retry_on_lock_timeout(
    run_once: Callable[[], T],
    policy: LockPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``run_once`` until it does not raise LockTimeout, pausing between tries; the last
    LockTimeout propagates when the budget (``policy.pauses()``) is spent."""
    for pause in policy.pauses():
        try:
            return run_once()
        except LockTimeout:
            sleep(pause)
    return run_once()


async def retry_on_lock_timeout_async(
    run_once: Callable[[], Awaitable[T]], policy: LockPolicy
) -> T:
    """``retry_on_lock_timeout`` for a coroutine (the migrations): the same pauses, awaited."""
    for pause in policy.pauses():
        try:
            return await run_once()
        except LockTimeout:
            await asyncio.sleep(pause)
    return await run_once()
