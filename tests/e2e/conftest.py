"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploykit import DeployEnv
from tests.e2e.helpers import deployed_with_a_stranger
from tests.pgserver import Names, Server


@pytest.fixture
def deployed(pg_server: Server, names: Names, tmp_path: Path) -> Iterator[DeployEnv]:
    """A deployed environment (the test's own names) and a role pgprov does not manage,
    ``names.role("x")``, to plant objects as; dropped after."""
    with deployed_with_a_stranger(pg_server, names, tmp_path) as env:
        yield env
