"""The one opener of pgprov's own sessions: search_path pinned in the startup packet.

Every session pgprov opens with the admin's identity (catalog snapshot, deploy transaction,
lock-retry block, GIN step, settings check, plan, audit, reset) or a managed role's (the audit's
probes, the migration lock) starts with ``search_path = pg_catalog, pg_temp``. It travels in
the startup packet (libpq ``options``; ``PGOPTIONS`` for psql, which also covers its
``\\connect``), so it is in force before the first statement and outranks what the database
or the role say (``ALTER DATABASE ... SET search_path``, which the database's owner may run).
An operator, function, type or relation named without a schema then resolves in
``pg_catalog`` only, never to one another role created in ``public`` or ``app``
(CVE-2018-1058; pg_dump and CloudNativePG do the same). pg_temp comes last, so not even a
temporary object shadows a catalog one.

Aerich's own sessions are the exception: they run the service's migrations as the migrator,
with the service's search_path, by design.

From PostgreSQL 17 a login event trigger runs at every connection, before the first
statement, with the connecting role's rights; a DDL event trigger inside the admin's DDL. A
superuser created it, but whoever owns its function may rewrite it. The admin's psql sessions
therefore also ask for ``event_triggers = off`` in the startup packet, where the server knows
the setting and lets the admin set it (a superuser, or ``GRANT SET ON PARAMETER``): no event
trigger runs in them. Whether it may is only known by trying: a session whose server has not
answered that yet (the first of a run) starts with a probe connection that asks for it and
falls back to the pinned search_path alone when the server refuses the setting by name
(PostgreSQL 16 and older, or a role that may not set it; the server logs that refusal once).

    with connect(host=..., user=..., dbname=..., options="-c lock_timeout=500ms") as conn: ...
    argv = ["env", psql_environment(), "psql", ...]
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

PINNED_SEARCH_PATH = "pg_catalog, pg_temp"
PINNED_OPTIONS = "-c search_path=pg_catalog,pg_temp"
EVENT_TRIGGERS_OFF = "-c event_triggers=off"


def startup_options(extra: str = "") -> str:
    """libpq's ``options`` for a pgprov session: the pinned search_path, then ``extra``."""
    return f"{PINNED_OPTIONS} {extra}".strip()


def psql_environment(*, event_triggers_off: bool = False) -> str:
    """The ``PGOPTIONS=...`` assignment every psql of pgprov's starts with (an ``env`` arg)."""
    extra = f" {EVENT_TRIGGERS_OFF}" if event_triggers_off else ""
    return f"PGOPTIONS={PINNED_OPTIONS}{extra}"


def probing_prologue(probe_argv: str) -> str:
    """``sh`` that sets PGOPTIONS for the psql after it: the pinned search_path, plus
    ``event_triggers = off`` unless a probe connection asking for it (``probe_argv``, quoted,
    connecting like the session will) is refused by a message naming the setting. Any other
    failure keeps the setting: the session then fails on its own and reports why."""
    return (
        f"o={shlex.quote(PINNED_OPTIONS)}; "
        f'case $(PGOPTIONS="$o {EVENT_TRIGGERS_OFF}" {probe_argv} 2>&1 </dev/null) in '
        f'*event_triggers*) ;; *) o="$o {EVENT_TRIGGERS_OFF}" ;; esac; '
        'export PGOPTIONS="$o"; '
    )


def connect(**params: Any) -> psycopg.Connection:
    """``psycopg.connect`` with the pinned search_path prepended to ``options``."""
    import psycopg

    params["options"] = startup_options(params.get("options", ""))
    return psycopg.connect(**params)


async def connect_async(**params: Any) -> psycopg.AsyncConnection:
    """``psycopg.AsyncConnection.connect`` with the pinned search_path prepended to ``options``."""
    import psycopg

    params["options"] = startup_options(params.get("options", ""))
    return await psycopg.AsyncConnection.connect(**params)
