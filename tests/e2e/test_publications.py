"""Publications feed other systems (CDC tools such as Debezium depend on theirs): a stranger's
publication of an app table is named by the audit, listed by the deploy as left for a person
and never dropped; declared in ``pg_publications`` with its owner, it passes."""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg import sql

from tests.deploykit import DeployEnv, run_cli, write_inventory
from tests.e2e.helpers import combined, console, lines_with
from tests.pgserver import Names, Server

pytestmark = pytest.mark.db


def publications(server: Server, names: Names) -> list[tuple[str, str]]:
    with server.connect(names.database) as conn:
        rows = conn.execute(
            "SELECT pubname::text, pg_get_userbyid(pubowner)::text FROM pg_publication"
        ).fetchall()
    return [tuple(row) for row in rows]


def test_a_strangers_publication_is_named_never_dropped_and_passes_once_declared(
    deployed: DeployEnv, pg_server: Server, names: Names, tmp_path: Path
) -> None:
    stranger, publication = names.role("x"), f"{names.prefix}_cdc"
    ident = {"x": sql.Identifier(stranger), "p": sql.Identifier(publication)}
    ident["db"] = sql.Identifier(names.database)
    with pg_server.connect(names.database) as conn:
        for statement in (
            "CREATE PUBLICATION {p} FOR TABLE app.unit, app.checklistresponse",
            # The new owner of a publication needs CREATE on the database, for a moment.
            "GRANT CREATE ON DATABASE {db} TO {x}",
            "ALTER PUBLICATION {p} OWNER TO {x}",
            "REVOKE CREATE ON DATABASE {db} FROM {x}",
        ):
            conn.execute(sql.SQL(statement).format(**ident))
    inventory = write_inventory(tmp_path, deployed.data)

    audit = console("pgprov-verify", inventory, "--no-probes")
    assert audit.returncode == 1, audit.stdout + audit.stderr
    assert lines_with(audit.stdout, "DRIFT", publication, f"owner {stranger}", "app.unit")
    deploy = run_cli(tmp_path, deployed.data)
    assert deploy.returncode == 0, combined(deploy)
    [notice] = lines_with(combined(deploy), "left for a person", publication)
    assert "app.checklistresponse" in notice
    assert publications(pg_server, names) == [(publication, stranger)]  # never dropped

    declared = {**deployed.data, "pg_publications": {publication: stranger}}
    inventory = write_inventory(tmp_path, declared)
    audit = console("pgprov-verify", inventory, "--no-probes")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert lines_with(audit.stdout, "OK", publication, f"owner {stranger}")
    again = run_cli(tmp_path, declared)
    assert again.returncode == 0 and not lines_with(combined(again), "left for a person")
    assert publications(pg_server, names) == [(publication, stranger)]
