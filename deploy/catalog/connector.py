"""pyinfra connector ``@db/<name>``: a database target administered from the controller.

pyinfra allows one ``@local`` host per inventory, but a platform engineer's controller often
administers many databases it reaches over the network (managed services, or one cluster per
environment). Each ``@db/<name>`` host runs its commands locally, exactly like ``@local``
(psql on the controller, the admin connection from the host's ``pg_admin_*`` data), and has
its own name, data and results, so a group of them provisions in parallel and fails alone.

    hosts = [("@db/eu", {"pg_admin_host": "eu.db.example", ...}),
             ("@db/us", {"pg_admin_host": "us.db.example", ...})]
"""

from __future__ import annotations

from collections.abc import Iterator

from pyinfra.api.exceptions import InventoryError
from pyinfra.connectors.local import LocalConnector


class DatabaseConnector(LocalConnector):
    """Local execution under a per-database host name (registered as ``db``)."""

    __examples_doc__ = "pyinfra @db/production-eu deploy/provision.py"

    @staticmethod
    def make_names_data(name: str | None = None) -> Iterator[tuple[str, dict, list[str]]]:
        if not name:
            raise InventoryError("@db needs a name: @db/<environment>")
        yield f"@db/{name}", {}, ["@db"]
