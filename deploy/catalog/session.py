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

    with connect(host=..., user=..., dbname=..., options="-c lock_timeout=500ms") as conn: ...
    argv = ["env", psql_environment(), "psql", ...]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

PINNED_SEARCH_PATH = "pg_catalog, pg_temp"
PINNED_OPTIONS = "-c search_path=pg_catalog,pg_temp"


def startup_options(extra: str = "") -> str:
    """libpq's ``options`` for a pgprov session: the pinned search_path, then ``extra``."""
    return f"{PINNED_OPTIONS} {extra}".strip()


def psql_environment() -> str:
    """The ``PGOPTIONS=...`` assignment every psql of pgprov's starts with (an ``env`` arg)."""
    return f"PGOPTIONS={PINNED_OPTIONS}"


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
