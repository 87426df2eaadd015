"""What every inventory shares: the contracts for pointing it at another server.

Target host from ``DB_TARGET``; admin connection from the libpq variables PGHOST, PGPORT,
PGUSER (password from PGPASSWORD or PGPASSFILE, never written here); role passwords from
APP_MIGRATOR_PASSWORD and APP_RUNTIME_PASSWORD (single_user: APP_DB_PASSWORD).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# The service's decision, declared once for every environment: staging must test production's
# query plans, and the service's queries filter with `?` (key exists), which only jsonb_ops
# serves. When to switch to jsonb_path_ops (containment-only queries): README, "Choosing the
# GIN operator class".
GIN_OPCLASS = "jsonb_ops"


def target(default: str) -> str:
    return os.environ.get("DB_TARGET", default)


def admin_from_libpq(host: str | None, port: int, user: str | None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "pg_admin_host": os.environ.get("PGHOST", host),
        "pg_admin_port": int(os.environ.get("PGPORT", port)),
        "pg_admin_user": os.environ.get("PGUSER", user),
    }
    if os.environ.get("PGPASSWORD"):
        data["pg_admin_password"] = "env:PGPASSWORD"
    return data


def split_passwords() -> dict[str, str]:
    return {
        "pg_migrator_password": "env:APP_MIGRATOR_PASSWORD",
        "pg_runtime_password": "env:APP_RUNTIME_PASSWORD",
    }


# Server-side limits for staging and production (pg_role_settings, set in the database).
# idle_in_transaction_session_timeout bounds the damage of an application transaction left open
# (it holds its locks, and a deploy's DDL plus every query behind it waits on them);
# statement_timeout bounds a runaway request. No lock_timeout for the runtime: its lock waits are
# row locks between requests, already bounded by statement_timeout, and an error there would
# reach users as failed writes; the deploy bounds its own waits (pg_lock_timeout). The migrator
# gets no statement_timeout (migrations and index builds may take long) but the same bound on an
# idle open transaction: a forgotten migrator session holds the strongest locks of all.
SPLIT_ROLE_SETTINGS = {
    "runtime": {"statement_timeout": "30s", "idle_in_transaction_session_timeout": "60s"},
    "migrator": {"idle_in_transaction_session_timeout": "10min"},
}


def split_environment(file: str, environment: str, default_target: str) -> list:
    """The hosts of a split-profile environment (staging, production).

    The default target is reached over SSH and administered as the postgres OS user (peer
    authentication through sudo); the app and migrations use TCP on its localhost, the
    migrations through an SSH tunnel. With DB_TARGET=@local (or PGHOST set) the admin
    connection comes from the libpq variables instead: a managed database reached directly.
    """
    host = target(default_target)
    remote = host != "@local"
    data: dict[str, Any] = {
        "pg_inventory": inventory_name(file),
        "pg_environment": environment,
        "pg_profile": "split",
        "pg_gin_opclass": GIN_OPCLASS,
        "pg_role_settings": SPLIT_ROLE_SETTINGS,
        **split_passwords(),
    }
    if remote and not os.environ.get("PGHOST"):
        port = int(os.environ.get("PGPORT", 5432))
        data.update(pg_admin_sudo_user="postgres", pg_admin_port=port)
        data.update(pg_app_host="127.0.0.1", pg_app_port=port, pg_tunnel=True)
    else:
        data.update(admin_from_libpq(None, 5432, None))
        data.update(
            pg_app_host=data["pg_admin_host"] or "127.0.0.1", pg_app_port=data["pg_admin_port"]
        )
        data["pg_tunnel"] = remote
    return [(host, data)]


def inventory_name(file: str) -> str:
    path = Path(file).resolve()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
