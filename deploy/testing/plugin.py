"""pytest plugin (entry point ``pytest11``): the ``pgprov_database`` fixture for the service's tests.

A session-scoped database provisioned exactly like production (split profile, migrations
applied, GIN index), on testcontainers' PostgresContainer when a Docker-compatible engine
answers, else on a throwaway local cluster; ``PGPROV_TEST_BACKEND``, ``PGPROV_TEST_PG``,
``PGPROV_TEST_DSN`` and ``PGPROV_REQUIRE_CONTAINERS`` choose as in pgprov's own tests.
Application tests connect as the least-privileged runtime role:

    def test_insert(pgprov_database):
        with psycopg.connect(pgprov_database.runtime_url) as conn:
            conn.execute("INSERT INTO unit (name) VALUES ('m')")

Importing this module is cheap and changes nothing: the server starts only when a test
requests the fixture, and stops at the end of the session.
"""

from __future__ import annotations

import signal
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pgprov.testing.database import ProvisionedDatabase


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def pgprov_database() -> Iterator[ProvisionedDatabase]:
    """The service's database as production has it; ``runtime_url`` and ``migrator_url`` are
    postgres:// URLs with generated passwords (psycopg and Tortoise accept them)."""
    from pgprov.testing.database import ProvisioningError, provisioned_database
    from pgprov.testing.servers import BackendUnavailable, open_server

    # A CI timeout sends SIGTERM: end like Ctrl-C so the server is stopped, unless the
    # session already decided what SIGTERM does.
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)
    directory = Path(tempfile.mkdtemp(prefix="pgprov-database-"))
    try:
        with open_server() as server:
            # Only a given DSN is shared with others: there, private names, dropped afterwards.
            prefix = f"pgprov{uuid.uuid4().hex[:8]}" if server.backend == "dsn" else None
            with provisioned_database(server, directory, prefix=prefix) as database:
                yield database
    except (BackendUnavailable, ProvisioningError) as exc:
        pytest.fail(str(exc), pytrace=False)
    finally:
        for path in directory.iterdir():
            path.unlink()
        directory.rmdir()
