"""Object kinds of the registry (``pgprov.catalog.kinds``) beyond tables, sequences and
routines: a stranger's types and domains, and USAGE on them granted to a stranger or to a
managed role, are named by the audit, repaired by one deploy, and a second deploy sends
nothing. PUBLIC's built-in USAGE on a type is PostgreSQL's default and stays."""

from __future__ import annotations

import tempfile
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.deploykit import DeployEnv, run_api, run_cli, write_inventory
from tests.e2e.helpers import (
    combined,
    console,
    lines_with,
    login,
    managed_admin_env,
    owners_and_acls,
    superuser_sql,
)
from tests.pgserver import Names, Server, drop_prefixed

pytestmark = pytest.mark.db


def types_of(server: Server, names: Names) -> dict[str, tuple[str, list[str]]]:
    """schema.name -> (owner, ACL entries as text) of the planted types and domains."""
    return owners_and_acls(
        server,
        names.database,
        "SELECT n.nspname || '.' || t.typname, pg_get_userbyid(t.typowner)::text,"
        " COALESCE(t.typacl::text[], '{}')"
        " FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
        " WHERE t.typname LIKE 'kind\\_%' ORDER BY 1",
    )


def test_types_and_domains_of_strangers_and_grants_on_them_are_named_and_repaired(
    deployed: DeployEnv, pg_server: Server, names: Names, tmp_path: Path
) -> None:
    stranger, migrator, runtime = names.role("x"), names.migrator, names.runtime
    statements = (
        # A stranger's type in the app's schema and its domain in public.
        "CREATE TYPE app.kind_mood AS ENUM ('ok', 'sad')",
        "ALTER TYPE app.kind_mood OWNER TO {x}",
        "CREATE DOMAIN public.kind_code AS text CHECK (VALUE <> '')",
        "ALTER DOMAIN public.kind_code OWNER TO {x}",
        # The migrator's own domain and composite type, with USAGE granted to a stranger
        # and to the runtime (a managed role that was declared nothing on them).
        "CREATE DOMAIN app.kind_positive AS integer CHECK (VALUE > 0)",
        "ALTER DOMAIN app.kind_positive OWNER TO {migrator}",
        "CREATE TYPE app.kind_pair AS (a integer, b integer)",
        "ALTER TYPE app.kind_pair OWNER TO {migrator}",
        "SET ROLE {migrator}",
        "GRANT USAGE ON DOMAIN app.kind_positive TO {x}",
        "GRANT USAGE ON TYPE app.kind_pair TO {runtime} WITH GRANT OPTION",
    )
    superuser_sql(pg_server, names.database, statements, names, x=stranger)
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


def default_acls_of(server: Server, names: Names) -> set[tuple[str, str, str, str]]:
    """(for role, schema or '', object type, ACL as text) of every default privilege."""
    with server.connect(names.database) as conn:
        rows = conn.execute(
            "SELECT pg_get_userbyid(d.defaclrole)::text, COALESCE(n.nspname::text, ''),"
            " d.defaclobjtype::text, d.defaclacl::text"
            " FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace"
        ).fetchall()
    return {tuple(row) for row in rows}


def test_default_privileges_of_every_object_type_and_role_are_named_and_revoked(
    deployed: DeployEnv, pg_server: Server, names: Names, tmp_path: Path
) -> None:
    stranger, migrator, runtime = names.role("x"), names.migrator, names.runtime
    declared = default_acls_of(pg_server, names)
    assert {(role, objtype) for role, _, objtype, _ in declared} == {
        (migrator, "r"),
        (migrator, "S"),
        (migrator, "f"),
    }
    ident = {"x": sql.Identifier(stranger), "m": sql.Identifier(migrator)}
    ident["r"] = sql.Identifier(runtime)
    planted = [
        ("FOR ROLE {m} IN SCHEMA app GRANT USAGE ON TYPES TO {x}", "future types", migrator),
        ("FOR ROLE {m} GRANT USAGE ON SCHEMAS TO {r}", "future schemas", migrator),
        ("FOR ROLE {x} GRANT EXECUTE ON FUNCTIONS TO {r}", "future functions", stranger),
        ("FOR ROLE {x} IN SCHEMA app GRANT SELECT ON TABLES TO {r}", "future tables", stranger),
    ]
    if pg_server.major >= 18:
        planted.append(
            ("FOR ROLE {m} GRANT SELECT ON LARGE OBJECTS TO {x}", "future large objects", migrator)
        )
    with pg_server.connect(names.database) as conn:
        for statement, _, _ in planted:
            conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES " + statement).format(**ident))
    inventory = write_inventory(tmp_path, deployed.data)

    audit = console("pgprov-verify", inventory, "--no-probes")
    assert audit.returncode == 1, audit.stdout + audit.stderr
    for _, what, for_role in planted:
        assert lines_with(audit.stdout, "DRIFT", f"{what} of {for_role}"), (what, audit.stdout)

    repair = run_api(deployed.data)
    assert repair.success and repair.changed["provision"], repair
    assert default_acls_of(pg_server, names) == declared

    again = run_api(deployed.data)
    assert again.success and not any(again.changed.values()), again
    audit = console("pgprov-verify", inventory, "--no-probes")
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_an_admin_that_may_not_act_for_a_role_leaves_its_defaults_and_says_so(
    pg_server: Server, names: Names, tmp_path: Path
) -> None:
    """A managed service's admin (CREATEROLE, CREATEDB, no superuser) cannot alter another
    role's default privileges: the deploy leaves them and says so in one line, the audit keeps
    naming them."""
    admin, stranger, runtime = names.role("admin"), names.role("x"), names.runtime
    env = managed_admin_env(pg_server, names, tmp_path)
    try:
        assert run_api(env.data).success
        with pg_server.connect(names.database) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(stranger)))
            conn.execute(
                sql.SQL(
                    "ALTER DEFAULT PRIVILEGES FOR ROLE {x} IN SCHEMA app"
                    " GRANT SELECT ON TABLES TO {r}"
                ).format(x=sql.Identifier(stranger), r=sql.Identifier(runtime))
            )
        planted = default_acls_of(pg_server, names)
        deploy = run_cli(tmp_path, env.data)
        assert deploy.returncode == 0, combined(deploy)
        [notice] = lines_with(
            combined(deploy), f"the admin {admin} may not alter the default privileges of"
        )
        assert stranger in notice
        assert default_acls_of(pg_server, names) == planted
        audit = console("pgprov-verify", write_inventory(tmp_path, env.data), "--no-probes")
        assert audit.returncode == 1, audit.stdout + audit.stderr
        assert lines_with(audit.stdout, "DRIFT", f"future tables of {stranger}", runtime)
    finally:
        drop_prefixed(pg_server, names.prefix)


def test_maintain_on_a_table_is_a_table_privilege_where_the_server_has_it(
    deployed: DeployEnv, pg_server: Server, names: Names, tmp_path: Path
) -> None:
    """MAINTAIN (17+: VACUUM, ANALYZE, REINDEX, CLUSTER, LOCK TABLE ... ACCESS EXCLUSIVE) granted
    to the runtime is named and revoked like any undeclared table privilege."""
    grant = sql.SQL("GRANT MAINTAIN ON app.unit TO {}").format(sql.Identifier(names.runtime))
    with pg_server.connect(names.database) as conn:
        if pg_server.major < 17:
            with pytest.raises(psycopg.Error, match=r"(?i)maintain"):
                conn.execute(grant)
            return
        conn.execute(grant)
    inventory = write_inventory(tmp_path, deployed.data)
    audit = console("pgprov-verify", inventory, "--no-probes")
    assert audit.returncode == 1, audit.stdout + audit.stderr
    assert lines_with(audit.stdout, "DRIFT", names.runtime, "table app.unit", "MAINTAIN")
    repair = run_api(deployed.data)
    assert repair.success and repair.changed["provision"], repair
    with pg_server.connect(names.database) as conn:
        held = conn.execute(
            "SELECT has_table_privilege(%s, 'app.unit', 'MAINTAIN')", (names.runtime,)
        ).fetchone()
    assert held == (False,)
    assert console("pgprov-verify", inventory, "--no-probes").returncode == 0


def test_usage_on_foreign_data_wrappers_and_servers_is_named_and_revoked(
    deployed: DeployEnv, pg_server: Server, names: Names, tmp_path: Path
) -> None:
    """USAGE on a foreign server lets a role map itself to remote credentials and read through
    it; on a wrapper, create servers. Their owners (a superuser must own a wrapper) stay."""
    stranger, runtime = names.role("x"), names.runtime
    statements = (
        "CREATE FOREIGN DATA WRAPPER kind_fdw",
        "CREATE SERVER kind_srv FOREIGN DATA WRAPPER kind_fdw",
        "GRANT USAGE ON FOREIGN DATA WRAPPER kind_fdw TO {runtime}",
        "GRANT USAGE ON FOREIGN SERVER kind_srv TO {runtime}",
        "GRANT USAGE ON FOREIGN SERVER kind_srv TO {x} WITH GRANT OPTION",
    )
    superuser_sql(pg_server, names.database, statements, names, x=stranger)
    inventory = write_inventory(tmp_path, deployed.data)
    audit = console("pgprov-verify", inventory, "--no-probes")
    assert audit.returncode == 1, audit.stdout + audit.stderr
    for needles in (
        (runtime, "foreign data wrapper kind_fdw", "USAGE"),
        (runtime, "foreign server kind_srv", "USAGE"),
        (stranger, "foreign server kind_srv", "USAGE"),
    ):
        assert lines_with(audit.stdout, "DRIFT", *needles), (needles, audit.stdout)

    repair = run_api(deployed.data)
    assert repair.success and repair.changed["provision"], repair
    with pg_server.connect(names.database) as conn:
        held = conn.execute(
            "SELECT has_foreign_data_wrapper_privilege(%(r)s, 'kind_fdw', 'USAGE'),"
            " has_server_privilege(%(r)s, 'kind_srv', 'USAGE'),"
            " has_server_privilege(%(x)s, 'kind_srv', 'USAGE'),"
            " (SELECT pg_get_userbyid(srvowner)::text FROM pg_foreign_server"
            "  WHERE srvname = 'kind_srv')",
            {"r": runtime, "x": stranger},
        ).fetchone()
    assert held == (False, False, False, pg_server.superuser)
    again = run_api(deployed.data)
    assert again.success and not any(again.changed.values()), again
    assert console("pgprov-verify", inventory, "--no-probes").returncode == 0


def parameter_holders(server: Server, parameter: str) -> set[str]:
    with server.connect() as conn:
        rows = conn.execute(
            "SELECT DISTINCT pg_get_userbyid(x.grantee)::text FROM pg_parameter_acl p,"
            " aclexplode(p.paracl) x WHERE p.parname = %s AND x.grantee <> 10",
            (parameter,),
        ).fetchall()
    return {row[0] for row in rows}


def test_parameter_privileges_of_roles_in_scope_are_named_and_revoked(
    deployed: DeployEnv, pg_server: Server, names: Names, tmp_path: Path
) -> None:
    """GRANT SET, ALTER SYSTEM ON PARAMETER archive_command: its holder runs a shell command
    on the server. Cluster-wide, so revoked only from roles in this database's scope: the
    runtime and a role holding a privilege here; a role elsewhere keeps it."""
    stranger, elsewhere, runtime = names.role("x"), names.role("y"), names.runtime
    grant = "GRANT SET, ALTER SYSTEM ON PARAMETER archive_command TO {}"
    with pg_server.connect(names.database) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(elsewhere)))
        conn.execute(sql.SQL("GRANT SELECT ON app.unit TO {}").format(sql.Identifier(stranger)))
        for role in (runtime, stranger, elsewhere):
            conn.execute(sql.SQL(grant).format(sql.Identifier(role)))
    inventory = write_inventory(tmp_path, deployed.data)
    try:
        audit = console("pgprov-verify", inventory, "--no-probes")
        assert audit.returncode == 1, audit.stdout + audit.stderr
        for role in (runtime, stranger):
            for privilege in ("SET", "ALTER SYSTEM"):
                assert lines_with(
                    audit.stdout, "DRIFT", role, "parameter archive_command", privilege
                ), (role, privilege, audit.stdout)
        assert not lines_with(audit.stdout, elsewhere)
        repair = run_api(deployed.data)
        assert repair.success and repair.changed["provision"], repair
        assert parameter_holders(pg_server, "archive_command") == {elsewhere}
        again = run_api(deployed.data)
        assert again.success and not any(again.changed.values()), again
        assert console("pgprov-verify", inventory, "--no-probes").returncode == 0
    finally:
        with pg_server.connect() as conn:
            for role in (runtime, stranger, elsewhere):
                conn.execute(
                    sql.SQL("REVOKE SET, ALTER SYSTEM ON PARAMETER archive_command FROM {}").format(
                        sql.Identifier(role)
                    )
                )


def test_execute_granted_on_system_functions_since_initdb_is_named_and_revoked(
    deployed: DeployEnv, pg_server: Server, names: Names, tmp_path: Path
) -> None:
    """EXECUTE on pg_catalog.lo_export lets the runtime write any file the server's OS user may
    (postgresql.auto.conf, say: a way up); on pg_read_file, PUBLIC reads any. PostgreSQL revokes
    both from PUBLIC at initdb; granted since (pg_init_privs says what initdb left), they are
    named, revoked, and the runtime's lo_export is refused."""
    runtime = names.runtime
    target = Path(tempfile.gettempdir()) / f"{names.prefix}_exported"
    statements = (
        "GRANT EXECUTE ON FUNCTION pg_catalog.lo_export(oid, text) TO {runtime}",
        "GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_file(text) TO PUBLIC",
    )
    superuser_sql(pg_server, names.database, statements, names)

    def export() -> str:
        with login(pg_server, deployed, names, "runtime") as conn:
            oid = conn.execute("SELECT lo_from_bytea(0, 'x')").fetchone()[0]
            try:
                conn.execute("SELECT lo_export(%s, %s)", [oid, str(target)]).fetchone()
                return "written"
            except psycopg.Error as exc:
                return type(exc).__name__
            finally:
                conn.execute("SELECT lo_unlink(%s)", [oid])

    try:
        assert export() == "written"  # the runtime writes a file on the server's host
        inventory = write_inventory(tmp_path, deployed.data)
        audit = console("pgprov-verify", inventory, "--no-probes")
        assert audit.returncode == 1, audit.stdout + audit.stderr
        for needles in (
            (runtime, "function pg_catalog.lo_export(oid, text)", "EXECUTE"),
            ("PUBLIC", "function pg_catalog.pg_read_file(text)", "EXECUTE"),
        ):
            assert lines_with(audit.stdout, "DRIFT", *needles), (needles, audit.stdout)
        repair = run_api(deployed.data)
        assert repair.success and repair.changed["provision"], repair
        assert export() == "InsufficientPrivilege"
        again = run_api(deployed.data)
        assert again.success and not any(again.changed.values()), again
        assert console("pgprov-verify", inventory, "--no-probes").returncode == 0
    finally:
        target.unlink(missing_ok=True)
