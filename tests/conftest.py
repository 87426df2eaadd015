"""Shared fixtures: one real PostgreSQL server per session, unique names per test.

Unit tests request none of these and start no server.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from tests.pgserver import BackendUnavailable, Names, Server, drop_prefixed, open_server


def pytest_configure(config: pytest.Config) -> None:
    """A CI timeout or ``kill`` sends SIGTERM: end like Ctrl-C, so servers are stopped."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    """A superuser on a fresh server from the chosen backend, stopped at session end."""
    try:
        with open_server() as server:
            yield server
    except BackendUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def names(pg_server: Server) -> Iterator[Names]:
    """Database and role names private to this test; dropped afterwards, pass or fail."""
    generated = Names.new()
    yield generated
    drop_prefixed(pg_server, generated.prefix)
