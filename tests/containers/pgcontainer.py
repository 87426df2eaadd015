"""The container test backend, as the tests import it; the code is ``pgprov.testing.containers``
(shipped in the package for the pytest plugin)."""

from pgprov.testing.containers import (
    ContainerInfo,
    docker_host,
    engine_available,
    engine_client,
    postgres_container,
)

__all__ = [
    "ContainerInfo",
    "docker_host",
    "engine_available",
    "engine_client",
    "postgres_container",
]
