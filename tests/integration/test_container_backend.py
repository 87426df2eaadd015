"""The container backend itself: a container from postgres_container() serves PostgreSQL with
password (SCRAM) auth over TCP, and is removed afterwards, also when the block fails.

Skipped when no engine answers, unless PGPROV_REQUIRE_CONTAINERS=1 or PGPROV_TEST_BACKEND=container
ask for containers: then a missing engine fails the test.
"""

from __future__ import annotations

import os
import re
import secrets

import psycopg
import pytest
from docker.errors import NotFound
from psycopg import sql

from tests.containers.pgcontainer import (
    ContainerInfo,
    docker_host,
    engine_available,
    engine_client,
    postgres_container,
)

pytestmark = pytest.mark.db


def require_engine() -> None:
    """No engine: skip, or fail the test itself when containers are required."""
    if engine_available():
        return
    required = (
        os.environ.get("PGPROV_REQUIRE_CONTAINERS") == "1"
        or os.environ.get("PGPROV_TEST_BACKEND", "").strip() == "container"
    )
    message = (
        f"no Docker-compatible engine answers on {docker_host()} "
        "(run `bash tests/containers/setup.sh` and `source .cache/podman/env.sh`)"
    )
    if required:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def expected_major() -> int | None:
    """The major version the image tag promises (postgres:15, ...:15-local), if it says."""
    image = os.environ.get("PGPROV_TEST_IMAGE") or "postgres:15"
    match = re.search(r":(\d+)(?:[.-]|$)", image)
    return int(match.group(1)) if match else None


def connect(info: ContainerInfo, user: str, password: str) -> psycopg.Connection:
    kwargs: dict[str, str] = {}
    if psycopg.pq.version() >= 160000:
        # libpq refuses the connection unless the server really asked for SCRAM (no trust).
        kwargs["require_auth"] = "scram-sha-256"
    return psycopg.connect(
        host=info.host,
        port=info.port,
        user=user,
        password=password,
        dbname="postgres",
        sslmode="disable",
        connect_timeout=10,
        autocommit=True,
        **kwargs,
    )


def assert_gone(container_id: str) -> None:
    client = engine_client(timeout=30)
    try:
        with pytest.raises(NotFound):
            client.containers.get(container_id)
    finally:
        client.close()


def test_container_serves_scram_password_auth() -> None:
    require_engine()
    with postgres_container() as info:
        assert info.container_id
        assert info.host == "127.0.0.1" or not docker_host().startswith("unix://")

        with connect(info, info.user, info.password) as admin:
            assert admin.pgconn.used_password
            version = admin.execute("SHOW server_version").fetchone()
            assert version is not None
            major = admin.info.server_version // 10000
            assert str(version[0]).startswith(f"{major}.")
            if (want := expected_major()) is not None:
                assert major == want

            role, password = "pgprov_probe", secrets.token_urlsafe(16)
            admin.execute(
                sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(password)
                )
            )
            stored = admin.execute(
                "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)
            ).fetchone()
            assert stored is not None
            assert str(stored[0]).startswith("SCRAM-SHA-256$")

        with connect(info, role, password) as app:
            assert app.pgconn.used_password
            row = app.execute(
                "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
            assert row == (role, False)

        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            connect(info, role, password + "x").close()

    assert_gone(info.container_id)


def test_container_removed_when_block_fails() -> None:
    require_engine()
    container_id = ""
    with pytest.raises(RuntimeError, match="boom"), postgres_container() as info:
        container_id = info.container_id
        raise RuntimeError("boom")
    assert container_id
    assert_gone(container_id)
