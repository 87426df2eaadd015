"""The least-privilege audit: the spec (expected) against the live catalog (actual); changes nothing.

For every host of an inventory it reads the same catalog snapshot the deploy reads, through
psql on the controller with the admin connection, and compares role attributes and
memberships, ownership, role settings, privileges from the ACLs themselves, whoever holds them
(the deploy's own ``wanted_grants``/``current_grants``, so both share one definition of
"declared"), members of the managed roles and readers, roles that bypass privileges, what
PUBLIC holds, the GIN index, the bookkeeping table and pending migrations; it starts with who
can reach the data (one row per role); then it logs in as
the application's role and probes what it can really do (``pgprov.audit.probes``). Exit 0 when
clean, 1 on any difference, 2 on bad input or an unreachable server (one line naming it).

    pgprov-verify inventories/staging.py [--limit GROUP-OR-HOST-GLOB] [--no-probes]
        [--format text|json|markdown|junit] [--output FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from pgprov.access.code import foreign_code
from pgprov.access.kept import KEPT
from pgprov.access.privileges import (
    BOOKKEEPING_TABLE,
    DATABASE_OWNER_ROLE,
    PRIVILEGE_ORDER,
    PUBLIC,
    Grant,
    allowed_membership,
    current_grants,
    expected_privileged,
    missing_predefined,
    predefined_problem,
    predefined_scope,
    predefined_through_groups,
    trusted_owners,
    undeclared_owners,
    undeclared_predefined,
    undeclared_row_security,
    wanted_grants,
)
from pgprov.access.roles import identity_problem, is_marked, wanted_attributes
from pgprov.access.settings import (
    describe_limit,
    setting_rows,
    settings_problem,
    wanted_connection_limit,
)
from pgprov.audit.probes import GROUP as PROBES
from pgprov.audit.probes import probe_role, run_probes
from pgprov.audit.report import FORMATS, Check, render_report, summary, write_output
from pgprov.catalog.facts import inspect_script
from pgprov.catalog.psql import admin_password, run_local
from pgprov.catalog.state import MembershipState, Snapshot, SnapshotError, display_grantee
from pgprov.migrate.upgrade import pending_migrations
from pgprov.model.inventory import InventoryError, load_specs
from pgprov.model.secrets import SecretError, resolve
from pgprov.model.spec import GIN_INDEX, GIN_TABLE, Spec, SpecError
from pgprov.steps.gin import TEMP_INDEX, expected_definition

# Privileges the runtime must never hold on the migrations' bookkeeping table; listed so a
# clean environment shows them as checked, not just silently absent.
BOOKKEEPING_PRIVILEGES = (
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "TRUNCATE",
    "REFERENCES",
    "TRIGGER",
)
CONNECT_TIMEOUT = "10"


class AuditError(RuntimeError):
    """The audit cannot run for a host (unreachable, unsupported, bad secret): one line."""


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def read_snapshot(host: str, spec: Spec) -> Snapshot:
    """The deploy's catalog snapshot, taken with psql on the controller (script on stdin)."""
    where = f"{spec.inventory}: host {host}"
    if spec.admin.sudo_user or (not host.startswith("@") and not spec.admin.host):
        raise AuditError(
            f"{where}: the audit runs psql on the controller; a host administered over SSH "
            "(pg_admin_sudo_user or a local socket) needs PGHOST/PGUSER pointing at the server "
            "or a tunnel: not supported yet"
        )
    try:
        password = admin_password(spec.admin)
    except SecretError as exc:
        raise AuditError(f"{where}: pg_admin_password: {exc}") from None
    env = {**os.environ}
    env.setdefault("PGCONNECT_TIMEOUT", CONNECT_TIMEOUT)
    try:
        proc = run_local(spec.admin, inspect_script(spec), password=password, env=env)
    except OSError as exc:
        raise AuditError(f"{where}: cannot start psql: {exc.strerror}") from None
    if proc.returncode != 0:
        reason = _psql_reason(proc.stderr) or f"psql exited with {proc.returncode}"
        raise AuditError(f"{where}: cannot read the catalog ({spec.admin.describe()}): {reason}")
    try:
        return Snapshot.parse(proc.stdout.splitlines())
    except SnapshotError as exc:
        raise AuditError(f"{where}: {exc}") from None


def _psql_reason(stderr: str) -> str:
    """The line of psql's stderr that says what failed (not the HINT or DETAIL after it)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if "error:" in line or "FATAL:" in line or "ERROR:" in line:
            return line
    return lines[0] if lines else ""


def role_checks(host: str, spec: Spec, snap: Snapshot) -> list[Check]:
    checks = []
    for name in spec.roles:

        def row(check: str, declared: str, actual: str, name: str = name) -> Check:
            return Check.compare(host, "roles", name, "role", check, declared, actual)

        role = snap.roles.get(name)
        checks.append(row("exists", "yes", _yes(role is not None)))
        if role is None:
            continue
        for attribute, wanted in wanted_attributes(spec, name).items():
            checks.append(row(attribute.upper(), _yes(wanted), _yes(getattr(role, attribute))))
        # The deploy declares no membership but in predefined roles (predefined_checks):
        # any other one is inherited power.
        others = [p for p in role.member_of if p not in snap.predefined_roles]
        checks.append(row("member of", "none", ", ".join(others) or "none"))
        limit = wanted_connection_limit(spec, name)
        checks.append(
            row("CONNECTION LIMIT", describe_limit(limit), describe_limit(role.connection_limit))
        )
        checks.append(row("password", "set", "set" if role.has_password else "not set"))
        checks.append(row("managed by pgprov", "yes", _yes(is_marked(role))))
    return checks


def setting_checks(host: str, spec: Spec, snap: Snapshot) -> list[Check]:
    """search_path, declared settings and undeclared ones: the deploy's own rows."""
    return [
        Check.compare(host, "settings", row.role, row.scope, row.name, row.declared, row.actual)
        for row in setting_rows(spec, snap)
        if row.role in snap.roles
    ]


def ownership_checks(host: str, spec: Spec, snap: Snapshot) -> list[Check]:
    """The owner role owns the database, the schema and every relation and routine in it, and
    every other schema of the database and what is in it (see ``undeclared_owners``)."""

    def row(obj: str, actual: str) -> Check:
        return Check.compare(host, "ownership", spec.owner, obj, "owner", spec.owner, actual)

    assert snap.database is not None
    schema = snap.schemas.get(spec.schema_name)
    checks = [
        row(f"database {spec.database}", snap.database.owner),
        row(f"schema {spec.schema_name}", schema.owner if schema else "(no schema)"),
    ]
    for rel in snap.relations:
        if rel.schema == spec.schema_name:
            checks.append(row(f"{rel.kind} {rel.schema}.{rel.name}", rel.owner))
    trusted = trusted_owners(spec, snap)
    for fn in snap.functions:
        if fn.schema == spec.schema_name and fn.owner in trusted:  # foreign: code_checks
            checks.append(row(f"function {fn.schema}.{fn.name}({fn.args})", fn.owner))
    for obj in snap.objects:  # every generic kind of the registry (types, domains, ...)
        if obj.schema == spec.schema_name:
            checks.append(row(f"{obj.keyword.lower()} {obj.schema}.{obj.name}", obj.owner))
    # Outside the app's schema only the differences are rows: every other schema and every
    # object in one belongs to the owner (or to the admin / a declared privileged role).
    for fix in undeclared_owners(spec, snap):
        if fix.keyword == "SCHEMA" or fix.schema != spec.schema_name:
            checks.append(row(fix.object_text(), fix.owner))
    return checks


def _options(m: MembershipState) -> str:
    options = [
        name for name, on in (("ADMIN", m.admin), ("INHERIT", m.inherit), ("SET", m.set)) if on
    ]
    by = f"granted by {m.grantor}" if m.grantor else "grantor unknown"
    return f"{by}; {', '.join(options) or 'no options'}"


def membership_checks(host: str, spec: Spec, snap: Snapshot) -> list[Check]:
    """Every member of a managed role, direct or through another role (with the grant's
    grantor and options), and every member of a reader (reading through it)."""
    managed = set(spec.roles)
    expected = expected_privileged(spec, snap)
    checks = []
    for m in snap.memberships:
        how = "member" if m.via is None else f"member through {m.via}"
        if m.role in managed:
            allowed = allowed_membership(spec, snap, m) if m.via is None else m.member in expected
            actual = f"member ({_options(m)})"
            checks.append(
                Check.compare(
                    host,
                    "memberships",
                    m.member,
                    f"role {m.role}",
                    how,
                    actual if allowed else "not a member",
                    actual,
                )
            )
        elif m.role in spec.readers:
            checks.append(
                Check(
                    host,
                    "readers",
                    m.member,
                    f"role {m.role}",
                    how,
                    "managed elsewhere",
                    f"reads schema {spec.schema_name} through {m.role}",
                    "NOTE",
                )
            )
    for reader in spec.readers:
        role = snap.roles.get(reader)
        actual = "missing" if role is None else ("LOGIN" if role.login else "NOLOGIN group")
        checks.append(
            Check.compare(host, "readers", reader, "role", "exists", "NOLOGIN group", actual)
        )
    return checks


def predefined_checks(host: str, spec: Spec, snap: Snapshot) -> list[Check]:
    """Memberships in predefined roles (pg_signal_backend, pg_monitor, ...) of the roles in
    scope (``predefined_scope``): each held or declared one is a row; held and undeclared, or
    declared for a managed role and not held, is a difference."""
    scope = predefined_scope(spec, snap)
    declared = spec.declared_predefined()
    undeclared = set(undeclared_predefined(spec, snap))
    missing = set(missing_predefined(spec, snap))
    rows = {(p.member, p.role): p for p in snap.predefined if p.member in scope}
    for member, role in missing:
        rows.setdefault((member, role), None)
    checks = []
    for (member, role), held in sorted(rows.items()):
        wanted = role in declared.get(member, ())
        bypass = held is not None and held not in undeclared and not wanted
        if bypass:
            continue  # a bypass role of a role pgprov does not manage: bypass_checks
        checks.append(
            Check(
                host,
                "predefined",
                member,
                f"role {role}",
                "member",
                "member (pg_predefined_roles)" if wanted else "not a member",
                f"member (granted by {held.grantor})" if held else "not a member",
                "DRIFT" if (member, role) in missing or held in undeclared else "OK",
            )
        )
    for p in predefined_through_groups(spec, snap):
        checks.append(
            Check(
                host,
                "predefined",
                p.member,
                f"role {p.role}",
                "member",
                "not a member",
                f"member through {p.via}",
                "DRIFT",
            )
        )
    return checks


def row_security_checks(host: str, spec: Spec, snap: Snapshot) -> list[Check]:
    """Row-level security on app tables: declared off, with no policy (the service's models
    declare none); each table that has it and each policy is a difference."""
    tables, policies = undeclared_row_security(spec, snap)
    checks = []
    for t in tables:
        actual = "enabled" + (", forced" if t.force_rls else "") if t.rls else "forced"
        checks.append(
            Check.compare(
                host, "row security", spec.owner, f"table {t.schema}.{t.name}", "RLS", "off", actual
            )
        )
    for p in policies:
        to = ", ".join(display_grantee(r) for r in p.roles) or "PUBLIC"
        kind = "permissive" if p.permissive else "restrictive"
        actual = f"{kind} FOR {p.command} TO {to}" + (f" USING ({p.using})" if p.using else "")
        checks.append(
            Check.compare(
                host,
                "row security",
                spec.owner,
                f"policy {p.name} on {p.schema}.{p.table}",
                "exists",
                "no",
                actual,
            )
        )
    return checks


def kept_checks(host: str, spec: Spec, snap: Snapshot) -> list[Check]:
    """Objects that hold data or feed other systems (``access.kept``), one row each (large
    objects one per owner): declared as they are, a difference (the deploy never drops one),
    or a declared one that does not exist (a note)."""
    return [
        Check(host, kind.plural, k.subject, k.object, k.check, k.declared, k.actual, k.verdict)
        for kind in KEPT
        for k in kind.find(spec, snap)
    ]


def bypass_checks(host: str, spec: Spec, snap: Snapshot) -> list[Check]:
    """Roles no grant stops (SUPERUSER, BYPASSRLS, members of pg_read_all_data /
    pg_write_all_data and of pg_execute_server_program / pg_read_server_files /
    pg_write_server_files, directly or through a group, the owner's members): named, and a
    difference unless the inventory expects them. ``lo_compat_privileges = on`` lets every role
    past every large object's privileges: a difference too (a server setting pgprov leaves)."""
    expected = expected_privileged(spec, snap)
    reasons: dict[str, list[str]] = {p.name: list(p.reasons) for p in snap.privileged}
    for m in snap.memberships:
        if m.role == spec.owner and m.member != spec.owner:
            reasons.setdefault(m.member, []).append(f"member of the owner {spec.owner}")
    checks = []
    for name in sorted(reasons):
        verdict = "OK" if name in expected else "DRIFT"
        declared = "expected" if name in expected else "not declared (pg_privileged_roles)"
        actual = f"bypasses privileges: {', '.join(sorted(set(reasons[name])))}"
        checks.append(
            Check(
                host,
                "bypass",
                name,
                f"database {spec.database}",
                "can bypass",
                declared,
                actual,
                verdict,
            )
        )
    if snap.lo_compat_privileges:
        checks.append(
            Check(
                host,
                "bypass",
                "PUBLIC",
                f"database {spec.database}",
                "lo_compat_privileges",
                "off",
                "on: every role reads and writes every large object, whatever its privileges",
                "DRIFT",
            )
        )
    return checks


KIND_ORDER = (
    "database", "schema", "table", "sequence", "column", "function", "type", "domain",
    "foreign data wrapper", "foreign server", "parameter", "large object",
)  # fmt: skip


def _reach(grants: set[Grant]) -> dict[str, str]:
    """grantee -> "database CONNECT; table SELECT, INSERT x9; ..." (privileges per kind, and
    on how many objects of that kind; large objects' grants are per owner: "large object SELECT
    (objects of 2 owners)")."""
    kinds: dict[str, dict[str, tuple[set[str], set[tuple]]]] = {}
    for g in grants:
        if g.object_type == "DEFAULT":
            continue
        privileges, objects = kinds.setdefault(g.grantee, {}).setdefault(
            g.object_type.lower(), (set(), set())
        )
        privileges.add(g.privilege)
        objects.add((g.schema, g.name, g.column, g.args))
    rank = {p: i for i, p in enumerate(PRIVILEGE_ORDER)}
    out = {}
    for grantee, per_kind in kinds.items():
        parts = []
        for kind in sorted(per_kind, key=lambda k: KIND_ORDER.index(k) if k in KIND_ORDER else 99):
            privileges, objects = per_kind[kind]
            names = ", ".join(sorted(privileges, key=lambda p: rank.get(p, 99)))
            count = f" x{len(objects)}" if len(objects) > 1 else ""
            if kind == "large object":
                owners = sorted(name for _, name, _, _ in objects)
                whose = owners[0] if len(owners) == 1 else f"{len(owners)} owners"
                count = f" (objects of {whose})"
            parts.append(f"{kind} {names}{count}")
        out[grantee] = "; ".join(parts)
    return out


def _owned_objects(spec: Spec, snap: Snapshot) -> list[tuple[str, str, int]]:
    """(owner, kind, how many) for every schema, relation, routine and other object of the
    database whose owner is not the owner role: an owner holds every privilege on what it
    owns. Large objects are one entry per owner with their count."""
    skip = {spec.owner, DATABASE_OWNER_ROLE}
    out = [(s.owner, "schema", 1) for s in snap.schemas.values() if s.owner not in skip]
    out += [(r.owner, r.kind, 1) for r in snap.relations if r.owner not in skip]
    out += [(f.owner, "function", 1) for f in snap.functions if f.owner not in skip]
    out += [(o.owner, o.keyword.lower(), 1) for o in snap.objects if o.owner not in skip]
    out += [
        (lo.owner, "large object", lo.count) for lo in snap.large_objects if lo.owner not in skip
    ]
    return out


def access_checks(host: str, spec: Spec, snap: Snapshot) -> list[Check]:
    """Who can reach the data, at a glance: one row per role with any access to the database
    (its privileges per object kind, declared and held; owners, members and bypassing roles
    say how they reach it). Informational: the rows above judge each path."""
    declared = _reach(wanted_grants(spec, snap))
    actual = _reach(current_grants(spec, snap))
    rows: dict[str, tuple[str, str]] = {
        grantee: (declared.get(grantee, "none"), actual.get(grantee, "none"))
        for grantee in {*declared, *actual}
    }
    rows[spec.owner] = ("owner of everything", "owner of everything")

    def add(name: str, how: str) -> None:
        wanted, held = rows.get(name, ("none", "none"))
        if how not in held.split("; "):
            rows[name] = (wanted, how if held == "none" else f"{held}; {how}")

    owned: dict[str, dict[str, int]] = {}
    for name, kind, n in _owned_objects(spec, snap):
        per_kind = owned.setdefault(name, {})
        per_kind[kind] = per_kind.get(kind, 0) + n
    for name, per_kind in owned.items():
        counts = (f"{kind} x{n}" if n > 1 else kind for kind, n in per_kind.items())
        add(name, f"owner of {', '.join(counts)}")
    for m in snap.memberships:
        add(m.member, f"member of {m.role}" + (f" through {m.via}" if m.via else ""))
    for p in snap.privileged:
        add(p.name, f"bypasses privileges: {', '.join(p.reasons)}")
    return [
        Check(
            host,
            "access",
            display_grantee(name),
            f"database {spec.database}",
            "reach",
            rows[name][0],
            rows[name][1],
            "NOTE",
        )
        for name in sorted(rows, key=lambda n: (n != spec.owner, n))
    ]


def watched_grants(spec: Spec, snap: Snapshot) -> set[Grant]:
    """Privileges the spec explicitly denies, shown as rows even while they are absent."""
    db, schema = spec.database, spec.schema_name
    watched = {
        Grant("DATABASE", None, db, "CONNECT", PUBLIC),
        Grant("DATABASE", None, db, "TEMPORARY", PUBLIC),
        Grant("SCHEMA", None, "public", "CREATE", PUBLIC),
        Grant("SCHEMA", None, schema, "USAGE", PUBLIC),
        Grant("SCHEMA", None, schema, "CREATE", PUBLIC),
    }
    runtime = spec.runtime_role
    if runtime is None:
        return watched
    watched |= {
        Grant("DATABASE", None, db, "CREATE", runtime),
        Grant("DATABASE", None, db, "TEMPORARY", runtime),
        Grant("SCHEMA", None, schema, "CREATE", runtime),
        Grant("SCHEMA", None, "public", "CREATE", runtime),
    }
    if snap.relation(schema, BOOKKEEPING_TABLE) is not None:
        watched |= {
            Grant("TABLE", schema, BOOKKEEPING_TABLE, privilege, runtime)
            for privilege in BOOKKEEPING_PRIVILEGES
        }
    return watched


def grant_group(grant: Grant) -> str:
    if grant.grantee == PUBLIC:
        return "public"
    if grant.object_type == "DEFAULT":
        return "default privileges"
    if grant.object_type == "TABLE" and grant.name == BOOKKEEPING_TABLE:
        return "bookkeeping"
    return "privileges"


def grant_object(grant: Grant) -> str:
    if grant.object_type == "DEFAULT":
        where = f" in {grant.schema}" if grant.schema else " (all schemas)"
        return f"future {grant.objects.lower()} of {grant.name}{where}"
    return grant.object_text()


def _holdings(grants: set[Grant]) -> dict[Grant, str]:
    """Each privilege (its grant option folded in) -> how it is held. Only the few grants with
    an option are rebuilt: a schema of 1,000 tables holds tens of thousands of grants."""
    held: dict[Grant, str] = {}
    for g in grants:
        if g.grantable:
            held[replace(g, grantable=False)] = "granted WITH GRANT OPTION"
        else:
            held.setdefault(g, "granted")
    return held


def _grant_order(g: Grant) -> tuple[str, ...]:
    return (g.grantee, g.object_type, g.schema or "", g.name, g.objects, g.privilege)


def grant_checks(host: str, spec: Spec, snap: Snapshot) -> list[Check]:
    """One row per privilege declared, held, or explicitly denied (grant option folded in)."""
    wanted = _holdings(wanted_grants(spec, snap))
    current = _holdings(current_grants(spec, snap))
    keys = {*wanted, *current, *_holdings(watched_grants(spec, snap))}
    return [
        Check.compare(
            host,
            grant_group(key),
            display_grantee(key.grantee),
            grant_object(key),
            key.privilege,
            wanted.get(key, "not granted"),
            current.get(key, "not granted"),
        )
        for key in sorted(keys, key=_grant_order)
    ]


def index_checks(host: str, spec: Spec, snap: Snapshot) -> list[Check]:
    where = f"index {spec.schema_name}.{GIN_INDEX}"

    def row(check: str, declared: str, actual: str) -> Check:
        return Check.compare(host, "index", spec.owner, where, check, declared, actual)

    index = snap.indexes.get(GIN_INDEX)
    checks = [row("exists", "yes", _yes(index is not None))]
    if index is not None:
        expected = expected_definition(spec)
        checks += [
            row("valid", "yes", _yes(index.valid)),
            row("table", f"{spec.schema_name}.{GIN_TABLE}", f"{spec.schema_name}.{index.table}"),
            row("operator class", spec.gin_opclass, ", ".join(index.opclasses) or "(none)"),
            row("definition", expected, index.definition),
        ]
    if TEMP_INDEX in snap.indexes:
        checks.append(
            Check.compare(
                host,
                "index",
                spec.owner,
                f"index {spec.schema_name}.{TEMP_INDEX}",
                "exists",
                "no",
                "yes",
                "leftover of an interrupted rebuild",
            )
        )
    return checks


def migration_checks(host: str, spec: Spec, snap: Snapshot) -> list[Check]:
    """Pending work is drift: CI must not call an environment converged before its schema is."""
    where = f"schema {spec.schema_name}"
    if spec.schema_mode == "generate":
        # Imported here: it loads the Tortoise models, which only prototype mode needs.
        from pgprov.migrate.upgrade import model_tables

        present = {r.name for r in snap.relations if r.schema == spec.schema_name}
        missing = [t for t in model_tables() if t not in present]
        return [
            Check.compare(
                host,
                "migrations",
                spec.owner,
                where,
                "model tables",
                "all present",
                f"missing: {', '.join(missing)}" if missing else "all present",
            )
        ]
    pending = pending_migrations(snap.migrations)
    actual = f"pending: {', '.join(pending)}" if pending else "none pending"
    return [
        Check.compare(host, "migrations", spec.owner, where, "migrations", "none pending", actual)
    ]


ROUTINE_KINDS = {"f": "function", "p": "procedure", "a": "aggregate", "w": "window function"}


def code_checks(host: str, spec: Spec, snap: Snapshot) -> list[Check]:
    """Code others control (``pgprov.access.code``): every foreign routine with what uses it,
    every foreign trigger and rule with what it runs or whose table it sits on, and every
    event trigger with its function's owner (a difference when a non-superuser owns it)."""
    foreign = foreign_code(spec, snap)
    trusted = "a managed role, the admin or pg_privileged_roles"
    checks = []
    for fn in foreign.routines:
        uses = "; ".join(what for _, what in fn.dependents)
        checks.append(
            Check.compare(
                host,
                "code",
                fn.owner,
                f"{ROUTINE_KINDS.get(fn.kind, 'routine')} {fn.signature}",
                "owner",
                trusted,
                fn.owner,
                f"used by {uses}" if uses else "",
            )
        )
    for t in foreign.triggers:
        schema, name, args = t.function
        checks.append(
            Check.compare(
                host,
                "code",
                t.function_owner,
                f"trigger {t.name} on {t.schema}.{t.table}",
                "runs",
                f"code of {trusted}",
                f"{schema}.{name}({args}) owned by {t.function_owner}",
            )
        )
    for r in foreign.rules:
        checks.append(
            Check.compare(
                host,
                "code",
                r.table_owner,
                f"rule {r.name} on {r.schema}.{r.table}",
                "made by",
                trusted,
                f"{r.table_owner}, the table's owner",
            )
        )
    for e in snap.event_triggers:
        schema, name, args = e.function
        owner = f"{e.function_owner}{' (superuser)' if e.owner_is_superuser else ''}"
        actual = f"{schema}.{name}({args}) owned by {owner}{'' if e.enabled else ', disabled'}"
        row = Check.compare(
            host,
            "code",
            e.function_owner,
            f"event trigger {e.name} ({e.event})",
            "runs",
            "a superuser's function",
            actual,
        )
        if e not in foreign.event_triggers:
            row = dataclasses.replace(row, verdict="NOTE")
        checks.append(row)
    return checks


def catalog_checks(host: str, spec: Spec, snap: Snapshot) -> list[Check]:
    """Every comparison the catalog alone answers."""
    checks = role_checks(host, spec, snap)
    if snap.database is None:
        # Nothing below exists yet; the privilege model would only predict, not observe.
        checks.append(
            Check.compare(
                host, "ownership", spec.owner, f"database {spec.database}", "exists", "yes", "no"
            )
        )
        return checks
    return [
        *checks,
        *access_checks(host, spec, snap),
        *bypass_checks(host, spec, snap),
        *membership_checks(host, spec, snap),
        *predefined_checks(host, spec, snap),
        *setting_checks(host, spec, snap),
        *ownership_checks(host, spec, snap),
        *code_checks(host, spec, snap),
        *row_security_checks(host, spec, snap),
        *kept_checks(host, spec, snap),
        *grant_checks(host, spec, snap),
        *index_checks(host, spec, snap),
        *migration_checks(host, spec, snap),
    ]


def probe_checks(host: str, spec: Spec, snap: Snapshot) -> list[Check]:
    role = probe_role(spec)
    if snap.database is None or role not in snap.roles:
        return []
    if spec.tunnel:
        return [
            Check(
                host,
                PROBES,
                role,
                f"database {spec.database}",
                "probes",
                "run",
                "skipped",
                "NOTE",
                "the application's connection needs an SSH tunnel (pg_tunnel): not supported yet",
            )
        ]
    try:
        password = resolve(spec.passwords[role])
    except SecretError as exc:
        raise AuditError(f"{spec.inventory}: host {host}: password of {role}: {exc}") from None
    return run_probes(spec, snap, password, host=host)


def header(host: str, spec: Spec, snap: Snapshot) -> str:
    return (
        f"{host}: database {spec.database} ({spec.profile} profile) via "
        f"{spec.admin.describe()}, PostgreSQL {snap.major}"
    )


def audit(
    specs: Sequence[tuple[str, Spec]], *, probes: bool = True
) -> tuple[list[Check], dict[str, str], list[str]]:
    """(checks, a title per host, one error line per host that could not be audited)."""
    checks: list[Check] = []
    headers: dict[str, str] = {}
    errors: list[str] = []
    for host, spec in specs:
        try:
            snap = read_snapshot(host, spec)
            problem = (
                settings_problem(spec, snap)
                or identity_problem(spec, snap)
                or predefined_problem(spec, snap)
            )
            if problem:
                raise AuditError(problem)
            host_checks = catalog_checks(host, spec, snap)
            if probes:
                host_checks += probe_checks(host, spec, snap)
        except AuditError as exc:
            errors.append(str(exc))
            continue
        headers[host] = header(host, spec, snap)
        checks += host_checks
    return checks, headers, errors


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pgprov-verify",
        description="Audit environments against their spec: least privilege, changes nothing.",
    )
    parser.add_argument("inventory", help="inventory file, e.g. inventories/staging.py")
    parser.add_argument("--limit", help="a group of the inventory, or a glob of host names")
    parser.add_argument("--format", choices=FORMATS, default="text")
    parser.add_argument("--output", type=Path, help="write the report here instead of stdout")
    parser.add_argument(
        "--no-probes", dest="probes", action="store_false", help="skip the login probes"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        specs = load_specs(args.inventory, args.limit)
    except (InventoryError, SpecError) as exc:
        print(exc, file=sys.stderr)
        return 2
    checks, headers, errors = audit(specs, probes=args.probes)
    for line in errors:
        print(line, file=sys.stderr)
    if errors and not checks:
        return 2
    report = render_report(checks, args.format, headers)
    if args.output:
        if not write_output(args.output, report):
            return 2
        # The CI log still shows what failed, one sentence per difference.
        for check in checks:
            if check.is_difference:
                print(check.sentence())
        print(summary(checks))
    else:
        sys.stdout.write(report)
    if errors:
        return 2
    return 1 if any(check.is_difference for check in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
