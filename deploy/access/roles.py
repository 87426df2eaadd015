"""The managed roles: the attributes each has, and which roles pgprov may manage at all.

Every managed login role has LOGIN and INHERIT and none of SUPERUSER, CREATEROLE, REPLICATION
and BYPASSRLS; only the single_user owner may have CREATEDB (``wanted_attributes``, which the
plan repairs towards and the audit compares with).

A managed role (migrator, runtime, app user) or a reader is refused before any statement is
sent when, in the live catalog, it is the role the deploy connects as, or it exists with
SUPERUSER, CREATEROLE, BYPASSRLS or REPLICATION and carries no mark of pgprov's. Otherwise a
typo in ``pg_migrator`` would demote a DBA's superuser to NOSUPERUSER, or an inventory could
hand the admin's identity to the application. (Predefined ``pg_*`` names, two keys naming one
role and ``pg_privileged_roles`` naming a managed role are refused by the spec already.)

The mark tells a managed role that drifted to SUPERUSER (repaired, as any drift) from a
superuser pgprov never managed (refused): ``COMMENT ON ROLE ... IS 'pgprov: managed role'``,
set when pgprov creates a role and on the next deploy of an environment created before.
No managed role can forge it: commenting on a role needs CREATEROLE (ADMIN OPTION on it on
16+), and only a superuser may comment on a superuser.

    problem = identity_problem(spec, snap)   # None, or one line naming inventory, host, key
"""

from __future__ import annotations

from pgprov.catalog.state import RoleState, Snapshot
from pgprov.model.spec import Spec

MANAGED_MARK = "pgprov: managed role"
POWERFUL_ATTRIBUTES = ("superuser", "createrole", "bypassrls", "replication")


def wanted_attributes(spec: Spec, role: str) -> dict[str, bool]:
    """Each role attribute of a managed login role, as declared."""
    return {
        "superuser": False,
        "createdb": spec.createdb and role == spec.owner,
        "createrole": False,
        "replication": False,
        "bypassrls": False,
        "login": True,
        "inherit": True,
    }


def declared_roles(spec: Spec) -> list[str]:
    """Every role the deploy creates or alters: the managed login roles, then the readers."""
    return [*spec.roles, *spec.readers]


def is_marked(role: RoleState) -> bool:
    return role.comment == MANAGED_MARK


def identity_problem(spec: Spec, snap: Snapshot) -> str | None:
    """The first declared role the deploy must not manage, as one line; None when all may be."""
    for name in declared_roles(spec):
        where = f"{spec.inventory}: host {spec.host}: {spec.role_key(name)}"
        if name == snap.current_user:
            return (
                f"{where}: {name} is the admin this deploy connects as; a managed role must be "
                "a role of its own (nothing was changed)"
            )
        role = snap.roles.get(name)
        if role is None or is_marked(role):
            continue
        powers = [a.upper() for a in POWERFUL_ATTRIBUTES if getattr(role, a)]
        if powers:
            return (
                f"{where}: role {name} already exists with {', '.join(powers)} and pgprov does "
                "not manage it; refusing to take it over (choose another name, or remove "
                f"{', '.join(powers)} from it first; nothing was changed)"
            )
    return None
