"""Least privilege for the whole database: every undeclared access path is named by the audit,
closed by one deploy, and a second deploy sends nothing.

One provisioned split environment serves the whole module: each case seeds one path as the
superuser (or as the role that would really do it), then ``python -m pgprov.verify`` must exit 1
with a line naming the role and the object, one deploy must change the catalog, a second must
send no DDL, and the audit must be clean again.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from psycopg import sql

from tests.deploykit import DeployEnv, env_data, run_api, run_module, write_inventory
from tests.e2e.helpers import identifiers
from tests.pgserver import Names, Server, drop_prefixed

NO_CHANGES = {"provision": False, "migrate": False, "gin_index": False}


@dataclass
class Env:
    names: Names
    env: DeployEnv
    inventory: Path


@pytest.fixture(scope="module")
def env(pg_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    names = Names.new()
    directory = tmp_path_factory.mktemp("least")
    try:
        deploy_env = env_data(pg_server, names, directory)
        result = run_api(deploy_env.data)
        assert result.success, result
        with pg_server.connect() as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(names.role("other")))
            )
        yield Env(names, deploy_env, write_inventory(directory, deploy_env.data))
    finally:
        drop_prefixed(pg_server, names.prefix)
        with pg_server.connect() as conn:
            # Cluster-wide and not prefixed: the role really named "PUBLIC" of one case.
            conn.execute('DROP ROLE IF EXISTS "PUBLIC"')


def verify(inventory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m pgprov.verify <inventory>`` as CI runs it."""
    return run_module("pgprov.verify", str(inventory), *args)


def drift_lines(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if line.strip().startswith("DRIFT")]


@dataclass(frozen=True)
class AccessPath:
    """One undeclared access path: statements (run in the database unless ``cluster``), and
    the words the audit's DRIFT line must carry (role and object)."""

    statements: tuple[str, ...]
    needles: tuple[str, ...]
    cluster: bool = False


# {other}, {grp}, {delegate}, {parent}, {granter}: extra roles of this environment (prefixed).
PATHS: dict[str, AccessPath] = {
    "other_role_all_on_table": AccessPath(
        ("GRANT ALL ON app.checklist TO {other}",), ("{other}", "table app.checklist")
    ),
    "column_grant_on_bookkeeping": AccessPath(
        ("GRANT UPDATE (version) ON app.aerich TO {runtime}",),
        ("{runtime}", "column app.aerich(version)", "UPDATE"),
    ),
    "other_role_sequence": AccessPath(
        ("GRANT USAGE, UPDATE ON SEQUENCE app.checklist_id_seq TO {other}",),
        ("{other}", "sequence app.checklist_id_seq"),
    ),
    "public_executes_security_definer_function": AccessPath(
        (
            "SET ROLE {migrator}",
            "CREATE FUNCTION app.pgprov_secdef() RETURNS int LANGUAGE sql SECURITY DEFINER "
            "AS 'SELECT 1'",
            "GRANT EXECUTE ON FUNCTION app.pgprov_secdef() TO PUBLIC",
        ),
        ("PUBLIC", "function app.pgprov_secdef()", "EXECUTE"),
    ),
    "other_role_executes_procedure": AccessPath(
        (
            "SET ROLE {migrator}",
            "CREATE PROCEDURE app.pgprov_proc(n integer) LANGUAGE sql AS 'SELECT n'",
            "GRANT EXECUTE ON PROCEDURE app.pgprov_proc(integer) TO {other}",
        ),
        ("{other}", "function app.pgprov_proc(IN n integer)", "EXECUTE"),
    ),
    "other_role_creates_in_schema": AccessPath(
        ("GRANT CREATE ON SCHEMA app TO {other}",), ("{other}", "schema app", "CREATE")
    ),
    "runtime_on_another_schema": AccessPath(
        (
            "CREATE SCHEMA pgprov_side",
            "GRANT USAGE, CREATE ON SCHEMA pgprov_side TO {runtime}",
            "CREATE TABLE pgprov_side.t (x int)",
            "GRANT SELECT ON pgprov_side.t TO {runtime}",
        ),
        ("{runtime}", "schema pgprov_side", "CREATE"),
    ),
    "other_role_on_the_database": AccessPath(
        ("GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {other}",),
        ("{other}", "database {db_name}", "TEMPORARY"),
    ),
    "member_of_the_migrator": AccessPath(
        ("GRANT {migrator} TO {other}",), ("{other}", "role {migrator_name}", "member"), True
    ),
    "member_of_the_runtime": AccessPath(
        ("GRANT {runtime} TO {other}",), ("{other}", "role {runtime_name}", "member"), True
    ),
    "member_of_the_migrator_through_a_group": AccessPath(
        ("CREATE ROLE {grp} NOLOGIN", "GRANT {migrator} TO {grp}", "GRANT {grp} TO {other}"),
        ("{other}", "role {migrator_name}", "member through {grp_name}"),
        True,
    ),
    "membership_granted_by_a_third_grantor": AccessPath(
        (
            "CREATE ROLE {delegate} NOLOGIN",
            "GRANT {runtime} TO {delegate} WITH ADMIN OPTION",
            "SET ROLE {delegate}",
            "GRANT {runtime} TO {other}",
        ),
        ("{other}", "role {runtime_name}", "granted by {delegate_name}"),
        True,
    ),
    "runtime_made_a_member_by_a_third_grantor": AccessPath(
        (
            "CREATE ROLE {parent} NOLOGIN",
            "CREATE ROLE {granter} NOLOGIN",
            "GRANT {parent} TO {granter} WITH ADMIN OPTION",
            "SET ROLE {granter}",
            "GRANT {parent} TO {runtime}",
        ),
        ("{runtime}", "member of", "{parent_name}"),
        True,
    ),
    "table_grant_by_a_third_grantor": AccessPath(
        (
            "GRANT SELECT ON app.unit TO {runtime} WITH GRANT OPTION",
            "SET ROLE {runtime}",
            "GRANT SELECT ON app.unit TO {other}",
        ),
        ("{other}", "table app.unit", "SELECT"),
    ),
    "global_default_privileges": AccessPath(
        ("ALTER DEFAULT PRIVILEGES FOR ROLE {migrator} GRANT SELECT ON TABLES TO {other}",),
        ("{other}", "future tables of {migrator_name} (all schemas)"),
    ),
    "schema_default_privileges": AccessPath(
        (
            "ALTER DEFAULT PRIVILEGES FOR ROLE {migrator} IN SCHEMA app "
            "GRANT INSERT ON TABLES TO {other}",
        ),
        ("{other}", "future tables of {migrator_name} in app", "INSERT"),
    ),
    "default_execute_on_functions_for_public": AccessPath(
        ("ALTER DEFAULT PRIVILEGES FOR ROLE {migrator} GRANT EXECUTE ON FUNCTIONS TO PUBLIC",),
        ("PUBLIC", "future functions of {migrator_name} (all schemas)", "EXECUTE"),
    ),
    "standalone_sequence_owned_by_another_role": AccessPath(
        ("CREATE SEQUENCE app.pgprov_loose", "ALTER SEQUENCE app.pgprov_loose OWNER TO {other}"),
        ("sequence app.pgprov_loose", "owner", "{other}"),
    ),
    "view_owned_by_another_role": AccessPath(
        (
            "CREATE VIEW app.pgprov_view AS SELECT 1 AS x",
            "ALTER VIEW app.pgprov_view OWNER TO {other}",
        ),
        ("table app.pgprov_view", "owner", "{other}"),
    ),
    "function_owned_by_another_role": AccessPath(
        (
            "CREATE FUNCTION app.pgprov_owned() RETURNS int LANGUAGE sql AS 'SELECT 2'",
            "ALTER FUNCTION app.pgprov_owned() OWNER TO {other}",
        ),
        ("function app.pgprov_owned()", "owner", "{other}"),
    ),
    "table_owned_by_another_role": AccessPath(
        ("ALTER TABLE app.questiondependency OWNER TO {other}",),
        ("table app.questiondependency", "owner", "{other}"),
    ),
    "table_in_public_owned_by_another_role": AccessPath(
        (
            "CREATE TABLE public.pgprov_foreign (x int)",
            "ALTER TABLE public.pgprov_foreign OWNER TO {other}",
        ),
        ("table public.pgprov_foreign", "owner", "{other}"),
    ),
    "schema_of_another_role_with_its_objects": AccessPath(
        (
            "CREATE SCHEMA pgprov_theirs AUTHORIZATION {other}",
            "SET ROLE {other}",
            "CREATE TABLE pgprov_theirs.t (id serial PRIMARY KEY, note text)",
            "CREATE VIEW pgprov_theirs.v AS SELECT id FROM pgprov_theirs.t",
            "CREATE FUNCTION pgprov_theirs.f() RETURNS int LANGUAGE sql AS 'SELECT 3'",
        ),
        ("schema pgprov_theirs", "owner", "{other}"),
    ),
    "a_role_really_named_public": AccessPath(
        (
            'CREATE ROLE "PUBLIC" NOLOGIN',
            'GRANT SELECT ON app.checklist TO "PUBLIC"',
        ),
        ('"PUBLIC"', "table app.checklist", "SELECT"),
    ),
}


def seed(server: Server, e: Env, path: AccessPath) -> None:
    n = e.names
    extra = {role: n.role(role) for role in ("other", "grp", "delegate", "parent", "granter")}
    dbname = "postgres" if path.cluster else n.database
    with server.connect(dbname) as conn:
        ids = identifiers(n, **extra)
        for statement in path.statements:
            conn.execute(sql.SQL(statement).format(**ids))  # type: ignore[arg-type]


def needles(e: Env, path: AccessPath) -> list[str]:
    n = e.names
    plain = {
        "other": n.role("other"),
        "runtime": n.runtime,
        "migrator_name": n.migrator,
        "runtime_name": n.runtime,
        "db_name": n.database,
        "grp_name": n.role("grp"),
        "delegate_name": n.role("delegate"),
        "parent_name": n.role("parent"),
    }
    return [needle.format(**plain) for needle in path.needles]


@pytest.mark.parametrize("case", list(PATHS))
def test_undeclared_path_is_named_closed_by_one_deploy_and_then_stays_closed(
    pg_server: Server, env: Env, case: str
):
    path = PATHS[case]
    seed(pg_server, env, path)

    audit = verify(env.inventory, "--no-probes")
    assert audit.returncode == 1, audit.stdout + audit.stderr
    wanted = needles(env, path)
    named = [line for line in drift_lines(audit.stdout) if all(w in line for w in wanted)]
    assert named, f"no DRIFT line with {wanted}:\n" + "\n".join(drift_lines(audit.stdout))

    repair = run_api(env.env.data)
    assert repair.success, repair
    assert repair.changed["provision"], repair

    second = run_api(env.env.data)
    assert second.success, second
    assert second.changed == NO_CHANGES, second

    clean = verify(env.inventory, "--no-probes")
    assert clean.returncode == 0, "\n".join(drift_lines(clean.stdout)) or clean.stderr
    assert re.search(r"^\d+ checks, 0 differences$", clean.stdout, re.M)
    # Nobody but the owner role (and the admin) owns anything in the database any more.
    with pg_server.connect(env.names.database) as conn:
        left = conn.execute(OWNED_BY_OTHER, {"role": env.names.role("other")}).fetchall()
    assert left == [], left


OWNED_BY_OTHER = """
SELECT 'schema ' || nspname FROM pg_namespace WHERE nspowner::regrole::text = %(role)s
UNION ALL
SELECT 'relation ' || oid::regclass::text FROM pg_class WHERE relowner::regrole::text = %(role)s
UNION ALL
SELECT 'routine ' || oid::regprocedure::text FROM pg_proc WHERE proowner::regrole::text = %(role)s
"""
