"""The provisioning plan: spec + catalog snapshot -> the SQL items that close the difference.

Pure decisions, no I/O: every item carries a one-sentence description, its exact SQL and a
display form with secrets masked. A converged environment yields an empty plan.

    plan = build_plan(spec, snapshot, policy, verifier_for, password_matches)
    plan.script()          # the psql script (stdin), one transaction per database
    plan.items             # what `pyinfra --dry` shows
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pgprov.access.code import foreign_code
from pgprov.access.kept import KEPT, undeclared
from pgprov.access.privileges import (
    PUBLIC,
    Grant,
    GrantGroup,
    current_grants,
    defaults_out_of_reach,
    diff,
    group,
    missing_predefined,
    predefined_out_of_reach,
    predefined_scope,
    predefined_through_groups,
    undeclared_memberships,
    undeclared_owners,
    undeclared_predefined,
    undeclared_row_security,
    wanted_grants,
)
from pgprov.access.roles import MANAGED_MARK, is_marked, wanted_attributes
from pgprov.access.settings import (
    NOT_SET,
    UNLIMITED,
    describe_limit,
    setting_rows,
    wanted_connection_limit,
)
from pgprov.catalog.state import RoleState, Snapshot, display_grantee
from pgprov.model.secrets import Credentials, StoredPassword
from pgprov.model.spec import Spec
from pgprov.sql.locks import (
    PROVISION_LOCK_KEY,
    LockPolicy,
    retry_context,
    session_lock,
    session_setup,
    session_unlock,
    with_lock_retries,
)
from pgprov.sql.quiet import QUIET, QuietSetting, logs
from pgprov.sql.render import ident, render

# Large objects whose privileges change in one transaction (PostgreSQL 18 locks each one; the
# lock table holds max_locks_per_transaction x max_connections, 6,400 by default).
LARGE_OBJECT_BATCH = 1000
UNSAMPLED = "SET log_transaction_sample_rate = 0;"
RESAMPLED = "RESET log_transaction_sample_rate;"


@dataclass(frozen=True)
class Item:
    description: str
    sql: str = field(repr=False)  # carries the verifiers: only ``display`` is ever shown
    display: str


@dataclass(frozen=True)
class HostInputs:
    """What one host's run resolves once and hands down to every step: its secrets and its
    lock policy (``steps.environment.load_inputs``)."""

    credentials: Credentials = field(repr=False)
    policy: LockPolicy


@dataclass
class HostRun:
    """One host's run as a value: the items each step planned (in order) and the errors that
    stopped it. The deploy fills it; whoever reports the run reads it (``pgprov-plan``, the
    pytest plugin)."""

    items: list[tuple[str, Item]] = field(default_factory=list)  # (step key, item)
    errors: list[str] = field(default_factory=list)
    pending_migrations: list[str] = field(default_factory=list)  # what the schema step applies
    notices: list[str] = field(default_factory=list)  # one line each, said once per run
    _keys: set[str] = field(default_factory=set, repr=False)

    def add(self, key: str, items: list[Item]) -> bool:
        """Record a step's items once (pyinfra may run a generator twice); True the first time."""
        if key in self._keys:
            return False
        self._keys.add(key)
        self.items.extend((key, item) for item in items)
        return True

    def notify(self, message: str) -> bool:
        """Record a notice once; True the first time."""
        if message in self.notices:
            return False
        self.notices.append(message)
        return True

    def fail(self, key: str, message: str) -> bool:
        """Record a step's error once; True the first time."""
        if f"error:{key}" in self._keys:
            return False
        self._keys.add(f"error:{key}")
        self.errors.append(message)
        return True


@dataclass
class Plan:
    """Items per phase: cluster-wide (roles), CREATE DATABASE, and the database transaction."""

    spec: Spec
    policy: LockPolicy  # the database transaction's lock waits
    roles: list[Item] = field(default_factory=list)
    create_database: list[Item] = field(default_factory=list)
    database: list[Item] = field(default_factory=list)
    # After the database transaction, in transactions of their own: work on more objects than
    # one transaction may lock (privileges on large objects), under the session's advisory lock.
    batches: list[Item] = field(default_factory=list)
    # The settings the admin may set to keep the role statements' verifiers out of every log
    # (sql_templates/unlogged.sql.j2); sampling a whole transaction into the log is decided
    # at BEGIN, so it is switched off around the roles transaction when the admin may.
    quiet: tuple[QuietSetting, ...] = ()

    @property
    def items(self) -> list[Item]:
        return [*self.roles, *self.create_database, *self.database, *self.batches]

    @property
    def empty(self) -> bool:
        return not self.items

    @property
    def sends_verifier(self) -> bool:
        """Whether a role statement carries a verifier (only those differ from their display)."""
        return any(item.sql != item.display for item in self.roles)

    def script(self, *, mask: bool = False) -> str:
        """The whole psql script; ``mask`` gives the display form (passwords redacted)."""

        def body(items: list[Item]) -> str:
            return "".join(item.display if mask else item.sql for item in items).rstrip("\n")

        parts: list[str] = []
        if self.roles:
            roles = render(
                "transaction.sql.j2",
                connect=None,
                session="",
                lock_key=PROVISION_LOCK_KEY,
                set_role=None,
                body=body(self.roles),
            )
            if any(s.name == "log_transaction_sample_rate" for s in self.quiet):
                roles = f"{UNSAMPLED}\n{roles}{RESAMPLED}\n"
            parts.append(roles)
        if self.create_database:
            # CREATE DATABASE cannot run in a transaction; a session lock makes the
            # check-and-create atomic against another deploy doing the same.
            parts.append(
                session_lock(PROVISION_LOCK_KEY)
                + body(self.create_database)
                + "\n"
                + session_unlock(PROVISION_LOCK_KEY)
            )
        if self.database:
            parts.append(
                render(
                    "transaction.sql.j2",
                    connect=self.spec.database,
                    session=session_setup(),
                    lock_key=PROVISION_LOCK_KEY,
                    set_role=None,
                    # Ownership, grants and settings of live objects: short lock waits,
                    # retried, never queued without bound in front of the application.
                    body=with_lock_retries(
                        body(self.database),
                        self.policy,
                        what=f"database {self.spec.database}",
                    ),
                )
            )
        if self.batches:
            if not self.database:
                parts.append(f"\\connect {ident(self.spec.database)}\n{session_setup()}")
            parts.append(
                session_lock(PROVISION_LOCK_KEY)
                + body(self.batches)
                + "\n"
                + session_unlock(PROVISION_LOCK_KEY)
            )
        # The first connection's session setup; the database transaction's comes after \connect.
        return "".join([session_setup(), *parts]) if parts else ""


def make_item(description: str, template: str, **context: object) -> Item:
    return Item(
        description,
        render(template, mask=False, **context),
        render(template, mask=True, **context),
    )


def _keyword(attribute: str, value: bool) -> str:
    return ("" if value else "NO") + attribute.upper()


def role_items(
    spec: Spec,
    snap: Snapshot,
    verifier_for: Callable[[str], str],
    password_matches: Callable[[str, StoredPassword | None], bool],
) -> list[Item]:
    """Create missing roles; align attributes both ways; passwords; revoke undeclared memberships."""
    items: list[Item] = []
    memberships: list[Item] = []
    for name in spec.roles:
        wanted = wanted_attributes(spec, name)
        current: RoleState | None = snap.roles.get(name)
        if (
            name == spec.owner
            and not snap.is_superuser
            and (current is None or not (current.admin_can_use and current.admin_can_set))
        ):
            memberships.append(_admin_membership(snap, name))
        if current is None:
            attrs = [_keyword(a, v) for a, v in wanted.items() if v]
            role = {"name": name, "attributes": attrs, "verifier": verifier_for(name)}
            items.append(
                make_item(
                    f"create role {name} ({', '.join(attrs)}) with a SCRAM-SHA-256 password",
                    "roles.sql.j2",
                    create=[role],
                    alter=[],
                    revoke_memberships=[],
                    grant_memberships=[],
                    quiet=quiet_settings(snap),
                    mark=_mark(name),
                )
            )
            limit = wanted_connection_limit(spec, name)
            if limit != UNLIMITED:
                items.append(_connection_limit(name, limit, None))
            continue
        if not is_marked(current):
            items.append(_mark_item(name))
        changes = [_keyword(a, v) for a, v in wanted.items() if getattr(current, a) != v]
        if changes:
            role = {"name": name, "attributes": changes, "verifier": None}
            items.append(
                make_item(
                    f"set {', '.join(changes)} on role {name}",
                    "roles.sql.j2",
                    create=[],
                    alter=[role],
                    revoke_memberships=[],
                    grant_memberships=[],
                )
            )
        limit = wanted_connection_limit(spec, name)
        if current.connection_limit != limit:
            items.append(_connection_limit(name, limit, current.connection_limit))
        if _needs_password(spec, snap, current, password_matches):
            role = {"name": name, "attributes": [], "verifier": verifier_for(name)}
            items.append(
                make_item(
                    f"set the password of role {name} (SCRAM-SHA-256 verifier)",
                    "roles.sql.j2",
                    create=[],
                    alter=[role],
                    revoke_memberships=[],
                    grant_memberships=[],
                    quiet=quiet_settings(snap),
                )
            )
        for parent in current.member_of:
            if parent in spec.roles or parent in snap.predefined_roles:
                # A membership in a managed role: membership_items; in a predefined role:
                # predefined_items; each with its grantor.
                continue
            # 16+ keeps one grant per grantor and REVOKE removes only the one it names.
            grantors = sorted(
                {
                    m.grantor
                    for m in snap.memberships
                    if m.member == name and m.role == parent and m.via is None
                }
            )
            for grantor in grantors or [None]:
                items.append(revoke_membership_item(snap, parent, name, grantor))
    return (
        items
        + reader_items(spec, snap)
        + membership_items(spec, snap)
        + predefined_items(spec, snap)
        + memberships
    )


def revoke_membership_item(snap: Snapshot, role: str, member: str, grantor: str | None) -> Item:
    """REVOKE role FROM member, one undeclared membership. PostgreSQL 16+ keeps one grant per
    grantor and REVOKE removes only the one it names, so the grantor is named there."""
    by = f" (granted by {grantor})" if grantor else ""
    return make_item(
        f"revoke undeclared membership of role {member} in {role}{by}",
        "roles.sql.j2",
        create=[],
        alter=[],
        revoke_memberships=[
            {"role": role, "member": member, "granted_by": grantor if snap.major >= 16 else None}
        ],
        grant_memberships=[],
    )


def predefined_items(spec: Spec, snap: Snapshot) -> list[Item]:
    """Memberships in predefined roles (pg_signal_backend, pg_monitor, ...): undeclared ones of
    the roles in scope revoked (by grantor on 16+), declared ones of the managed roles and
    readers granted. Those the admin may not grant or revoke are left (``reach_notice``)."""
    items = []
    out_of_reach = predefined_out_of_reach(snap)
    for p in undeclared_predefined(spec, snap):
        if p.role in out_of_reach:
            continue
        items.append(revoke_membership_item(snap, p.role, p.member, p.grantor))
    for member, role in missing_predefined(spec, snap):
        if role in out_of_reach:
            continue
        items.append(
            make_item(
                f"grant role {member} membership in {role} (pg_predefined_roles)",
                "roles.sql.j2",
                create=[],
                alter=[],
                revoke_memberships=[],
                grant_memberships=[{"role": role, "member": member, "options": ""}],
            )
        )
    return items


def reader_items(spec: Spec, snap: Snapshot) -> list[Item]:
    """Readers are NOLOGIN group roles: created when missing, otherwise left as they are
    (their members, and any attribute, are managed elsewhere) but for pgprov's mark."""
    items = []
    for name in spec.readers:
        current = snap.roles.get(name)
        if current is None:
            items.append(
                make_item(
                    f"create role {name} (NOLOGIN), a read-only group for schema "
                    f"{spec.schema_name}",
                    "roles.sql.j2",
                    create=[{"name": name, "attributes": ["NOLOGIN"], "verifier": None}],
                    alter=[],
                    revoke_memberships=[],
                    grant_memberships=[],
                    mark=_mark(name),
                )
            )
        elif not is_marked(current):
            items.append(_mark_item(name))
    return items


def _mark(name: str) -> list[dict[str, str]]:
    return [{"name": name, "comment": MANAGED_MARK}]


def _mark_item(name: str) -> Item:
    """pgprov's mark on a role it manages that predates the mark (pgprov.access.roles)."""
    return make_item(
        f"mark role {name} as managed by pgprov (COMMENT ON ROLE)",
        "roles.sql.j2",
        create=[],
        alter=[],
        revoke_memberships=[],
        grant_memberships=[],
        mark=_mark(name),
    )


def membership_items(spec: Spec, snap: Snapshot) -> list[Item]:
    """Undeclared members of the managed roles lose that membership. PostgreSQL 16+ keeps one
    grant per grantor and REVOKE removes only the issuer's, so the grantor is named."""
    items = []
    undeclared = undeclared_memberships(spec, snap)
    revoked = {m.member for m in undeclared}
    # A grant made by a member that loses its membership (ADMIN OPTION) goes first: on 16+
    # the grantor's own membership cannot be revoked while grants depend on it.
    for m in sorted(undeclared, key=lambda m: m.grantor not in revoked):
        items.append(revoke_membership_item(snap, m.role, m.member, m.grantor))
    return items


def _connection_limit(role: str, limit: int, current: int | None) -> Item:
    """CONNECTION LIMIT is a role attribute, not a setting; -1 (none) when undeclared."""
    if limit == UNLIMITED:
        description = f"remove the connection limit of role {role}"
    else:
        description = f"set the connection limit of role {role} to {limit}"
    was = "" if current is None else f" (was {describe_limit(current)})"
    return make_item(
        description + was,
        "connection_limit.sql.j2",
        role=role,
        limit=limit,
    )


def _admin_membership(snap: Snapshot, role: str) -> Item:
    """A non-superuser admin (managed services: CREATEROLE, CREATEDB only) manages the
    owner's database, schema, grants and default privileges through membership in the owner,
    with INHERIT and SET (PostgreSQL 16+ grants a role's creator only ADMIN OPTION)."""
    options = "INHERIT TRUE, SET TRUE" if snap.major >= 16 else ""
    return make_item(
        f"grant role {role} to the deploy's admin {snap.current_user}"
        f"{' (' + options.lower() + ')' if options else ''}, so it can manage {role}'s objects",
        "roles.sql.j2",
        create=[],
        alter=[],
        revoke_memberships=[],
        grant_memberships=[{"role": role, "member": snap.current_user, "options": options}],
    )


def _needs_password(
    spec: Spec,
    snap: Snapshot,
    role: RoleState,
    password_matches: Callable[[str, StoredPassword | None], bool],
) -> bool:
    if snap.passwords_readable:
        return not password_matches(role.name, role.password)
    if spec.password_update == "always":
        return True
    return not role.has_password


def setting_items(spec: Spec, snap: Snapshot) -> list[Item]:
    """search_path and the declared settings set in the database; undeclared ones reset."""
    items = []
    for row in setting_rows(spec, snap):
        if row.in_sync:
            continue
        setting: dict[str, object] = {"role": row.role, "database": row.database, "name": row.name}
        if row.value is None:
            description = f"reset undeclared {row.name} of role {row.role} in {row.scope}"
            items.append(
                make_item(
                    f"{description} (was {row.actual})",
                    "role_settings.sql.j2",
                    set=[],
                    reset=[setting],
                )
            )
            continue
        if isinstance(row.value, tuple):
            setting["value_list"] = list(row.value)
        else:
            setting["value"] = row.value
        was = "" if row.actual == NOT_SET else f" (was {row.actual})"
        items.append(
            make_item(
                f"set {row.name} of role {row.role} in {row.scope} to {row.declared}{was}",
                "role_settings.sql.j2",
                set=[setting],
                reset=[],
            )
        )
    return items


def database_items(spec: Spec, snap: Snapshot) -> tuple[list[Item], list[Item]]:
    """(CREATE DATABASE items, ownership items inside the database transaction)."""
    if snap.database is None:
        create = make_item(
            f"create database {spec.database} owned by {spec.owner}",
            "database.sql.j2",
            create=True,
            set_owner=False,
            database=spec.database,
            owner=spec.owner,
        )
        return [create], []
    if snap.database.owner != spec.owner:
        fix = make_item(
            f"change the owner of database {spec.database} from {snap.database.owner} to {spec.owner}",
            "database.sql.j2",
            create=False,
            set_owner=True,
            database=spec.database,
            owner=spec.owner,
        )
        return [], [fix]
    return [], []


def schema_items(spec: Spec, snap: Snapshot) -> list[Item]:
    schema = snap.schemas.get(spec.schema_name)
    context = {
        "schema": spec.schema_name,
        "owner": spec.owner,
        "relation_owners": [],
        "routine_owners": [],
    }
    items = []
    if schema is None:
        items.append(
            make_item(
                f"create schema {spec.schema_name} owned by {spec.owner}",
                "schema.sql.j2",
                create=True,
                set_owner=False,
                **context,
            )
        )
    elif schema.owner != spec.owner:
        items.append(
            make_item(
                f"change the owner of schema {spec.schema_name} from {schema.owner} to {spec.owner}",
                "schema.sql.j2",
                create=False,
                set_owner=True,
                **context,
            )
        )
    for fix in undeclared_owners(spec, snap):
        # Other schemas first, then every relation and routine (ALTER SCHEMA / TABLE / VIEW /
        # SEQUENCE / ROUTINE ... OWNER TO), each one statement.
        target = {"target": fix.target}
        routine = fix.keyword == "ROUTINE"
        items.append(
            make_item(
                f"change the owner of {fix.object_text()} from {fix.owner} to {spec.owner}",
                "schema.sql.j2",
                create=False,
                set_owner=fix.keyword == "SCHEMA",
                schema=fix.name if fix.keyword == "SCHEMA" else spec.schema_name,
                owner=spec.owner,
                relation_owners=[]
                if routine or fix.keyword == "SCHEMA"
                else [{**target, "keyword": fix.keyword}],
                routine_owners=[{**target, "args": fix.args}] if routine else [],
            )
        )
    return items


def grant_items(spec: Spec, snap: Snapshot) -> list[Item]:
    """Revokes first, then grants; one statement per object and grantee. Default privileges
    of a role the admin may not act for, and parameter privileges when it is no superuser, are
    left (``defaults_notice``, ``parameters_notice`` say so)."""
    to_revoke, to_grant = diff(wanted_grants(spec, snap), current_grants(spec, snap))
    to_revoke = [g for g in to_revoke if not _out_of_reach(snap, g)]
    to_revoke = [g for g in to_revoke if g.object_type != "LARGE OBJECT"]
    to_grant = [g for g in to_grant if g.object_type != "LARGE OBJECT"]
    return [
        *(_grant_item(g, "revoke") for g in group(to_revoke)),
        *(_grant_item(g, "grant") for g in group(to_grant)),
    ]


def large_object_items(spec: Spec, snap: Snapshot, policy: LockPolicy) -> list[Item]:
    """Privileges on large objects, per owner, grantee and verb: all of the owner's objects at
    once, found on the server and changed in batches of their own transactions (there may be
    millions; sql_templates/large_object_privileges.sql.j2), after the database transaction."""
    to_revoke, to_grant = diff(wanted_grants(spec, snap), current_grants(spec, snap))
    items = []
    for verb, grants in (("revoke", to_revoke), ("grant", to_grant)):
        chosen = [g for g in grants if g.object_type == "LARGE OBJECT"]
        for g in group([g for g in chosen if not _out_of_reach(snap, g)]):
            items.append(
                make_item(
                    f"{verb} {g.describe()}",
                    "large_object_privileges.sql.j2",
                    batch=LARGE_OBJECT_BATCH,
                    **_verb_lists(g, verb),
                    **retry_context(policy),
                )
            )
    return items


def _verb_lists(grant: GrantGroup, verb: str) -> dict[str, list[GrantGroup]]:
    """The privilege templates' context: ``grant`` in the list its verb names."""
    return {
        "revoke": [grant] if verb == "revoke" else [],
        "grant": [grant] if verb == "grant" else [],
    }


def _grant_item(grant: GrantGroup, verb: str) -> Item:
    lists = _verb_lists(grant, verb)
    if grant.object_type == "DEFAULT":
        return make_item(f"{verb} {grant.describe()}", "default_privileges.sql.j2", **lists)
    if grant.grantee == PUBLIC:
        what = "loses" if verb == "revoke" else "gets"
        privileges = ", ".join(grant.privileges)
        on = grant.object_text()
        # Column and function privileges need their own syntax; privileges.sql.j2 has it.
        template = (
            "privileges.sql.j2"
            if grant.object_type in ("COLUMN", "FUNCTION")
            else "hardening.sql.j2"
        )
        return make_item(f"PUBLIC {what} {privileges} on {on}", template, **lists)
    return make_item(f"{verb} {grant.describe()}", "privileges.sql.j2", **lists)


def predefined_notice(spec: Spec, snap: Snapshot) -> str | None:
    """One line naming the predefined-role memberships the admin may neither revoke nor grant
    (no ADMIN OPTION on the predefined role; CREATEROLE is not enough on 16+); None if none."""
    out_of_reach = predefined_out_of_reach(snap)
    left = sorted(
        {
            f"{p.member} in {p.role}"
            for p in undeclared_predefined(spec, snap)
            if p.role in out_of_reach
        }
        | {f"{m} in {r}" for m, r in missing_predefined(spec, snap) if r in out_of_reach}
    )
    if not left:
        return None
    return (
        f"the admin {snap.current_user} may not grant or revoke predefined roles without "
        f"ADMIN OPTION on them, so it leaves the memberships of {', '.join(left)}; the audit "
        "names them"
    )


def predefined_through_notice(spec: Spec, snap: Snapshot) -> str | None:
    """One line naming the roles in scope that reach a predefined role through a group the
    deploy leaves (not in scope: its other members would lose the role too); None if none."""
    scope = predefined_scope(spec, snap)
    left = sorted(
        f"{p.member} reaches {p.role} through {p.via}"
        for p in predefined_through_groups(spec, snap)
        if p.via not in scope
    )
    if not left:
        return None
    return (
        f"{'; '.join(left)}: the deploy leaves these groups' memberships (revoking one changes "
        "its other members' access) and the audit names them; revoke them, or declare them in "
        "pg_predefined_roles"
    )


def _superusers_only(grant: Grant) -> bool:
    """Privileges only a superuser may revoke: on parameters, and on pg_catalog's functions
    (their owner is the bootstrap superuser)."""
    return grant.object_type == "PARAMETER" or (
        grant.object_type == "FUNCTION" and grant.schema == "pg_catalog"
    )


def _out_of_reach(snap: Snapshot, grant: Grant) -> bool:
    """A privilege the admin may not revoke: another role's default privileges it cannot SET
    ROLE to; a parameter's or a system function's, unless it is a superuser; one on large
    objects whose owner's privileges it does not have."""
    if grant.object_type == "DEFAULT":
        return grant.name in defaults_out_of_reach(snap)
    if grant.object_type == "LARGE OBJECT" and not snap.is_superuser:
        owner = snap.roles.get(grant.name)
        return owner is None or not owner.admin_can_use
    return _superusers_only(grant) and not snap.is_superuser


def parameters_notice(spec: Spec, snap: Snapshot) -> str | None:
    """One line naming the privileges on parameters and pg_catalog's functions a non-superuser
    admin leaves; None if none."""
    to_revoke, _ = diff(wanted_grants(spec, snap), current_grants(spec, snap))
    left = sorted(
        f"{g.privilege} on {g.object_text() if g.object_type == 'FUNCTION' else g.name} "
        f"for {display_grantee(g.grantee)}"
        for g in to_revoke
        if _superusers_only(g) and _out_of_reach(snap, g)
    )
    if not left:
        return None
    return (
        f"the admin {snap.current_user} is no superuser and may not revoke privileges on "
        f"parameters or pg_catalog's functions: {'; '.join(left)} are left and the audit names "
        "them"
    )


def kept_notices(spec: Spec, snap: Snapshot) -> list[str]:
    """One line per kind of object that holds data or feeds another system (``access.kept``)
    naming those nobody declared: left for a person, never dropped."""
    notices = []
    for kind in KEPT:
        left = undeclared(kind, spec, snap)
        if left:
            notices.append(
                f"{kind.plural} nobody declared in {kind.key} are left for a person ({kind.why}) "
                f"and the audit names them: {'; '.join(k.summary for k in left)}"
            )
    return notices


def large_objects_notice(spec: Spec, snap: Snapshot) -> str | None:
    """One line naming the privileges on large objects the admin may not revoke (it does not
    have their owner's privileges); None if none."""
    to_revoke, _ = diff(wanted_grants(spec, snap), current_grants(spec, snap))
    kept = sorted(
        g.describe()
        for g in to_revoke
        if g.object_type == "LARGE OBJECT" and _out_of_reach(snap, g)
    )
    if not kept:
        return None
    return (
        f"the admin {snap.current_user} does not have the owners' privileges and leaves "
        f"{'; '.join(kept)}; the audit names them"
    )


def defaults_notice(spec: Spec, snap: Snapshot) -> str | None:
    """One line naming the roles whose undeclared default privileges the admin may not revoke
    (it cannot SET ROLE to them); None when there are none."""
    out_of_reach = defaults_out_of_reach(snap)
    to_revoke, _ = diff(wanted_grants(spec, snap), current_grants(spec, snap))
    roles = sorted(
        {g.name for g in to_revoke if g.object_type == "DEFAULT" and g.name in out_of_reach}
    )
    if not roles:
        return None
    return (
        f"the admin {snap.current_user} may not alter the default privileges of "
        f"{', '.join(roles)} (it cannot SET ROLE to them): they are left and the audit names "
        "them; grant the admin that role, or revoke them as it"
    )


def quiet_settings(snap: Snapshot) -> list[QuietSetting]:
    """The settings the admin may set to keep a verifier out of the logs, as the snapshot found
    them (has_parameter_privilege); every one for a superuser when the snapshot has no word."""
    if not snap.quiet:
        return list(QUIET) if snap.is_superuser else []
    return [s for s in QUIET if s.name in snap.quiet and snap.quiet[s.name].may_set]


def quiet_notice(spec: Spec, snap: Snapshot) -> str | None:
    """One line naming what may log a statement carrying a verifier because the admin may not
    switch it off (a managed service's own pgaudit, say); None when nothing may."""
    loud = [
        s
        for s in QUIET
        if s.always
        and s.name in snap.quiet
        and not snap.quiet[s.name].may_set
        and logs(s, snap.quiet[s.name].current)
    ]
    if not loud:
        return None
    what = ", ".join(
        f"{s.name} = {snap.quiet[s.name].current!r}{f' ({s.extension} is loaded)' if s.extension else ''}"
        for s in loud
    )
    return (
        f"{spec.inventory}: host {spec.host}: the admin {snap.current_user} may not set {what}: "
        "this run's CREATE/ALTER ROLE ... PASSWORD statements may reach those logs with their "
        "SCRAM verifier (never the plaintext); restrict who reads them, or GRANT SET ON "
        "PARAMETER to the admin"
    )


def code_items(spec: Spec, snap: Snapshot) -> list[Item]:
    """Foreign triggers, rules and routines, dropped before any owner changes; a routine that
    something else uses is ``code_problem``'s (the deploy stops before planning)."""
    foreign = foreign_code(spec, snap)
    items = []
    for t in foreign.triggers:
        schema, name, args = t.function
        items.append(
            make_item(
                f"drop trigger {t.name} on {t.schema}.{t.table}: it runs {schema}.{name}({args}) "
                f"owned by {t.function_owner}, code this deploy does not trust",
                "code.sql.j2",
                triggers=[t],
                rules=[],
                routines=[],
            )
        )
    for r in foreign.rules:
        items.append(
            make_item(
                f"drop rule {r.name} on {r.schema}.{r.table}: {r.table_owner} made it on its table",
                "code.sql.j2",
                triggers=[],
                rules=[r],
                routines=[],
            )
        )
    for fn in foreign.droppable_routines:
        items.append(
            make_item(
                f"drop routine {fn.signature} owned by {fn.owner} (never handed to a managed role)",
                "code.sql.j2",
                triggers=[],
                rules=[],
                routines=[fn],
            )
        )
    return items


def notices(spec: Spec, snap: Snapshot) -> list[str]:
    """What the deploy leaves and says so, one line each: what the admin may not change, and
    objects nobody declared that are left for a person."""
    lines = (
        defaults_notice(spec, snap),
        predefined_notice(spec, snap),
        predefined_through_notice(spec, snap),
        parameters_notice(spec, snap),
        large_objects_notice(spec, snap),
        *kept_notices(spec, snap),
    )
    return [line for line in lines if line]


def build_plan(
    spec: Spec,
    snap: Snapshot,
    policy: LockPolicy,
    verifier_for: Callable[[str], str],
    password_matches: Callable[[str, StoredPassword | None], bool],
) -> Plan:
    """Everything the environment needs, in the order PostgreSQL needs it."""
    plan = Plan(spec=spec, policy=policy, quiet=tuple(quiet_settings(snap)))
    plan.roles = role_items(spec, snap, verifier_for, password_matches)
    plan.create_database, owner_fix = database_items(spec, snap)
    plan.database = [
        *code_items(spec, snap),
        *owner_fix,
        *setting_items(spec, snap),
        *schema_items(spec, snap),
        *grant_items(spec, snap),
        *row_security_items(spec, snap),
    ]
    plan.batches = large_object_items(spec, snap, policy)
    return plan


def row_security_items(spec: Spec, snap: Snapshot) -> list[Item]:
    """Undeclared policies on app tables dropped, then row-level security switched off."""
    tables, policies = undeclared_row_security(spec, snap)
    items = [
        make_item(
            f"drop policy {p.name} on {p.schema}.{p.table} (row-level security nobody declared)",
            "row_security.sql.j2",
            policies=[p],
            tables=[],
        )
        for p in policies
    ]
    for t in tables:
        how = (
            "enabled and forced"
            if t.rls and t.force_rls
            else "forced"
            if t.force_rls
            else "enabled"
        )
        items.append(
            make_item(
                f"disable row-level security on {t.schema}.{t.name} ({how}, nobody declared it)",
                "row_security.sql.j2",
                policies=[],
                tables=[t],
            )
        )
    return items
