"""Behavioural probes: log in as the application's role and try what it must and must not do.

The catalog says what is granted; a probe shows what the server actually lets the role do
(memberships, PUBLIC, superuser included). Every probe runs in its own savepoint inside one
transaction that is always rolled back, so probes leave no rows, objects or roles behind.
One deliberate exception: ``nextval`` is not transactional, so the sequence probe hands out
exactly one value (a gap, like any rolled-back INSERT makes); rewinding it with ``setval``
would race with the live application and could hand out duplicate ids.

    checks = run_probes(spec, snapshot, password, host="@local")   # rows for the matrix
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from pgprov.access.privileges import BOOKKEEPING_TABLE
from pgprov.audit.report import Check
from pgprov.catalog.session import connect
from pgprov.catalog.state import Snapshot
from pgprov.model.secrets import Secret
from pgprov.model.spec import Spec
from pgprov.sql.locks import LockPolicy
from psycopg import sql

GROUP = "probes"
PROBE_TABLE = "checklist"  # an application table every migrated schema has
PROBE_NAME = "pgprov_audit_probe"  # objects a probe tries to create (always rolled back)
OTHER_DATABASE = "postgres"
DENIED = "42501"  # insufficient_privilege
# A probe that is allowed may take a lock the live application needs: give up as quickly as
# the deploy does (pg_lock_timeout); each probe's savepoint is rolled back, locks with it.
STATEMENT_TIMEOUT = "10s"


def session_limits(policy: LockPolicy) -> str:
    return f"-c lock_timeout={policy.lock_timeout_ms}ms -c statement_timeout={STATEMENT_TIMEOUT}"


@dataclass(frozen=True)
class Probe:
    """One statement run as the role, and whether the spec says it must be allowed."""

    object: str
    action: str
    statement: sql.Composable
    allowed: bool


def _table(spec: Spec, name: str) -> sql.Composable:
    return sql.Identifier(spec.schema_name, name)


def table_probes(spec: Spec, snap: Snapshot) -> list[Probe]:
    """Read and write an application table (zero rows: the privilege check still runs at
    executor start, and no row means no column default, so no sequence value, is used)."""
    if snap.relation(spec.schema_name, PROBE_TABLE) is None:
        return []
    table = _table(spec, PROBE_TABLE)
    where = f"table {spec.schema_name}.{PROBE_TABLE}"
    return [
        Probe(where, "SELECT", sql.SQL("SELECT FROM {} LIMIT 0").format(table), True),
        Probe(
            where,
            "INSERT",
            sql.SQL("INSERT INTO {t} SELECT (NULL::{t}).* WHERE false").format(t=table),
            True,
        ),
        Probe(where, "UPDATE", sql.SQL("UPDATE {} SET id = id WHERE false").format(table), True),
        Probe(where, "DELETE", sql.SQL("DELETE FROM {} WHERE false").format(table), True),
    ]


def ddl_probes(spec: Spec, snap: Snapshot, *, owner: bool) -> list[Probe]:
    """CREATE in the schemas; and for a role that owns nothing, DROP, ALTER and TRUNCATE an
    application table (the owner may, by definition, so probing it there proves nothing)."""
    schema = spec.schema_name
    can_create = owner or spec.runtime_can_create
    # Since PostgreSQL 15 schema public belongs to pg_database_owner: the database's owner
    # (the single_user app user) owns it too and may create there; nobody else may.
    public = snap.schemas.get("public")
    owns_public = owner and public is not None and public.owner in ("pg_database_owner", spec.owner)
    probes = [
        Probe(
            f"schema {schema}",
            "CREATE TABLE",
            sql.SQL("CREATE TABLE {} (id int)").format(_table(spec, PROBE_NAME)),
            can_create,
        ),
        Probe(
            "schema public",
            "CREATE TABLE",
            sql.SQL("CREATE TABLE {} (id int)").format(sql.Identifier("public", PROBE_NAME)),
            owns_public,
        ),
    ]
    if owner:
        return probes
    # The owner of the database holds TEMPORARY implicitly; the runtime must not.
    probes.append(
        Probe(
            f"database {spec.database}",
            "CREATE TEMP TABLE",
            sql.SQL("CREATE TEMP TABLE {} (id int)").format(sql.Identifier(PROBE_NAME)),
            False,
        )
    )
    if snap.relation(schema, PROBE_TABLE) is None:
        return probes
    # CASCADE, so that a permitted DROP or TRUNCATE succeeds instead of stopping at the
    # foreign keys (an inconclusive error); the savepoint undoes it either way.
    table = _table(spec, PROBE_TABLE)
    where = f"table {schema}.{PROBE_TABLE}"
    alter = sql.SQL("ALTER TABLE {} ADD COLUMN {} int").format(table, sql.Identifier(PROBE_NAME))
    probes += [
        Probe(where, "DROP", sql.SQL("DROP TABLE {} CASCADE").format(table), False),
        Probe(where, "ALTER", alter, False),
        Probe(where, "TRUNCATE", sql.SQL("TRUNCATE {} CASCADE").format(table), False),
    ]
    return probes


def bookkeeping_probes(spec: Spec, snap: Snapshot) -> list[Probe]:
    if snap.relation(spec.schema_name, BOOKKEEPING_TABLE) is None:
        return []
    table = _table(spec, BOOKKEEPING_TABLE)
    where = f"table {spec.schema_name}.{BOOKKEEPING_TABLE}"
    return [
        Probe(where, "SELECT", sql.SQL("SELECT FROM {} LIMIT 0").format(table), False),
        Probe(
            where,
            "INSERT",
            sql.SQL("INSERT INTO {t} SELECT (NULL::{t}).* WHERE false").format(t=table),
            False,
        ),
    ]


def cluster_probes() -> list[Probe]:
    """Superuser and CREATEROLE powers no managed role has."""
    return [
        Probe(
            "cluster",
            "CREATE ROLE",
            sql.SQL("CREATE ROLE {}").format(sql.Identifier(PROBE_NAME)),
            False,
        ),
        Probe(
            "cluster",
            "pg_read_file (superuser)",
            sql.SQL("SELECT pg_read_file('PG_VERSION')"),
            False,
        ),
        Probe(
            "cluster",
            "SET session_replication_role (superuser)",
            sql.SQL("SET LOCAL session_replication_role = replica"),
            False,
        ),
    ]


def probes_for(spec: Spec, snap: Snapshot) -> list[Probe]:
    """The probes for the application's role: the runtime (split) or the app user."""
    owner = spec.profile == "single_user"
    probes = [*table_probes(spec, snap), *ddl_probes(spec, snap, owner=owner)]
    if not owner:
        probes += bookkeeping_probes(spec, snap)
    return [*probes, *cluster_probes()]


def probe_role(spec: Spec) -> str:
    return spec.runtime_role or spec.app_user


def _outcome(error: psycopg.Error | None) -> str:
    if error is None:
        return "allowed"
    if error.sqlstate == DENIED:
        return "denied"
    return f"error {error.sqlstate or ''}".rstrip()


def _message(error: psycopg.Error) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _connect(spec: Spec, password: Secret, dbname: str, options: str) -> psycopg.Connection:
    return connect(
        host=spec.app_host,
        port=spec.app_port,
        user=probe_role(spec),
        password=password.reveal(),
        dbname=dbname,
        autocommit=True,
        connect_timeout=10,
        application_name="pgprov audit probe",
        options=options,
    )


def run_probes(spec: Spec, snap: Snapshot, password: Secret, *, host: str) -> list[Check]:
    """Log in as the application's role over TCP with its password and run every probe."""
    role = probe_role(spec)
    options = session_limits(LockPolicy.of(spec))  # once per host, for both logins

    def row(obj: str, action: str, declared: str, actual: str, detail: str = "") -> Check:
        return Check.compare(host, GROUP, role, obj, action, declared, actual, detail)

    try:
        conn = _connect(spec, password, spec.database, options)
    except psycopg.Error as exc:
        return [row(f"database {spec.database}", "LOGIN", "allowed", "failed", _message(exc))]
    checks = [row(f"database {spec.database}", "LOGIN", "allowed", "allowed")]
    with conn:
        with conn.transaction(force_rollback=True):
            for probe in probes_for(spec, snap):
                error = _attempt(conn, probe.statement)
                declared = "allowed" if probe.allowed else "denied"
                actual = _outcome(error)
                detail = _message(error) if error is not None and actual != declared else ""
                checks.append(row(probe.object, probe.action, declared, actual, detail))
            checks.append(_sequence_probe(conn, spec, snap, row))
        checks.append(_other_database_probe(conn, spec, password, host, options))
    return [c for c in checks if c is not None]


def _attempt(conn: psycopg.Connection, statement: sql.Composable) -> psycopg.Error | None:
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(statement)
    except psycopg.Error as exc:
        return exc
    return None


def _sequence_probe(
    conn: psycopg.Connection, spec: Spec, snap: Snapshot, row: Callable[..., Check]
) -> Check | None:
    """nextval on the probe table's id sequence: must be allowed (hands out one value)."""
    if snap.relation(spec.schema_name, PROBE_TABLE) is None:
        return None
    qualified = sql.Identifier(spec.schema_name, PROBE_TABLE).as_string(conn)
    found = conn.execute("SELECT pg_get_serial_sequence(%s, 'id')", (qualified,)).fetchone()
    where = f"sequence of {spec.schema_name}.{PROBE_TABLE}.id"
    if found is None or found[0] is None:
        return row(where, "nextval", "allowed", "no sequence")
    error = _attempt(conn, sql.SQL("SELECT nextval({})").format(sql.Literal(found[0])))
    actual = _outcome(error)
    detail = _message(error) if error is not None else ""
    return row(f"sequence {found[0]}", "nextval", "allowed", actual, detail)


CONNECT_GRANTEES = sql.SQL(
    "SELECT COALESCE(bool_or(a.grantee = 0), false),"
    " COALESCE(bool_or(a.grantee = r.oid), false)"
    " FROM pg_catalog.pg_database d"
    " CROSS JOIN LATERAL pg_catalog.aclexplode("
    "   COALESCE(d.datacl, pg_catalog.acldefault('d', d.datdba))) a"
    " JOIN pg_catalog.pg_roles r ON r.rolname = current_user"
    " WHERE d.datname = {} AND a.privilege_type = 'CONNECT'"
)


def _other_database_probe(
    conn: psycopg.Connection, spec: Spec, password: Secret, host: str, options: str
) -> Check | None:
    """Connect to ``postgres``, a database the spec grants the role nothing on.

    PostgreSQL gives PUBLIC CONNECT on ``postgres`` by default and this deploy manages one
    database, not the cluster: a login that succeeds only through PUBLIC is a NOTE (with the
    statement that closes it), not drift. A direct grant, or a login with neither, is drift.
    """
    if spec.database == OTHER_DATABASE:
        return None
    role = probe_role(spec)
    public, direct = conn.execute(
        CONNECT_GRANTEES.format(sql.Literal(OTHER_DATABASE))
    ).fetchone() or (False, False)
    where = f"database {OTHER_DATABASE}"
    try:
        _connect(spec, password, OTHER_DATABASE, options).close()
    except psycopg.OperationalError as exc:
        message = _message(exc)
        refused = "permission denied" in str(exc) or "pg_hba.conf" in str(exc)
        actual = "denied" if refused else "error"
        return Check.compare(
            host, GROUP, role, where, "CONNECT", "denied", actual, "" if refused else message
        )
    if public and not direct:
        return Check(
            host,
            GROUP,
            role,
            where,
            "CONNECT",
            "denied",
            "allowed",
            "NOTE",
            "through PUBLIC's default CONNECT on postgres, outside this deploy's scope; "
            "REVOKE CONNECT ON DATABASE postgres FROM PUBLIC closes it cluster-wide",
        )
    reason = (
        "granted to the role directly" if direct else "without a grant: membership or superuser"
    )
    return Check.compare(host, GROUP, role, where, "CONNECT", "denied", "allowed", reason)
