"""Privileges as values: what the spec declares and what the catalog holds, as sets of Grants.

In the manner of ldap2pg, a privilege is a frozen ``Grant``; the plan is set arithmetic
(``current - wanted`` is revoked, ``wanted - current`` granted). Only the managed scope is
compared: grants to the environment's roles and to PUBLIC on the environment's database,
its schema (and ``public``), the schema's tables and sequences, and the default privileges
of the managed roles. An object's owner's own privileges are never managed.

    to_revoke, to_grant = diff(wanted_grants(spec, snap), current_grants(spec, snap))
"""

from __future__ import annotations

from dataclasses import dataclass

from deploy.spec import Spec
from deploy.state import AclEntry, Snapshot

TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")
SEQUENCE_PRIVILEGES = ("USAGE", "SELECT", "UPDATE")
BOOKKEEPING_TABLE = "aerich"
PUBLIC = "PUBLIC"
DEFAULT_OBJECTS = {"r": "TABLES", "S": "SEQUENCES", "f": "FUNCTIONS", "T": "TYPES", "n": "SCHEMAS"}
DEFAULT_OBJTYPE = {v: k for k, v in DEFAULT_OBJECTS.items()}


@dataclass(frozen=True, order=True)
class Grant:
    """One privilege on one object, held by one grantee (a role or PUBLIC).

    object_type: DATABASE, SCHEMA, TABLE, SEQUENCE, or DEFAULT (a default privilege, where
    ``name`` is the FOR ROLE owner and ``objects`` says TABLES/SEQUENCES/...).
    """

    object_type: str
    schema: str | None
    name: str
    privilege: str
    grantee: str
    grantable: bool = False
    objects: str = ""

    @property
    def target(self) -> list[str]:
        """The object's name parts, for the ``qualified`` filter."""
        if self.object_type in ("TABLE", "SEQUENCE") and self.schema:
            return [self.schema, self.name]
        return [self.name]

    @property
    def for_role(self) -> str:
        return self.name

    def describe(self) -> str:
        who = "PUBLIC" if self.grantee == PUBLIC else f"role {self.grantee}"
        option = " WITH GRANT OPTION" if self.grantable else ""
        if self.object_type == "DEFAULT":
            where = f" in schema {self.schema}" if self.schema else ""
            return (
                f"{self.privilege}{option} on future {self.objects.lower()} "
                f"created by {self.name}{where} for {who}"
            )
        return f"{self.privilege}{option} on {self.object_type.lower()} {'.'.join(self.target)} for {who}"


PRIVILEGE_ORDER = (
    "USAGE", "SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER",
    "MAINTAIN", "CREATE", "CONNECT", "TEMPORARY", "EXECUTE",
)  # fmt: skip
OBJECT_ORDER = ("DATABASE", "SCHEMA", "TABLE", "SEQUENCE", "DEFAULT")


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

    @property
    def target(self) -> list[str]:
        return self._first().target

    @property
    def for_role(self) -> str:
        return self.name

    def _first(self) -> Grant:
        return Grant(
            self.object_type, self.schema, self.name, self.privileges[0], self.grantee,
            self.grantable, self.objects,
        )  # fmt: skip

    def describe(self) -> str:
        return self._first().describe().replace(self.privileges[0], ", ".join(self.privileges), 1)


def group(grants: list[Grant]) -> list[GrantGroup]:
    """Merge grants that differ only in the privilege, in a stable, readable order."""
    merged: dict[tuple, list[str]] = {}
    for g in grants:
        key = (g.object_type, g.schema or "", g.name, g.grantee, g.grantable, g.objects)
        merged.setdefault(key, []).append(g.privilege)
    rank = {p: i for i, p in enumerate(PRIVILEGE_ORDER)}

    def order(key: tuple) -> tuple:
        kind = OBJECT_ORDER.index(key[0]) if key[0] in OBJECT_ORDER else len(OBJECT_ORDER)
        return (kind, *(str(k) for k in key))

    groups = []
    for key in sorted(merged, key=order):
        object_type, schema, name, grantee, grantable, objects = key
        privileges = tuple(sorted(set(merged[key]), key=lambda p: rank.get(p, len(rank))))
        groups.append(
            GrantGroup(object_type, schema or None, name, privileges, grantee, grantable, objects)
        )
    return groups


def managed_grantees(spec: Spec) -> set[str]:
    return {*spec.roles, PUBLIC}


def wanted_grants(spec: Spec, snap: Snapshot) -> set[Grant]:
    """Everything the spec declares, on the objects that exist (or will, this run)."""
    wanted: set[Grant] = {Grant("SCHEMA", None, "public", "USAGE", PUBLIC)}
    runtime = spec.runtime_role
    if runtime is None:
        return wanted
    schema = spec.schema_name
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
    grantees: set[str],
    owners: set[str],
    objects: str = "",
) -> set[Grant]:
    return {
        Grant(object_type, schema, name, e.privilege, e.grantee, e.grantable, objects)
        for e in acl
        if e.grantee in grantees and e.grantee not in owners
    }


def current_grants(spec: Spec, snap: Snapshot) -> set[Grant]:
    """What the catalog holds in the managed scope (owners' own privileges excluded)."""
    grantees = managed_grantees(spec)
    roles_only = set(spec.roles)
    current: set[Grant] = set()
    if snap.database is None:
        current |= predicted_new_database(spec, snap)
    else:
        owners = {snap.database.owner, spec.owner}
        current |= _entries("DATABASE", None, spec.database, snap.database.acl, grantees, owners)
    for schema in snap.schemas.values():
        owners = {schema.owner, spec.owner, "pg_database_owner"}
        current |= _entries("SCHEMA", None, schema.name, schema.acl, grantees, owners)
    for rel in snap.relations:
        owners = {rel.owner, spec.owner}
        scope = grantees if rel.schema == spec.schema_name else roles_only
        current |= _entries(rel.kind.upper(), rel.schema, rel.name, rel.acl, scope, owners)
    for dacl in snap.default_acls:
        if dacl.role not in roles_only or dacl.objtype not in DEFAULT_OBJECTS:
            continue
        # A global entry restates the built-in defaults (owner, PUBLIC EXECUTE on functions);
        # only grants to other managed roles there are ours to judge.
        scope = roles_only if dacl.schema is None else {*grantees, *_all_grantees(dacl.acl)}
        current |= _entries(
            "DEFAULT",
            dacl.schema,
            dacl.role,
            dacl.acl,
            scope,
            {dacl.role},
            DEFAULT_OBJECTS[dacl.objtype],
        )
    return current


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


def _all_grantees(acl: tuple[AclEntry, ...]) -> set[str]:
    return {e.grantee for e in acl}


def diff(wanted: set[Grant], current: set[Grant]) -> tuple[list[Grant], list[Grant]]:
    """(to revoke, to grant), each sorted so plans are stable."""
    return sorted(current - wanted), sorted(wanted - current)
