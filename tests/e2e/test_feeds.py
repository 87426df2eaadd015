"""Publications (CDC tools such as Debezium depend on theirs), subscriptions (another system's
feed into the database) and user mappings (the credentials foreign tables use) are never
dropped: any nobody declared is named by the audit and listed by the deploy, in one line, as
left for a person; declared (``pg_publications``, ``pg_subscriptions``, ``pg_user_mappings``),
they pass. Connection strings and options carry passwords, which no output ever shows."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from tests.deploykit import DeployEnv, run_api, run_cli, write_inventory
from tests.e2e.helpers import combined, console, lines_with, superuser_sql
from tests.pgserver import Names, Server

pytestmark = pytest.mark.db

PASSWORD = "feed-secret-4c1d"


def named_left_then_declared(
    env: DeployEnv,
    tmp_path: Path,
    rows: list[tuple[str, ...]],
    notice: tuple[str, ...],
    declared: dict[str, Any],
    present: Callable[[], object],
) -> None:
    """The audit exits 1 with a DRIFT row holding each of ``rows``' needles; the deploy says in
    one line holding ``notice``' needles that it leaves them for a person, and ``present()``
    is unchanged by it; with ``declared`` added to the host data, the audit passes (the same
    rows OK) and a deploy changes nothing and says nothing of them. No output shows PASSWORD."""
    before = present()
    inventory = write_inventory(tmp_path, env.data)
    audit = console("pgprov-verify", inventory, "--no-probes")
    assert audit.returncode == 1, audit.stdout + audit.stderr
    for needles in rows:
        assert lines_with(audit.stdout, "DRIFT", *needles), (needles, audit.stdout)
    deploy = run_cli(tmp_path, env.data)
    assert deploy.returncode == 0, combined(deploy)
    assert len(lines_with(combined(deploy), "left for a person", *notice)) == 1, combined(deploy)
    assert present() == before  # never dropped
    for output in (audit.stdout + audit.stderr, combined(deploy)):
        assert PASSWORD not in output

    data = {**env.data, **declared}
    inventory = write_inventory(tmp_path, data)
    audit = console("pgprov-verify", inventory, "--no-probes")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    for needles in rows:
        assert lines_with(audit.stdout, "OK", *needles), (needles, audit.stdout)
    again = run_cli(tmp_path, data)
    assert again.returncode == 0 and not lines_with(combined(again), "left for a person")
    still = run_api(data)
    assert still.success and not still.any_change, still
    assert present() == before


def passes_until_widened(
    data: dict[str, Any],
    tmp_path: Path,
    name: str,
    *,
    declared_shows: str,
    widen: Callable[[], object],
    widened_shows: tuple[str, str],
) -> subprocess.CompletedProcess[str]:
    """Declared as it is in ``data``, ``name`` passes the audit (its row shows
    ``declared_shows``); once ``widen()`` made it do more, the audit exits 1 with its one row
    showing ``widened_shows[0]``, and the deploy (returned) leaves it for a person in a line
    naming ``widened_shows[1]``."""
    inventory = write_inventory(tmp_path, data)
    audit = console("pgprov-verify", inventory, "--no-probes")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert lines_with(audit.stdout, "OK", name, declared_shows), audit.stdout
    widen()
    audit = console("pgprov-verify", inventory, "--no-probes")
    assert audit.returncode == 1, audit.stdout + audit.stderr
    [row] = lines_with(audit.stdout, "DRIFT", name)
    assert widened_shows[0] in row, row
    assert PASSWORD not in audit.stdout + audit.stderr
    deploy = run_cli(tmp_path, data)
    assert deploy.returncode == 0, combined(deploy)
    assert lines_with(combined(deploy), "left for a person", name, widened_shows[1])
    return deploy


def rows_of(server: Server, names: Names, query: str) -> list[tuple[str, ...]]:
    with server.connect(names.database) as conn:
        return sorted(tuple(row) for row in conn.execute(query).fetchall())


def test_a_strangers_publication_is_named_never_dropped_and_passes_once_declared(
    deployed: DeployEnv, pg_server: Server, names: Names, tmp_path: Path
) -> None:
    stranger, publication = names.role("x"), f"{names.prefix}_cdc"
    statements = (
        "CREATE PUBLICATION {p} FOR TABLE app.unit, app.checklistresponse",
        # The new owner of a publication needs CREATE on the database, for a moment.
        "GRANT CREATE ON DATABASE {db} TO {x}",
        "ALTER PUBLICATION {p} OWNER TO {x}",
        "REVOKE CREATE ON DATABASE {db} FROM {x}",
    )
    superuser_sql(pg_server, names.database, statements, names, x=stranger, p=publication)
    named_left_then_declared(
        deployed,
        tmp_path,
        rows=[(publication, f"owner {stranger}", "app.checklistresponse, app.unit")],
        notice=("publications", publication, "app.checklistresponse"),
        declared={"pg_publications": {publication: stranger}},
        present=lambda: rows_of(
            pg_server,
            names,
            "SELECT pubname::text, pg_get_userbyid(pubowner)::text FROM pg_publication",
        ),
    )


def test_a_declared_publication_that_publishes_more_tables_than_declared_is_named(
    deployed: DeployEnv, pg_server: Server, names: Names, tmp_path: Path
) -> None:
    """Declared with its tables, a CDC publication passes; once someone adds the users' table
    (their password hashes would flow to every subscriber), the audit names it and the deploy
    leaves the publication as it is, saying so."""
    publication, owner = f"{names.prefix}_cdc", pg_server.superuser
    statement = "CREATE PUBLICATION {p} FOR TABLE app.unit, app.checklistresponse"
    superuser_sql(pg_server, names.database, statement, names, p=publication)
    tables = ["app.unit", "app.checklistresponse"]
    widen = 'ALTER PUBLICATION {p} ADD TABLE app."user"'
    passes_until_widened(
        {**deployed.data, "pg_publications": {publication: {"owner": owner, "tables": tables}}},
        tmp_path,
        publication,
        declared_shows="app.checklistresponse, app.unit",
        widen=lambda: superuser_sql(pg_server, names.database, widen, names, p=publication),
        widened_shows=("app.checklistresponse, app.unit, app.user", "app.user"),
    )


@pytest.fixture
def subscription(deployed: DeployEnv, pg_server: Server, names: Names) -> Iterator[str]:
    """A disabled subscription of the test's database (never connected: connect = false) whose
    connection string carries a password; dropped before the database is."""
    name = f"{names.prefix}_sub"
    ident = sql.Identifier(name)
    with pg_server.connect(names.database) as conn:
        conn.execute(
            sql.SQL(
                "CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION upstream WITH (connect = false)"
            ).format(ident, sql.Literal(f"host=127.0.0.1 port=1 dbname=x password={PASSWORD}"))
        )
    try:
        yield name
    finally:
        with pg_server.connect(names.database) as conn:
            conn.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(ident))
            conn.execute(sql.SQL("DROP SUBSCRIPTION {}").format(ident))


def test_a_subscription_is_named_never_dropped_and_passes_once_declared(
    deployed: DeployEnv, subscription: str, pg_server: Server, names: Names, tmp_path: Path
) -> None:
    owner = pg_server.superuser
    named_left_then_declared(
        deployed,
        tmp_path,
        rows=[(subscription, f"owner {owner}", "publications upstream (disabled)")],
        notice=("subscriptions nobody declared in pg_subscriptions", subscription),
        declared={"pg_subscriptions": {subscription: owner}},
        present=lambda: rows_of(
            pg_server,
            names,
            "SELECT subname::text, pg_get_userbyid(subowner)::text, subconninfo FROM pg_subscription"
            " WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
        ),
    )


def test_a_declared_subscription_that_subscribes_to_other_publications_is_named(
    deployed: DeployEnv, subscription: str, pg_server: Server, names: Names, tmp_path: Path
) -> None:
    """Declared with its publications, a subscription passes; once someone points it at
    another publication too (its tables' rows would be written into this database), the
    audit names it and the deploy leaves it as it is, saying so."""
    declared = {"owner": pg_server.superuser, "publications": ["upstream"]}
    statement = "ALTER SUBSCRIPTION {s} SET PUBLICATION upstream, accounts WITH (refresh = false)"
    deploy = passes_until_widened(
        {**deployed.data, "pg_subscriptions": {subscription: declared}},
        tmp_path,
        subscription,
        declared_shows="publications upstream (disabled)",
        widen=lambda: superuser_sql(pg_server, names.database, statement, names, s=subscription),
        widened_shows=("publications accounts, upstream (disabled)", "accounts"),
    )
    query = "SELECT subname::text, subpublications::text FROM pg_subscription"
    assert (subscription, "{upstream,accounts}") in rows_of(pg_server, names, query)  # left
    assert PASSWORD not in combined(deploy)


def test_user_mappings_are_named_never_dropped_and_pass_once_declared(
    deployed: DeployEnv, pg_server: Server, names: Names, tmp_path: Path
) -> None:
    runtime, stranger = names.runtime, names.role("x")
    server = f"{names.prefix}_remote"
    statements = (
        "CREATE FOREIGN DATA WRAPPER {w}",
        "CREATE SERVER {s} FOREIGN DATA WRAPPER {w}",
        f"CREATE USER MAPPING FOR {{runtime}} SERVER {{s}} OPTIONS (password '{PASSWORD}')",
        f"CREATE USER MAPPING FOR {{x}} SERVER {{s}} OPTIONS (password '{PASSWORD}')",
        "CREATE USER MAPPING FOR PUBLIC SERVER {s}",
    )
    extra = {"w": f"{names.prefix}_fdw", "s": server, "x": stranger}
    superuser_sql(pg_server, names.database, statements, names, **extra)
    named_left_then_declared(
        deployed,
        tmp_path,
        rows=[(who, f"server {server}", "user mapping") for who in (runtime, stranger, "PUBLIC")],
        notice=("user mappings", f"{runtime} on server {server}", f"PUBLIC on server {server}"),
        declared={"pg_user_mappings": {server: ["runtime", stranger, "public"]}},
        present=lambda: rows_of(
            pg_server,
            names,
            "SELECT srvname::text, usename::text, array_to_string(umoptions, ',')"
            " FROM pg_user_mappings",
        ),
    )
