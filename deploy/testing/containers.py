"""The container test backend: engine detection and one throwaway PostgreSQL container per use.

Works against the rootful podman that tests/containers/setup.sh provisions (source its
.cache/podman/env.sh first) and, unchanged, against a real Docker engine with the official
``postgres:15`` image.

Environment:
    DOCKER_HOST                the engine (default: unix:///var/run/docker.sock)
    PGPROV_TEST_IMAGE          image to run (default: localhost/pgprov-postgres:15 on podman,
                               postgres:15 on Docker)
    PGPROV_CONTAINER_NETWORK   host|bridge (default: host when the engine is local and its
                               host network is this machine's)
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

if TYPE_CHECKING:
    import docker

ENGINE_TIMEOUT = 2.0
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
PODMAN_IMAGE = "localhost/pgprov-postgres:15"
OFFICIAL_IMAGE = "postgres:15"
CONTAINER_PORT = 5432
SUPERUSER = "postgres"

# Both images get the same pg_hba: the official initdb would leave TCP from 127.0.0.1 on trust,
# which with host networking would make every password test pass vacuously.
INITDB_ARGS = "--auth-host=scram-sha-256 --auth-local=trust"
# Same durability trade-off as the local backend: a test server's data is disposable.
SERVER_SETTINGS = ("-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off")


@dataclass(frozen=True)
class ContainerInfo:
    """How to reach the container's server as its superuser."""

    host: str
    port: int
    user: str
    password: str
    container_id: str = ""


def docker_host() -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST


def engine_client(timeout: float = ENGINE_TIMEOUT) -> docker.DockerClient:
    """A docker SDK client for DOCKER_HOST (TLS settings from the environment, as docker does)."""
    import docker

    return docker.from_env(timeout=timeout)


def engine_available() -> bool:
    """True when a Docker-compatible engine answers on DOCKER_HOST within ~2 s."""
    try:
        client = engine_client()
    except Exception:
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            client.close()


def _is_podman(client: docker.DockerClient) -> bool:
    components = client.version().get("Components") or []
    return any("podman" in str(c.get("Name", "")).lower() for c in components)


def _use_host_network(client: docker.DockerClient, podman: bool) -> bool:
    """Host networking only where the container's host network is this machine's loopback."""
    wanted = os.environ.get("PGPROV_CONTAINER_NETWORK", "").strip().lower()
    if wanted in ("host", "bridge"):
        return wanted == "host"
    if urlparse(docker_host()).scheme != "unix":
        return False  # remote engine: its 127.0.0.1 is not ours
    info: dict[str, Any] = client.info()
    if "docker desktop" in str(info.get("OperatingSystem", "")).lower():
        return False  # the engine runs in a VM
    # Rootless Docker's "host" is rootlesskit's namespace; rootless podman shares the real one.
    rootless = any("rootless" in str(o) for o in info.get("SecurityOptions") or [])
    return podman or not rootless


def _free_port() -> int:
    # The port is free when we look; the server binds it a moment later. A clash would show up
    # as a start-up failure, not as a connection to someone else's server (password differs).
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mapped_port(container: Any, port: int) -> int:
    container.reload()
    bindings = container.attrs["NetworkSettings"]["Ports"][f"{port}/tcp"]
    return int(bindings[0]["HostPort"])


@contextlib.contextmanager
def postgres_container() -> Iterator[ContainerInfo]:
    """A fresh PostgreSQL server in a container; the container is removed when the block ends."""
    from testcontainers.community.postgres import PostgresContainer

    client = engine_client(timeout=30)
    try:
        podman = _is_podman(client)
        host_net = _use_host_network(client, podman)
    finally:
        client.close()
    image = os.environ.get("PGPROV_TEST_IMAGE") or (PODMAN_IMAGE if podman else OFFICIAL_IMAGE)
    password = secrets.token_urlsafe(24)
    local = urlparse(docker_host()).scheme == "unix"

    if host_net:
        # The server listens on 127.0.0.1 of this machine only, on a port we pick; PGPORT also
        # points the entrypoint's init server and the readiness check's psql at it.
        port = _free_port()
        pg = PostgresContainer(
            image,
            port=port,
            username=SUPERUSER,
            password=password,
            dbname="postgres",
            driver=None,
            network_mode="host",
        )
        pg.with_env("PGPORT", str(port))
        pg.with_command(" ".join(("postgres -c listen_addresses=127.0.0.1", *SERVER_SETTINGS)))
        # docker-py refuses port bindings together with network_mode="host".
        pg.ports.clear()
    else:
        pg = PostgresContainer(
            image,
            port=CONTAINER_PORT,
            username=SUPERUSER,
            password=password,
            dbname="postgres",
            driver=None,
        )
        pg.with_command(" ".join(("postgres", *SERVER_SETTINGS)))
        if local:
            # Publish on loopback only, not on every interface of the machine.
            pg.ports[str(CONTAINER_PORT)] = ("127.0.0.1",)  # type: ignore[assignment]
    pg.with_env("POSTGRES_INITDB_ARGS", INITDB_ARGS)
    pg.with_name(f"pgprov-test-{secrets.token_hex(4)}")

    # PostgresContainer's __exit__ removes the container (force, with volumes), and its
    # __enter__ does the same when start-up or the readiness check fails.
    with pg:
        container = pg.get_wrapped_container()
        if host_net:
            host, port = "127.0.0.1", pg.port
        else:
            host = "127.0.0.1" if local else str(urlparse(docker_host()).hostname)
            port = _mapped_port(container, CONTAINER_PORT)
        yield ContainerInfo(
            host=host,
            port=port,
            user=SUPERUSER,
            password=password,
            container_id=str(container.id),
        )
