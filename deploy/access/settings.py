"""Role settings as code: the server settings (GUCs) and connection limits of the managed roles,
declared against what the catalog holds, compared the way the server normalises values.

One definition for the deploy (``plan.setting_items``, ``plan.role_items``) and the audit:
every declared setting lives in the environment's database (``ALTER ROLE ... IN DATABASE ...
SET``, like search_path); any other setting of a managed role in that database, or set for it
role-wide, is undeclared and reset; other databases' settings are left alone. A connection
limit is a role attribute; an undeclared one is -1 (none).

    problem = settings_problem(spec, snap)     # the server rejects a declared value: one line
    for row in setting_rows(spec, snap):       # declared vs actual, one row per setting
        if not row.in_sync: ...
"""

from __future__ import annotations

from dataclasses import dataclass

from pgprov.catalog.state import RoleState, Snapshot
from pgprov.model.spec import Spec

SEARCH_PATH = "search_path"
ROLE_WIDE = ""  # how the snapshot keys settings stored for all databases (setdatabase = 0)
PER_ROLE_CONTEXTS = frozenset({"user", "superuser"})  # what ALTER ROLE ... SET may change
NOT_SET = "(not set)"
UNLIMITED = -1


def wanted_connection_limit(spec: Spec, role: str) -> int:
    for which in spec.logical_roles:
        if getattr(spec, which) == role:
            return spec.connection_limits.get(which, UNLIMITED)
    return UNLIMITED


def describe_limit(limit: int) -> str:
    return "none" if limit == UNLIMITED else str(limit)


def settings_problem(spec: Spec, snap: Snapshot) -> str | None:
    """The first declared setting the server does not accept as a role default: one line
    naming the inventory, the host and the key (None when every value passed)."""
    for which in spec.logical_roles:
        for name, value in spec.role_settings.get(which, {}).items():
            reason = _rejection(snap, name, value)
            if reason:
                return (
                    f"{spec.inventory}: host {spec.host}: pg_role_settings: {which}.{name}: "
                    f"{reason}"
                )
    return None


def _rejection(snap: Snapshot, name: str, value: str) -> str | None:
    check = snap.setting_checks.get((name, value))
    if check is None:
        return "not checked by the server (the catalog snapshot has no verdict for it)"
    if check.context is None:
        return "the server has no such setting"
    if check.context not in PER_ROLE_CONTEXTS:
        return f"cannot be set per role (its context is {check.context})"
    if check.error is not None:
        return f"the server rejects {value!r}: {check.error}"
    return None


def normalise_path(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return tuple(part.strip().strip('"') for part in value.split(",") if part.strip())


@dataclass(frozen=True)
class SettingRow:
    """One setting of one role in one scope: declared against actual.

    ``database`` is None for a role-wide setting (never declared, so always reset).
    ``declared`` and ``actual`` are shown as the server normalises them, so two spellings of
    one value ('30s', '30000') compare equal. ``value`` is what SET sends (a list for
    search_path); None means RESET.
    """

    role: str
    database: str | None
    name: str
    declared: str
    actual: str
    value: str | tuple[str, ...] | None

    @property
    def in_sync(self) -> bool:
        return self.declared == self.actual

    @property
    def scope(self) -> str:
        return f"database {self.database}" if self.database else "all databases"


def _shown(snap: Snapshot, name: str, value: str | None) -> str:
    if value is None:
        return NOT_SET
    check = snap.setting_checks.get((name, value))
    return check.normalized if check and check.normalized is not None else value


def _stored(role: RoleState | None, database: str) -> list[tuple[str, str]]:
    if role is None:
        return []
    pairs = [item.partition("=") for item in role.settings.get(database, ())]
    return [(name, value) for name, _, value in pairs]


def setting_rows(spec: Spec, snap: Snapshot) -> list[SettingRow]:
    """Per managed role: search_path, each declared setting, then each undeclared one stored
    in this database, then each stored role-wide."""
    rows: list[SettingRow] = []
    db = spec.database
    for name, declared in spec.declared_settings().items():
        role = snap.roles.get(name)
        path = normalise_path(role.setting(db, SEARCH_PATH)) if role else None
        rows.append(
            SettingRow(
                name,
                db,
                SEARCH_PATH,
                ", ".join(spec.search_path),
                ", ".join(path) if path is not None else NOT_SET,
                spec.search_path,
            )
        )
        stored = dict(_stored(role, db))
        for setting, value in sorted(declared.items()):
            rows.append(
                SettingRow(
                    name,
                    db,
                    setting,
                    _shown(snap, setting, value),
                    _shown(snap, setting, stored.get(setting)),
                    value,
                )
            )
        for setting, value in _stored(role, db):
            if setting != SEARCH_PATH and setting not in declared:
                rows.append(SettingRow(name, db, setting, NOT_SET, value, None))
        for setting, value in _stored(role, ROLE_WIDE):
            rows.append(SettingRow(name, None, setting, NOT_SET, value, None))
    return rows
