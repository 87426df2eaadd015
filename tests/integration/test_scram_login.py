"""A verifier computed on the controller is one PostgreSQL accepts for SCRAM login over TCP."""

from __future__ import annotations

import psycopg
import pytest
from pgprov.model.secrets import Secret, scram_verifier, verifier_matches
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tests.pgserver import Names, Server

pytestmark = pytest.mark.db

# ASCII, then passwords SASLprep maps/normalises or prohibits (falling back to the raw
# bytes): libpq prepares the login password the same way, so all of them must log in.
PLAINTEXTS = [
    "correct horse battery staple",
    "p'ss\"w;rd -- $1$",
    "pässwörd\u00a0x\u00adz",
    "Ｐａｓｓ①",
    "\u0627\u0644abc",
]


def create_login_role(server: Server, role: str, verifier: str) -> None:
    with server.connect() as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(verifier)
            )
        )


def login(server: Server, role: str, password: str) -> str:
    """Log in over TCP as ``role``, insisting on SCRAM (a trust rule would prove nothing)."""
    dsn = make_conninfo(
        host=server.host,
        port=str(server.port),
        user=role,
        password=password,
        dbname="postgres",
        require_auth="scram-sha-256",
        connect_timeout="10",
    )
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT current_user").fetchone()
    assert row is not None
    return row[0]


def stored_password(server: Server, role: str) -> str | None:
    with server.connect() as conn:
        row = conn.execute(
            "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)
        ).fetchone()
    assert row is not None
    return row[0]


@pytest.mark.parametrize("plaintext", PLAINTEXTS)
def test_role_created_with_controller_verifier_logs_in_with_plaintext(
    pg_server: Server, names: Names, plaintext: str
) -> None:
    role = names.role("scram")
    verifier = scram_verifier(Secret(plaintext))
    create_login_role(pg_server, role, verifier)

    assert login(pg_server, role, plaintext) == role


def test_wrong_password_is_rejected(pg_server: Server, names: Names) -> None:
    role = names.role("scram")
    create_login_role(pg_server, role, scram_verifier("right password"))

    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        login(pg_server, role, "wrong password")


def test_server_stores_the_verifier_unchanged(pg_server: Server, names: Names) -> None:
    role = names.role("scram")
    verifier = scram_verifier("stored as sent", iterations=5000)
    create_login_role(pg_server, role, verifier)

    assert stored_password(pg_server, role) == verifier


def test_stored_verifier_matches_only_its_password(pg_server: Server, names: Names) -> None:
    role = names.role("scram")
    create_login_role(pg_server, role, scram_verifier("the real one"))
    stored = stored_password(pg_server, role)

    assert verifier_matches("the real one", stored)
    assert not verifier_matches("another one", stored)


@pytest.mark.parametrize("plaintext", PLAINTEXTS)
def test_verifier_the_server_computes_matches_on_the_controller(
    pg_server: Server, names: Names, plaintext: str
) -> None:
    # The server hashes a plaintext itself here (random salt, its own SASLprep); our
    # recomputation with that salt must agree, or the deploy would re-send every password.
    role = names.role("scram")
    with pg_server.connect() as conn:
        conn.execute("SET password_encryption = 'scram-sha-256'")
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(plaintext)
            )
        )
    stored = stored_password(pg_server, role)

    assert verifier_matches(plaintext, stored)
    assert not verifier_matches(plaintext + "x", stored)
