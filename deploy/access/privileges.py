"""Privileges as values: the ONE access model of the application database, declared and held.

In the manner of ldap2pg, a privilege is a frozen ``Grant``; the plan is set arithmetic
(``current - wanted`` is revoked, ``wanted - current`` granted). The model covers every role,
not only the managed ones: whoever holds a privilege on the environment's database, any of its
schemas, relations, columns or functions, or in the owner's default privileges, is compared
with what the spec declares (the runtime's read/write set, the readers' SELECT, PUBLIC's USAGE
on ``public``). An object's owner's own privileges are never managed. The deploy and the audit
both use ``wanted_grants``/``current_grants``; ``allowed_membership`` says which memberships
in the managed roles are declared; ``undeclared_owners`` says which objects belong to a role
nobody declared as their owner.

    to_revoke, to_grant = diff(wanted_grants(spec, snap), current_grants(spec, snap))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from pgprov.catalog.kinds import BY_SECTION, DEFAULT_OBJECTS, DEFAULT_PUBLIC
from pgprov.catalog.state import (
    PUBLIC,
    AclEntry,
    MembershipState,
    PolicyState,
    PredefinedMembership,
    RelationState,
    Snapshot,
    display_grantee,
)
from pgprov.model.spec import BYPASS_PREDEFINED, PREDEFINED_ROLES, Spec

TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")
SEQUENCE_PRIVILEGES = ("USAGE", "SELECT", "UPDATE")
READER_PRIVILEGES = {"table": ("SELECT",), "sequence": ("SELECT",)}
BOOKKEEPING_TABLE = "aerich"
# The built-in default privileges a role has while pg_default_acl holds no global entry for
# it: PUBLIC may EXECUTE every function it creates (types' PUBLIC USAGE is left as it is).
BUILTIN_GLOBAL_DEFAULTS = {"f": (("EXECUTE", PUBLIC),)}
# ALTER ... OWNER TO keywords per pg_class.relkind.
RELATION_KEYWORDS = {
    "r": "TABLE",
    "p": "TABLE",
    "v": "VIEW",
    "m": "MATERIALIZED VIEW",
    "f": "FOREIGN TABLE",
    "S": "SEQUENCE",
}
# The pseudo-role that owns ``public`` from PostgreSQL 15 on: whoever owns the database.
DATABASE_OWNER_ROLE = "pg_database_owner"


@dataclass(frozen=True, order=True)
class Grant:
    """One privilege on one object, held by one grantee (a role or PUBLIC).

    object_type: DATABASE, SCHEMA, TABLE, SEQUENCE, COLUMN (``name`` is the table,
    ``column`` the column), FUNCTION (``args`` the catalog's identity arguments; functions,
    procedures and aggregates alike), the keyword of a generic kind's object (TYPE, DOMAIN:
    ``pgprov.catalog.kinds``), or DEFAULT (a default privilege, where ``name`` is the
    FOR ROLE owner and ``objects`` says TABLES/SEQUENCES/...). ``grantee`` is a role name, or
    ``PUBLIC`` (the pseudo-role's sentinel, never a real role's name).
    """

    object_type: str
    schema: str | None
    name: str
    privilege: str
    grantee: str
    grantable: bool = False
    objects: str = ""
    column: str = ""
    args: str = ""

    @property
    def target(self) -> list[str]:
        """The object's name parts, for the ``qualified`` filter."""
        if self.object_type != "DEFAULT" and self.schema:
            return [self.schema, self.name]
        return [self.name]

    @property
    def for_role(self) -> str:
        return self.name

    @property
    def is_public(self) -> bool:
        return self.grantee == PUBLIC

    def object_text(self) -> str:
        """``table app.t``, ``column app.t(note)``, ``function app.f(integer)``, ..."""
        name = ".".join(self.target)
        if self.object_type == "COLUMN":
            return f"column {name}({self.column})"
        if self.object_type == "FUNCTION":
            return f"function {name}({self.args})"
        if self.object_type == "LARGE OBJECT":
            return f"large objects owned by {display_grantee(self.name)}"
        return f"{self.object_type.lower()} {name}"

    def describe(self) -> str:
        who = "PUBLIC" if self.is_public else f"role {display_grantee(self.grantee)}"
        option = " WITH GRANT OPTION" if self.grantable else ""
        if self.object_type == "DEFAULT":
            where = f" in schema {self.schema}" if self.schema else ""
            return (
                f"{self.privilege}{option} on future {self.objects.lower()} "
                f"created by {self.name}{where} for {who}"
            )
        return f"{self.privilege}{option} on {self.object_text()} for {who}"


PRIVILEGE_ORDER = (
    "USAGE", "SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER",
    "MAINTAIN", "CREATE", "CONNECT", "TEMPORARY", "EXECUTE", "SET", "ALTER SYSTEM",
)  # fmt: skip
OBJECT_ORDER = (
    "DATABASE", "SCHEMA", "TABLE", "SEQUENCE", "COLUMN", "FUNCTION", "TYPE", "DOMAIN",
    "FOREIGN DATA WRAPPER", "FOREIGN SERVER", "PARAMETER", "LARGE OBJECT", "DEFAULT",
)  # fmt: skip


@dataclass(frozen=True)
class GrantGroup:
    """Several privileges on one object for one grantee: one statement in the plan."""

    object_type: str
    schema: str | None
    name: str
    privileges: tuple[str, ...]
    grantee: str
    grantable: bool = False
    objects: str = ""
    column: str = ""
    args: str = ""

    @property
    def target(self) -> list[str]:
        return self._first().target

    @property
    def for_role(self) -> str:
        return self.name

    @property
    def is_public(self) -> bool:
        return self.grantee == PUBLIC

    def _first(self) -> Grant:
        return Grant(
            self.object_type, self.schema, self.name, self.privileges[0], self.grantee,
            self.grantable, self.objects, self.column, self.args,
        )  # fmt: skip

    def object_text(self) -> str:
        return self._first().object_text()

    def describe(self) -> str:
        return self._first().describe().replace(self.privileges[0], ", ".join(self.privileges), 1)


def group(grants: list[Grant]) -> list[GrantGroup]:
    """Merge grants that differ only in the privilege, in a stable, readable order."""
    merged: dict[tuple, list[str]] = {}
    for g in grants:
        key = (
            g.object_type, g.schema or "", g.name, g.grantee, g.grantable, g.objects, g.column,
            g.args,
        )  # fmt: skip
        merged.setdefault(key, []).append(g.privilege)
    rank = {p: i for i, p in enumerate(PRIVILEGE_ORDER)}

    def order(key: tuple) -> tuple:
        kind = OBJECT_ORDER.index(key[0]) if key[0] in OBJECT_ORDER else len(OBJECT_ORDER)
        # Grant options first: their CASCADE also takes what their holders granted on.
        return (not key[4], kind, *(str(k) for k in key))

    groups = []
    for key in sorted(merged, key=order):
        object_type, schema, name, grantee, grantable, objects, column, args = key
        privileges = tuple(sorted(set(merged[key]), key=lambda p: rank.get(p, len(rank))))
        groups.append(
            GrantGroup(
                object_type,
                schema or None,
                name,
                privileges,
                grantee,
                grantable,
                objects,
                column,
                args,
            )
        )
    return groups


def _once(
    compute: Callable[[Spec, Snapshot], set[Grant]],
) -> Callable[[Spec, Snapshot], set[Grant]]:
    """The last (spec, snapshot)'s result kept: the plan, its notices, the predefined-role scope
    and the audit each ask for the same sets, which a schema of 1,000 tables makes costly. The
    objects themselves are compared (``is``), so a new snapshot is always computed afresh."""
    last: list[tuple[Spec, Snapshot, frozenset[Grant]]] = []

    def wrapper(spec: Spec, snap: Snapshot) -> set[Grant]:
        if not (last and last[0][0] is spec and last[0][1] is snap):
            last[:] = [(spec, snap, frozenset(compute(spec, snap)))]
        return set(last[0][2])

    wrapper.__doc__ = compute.__doc__
    wrapper.__name__ = compute.__name__
    return wrapper


@_once
def wanted_grants(spec: Spec, snap: Snapshot) -> set[Grant]:
    """Everything the spec declares, on the objects that exist (or will, this run)."""
    wanted: set[Grant] = {Grant("SCHEMA", None, "public", "USAGE", PUBLIC)}
    schema = spec.schema_name
    runtime = spec.runtime_role
    declared_objects = spec.declared_large_objects()
    for lo in snap.large_objects:
        for grantee, privileges in declared_objects.get(lo.owner, {}).items():
            wanted |= {Grant("LARGE OBJECT", None, lo.owner, p, grantee) for p in privileges}
    for reader in spec.readers:
        wanted.add(Grant("DATABASE", None, spec.database, "CONNECT", reader))
        wanted.add(Grant("SCHEMA", None, schema, "USAGE", reader))
        for rel in snap.relations:
            if rel.schema == schema:
                for privilege in READER_PRIVILEGES[rel.kind]:
                    wanted.add(Grant(rel.kind.upper(), schema, rel.name, privilege, reader))
        for objects in ("TABLES", "SEQUENCES"):
            wanted.add(Grant("DEFAULT", schema, spec.owner, "SELECT", reader, objects=objects))
    if runtime is None:
        return wanted
    wanted.add(Grant("DATABASE", None, spec.database, "CONNECT", runtime))
    wanted.add(Grant("SCHEMA", None, schema, "USAGE", runtime))
    if spec.runtime_can_create:
        wanted.add(Grant("SCHEMA", None, schema, "CREATE", runtime))
    for rel in snap.relations:
        # Aerich's table and its id sequence are the migrations' bookkeeping, not the app's.
        if rel.schema != schema or BOOKKEEPING_TABLE in (rel.name, rel.owned_by):
            continue
        privileges = TABLE_PRIVILEGES if rel.kind == "table" else SEQUENCE_PRIVILEGES
        for privilege in privileges:
            wanted.add(Grant(rel.kind.upper(), schema, rel.name, privilege, runtime))
    for objects, privileges in (("TABLES", TABLE_PRIVILEGES), ("SEQUENCES", SEQUENCE_PRIVILEGES)):
        for privilege in privileges:
            wanted.add(Grant("DEFAULT", schema, spec.owner, privilege, runtime, objects=objects))
    return wanted


def _entries(
    object_type: str,
    schema: str | None,
    name: str,
    acl: tuple[AclEntry, ...],
    owners: set[str],
    objects: str = "",
    *,
    column: str = "",
    args: str = "",
) -> set[Grant]:
    return {
        Grant(object_type, schema, name, e.privilege, e.grantee, e.grantable, objects, column, args)
        for e in acl
        if e.grantee not in owners
    }


@_once
def current_grants(spec: Spec, snap: Snapshot) -> set[Grant]:
    """What the catalog holds in the database, whoever holds it (owners' own privileges
    excluded; PUBLIC's EXECUTE on functions outside the app's schema is PostgreSQL's default,
    as are other roles' default privileges: neither is this deploy's to judge)."""
    current: set[Grant] = set()
    if snap.database is None:
        current |= predicted_new_database(spec, snap)
    else:
        owners = {snap.database.owner, spec.owner}
        current |= _entries("DATABASE", None, spec.database, snap.database.acl, owners)
    for schema in snap.schemas.values():
        owners = {schema.owner, spec.owner, "pg_database_owner"}
        current |= _entries("SCHEMA", None, schema.name, schema.acl, owners)
    relation_owner: dict[tuple[str, str], str] = {}
    for rel in snap.relations:
        relation_owner[(rel.schema, rel.name)] = rel.owner
        current |= _entries(
            rel.kind.upper(), rel.schema, rel.name, rel.acl, {rel.owner, spec.owner}
        )
    for col in snap.columns:
        owners = {relation_owner.get((col.schema, col.table), spec.owner), spec.owner}
        current |= _entries("COLUMN", col.schema, col.table, col.acl, owners, column=col.column)
    trusted = trusted_owners(spec, snap)
    for fn in snap.functions:
        if fn.owner not in trusted:
            continue  # foreign code goes as a whole, grants included (pgprov.access.code)
        owners = {fn.owner, spec.owner}
        if fn.schema != spec.schema_name:
            owners.add(PUBLIC)
        current |= _entries("FUNCTION", fn.schema, fn.name, fn.acl, owners, args=fn.args)
    # Cluster-wide kinds (parameters) only for the roles in this database's scope.
    scope = ({*spec.roles, *spec.readers} | {g.grantee for g in current if not g.is_public}) - (
        expected_privileged(spec, snap)
    )
    privileged = expected_privileged(spec, snap)
    for obj in snap.objects:
        owners = {obj.owner, spec.owner}
        kind = BY_SECTION[obj.kind]
        current |= {
            g
            for g in _entries(obj.keyword, obj.schema, obj.name, obj.acl, owners, args=obj.args)
            if not (g.is_public and g.privilege in kind.public_default and not g.grantable)
            and (not kind.cluster_wide or g.grantee in scope)
            and not (kind.privileged_left and g.grantee in privileged)
        }
    declared_objects = spec.declared_large_objects()
    for lo in snap.large_objects:
        declared = declared_objects.get(lo.owner, {})
        for e, count in lo.acl:
            # A declared privilege is held once all of the owner's objects carry it.
            if count == lo.count or e.grantable or e.privilege not in declared.get(e.grantee, ()):
                current.add(
                    Grant("LARGE OBJECT", None, lo.owner, e.privilege, e.grantee, e.grantable)
                )
    current |= current_default_grants(spec, snap)
    global_entries = {(d.role, d.objtype) for d in snap.default_acls if d.schema is None}
    for objtype, builtin in BUILTIN_GLOBAL_DEFAULTS.items():
        if (spec.owner, objtype) not in global_entries:
            for privilege, grantee in builtin:
                objects = DEFAULT_OBJECTS[objtype]
                current.add(Grant("DEFAULT", None, spec.owner, privilege, grantee, objects=objects))
    return current


def current_default_grants(spec: Spec, snap: Snapshot) -> set[Grant]:
    """Default privileges of every role in the database, of every object type, but for what
    the admin and ``pg_privileged_roles`` set for themselves (left to them, as their objects
    are) and what PostgreSQL gives PUBLIC on every new object (``kinds.DEFAULT_PUBLIC``), which
    is judged only for the managed roles' functions."""
    managed = set(spec.roles)
    left = expected_privileged(spec, snap)
    current: set[Grant] = set()
    for dacl in snap.default_acls:
        if dacl.objtype not in DEFAULT_OBJECTS or dacl.role in left - managed:
            continue
        public_left = DEFAULT_PUBLIC.get(dacl.objtype, ())
        if dacl.role in managed and dacl.objtype == "f":
            public_left = ()
        objects = DEFAULT_OBJECTS[dacl.objtype]
        current |= {
            g
            for g in _entries("DEFAULT", dacl.schema, dacl.role, dacl.acl, {dacl.role}, objects)
            if not (g.is_public and not g.grantable and g.privilege in public_left)
        }
    return current


def defaults_out_of_reach(snap: Snapshot) -> set[str]:
    """Roles whose default privileges the admin may not alter (not a superuser, and cannot
    SET ROLE to them): the audit names what they hold, the deploy cannot revoke it."""
    return {d.role for d in snap.default_acls if not d.admin_may}


def allowed_membership(spec: Spec, snap: Snapshot, membership: MembershipState) -> bool:
    """Whether a (direct) membership in a managed role is declared: only the deploy's own admin,
    when it is not a superuser (managed databases), may be a member of the roles it manages."""
    return not snap.is_superuser and membership.member == snap.current_user


def undeclared_memberships(spec: Spec, snap: Snapshot) -> list[MembershipState]:
    """Direct memberships in the managed roles that nobody declared (readers' members are
    managed elsewhere); revoking these closes every indirect path through them too."""
    managed = set(spec.roles)
    return [
        m
        for m in snap.memberships
        if m.via is None and m.role in managed and not allowed_membership(spec, snap, m)
    ]


def expected_privileged(spec: Spec, snap: Snapshot) -> set[str]:
    """Roles the inventory accepts as able to bypass privileges: the deploy's own admin, and
    ``pg_privileged_roles`` (a managed provider's admin role, say)."""
    return {snap.current_user, *spec.privileged_roles}


def left_to_its_owner(spec: Spec, snap: Snapshot, schema: str | None, owner: str) -> bool:
    """Outside the app's schema, what the admin or a ``pg_privileged_roles`` role owns is left
    to them (they bypass privileges anyway): the deploy neither reassigns it nor judges the
    code on it."""
    return schema != spec.schema_name and owner in expected_privileged(spec, snap)


def trusted_owners(spec: Spec, snap: Snapshot) -> set[str]:
    """Roles whose code the deploy may keep or hand to the owner role: the managed roles and
    readers, the admin and ``pg_privileged_roles``. Anyone else's routine is foreign
    (``pgprov.access.code``): never reassigned, since its body is its author's."""
    return {*spec.roles, *spec.readers, *expected_privileged(spec, snap)}


@dataclass(frozen=True, order=True)
class Ownership:
    """An object of the database owned by a role that is not declared as its owner.

    ``keyword`` is what ALTER takes (SCHEMA, TABLE, VIEW, MATERIALIZED VIEW, FOREIGN TABLE,
    SEQUENCE, ROUTINE); ``schema`` is None for a schema itself; ``args`` a routine's identity
    arguments as the catalog formats them.
    """

    keyword: str
    schema: str | None
    name: str
    owner: str
    args: str = ""

    @property
    def target(self) -> list[str]:
        return [self.schema, self.name] if self.schema else [self.name]

    def object_text(self) -> str:
        """``schema reports``, ``table public.t``, ``function public.f(integer)``."""
        name = ".".join(self.target)
        if self.keyword == "ROUTINE":
            return f"function {name}({self.args})"
        return f"{self.keyword.lower()} {name}"


def undeclared_owners(spec: Spec, snap: Snapshot) -> list[Ownership]:
    """Who owns what, against the declaration: the owner role owns every object of the app's
    schema, every other schema of the database (``public`` may stay with pg_database_owner,
    which is the owner) and every object in them. Outside the app's schema, what the admin or a
    ``pg_privileged_roles`` role owns is left to them (they bypass privileges anyway). Sequences
    owned by a table follow it; the app's schema itself is the schema step's; routines of an
    extension are not in the snapshot (an extension's tables are, and are judged like any
    other). Schemas come first: the owner needs CREATE on a schema to take over its objects."""
    app = spec.schema_name
    exempt = {spec.owner, *expected_privileged(spec, snap)}
    out = [
        Ownership("SCHEMA", None, schema.name, schema.owner)
        for schema in snap.schemas.values()
        if schema.name != app and schema.owner not in exempt | {DATABASE_OWNER_ROLE}
    ]
    for rel in snap.relations:
        if rel.owner == spec.owner or left_to_its_owner(spec, snap, rel.schema, rel.owner):
            continue
        if rel.kind == "sequence" and rel.owned_by is not None:
            continue
        keyword = RELATION_KEYWORDS.get(rel.relkind, rel.kind.upper())
        out.append(Ownership(keyword, rel.schema, rel.name, rel.owner))
    trusted = trusted_owners(spec, snap)
    for fn in snap.functions:
        if fn.owner == spec.owner or left_to_its_owner(spec, snap, fn.schema, fn.owner):
            continue
        if fn.owner not in trusted:
            continue  # foreign code: removed or refused, never adopted (pgprov.access.code)
        out.append(Ownership("ROUTINE", fn.schema, fn.name, fn.owner, fn.args))
    for obj in snap.objects:  # every generic kind of the registry whose owners are repaired
        if not BY_SECTION[obj.kind].owned:
            continue
        if obj.owner != spec.owner and not left_to_its_owner(spec, snap, obj.schema, obj.owner):
            out.append(Ownership(obj.keyword, obj.schema, obj.name, obj.owner, obj.args))
    return sorted(out, key=lambda o: (o.keyword != "SCHEMA", o.schema != app))


def predicted_new_database(spec: Spec, snap: Snapshot) -> set[Grant]:
    """The managed-scope grants a database created from template0 starts with."""
    grants = {
        Grant("DATABASE", None, spec.database, "CONNECT", PUBLIC),
        Grant("DATABASE", None, spec.database, "TEMPORARY", PUBLIC),
        Grant("SCHEMA", None, "public", "USAGE", PUBLIC),
    }
    if snap.major < 15:
        grants.add(Grant("SCHEMA", None, "public", "CREATE", PUBLIC))
    return grants


def diff(wanted: set[Grant], current: set[Grant]) -> tuple[list[Grant], list[Grant]]:
    """(to revoke, to grant), each sorted so plans are stable."""

    def key(g: Grant) -> tuple:
        return tuple("" if v is None else v for v in dataclasses.astuple(g))

    return sorted(current - wanted, key=key), sorted(wanted - current, key=key)


# --- predefined roles (pg_signal_backend, pg_monitor, ...) are privileges --------------------


def predefined_scope(spec: Spec, snap: Snapshot) -> set[str]:
    """Roles whose memberships in predefined roles the deploy judges (they are cluster-wide, so
    only these): the managed roles and readers, and every role holding a privilege in this
    database; never the admin or a ``pg_privileged_roles`` role."""
    holders = {g.grantee for g in current_grants(spec, snap) if not g.is_public}
    return ({*spec.roles, *spec.readers} | holders) - expected_privileged(spec, snap)


def undeclared_predefined(spec: Spec, snap: Snapshot) -> list[PredefinedMembership]:
    """Direct memberships in predefined roles of roles in scope that ``pg_predefined_roles``
    does not declare. One that bypasses privileges (pg_read_all_data, ...) is the bypass rows'
    business for a role pgprov does not manage, and never allowed for a managed one."""
    scope = predefined_scope(spec, snap)
    declared = spec.declared_predefined()
    managed = {*spec.roles, *spec.readers}
    return [
        p
        for p in snap.predefined
        if p.member in scope
        and p.role not in declared.get(p.member, ())
        and (p.member in managed or p.role not in BYPASS_PREDEFINED)
    ]


def predefined_through_groups(spec: Spec, snap: Snapshot) -> list[PredefinedMembership]:
    """Roles in scope that reach a predefined role through a group (``via``) holding it, where
    neither is declared to hold it. The deploy revokes the group's membership when the group is
    in scope itself; otherwise it leaves it (the group's other members would lose it too) and
    says so. A bypass role reached this way is the bypass rows' business."""
    scope = predefined_scope(spec, snap)
    declared = spec.declared_predefined()
    return [
        p
        for p in snap.predefined_through
        if p.member in scope
        and p.role not in BYPASS_PREDEFINED
        and p.role not in declared.get(p.member, ())
        and p.role not in declared.get(p.via or "", ())
    ]


def missing_predefined(spec: Spec, snap: Snapshot) -> list[tuple[str, str]]:
    """(member, predefined role) declared for a managed role or reader and not held: granted."""
    held = {(p.member, p.role) for p in snap.predefined}
    managed = {*spec.roles, *spec.readers}
    return sorted(
        (member, role)
        for member, roles in spec.declared_predefined().items()
        if member in managed
        for role in roles
        if (member, role) not in held
    )


def predefined_problem(spec: Spec, snap: Snapshot) -> str | None:
    """A declared predefined role this server does not have, as one line; None when all exist."""
    if not snap.predefined_roles:
        return None  # a snapshot without the section (no server word): nothing to judge
    for member, roles in sorted(spec.declared_predefined().items()):
        for role in sorted(roles):
            if role not in snap.predefined_roles:
                since = PREDEFINED_ROLES[role]
                return (
                    f"{spec.inventory}: host {spec.host}: pg_predefined_roles: {member}: {role} "
                    f"exists from PostgreSQL {since}; this server is {snap.major} (nothing was "
                    "changed)"
                )
    return None


def predefined_out_of_reach(snap: Snapshot) -> set[str]:
    """Predefined roles the admin may neither grant nor revoke (not a superuser, no ADMIN
    OPTION on them; on 16+ CREATEROLE is not enough)."""
    return {role for role, may in snap.predefined_roles.items() if not may}


# --- row-level security ----------------------------------------------------------------------


def undeclared_row_security(
    spec: Spec, snap: Snapshot
) -> tuple[list[RelationState], list[PolicyState]]:
    """(app tables with row-level security on or forced, policies on app tables): the service's
    models declare neither, so every one goes (a policy the deploy did not write, with RLS
    forced, makes the service's INSERTs fail). Tables outside the app's schema are not judged."""
    app = spec.schema_name
    tables = [r for r in snap.relations if r.schema == app and (r.rls or r.force_rls)]
    return tables, [p for p in snap.policies if p.schema == app]
