"""The PostgreSQL servers tests run against, and per-test names.

The servers themselves live in the package (``pgprov.testing.servers``, shared with the pytest
plugin): PGPROV_TEST_BACKEND=container|local|dsn (default: container when a Docker-compatible
engine answers, else local); PGPROV_TEST_PG=15|18 picks the local binaries; PGPROV_TEST_DSN is
the superuser DSN for the dsn backend; PGPROV_REQUIRE_CONTAINERS=1 turns a missing engine into
a failure instead of a fallback.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from pgprov.testing.servers import (
    BackendUnavailable,
    Server,
    choose_backend,
    drop_prefixed,
    local_server,
    make_base,
    open_server,
)

__all__ = [
    "MODEL_TABLES",
    "BackendUnavailable",
    "Names",
    "Server",
    "choose_backend",
    "drop_prefixed",
    "local_server",
    "make_base",
    "open_server",
]

# The service's tables, as the models define them (the tests' specification of the schema).
MODEL_TABLES = frozenset(
    {
        "user",
        "workorder_rating",
        "unit",
        "answertype",
        "checklist",
        "question",
        "listoption",
        "questiondependency",
        "checklistresponse",
    }
)


@dataclass
class Names:
    """Unique database and role names for one test, all sharing one prefix."""

    prefix: str

    @classmethod
    def new(cls) -> Names:
        return cls(f"t{uuid.uuid4().hex[:10]}")

    @property
    def database(self) -> str:
        return f"{self.prefix}_db"

    @property
    def migrator(self) -> str:
        return f"{self.prefix}_migrator"

    @property
    def runtime(self) -> str:
        return f"{self.prefix}_runtime"

    @property
    def app_user(self) -> str:
        return f"{self.prefix}_user"

    def role(self, suffix: str) -> str:
        return f"{self.prefix}_{suffix}"
