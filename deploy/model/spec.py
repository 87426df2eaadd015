"""The validated model of one environment's database; all input validation lives here.

A spec is built from one host's inventory data (plain keys prefixed ``pg_``) and knows
nothing of pyinfra. Invalid input raises ``SpecError`` with one line naming the inventory,
the host and the field:

    spec = build_spec(host.data.dict(), inventory="inventories/staging.py", host="db1")
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pgprov.model.secrets import SecretError, SecretRef, parse_secret_ref
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
    ValidationError,
)

IDENT_PATTERN = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# A server setting (GUC): lowercase, optionally one extension prefix (pg_stat_statements.track).
SETTING_PATTERN = re.compile(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?")
LITERAL_PASSWORD_ENVIRONMENTS = frozenset({"local", "dev"})
PROTECTED_ENVIRONMENTS = frozenset({"staging", "production"})
DEFAULT_DATABASE = "hinfelaar_fastapi"
DEFAULT_SCHEMA = "app"
DEFAULT_MIGRATOR = "app_migrator"
DEFAULT_RUNTIME = "app_runtime"
DEFAULT_APP_USER = "hinfelaar_fastapi_db_user"
GIN_INDEX = "idx_checklistresponse_answers_gin"
GIN_TABLE = "checklistresponse"
GIN_COLUMN = "answers"
# The PUBLIC pseudo-role in our data: an empty name, which no real role can have (a role really
# named "PUBLIC" stays a role). The catalog snapshot, the access model and the SQL share it.
PUBLIC = ""
RESERVED_ROLES = frozenset({"public", "postgres", "none", "current_user", "session_user"})
SYSTEM_DATABASES = frozenset({"postgres", "template0", "template1"})
SYSTEM_SCHEMAS = frozenset({"public", "information_schema"})
# Predefined roles that are privileges a role may be declared to hold (pg_predefined_roles),
# with the first PostgreSQL major that has each. The ones that bypass every privilege
# (BYPASS_PREDEFINED) are never declared there: such a role belongs in pg_privileged_roles,
# and no managed role may hold one.
PREDEFINED_ROLES = {
    "pg_signal_backend": 9,
    "pg_monitor": 10,
    "pg_read_all_settings": 10,
    "pg_read_all_stats": 10,
    "pg_stat_scan_tables": 10,
    "pg_checkpoint": 15,
    "pg_use_reserved_connections": 16,
    "pg_create_subscription": 16,
    "pg_maintain": 17,
    "pg_signal_autovacuum_worker": 18,
}
BYPASS_PREDEFINED = {
    "pg_read_all_data": 14,
    "pg_write_all_data": 14,
    "pg_execute_server_program": 11,
    "pg_read_server_files": 11,
    "pg_write_server_files": 11,
}
# Lock discipline against a live database (deploy/sql/locks.py): one wait in the lock queue is
# at most DEFAULT_LOCK_TIMEOUT; all the retries together at most DEFAULT_LOCK_WAIT.
DEFAULT_LOCK_TIMEOUT = 0.5
DEFAULT_LOCK_WAIT = 60.0
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|min)?\s*")


class SpecError(ValueError):
    """Invalid environment input; the message is one line naming the field."""


def _identifier(value: str) -> str:
    if not isinstance(value, str) or not IDENT_PATTERN.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid identifier "
            "(lowercase letters, digits and _, not starting with a digit, at most 63 bytes)"
        )
    return value


def _role_name(value: str) -> str:
    _identifier(value)
    if value in RESERVED_ROLES or value.startswith("pg_"):
        raise ValueError(f"{value!r} is a reserved role name")
    return value


def _reader_name(value: str) -> str:
    if not isinstance(value, str) or value.upper() == "PUBLIC" or value.startswith("pg_"):
        raise ValueError(f"{value!r} cannot be a reader (PUBLIC and pg_* roles are reserved)")
    return _role_name(value)


def _predefined_name(value: str) -> str:
    if value in BYPASS_PREDEFINED:
        raise ValueError(
            f"{value} bypasses privileges: a role holding it belongs in pg_privileged_roles, "
            "and a managed role never holds it"
        )
    if value not in PREDEFINED_ROLES:
        raise ValueError(
            f"{value!r} is not a predefined role pgprov knows ({', '.join(PREDEFINED_ROLES)})"
        )
    return value


def _table_name(value: str) -> str:
    schema, dot, table = value.partition(".") if isinstance(value, str) else ("", "", "")
    if not dot:
        raise ValueError(f"{value!r} is not schema.table")
    _identifier(schema)
    _identifier(table)
    return value


def _database_name(value: str) -> str:
    _identifier(value)
    if value in SYSTEM_DATABASES:
        raise ValueError(f"{value!r} is a system database; the environment needs its own")
    return value


def _schema_name(value: str) -> str:
    _identifier(value)
    if value in SYSTEM_SCHEMAS or value.startswith("pg_"):
        raise ValueError(f"{value!r} is a system schema name; the application needs its own")
    return value


# Settings a role default must not carry: the deploy owns search_path; the others would
# change who the application is or apply to one transaction only.
RESERVED_SETTINGS = {
    "search_path": "managed by the deploy (pg_schema)",
    "role": "would switch the role at login",
    "session_authorization": "would switch the role at login",
    "transaction_isolation": "per transaction only (use default_transaction_isolation)",
    "transaction_read_only": "per transaction only (use default_transaction_read_only)",
    "transaction_deferrable": "per transaction only (use default_transaction_deferrable)",
}
LogicalRole = Literal["migrator", "runtime", "app_user"]


def _setting_name(value: str) -> str:
    if not isinstance(value, str) or len(value) > 127 or not SETTING_PATTERN.fullmatch(value):
        raise ValueError(f"{value!r} is not a setting name (lowercase, like statement_timeout)")
    if value in RESERVED_SETTINGS:
        raise ValueError(f"{value} cannot be declared here: {RESERVED_SETTINGS[value]}")
    return value


def _setting_value(value: Any) -> str:
    """The value as ALTER ROLE ... SET sends it: text; the server parses and checks it."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float | str):
        return str(value)
    raise ValueError(f"{value!r} is not a setting value (a string, a number or a boolean)")


def _duration(value: Any) -> float:
    """Seconds, from a number of seconds or a string with a unit (``"500ms"``, ``"2s"``)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.fullmatch(str(value))
        if not match:
            raise ValueError(
                f"{value!r} is not a duration (seconds, or a number with ms, s or min)"
            )
        scale = {"ms": 0.001, "s": 1.0, "min": 60.0, None: 1.0}[match.group(2)]
        seconds = float(match.group(1)) * scale
    if not 0.001 <= seconds <= 86400:
        raise ValueError(f"{value!r} is out of range (1ms to 24h)")
    return seconds


Identifier = Annotated[str, AfterValidator(_identifier)]
RoleName = Annotated[str, AfterValidator(_role_name)]
ReaderName = Annotated[str, AfterValidator(_reader_name)]
DatabaseName = Annotated[str, AfterValidator(_database_name)]
SchemaName = Annotated[str, AfterValidator(_schema_name)]
SettingName = Annotated[str, AfterValidator(_setting_name)]
SettingValue = Annotated[str, BeforeValidator(_setting_value)]
Duration = Annotated[float, BeforeValidator(_duration)]
PredefinedName = Annotated[str, AfterValidator(_predefined_name)]


def _publication_tables(value: object) -> str | tuple[str, ...]:
    if value == "all":
        return "all"
    if not isinstance(value, list | tuple):
        raise ValueError(f"{value!r}: give all, or a list of schema.table names")
    return tuple(_table_name(table) for table in value)


PublicationTables = Annotated[str | tuple[str, ...], PlainValidator(_publication_tables)]
LargeObjectPrivilege = Literal["SELECT", "UPDATE"]


class AdminConnection(BaseModel):
    """How psql on the target reaches the server as an administrator.

    Either libpq parameters (host, port, user; the password comes from the controller's
    PGPASSWORD/PGPASSFILE or ``password``), or ``sudo_user`` peer authentication on the
    target's unix socket (``host`` is then the socket directory, or None for the default).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    host: str | None = None
    port: int = Field(default=5432, ge=1, le=65535)
    user: str | None = None
    dbname: Identifier = "postgres"
    sudo_user: str | None = None
    password: SecretRef | None = None

    def describe(self) -> str:
        where = f"{self.host or 'local socket'}:{self.port}"
        who = f"sudo -u {self.sudo_user} (peer)" if self.sudo_user else self.user or "libpq default"
        return f"{who} at {where}"


class PublicationDecl(BaseModel):
    """A publication that belongs, with the tables it may publish (``all``: FOR ALL TABLES)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    owner: Identifier
    tables: PublicationTables


class SubscriptionDecl(BaseModel):
    """A subscription that belongs, with the publications it may subscribe to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    owner: Identifier
    publications: tuple[str, ...] = Field(min_length=1)


def _owner_or(declaration: type[BaseModel]) -> Any:
    """An owner's name, or a ``declaration`` ({owner, ...}): told apart by shape, so an error
    names the form used."""
    return Annotated[
        Annotated[str, AfterValidator(_identifier), Tag("owner")]
        | Annotated[declaration, Tag("declaration")],
        Discriminator(lambda v: "declaration" if isinstance(v, dict | declaration) else "owner"),
    ]


PublicationEntry = _owner_or(PublicationDecl)
SubscriptionEntry = _owner_or(SubscriptionDecl)
DECLARED_BY_SHAPE = ("publications", "subscriptions")


def published(tables: str | tuple[str, ...]) -> str:
    """What a publication publishes (``all``, or its tables), as the audit shows it (declared
    and found alike)."""
    return "all tables" if tables == "all" else ", ".join(sorted(tables)) or "no table"


def subscribed(publications: tuple[str, ...]) -> str:
    """What a subscription subscribes to, as the audit shows it (declared and found alike)."""
    return "publications " + ", ".join(sorted(publications))


class Spec(BaseModel):
    """One environment's database, as declared."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    inventory: str
    host: str
    environment: Identifier
    profile: Literal["split", "single_user"]
    database: DatabaseName = DEFAULT_DATABASE
    schema_name: SchemaName = DEFAULT_SCHEMA
    migrator: RoleName = DEFAULT_MIGRATOR
    runtime: RoleName = DEFAULT_RUNTIME
    app_user: RoleName = DEFAULT_APP_USER
    passwords: dict[str, SecretRef] = Field(default_factory=dict)
    password_update: Literal["on_create", "always"] = "on_create"
    runtime_can_create: bool = False
    createdb: bool = False
    # Keyed by the logical role, so renaming a role (pg_runtime) keeps its settings.
    role_settings: dict[LogicalRole, dict[SettingName, SettingValue]] = Field(default_factory=dict)
    connection_limits: dict[LogicalRole, Annotated[int, Field(ge=-1, strict=True)]] = Field(
        default_factory=dict
    )
    gin_opclass: Literal["jsonb_ops", "jsonb_path_ops"] = "jsonb_ops"
    schema_mode: Literal["migrate", "generate"] = "migrate"
    admin: AdminConnection = Field(default_factory=AdminConnection)
    app_host: str = "127.0.0.1"
    app_port: int = Field(default=5432, ge=1, le=65535)
    tunnel: bool = False
    psql: str = "psql"  # the client on the target; "psql" on PATH (locally: the real binary)
    lock_timeout: Duration = DEFAULT_LOCK_TIMEOUT  # seconds, one wait in the lock queue
    lock_wait: Duration = DEFAULT_LOCK_WAIT  # seconds, every try of one step together
    # NOLOGIN group roles with read-only access to the schema (members managed elsewhere).
    readers: tuple[ReaderName, ...] = ()
    # Roles besides the deploy's admin that may bypass privileges (SUPERUSER, BYPASSRLS,
    # pg_read_all_data, membership in the owner): a managed provider's admin role.
    privileged_roles: tuple[Identifier, ...] = ()
    # Memberships in predefined roles that are declared (role, or a managed role's logical
    # name -> predefined roles): granted to the managed roles and readers, allowed for others;
    # any other of a role in scope is revoked (pgprov.access.privileges.predefined_*).
    predefined_roles: dict[Identifier, tuple[PredefinedName, ...]] = Field(default_factory=dict)
    # Publications that belong (name -> owner, or {owner, tables}), e.g. a CDC tool's: any
    # other one is named, and so is a declared one publishing other tables than declared.
    publications: dict[Identifier, PublicationEntry] = Field(default_factory=dict)
    # Subscriptions that belong (name -> owner, or {owner, publications}): any other one is
    # named, and so is a declared one subscribing to other publications than declared.
    subscriptions: dict[Identifier, SubscriptionEntry] = Field(default_factory=dict)
    # User mappings that belong (foreign server -> roles: a role name, a managed role's logical
    # name, or public for the PUBLIC mapping): any other one is named.
    user_mappings: dict[Identifier, tuple[Identifier, ...]] = Field(default_factory=dict)
    # Owners whose large objects belong (role, or a managed role's logical name -> {grantee:
    # privileges on all of them}): any other owner's are named; undeclared privileges revoked.
    large_objects: dict[Identifier, dict[Identifier, tuple[LargeObjectPrivilege, ...]]] = Field(
        default_factory=dict
    )

    @property
    def owner(self) -> str:
        """The role that owns the database, the schema and every table in it."""
        return self.migrator if self.profile == "split" else self.app_user

    @property
    def roles(self) -> list[str]:
        """The login roles this environment manages, owner first."""
        return [self.migrator, self.runtime] if self.profile == "split" else [self.app_user]

    @property
    def logical_roles(self) -> tuple[LogicalRole, ...]:
        """The managed roles by their logical names, as pg_role_settings keys them."""
        return ("migrator", "runtime") if self.profile == "split" else ("app_user",)

    @property
    def search_path(self) -> tuple[str, ...]:
        return (self.schema_name, "public")

    def role_key(self, name: str) -> str:
        """The host data key that names ``name`` (a managed role or a reader)."""
        for which in self.logical_roles:
            if getattr(self, which) == name:
                return f"pg_{which}"
        return "pg_readers"

    def declared_predefined(self) -> dict[str, frozenset[str]]:
        """Role name -> the predefined roles it is declared to hold (logical names resolved)."""
        out: dict[str, frozenset[str]] = {}
        for key, names in self.predefined_roles.items():
            role = self._role_of(key)
            out[role] = out.get(role, frozenset()) | frozenset(names)
        return out

    def declared_large_objects(self) -> dict[str, dict[str, frozenset[str]]]:
        """Owner -> {grantee: privileges} on every large object it owns (logical names
        resolved on both sides)."""
        out: dict[str, dict[str, frozenset[str]]] = {}
        for key, grants in self.large_objects.items():
            held = out.setdefault(self._role_of(key), {})
            for grantee, privileges in grants.items():
                who = self._role_of(grantee)
                held[who] = held.get(who, frozenset()) | frozenset(privileges)
        return out

    def declared_publications(self) -> dict[str, tuple[str, str | None]]:
        """Publication -> (owner, the tables it publishes as the audit shows them: "all tables"
        or "s.t, s.u" sorted; None when only the owner is declared)."""
        return {
            name: (decl, None) if isinstance(decl, str) else (decl.owner, published(decl.tables))
            for name, decl in self.publications.items()
        }

    def declared_subscriptions(self) -> dict[str, tuple[str, str | None]]:
        """Subscription -> (owner, the publications it subscribes to as the audit shows them:
        "publications a, b" sorted; None when only the owner is declared)."""
        return {
            name: (decl, None)
            if isinstance(decl, str)
            else (decl.owner, subscribed(decl.publications))
            for name, decl in self.subscriptions.items()
        }

    def declared_user_mappings(self) -> set[tuple[str, str]]:
        """(server, role) of every declared user mapping; PUBLIC's as ``PUBLIC``."""
        return {
            (server, PUBLIC if user == "public" else self._role_of(user))
            for server, users in self.user_mappings.items()
            for user in users
        }

    def _role_of(self, name: str) -> str:
        """A role name, or a managed role's logical name (migrator, runtime, app_user)."""
        return getattr(self, name) if name in self.logical_roles else name

    def declared_settings(self) -> dict[str, dict[str, str]]:
        """Role name -> declared {setting: value}, for every managed role (search_path apart)."""
        return {
            getattr(self, which): dict(self.role_settings.get(which, {}))
            for which in self.logical_roles
        }

    @property
    def runtime_role(self) -> str | None:
        return self.runtime if self.profile == "split" else None


# host data key -> Spec field; everything an inventory may say, and nothing else.
HOST_KEYS: dict[str, str] = {
    "pg_environment": "environment",
    "pg_profile": "profile",
    "pg_database": "database",
    "pg_schema": "schema_name",
    "pg_migrator": "migrator",
    "pg_runtime": "runtime",
    "pg_app_user": "app_user",
    "pg_password_update": "password_update",
    "pg_runtime_can_create": "runtime_can_create",
    "pg_createdb": "createdb",
    "pg_role_settings": "role_settings",
    "pg_connection_limits": "connection_limits",
    "pg_gin_opclass": "gin_opclass",
    "pg_schema_mode": "schema_mode",
    "pg_app_host": "app_host",
    "pg_app_port": "app_port",
    "pg_tunnel": "tunnel",
    "pg_psql": "psql",
    "pg_lock_timeout": "lock_timeout",
    "pg_lock_wait": "lock_wait",
    "pg_readers": "readers",
    "pg_privileged_roles": "privileged_roles",
    "pg_predefined_roles": "predefined_roles",
    "pg_publications": "publications",
    "pg_large_objects": "large_objects",
    "pg_subscriptions": "subscriptions",
    "pg_user_mappings": "user_mappings",
}
PASSWORD_KEYS = {
    "pg_migrator_password": "migrator",
    "pg_runtime_password": "runtime",
    "pg_app_user_password": "app_user",
}
ADMIN_KEYS = {
    "pg_admin_host": "host",
    "pg_admin_port": "port",
    "pg_admin_user": "user",
    "pg_admin_database": "dbname",
    "pg_admin_sudo_user": "sudo_user",
    "pg_admin_password": "password",
}
OTHER_KEYS = {"pg_inventory"}


def _field_of(loc: tuple[Any, ...]) -> str:
    reverse = {v: k for k, v in HOST_KEYS.items()}
    if loc and loc[0] == "admin" and len(loc) > 1:
        return {v: k for k, v in ADMIN_KEYS.items()}.get(str(loc[1]), f"admin.{loc[1]}")
    if (
        loc
        and loc[0]
        in (
            "role_settings",
            "connection_limits",
            "predefined_roles",
            "large_objects",
            "user_mappings",
            "publications",
            "subscriptions",
        )
        and len(loc) > 1
    ):
        tags = ("[key]", "owner", "declaration") if loc[0] in DECLARED_BY_SHAPE else ("[key]",)
        where = ".".join(str(part) for part in loc[1:] if part not in tags)
        return f"{reverse[str(loc[0])]}: {where}"
    return reverse.get(str(loc[0]), str(loc[0])) if loc else "spec"


def build_spec(data: Mapping[str, Any], *, inventory: str, host: str) -> Spec:
    """Validate one host's ``pg_*`` data into a Spec, or raise one-line ``SpecError``."""

    def fail(field: str, message: str) -> SpecError:
        return SpecError(f"{inventory}: host {host}: {field}: {message}")

    unknown = sorted(
        key
        for key in data
        if key.startswith("pg_")
        and key not in HOST_KEYS
        and key not in PASSWORD_KEYS
        and key not in ADMIN_KEYS
        and key not in OTHER_KEYS
    )
    if unknown:
        raise fail(unknown[0], "unknown setting (typo?)")
    values: dict[str, Any] = {
        field: data[key] for key, field in HOST_KEYS.items() if data.get(key) is not None
    }
    if "pg_profile" not in data:
        raise fail("pg_profile", "missing (split or single_user)")
    if "pg_environment" not in data:
        raise fail("pg_environment", "missing (local, dev, staging, production, ...)")
    environment = str(data["pg_environment"])
    allow_literal = environment in LITERAL_PASSWORD_ENVIRONMENTS

    role_field = {"migrator": "migrator", "runtime": "runtime", "app_user": "app_user"}
    defaults = {
        "migrator": DEFAULT_MIGRATOR,
        "runtime": DEFAULT_RUNTIME,
        "app_user": DEFAULT_APP_USER,
    }
    passwords: dict[str, SecretRef] = {}
    for key, which in PASSWORD_KEYS.items():
        raw = data.get(key)
        if raw is None:
            continue
        role = str(values.get(role_field[which], defaults[which]))
        try:
            passwords[role] = parse_secret_ref(str(raw), allow_literal=allow_literal)
        except SecretError as exc:
            raise fail(key, str(exc)) from None
    values["passwords"] = passwords

    admin: dict[str, Any] = {}
    for key, field in ADMIN_KEYS.items():
        raw = data.get(key)
        if raw is None or raw == "":
            continue
        if field == "password":
            try:
                admin[field] = parse_secret_ref(str(raw), allow_literal=allow_literal)
            except SecretError as exc:
                raise fail(key, str(exc)) from None
        else:
            admin[field] = raw
    values["admin"] = admin
    # The app (and the migrations) reach the database where the admin does, unless told
    # otherwise or the admin goes through a unix socket on the target.
    admin_host = admin.get("host")
    if admin_host and not str(admin_host).startswith("/"):
        values.setdefault("app_host", admin_host)
        values.setdefault("app_port", admin.get("port", 5432))

    try:
        spec = Spec(inventory=inventory, host=host, **values)
    except ValidationError as exc:
        error = exc.errors()[0]
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        raise fail(_field_of(tuple(error.get("loc", ()))), message) from None
    if spec.profile == "split" and spec.createdb:
        raise fail("pg_createdb", "only the single_user profile may have CREATEDB")
    if spec.profile == "split" and spec.migrator == spec.runtime:
        raise fail("pg_runtime", f"the managed roles must differ (both are {spec.runtime})")
    if spec.lock_wait < spec.lock_timeout:
        raise fail(
            "pg_lock_wait",
            f"{spec.lock_wait:g}s is shorter than pg_lock_timeout ({spec.lock_timeout:g}s)",
        )
    for reader in spec.readers:
        if reader in spec.roles:
            raise fail("pg_readers", f"{reader!r} is a managed role; a reader must be its own role")
    for name in spec.privileged_roles:
        if name in spec.roles or name in spec.readers:
            raise fail(
                "pg_privileged_roles",
                f"{name!r} is a role this deploy manages; a managed role never bypasses privileges",
            )
    if spec.admin.user and spec.admin.user in (*spec.roles, *spec.readers):
        raise fail(
            spec.role_key(spec.admin.user),
            f"{spec.admin.user} is the admin this deploy connects as (pg_admin_user or PGUSER); "
            "a managed role must be a role of its own",
        )
    if len(set(spec.readers)) != len(spec.readers):
        raise fail("pg_readers", "a reader is listed twice")
    for key, which in PASSWORD_KEYS.items():
        role = getattr(spec, which)
        if role in spec.roles and role not in spec.passwords:
            raise fail(key, f"missing for role {role} (env:VARIABLE or file:/path)")
    for key, declared in (
        ("pg_role_settings", spec.role_settings),
        ("pg_connection_limits", spec.connection_limits),
    ):
        for which in declared:
            if getattr(spec, which) not in spec.roles:
                managed = ", ".join(spec.logical_roles)
                raise fail(
                    f"{key}: {which}", f"not a role of the {spec.profile} profile ({managed})"
                )
    return spec
