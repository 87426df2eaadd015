"""Typed catalog state: what the snapshot query (sql_templates/inspect.sql.j2) returned.

Plain frozen dataclasses, parsed from the JSON lines psql prints; a database that does not
exist yet is a valid state (``database is None``, no schemas, no relations).

    snapshot = Snapshot.parse(['{"cluster": {...}}', '{"roles": [...]}', ...])
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pgprov.catalog.kinds import GENERIC
from pgprov.model.secrets import StoredPassword
from pgprov.model.spec import PUBLIC  # aclexplode's grantee 0, JSON null in the snapshot


class SnapshotError(ValueError):
    """The snapshot output could not be understood."""


def grantee_name(raw: object) -> str:
    """A snapshot grantee: a role name, or None for the PUBLIC pseudo-role."""
    return PUBLIC if raw is None else str(raw)


def display_grantee(name: str) -> str:
    """How a grantee reads in plans and reports (a real role named PUBLIC stays quoted)."""
    if name == PUBLIC:
        return "PUBLIC"
    return f'"{name}"' if name.upper() == "PUBLIC" else name


@dataclass(frozen=True, order=True)
class AclEntry:
    grantee: str  # a role name, or PUBLIC ("") for the pseudo-role
    privilege: str  # SELECT, CONNECT, TEMPORARY, ...
    grantable: bool = False

    @classmethod
    def parse_list(cls, rows: Iterable[list]) -> tuple[AclEntry, ...]:
        return tuple(sorted(cls(grantee_name(g), str(p), bool(o)) for g, p, o in rows))


@dataclass(frozen=True)
class RoleState:
    name: str
    superuser: bool = False
    createdb: bool = False
    createrole: bool = False
    replication: bool = False
    bypassrls: bool = False
    login: bool = True
    inherit: bool = True
    connection_limit: int = -1
    has_password: bool = False
    member_of: tuple[str, ...] = ()
    # database name ("" for all databases) -> settings such as "search_path=app, public"
    settings: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False)
    # What the snapshot knows of the stored password when pg_authid was readable: never the
    # verifier (pgprov.model.secrets.stored_password_matches compares against it).
    password: StoredPassword | None = None
    # Whether the deploy's admin has this role's privileges (INHERIT) and may SET ROLE to it:
    # a non-superuser admin (managed services) needs both for the owner's objects.
    admin_can_use: bool = field(default=True, compare=False)
    admin_can_set: bool = field(default=True, compare=False)
    # COMMENT ON ROLE: pgprov marks the roles it manages (pgprov.access.roles).
    comment: str | None = None

    def setting(self, database: str, name: str) -> str | None:
        for item in self.settings.get(database, ()):
            key, _, value = item.partition("=")
            if key == name:
                return value
        return None


@dataclass(frozen=True)
class DatabaseState:
    name: str
    owner: str
    acl: tuple[AclEntry, ...] = ()


@dataclass(frozen=True)
class SchemaState:
    name: str
    owner: str
    acl: tuple[AclEntry, ...] = ()


@dataclass(frozen=True)
class RelationState:
    schema: str
    name: str
    kind: str  # "table" (tables, views, materialized and foreign tables) or "sequence"
    owner: str
    acl: tuple[AclEntry, ...] = ()
    owned_by: str | None = None  # a sequence's table (serial or identity column)
    relkind: str = ""  # pg_class.relkind: r, p, v, m, f or S ("" when not known)
    rls: bool = False  # row-level security enabled
    force_rls: bool = False  # ... and forced on the table's owner too


@dataclass(frozen=True)
class PolicyState:
    """A row-level security policy on a table."""

    schema: str
    table: str
    name: str
    command: str  # ALL, SELECT, INSERT, UPDATE or DELETE
    permissive: bool
    roles: tuple[str, ...]  # PUBLIC is ""
    using: str | None = None
    check: str | None = None


@dataclass(frozen=True)
class ColumnAclState:
    """A column with its own ACL (column-level grants)."""

    schema: str
    table: str
    column: str
    acl: tuple[AclEntry, ...] = ()


@dataclass(frozen=True)
class FunctionState:
    """A function, procedure or aggregate; ``args`` is the catalog-formatted argument types."""

    schema: str
    name: str
    args: str
    kind: str  # f, p, a, w (pg_proc.prokind)
    owner: str
    security_definer: bool = False
    acl: tuple[AclEntry, ...] = ()
    # What depends on it (pg_depend, normal): (catalog, pg_describe_object), e.g.
    # ("pg_trigger", "trigger t on table app.unit"), ("pg_attrdef", "default value for ...").
    dependents: tuple[tuple[str, str], ...] = ()
    admin_can_drop: bool = True  # the admin has its owner's privileges (may DROP it)

    @property
    def signature(self) -> str:
        return f"{self.schema}.{self.name}({self.args})"


@dataclass(frozen=True)
class TriggerState:
    """A trigger a user created (not a constraint's), and the function it runs."""

    schema: str
    table: str
    name: str
    describe: str  # pg_describe_object, as a function's dependents name it
    function: tuple[str, str, str]  # schema, name, identity arguments
    function_owner: str


@dataclass(frozen=True)
class RuleState:
    """A rule on a table (not a view's _RETURN rule); rules run as the table's owner."""

    schema: str
    table: str
    name: str
    table_owner: str


@dataclass(frozen=True)
class EventTriggerState:
    """An event trigger of the database: its function runs inside the DDL (or, from PostgreSQL
    17, the login) that fires it, with the rights of whoever runs that."""

    name: str
    event: str
    enabled: bool
    function: tuple[str, str, str]
    function_owner: str
    owner_is_superuser: bool


@dataclass(frozen=True)
class ObjectState:
    """One object of a generic kind of the registry (``pgprov.catalog.kinds``): a type or a
    domain, say. ``keyword`` is what GRANT ... ON and ALTER ... OWNER TO take."""

    kind: str  # the registry's section
    schema: str | None  # None: a database-wide kind (a foreign server, say)
    name: str
    keyword: str
    owner: str
    acl: tuple[AclEntry, ...] = ()
    args: str = ""


@dataclass(frozen=True)
class MembershipState:
    """``member`` is a member of ``role``: directly (``via`` None) or through ``via``, a role
    that is itself a member of ``role`` somewhere up the chain. Options as PostgreSQL 16+
    records them per grant (on 15: ADMIN from the grant, INHERIT from the member, SET true)."""

    role: str
    member: str
    grantor: str
    admin: bool = False
    inherit: bool = True
    set: bool = True
    via: str | None = None


@dataclass(frozen=True)
class PublicationState:
    """A publication: who owns it and which tables it publishes (all of them, or a list)."""

    name: str
    owner: str
    all_tables: bool
    tables: tuple[str, ...]  # schema.table


@dataclass(frozen=True)
class SubscriptionState:
    """A subscription into this database: its owner, whether it runs, what it subscribes to
    (never its connection string, which may carry a password)."""

    name: str
    owner: str
    enabled: bool
    publications: tuple[str, ...]


@dataclass(frozen=True)
class UserMapping:
    """A user mapping: ``user`` (a role, or PUBLIC) reaches foreign ``server`` with the
    credentials in its options (never read)."""

    server: str
    user: str


@dataclass(frozen=True)
class LargeObjects:
    """The large objects one role owns, aggregated (an application may hold millions): how
    many, the first and last oid, and each ACL entry but the owner's own with how many of
    them carry it."""

    owner: str
    count: int
    first: int
    last: int
    acl: tuple[tuple[AclEntry, int], ...] = ()


@dataclass(frozen=True)
class PredefinedMembership:
    """``member`` is directly a member of the predefined role ``role`` (pg_signal_backend, ...),
    granted by ``grantor``; or, with ``via``, reaches it through that group, which holds it
    directly (``grantor`` then empty)."""

    role: str
    member: str
    grantor: str
    via: str | None = None


@dataclass(frozen=True)
class PrivilegedRole:
    """A role that bypasses the database's privileges, and why (SUPERUSER, BYPASSRLS,
    member of pg_read_all_data / pg_write_all_data)."""

    name: str
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class DefaultAclState:
    role: str  # FOR ROLE
    schema: str | None  # None: the role's global default privileges
    objtype: str  # r (tables), S (sequences), f (functions), T (types), n (schemas), L (18)
    acl: tuple[AclEntry, ...] = ()
    admin_may: bool = True  # the admin may ALTER DEFAULT PRIVILEGES FOR ROLE this role


@dataclass(frozen=True)
class IndexState:
    name: str
    table: str
    definition: str
    valid: bool
    opclasses: tuple[str, ...] = ()


@dataclass(frozen=True)
class SettingCheck:
    """What the server says of one setting value (sql_templates/role_settings_check.sql.j2)."""

    name: str
    value: str
    context: str | None  # pg_settings.context; None: the server knows no such setting
    normalized: str | None  # current_setting() after set_config(): '30000' -> '30s'
    error: str | None  # the server's message when it rejects the value


@dataclass(frozen=True)
class QuietState:
    """One of the settings that keep secrets out of logs (pgprov.sql.quiet), as the admin
    finds it: whether it may set it, and its current value (None: extension not loaded)."""

    may_set: bool
    current: str | None


@dataclass(frozen=True)
class Snapshot:
    server_version_num: int
    in_recovery: bool
    current_user: str
    is_superuser: bool
    can_create_role: bool
    passwords_readable: bool
    roles: dict[str, RoleState]
    database: DatabaseState | None
    schemas: dict[str, SchemaState] = field(default_factory=dict)
    relations: tuple[RelationState, ...] = ()
    default_acls: tuple[DefaultAclState, ...] = ()
    indexes: dict[str, IndexState] = field(default_factory=dict)
    gin_table_exists: bool = False
    migrations: tuple[str, ...] | None = None  # None: no aerich table yet
    # (name, value) -> the server's verdict, for declared values and those stored for them
    setting_checks: dict[tuple[str, str], SettingCheck] = field(default_factory=dict)
    # The key the query's password digests were made with (pgprov.catalog.facts sets it).
    password_key: str = field(default="", repr=False, compare=False)
    columns: tuple[ColumnAclState, ...] = ()
    functions: tuple[FunctionState, ...] = ()
    memberships: tuple[MembershipState, ...] = ()  # members of the managed roles and readers
    privileged: tuple[PrivilegedRole, ...] = ()
    quiet: dict[str, QuietState] = field(default_factory=dict)
    triggers: tuple[TriggerState, ...] = ()
    rules: tuple[RuleState, ...] = ()
    event_triggers: tuple[EventTriggerState, ...] = ()
    objects: tuple[ObjectState, ...] = ()  # every generic kind of the registry
    policies: tuple[PolicyState, ...] = ()
    publications: tuple[PublicationState, ...] = ()
    subscriptions: tuple[SubscriptionState, ...] = ()
    user_mappings: tuple[UserMapping, ...] = ()
    large_objects: tuple[LargeObjects, ...] = ()  # one row per owner
    lo_compat_privileges: bool = False  # on: no privilege on a large object is checked
    predefined: tuple[PredefinedMembership, ...] = ()  # direct memberships in pg_* roles
    predefined_through: tuple[PredefinedMembership, ...] = ()  # the same, through a group
    # The predefined roles this server has -> whether the admin may grant and revoke each.
    predefined_roles: dict[str, bool] = field(default_factory=dict)
    # The admin's sessions may start with event_triggers = off (17+: pgprov.catalog.session).
    event_triggers_off: bool = False

    @property
    def major(self) -> int:
        return self.server_version_num // 10000

    def relation(self, schema: str, name: str) -> RelationState | None:
        for rel in self.relations:
            if rel.schema == schema and rel.name == name:
                return rel
        return None

    @classmethod
    def parse(cls, lines: Iterable[str]) -> Snapshot:
        sections: dict[str, object] = {}
        for line in lines:
            line = line.strip()
            if not line:
                continue
            try:
                value = json.loads(line)
            except (json.JSONDecodeError, TypeError, ValueError) as exc:
                raise SnapshotError(f"unexpected catalog output: {line[:120]!r}") from exc
            if not isinstance(value, dict):
                raise SnapshotError(f"unexpected catalog output: {line[:120]!r}")
            sections.update(value)
        if "cluster" not in sections or "roles" not in sections:
            raise SnapshotError("catalog output is incomplete (no cluster or roles section)")
        try:
            return cls._from_sections(sections)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SnapshotError(
                f"catalog output is malformed: {type(exc).__name__}: {exc}"
            ) from exc

    @classmethod
    def _from_sections(cls, sections: dict[str, Any]) -> Snapshot:
        cluster = sections["cluster"]
        passwords = sections.get("passwords")
        roles: dict[str, RoleState] = {}
        for raw in sections["roles"]:  # type: ignore[attr-defined]
            settings: dict[str, tuple[str, ...]] = {}
            for item in raw.pop("settings"):
                settings[item["database"] or ""] = tuple(item["config"] or ())
            member_of = tuple(raw.pop("member_of"))
            stored = passwords.get(raw["name"]) if isinstance(passwords, dict) else None
            password = StoredPassword(stored["scram"], stored["digest"]) if stored else None
            roles[raw["name"]] = RoleState(
                **raw, member_of=member_of, settings=settings, password=password
            )
        db_raw = sections.get("database")
        database = (
            DatabaseState(db_raw["name"], db_raw["owner"], AclEntry.parse_list(db_raw["acl"]))
            if isinstance(db_raw, dict)
            else None
        )
        schemas = {
            s["name"]: SchemaState(s["name"], s["owner"], AclEntry.parse_list(s["acl"]))
            for s in sections.get("schemas", [])  # type: ignore[union-attr]
        }
        relations = tuple(
            RelationState(
                r["schema"],
                r["name"],
                r["kind"],
                r["owner"],
                AclEntry.parse_list(r["acl"]),
                r.get("owned_by"),
                r.get("relkind", ""),
                bool(r.get("rls", False)),
                bool(r.get("force_rls", False)),
            )
            for r in sections.get("relations", [])  # type: ignore[union-attr]
        )
        columns = tuple(
            ColumnAclState(c["schema"], c["table"], c["column"], AclEntry.parse_list(c["acl"]))
            for c in sections.get("columns", [])  # type: ignore[union-attr]
        )
        functions = tuple(
            FunctionState(
                f["schema"],
                f["name"],
                f["args"],
                f["kind"],
                f["owner"],
                bool(f["security_definer"]),
                AclEntry.parse_list(f["acl"]),
                tuple((str(c), str(d)) for c, d in f.get("dependents") or ()),
                bool(f.get("admin_can_drop", True)),
            )
            for f in sections.get("functions", [])  # type: ignore[union-attr]
        )
        triggers = tuple(
            TriggerState(
                t["schema"],
                t["table"],
                t["name"],
                t["describe"],
                tuple(t["function"]),  # type: ignore[arg-type]
                t["function_owner"],
            )
            for t in sections.get("triggers", [])  # type: ignore[union-attr]
        )
        rules = tuple(
            RuleState(r["schema"], r["table"], r["name"], r["table_owner"])
            for r in sections.get("rules", [])  # type: ignore[union-attr]
        )
        quiet = {
            name: QuietState(bool(q["may_set"]), q["current"])
            for name, q in (sections.get("quiet") or {}).items()  # type: ignore[union-attr]
        }
        event_triggers = tuple(
            EventTriggerState(
                e["name"],
                e["event"],
                bool(e["enabled"]),
                tuple(e["function"]),  # type: ignore[arg-type]
                e["function_owner"],
                bool(e["owner_is_superuser"]),
            )
            for e in sections.get("event_triggers", [])  # type: ignore[union-attr]
        )
        memberships = tuple(
            MembershipState(
                m["role"],
                m["member"],
                m["grantor"],
                bool(m["admin"]),
                bool(m["inherit"]),
                bool(m["set"]),
                m.get("via"),
            )
            for m in sections.get("memberships", [])  # type: ignore[union-attr]
        )
        privileged = tuple(
            PrivilegedRole(p["name"], tuple(p["reasons"]))
            for p in sections.get("privileged", [])  # type: ignore[union-attr]
        )
        default_acls = tuple(
            DefaultAclState(
                d["role"],
                d["schema"],
                d["objtype"],
                AclEntry.parse_list(d["acl"]),
                bool(d.get("admin_may", True)),
            )
            for d in sections.get("default_acls", [])  # type: ignore[union-attr]
        )
        indexes = {
            i["name"]: IndexState(
                i["name"],
                i["table"],
                i["definition"],
                bool(i["valid"]),
                tuple(i["opclasses"] or ()),
            )
            for i in sections.get("indexes", [])  # type: ignore[union-attr]
        }
        migrations = sections.get("migrations")
        setting_checks = {
            (c["name"], c["value"]): SettingCheck(
                c["name"], c["value"], c["context"], c["normalized"], c["error"]
            )
            for c in sections.get("setting_values", [])  # type: ignore[union-attr]
        }
        return cls(
            server_version_num=int(cluster["server_version_num"]),  # type: ignore[index]
            in_recovery=bool(cluster["in_recovery"]),  # type: ignore[index]
            current_user=str(cluster["current_user"]),  # type: ignore[index]
            is_superuser=bool(cluster["is_superuser"]),  # type: ignore[index]
            can_create_role=bool(cluster["can_create_role"]),  # type: ignore[index]
            passwords_readable=isinstance(passwords, dict),
            roles=roles,
            database=database,
            schemas=schemas,
            relations=relations,
            default_acls=default_acls,
            indexes=indexes,
            gin_table_exists=bool(sections.get("gin_table_exists", False)),
            migrations=tuple(migrations) if isinstance(migrations, list) else None,  # type: ignore[arg-type]
            setting_checks=setting_checks,
            columns=columns,
            functions=functions,
            memberships=memberships,
            privileged=privileged,
            quiet=quiet,
            triggers=triggers,
            rules=rules,
            event_triggers=event_triggers,
            event_triggers_off=bool(sections.get("event_triggers_off", False)),
            policies=tuple(
                PolicyState(
                    p["schema"],
                    p["table"],
                    p["name"],
                    p["command"],
                    bool(p["permissive"]),
                    tuple(PUBLIC if r is None else r for r in p["roles"] or ()),
                    p.get("using"),
                    p.get("check"),
                )
                for p in sections.get("policies", [])
            ),
            publications=tuple(
                PublicationState(p["name"], p["owner"], bool(p["all_tables"]), tuple(p["tables"]))
                for p in sections.get("publications", [])
            ),
            lo_compat_privileges=bool(sections.get("lo_compat_privileges", False)),
            subscriptions=tuple(
                SubscriptionState(
                    sub["name"], sub["owner"], bool(sub["enabled"]), tuple(sub["publications"])
                )
                for sub in sections.get("subscriptions", [])
            ),
            user_mappings=tuple(
                UserMapping(m["server"], grantee_name(m["user"]))
                for m in sections.get("user_mappings", [])
            ),
            large_objects=tuple(
                LargeObjects(
                    lo["owner"],
                    int(lo["count"]),
                    int(lo["first"]),
                    int(lo["last"]),
                    tuple(
                        (AclEntry(grantee_name(g), str(p), bool(o)), int(n))
                        for g, p, o, n in lo["acl"]
                    ),
                )
                for lo in sections.get("large_objects", [])
            ),
            predefined=tuple(
                PredefinedMembership(p["role"], p["member"], p["grantor"])
                for p in sections.get("predefined", [])
            ),
            predefined_through=tuple(
                PredefinedMembership(p["role"], p["member"], "", p["via"])
                for p in sections.get("predefined_through", [])
            ),
            predefined_roles={
                str(k): bool(v) for k, v in (sections.get("predefined_roles") or {}).items()
            },
            objects=tuple(
                ObjectState(
                    kind.section,
                    o["schema"],
                    o["name"],
                    o["keyword"],
                    o["owner"],
                    AclEntry.parse_list(o["acl"]),
                    o.get("args") or "",
                )
                for kind in GENERIC
                for o in sections.get(kind.section, [])
            ),
        )
