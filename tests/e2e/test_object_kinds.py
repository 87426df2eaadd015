"""Object kinds of the registry (``pgprov.catalog.kinds``) beyond tables, sequences and
routines: a stranger's types and domains, and USAGE on them granted to a stranger or to a
managed role, are named by the audit, repaired by one deploy, and a second deploy sends
nothing. PUBLIC's built-in USAGE on a type is PostgreSQL's default and stays."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg import sql

from tests.deploykit import DeployEnv, run_api, write_inventory
from tests.e2e.helpers import console, deployed_with_a_stranger, lines_with
from tests.pgserver import Names, Server

pytestmark = pytest.mark.db


@pytest.fixture
def deployed(pg_server: Server, names: Names, tmp_path: Path) -> Iterator[DeployEnv]:
    with deployed_with_a_stranger(pg_server, names, tmp_path) as env:
        yield env


def types_of(server: Server, names: Names) -> dict[str, tuple[str, list[str]]]:
    """schema.name -> (owner, ACL entries as text) of the planted types and domains."""
    with server.connect(names.database) as conn:
        rows = conn.execute(
            "SELECT n.nspname || '.' || t.typname, pg_get_userbyid(t.typowner)::text,"
            " COALESCE(t.typacl::text[], '{}')"
            " FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
            " WHERE t.typname LIKE 'kind\\_%' ORDER BY 1"
        ).fetchall()
    return {name: (owner, sorted(acl)) for name, owner, acl in rows}


def test_types_and_domains_of_strangers_and_grants_on_them_are_named_and_repaired(
    deployed: DeployEnv, pg_server: Server, names: Names, tmp_path: Path
) -> None:
    stranger, migrator, runtime = names.role("x"), names.migrator, names.runtime
    ident = {"x": sql.Identifier(stranger), "m": sql.Identifier(migrator)}
    with pg_server.connect(names.database) as conn:
        for statement in (
            # A stranger's type in the app's schema and its domain in public.
            "CREATE TYPE app.kind_mood AS ENUM ('ok', 'sad')",
            "ALTER TYPE app.kind_mood OWNER TO {x}",
            "CREATE DOMAIN public.kind_code AS text CHECK (VALUE <> '')",
            "ALTER DOMAIN public.kind_code OWNER TO {x}",
            # The migrator's own domain and composite type, with USAGE granted to a stranger
            # and to the runtime (a managed role that was declared nothing on them).
            "CREATE DOMAIN app.kind_positive AS integer CHECK (VALUE > 0)",
            "ALTER DOMAIN app.kind_positive OWNER TO {m}",
            "CREATE TYPE app.kind_pair AS (a integer, b integer)",
            "ALTER TYPE app.kind_pair OWNER TO {m}",
        ):
            conn.execute(sql.SQL(statement).format(**ident))
        conn.execute(sql.SQL("SET ROLE {}").format(ident["m"]))
        conn.execute(sql.SQL("GRANT USAGE ON DOMAIN app.kind_positive TO {x}").format(**ident))
        conn.execute(
            sql.SQL("GRANT USAGE ON TYPE app.kind_pair TO {r} WITH GRANT OPTION").format(
                r=sql.Identifier(runtime)
            )
        )
    inventory = write_inventory(tmp_path, deployed.data)

    audit = console("pgprov-verify", inventory, "--no-probes")
    assert audit.returncode == 1, audit.stdout + audit.stderr
    for needles in (
        ("DRIFT", "type app.kind_mood", stranger),
        ("DRIFT", "domain public.kind_code", stranger),
        ("DRIFT", "domain app.kind_positive", stranger, "USAGE"),
        ("DRIFT", "type app.kind_pair", runtime, "USAGE"),
    ):
        assert lines_with(audit.stdout, *needles), (needles, audit.stdout)
    plan = console("pgprov-plan", inventory)
    assert plan.returncode == 1, plan.stdout + plan.stderr
    assert lines_with(plan.stdout, "change the owner of type app.kind_mood", stranger), plan.stdout

    repair = run_api(deployed.data)
    assert repair.success and repair.changed["provision"], repair
    default_public = f"=U/{migrator}"
    assert types_of(pg_server, names) == {
        "app.kind_mood": (migrator, []),
        "app.kind_pair": (migrator, sorted([f"{migrator}=U/{migrator}", default_public])),
        "app.kind_positive": (migrator, sorted([f"{migrator}=U/{migrator}", default_public])),
        "public.kind_code": (migrator, []),
    }

    again = run_api(deployed.data)
    assert again.success and not any(again.changed.values()), again
    audit = console("pgprov-verify", inventory, "--no-probes")
    assert audit.returncode == 0, audit.stdout + audit.stderr
