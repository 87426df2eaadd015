"""What every inventory shares: the contracts for pointing it at another server.

Target host from ``DB_TARGET``; admin connection from the libpq variables PGHOST, PGPORT,
PGUSER (password from PGPASSWORD or PGPASSFILE, never written here); role passwords from
APP_MIGRATOR_PASSWORD and APP_RUNTIME_PASSWORD (single_user: APP_DB_PASSWORD).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


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


def inventory_name(file: str) -> str:
    path = Path(file).resolve()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
