"""The object kinds pgprov knows: one registered entry per kind, the one place to add one.

Each entry names its catalog query (``sql_templates/kinds/<section>.sql.j2``, one JSON line
per kind inside the snapshot's single psql session, so a converged run stays one round trip),
the privileges the server knows on it, and the words the plan and the audit use. The snapshot
(``catalog/facts.py`` renders every entry's query, ``catalog/state.py`` parses the lines), the
access model (``access/privileges.py``: who holds what, who owns what), the plan and the audit
all iterate over ``KINDS``; none lists kinds of its own.

A *generic* kind needs nothing but its entry and its query: each row is an object with
``schema`` (null for a database-wide kind), ``name``, ``owner``, ``keyword`` (what GRANT ... ON
and ALTER ... OWNER TO take: ``TYPE``, ``DOMAIN``, ``FOREIGN SERVER``, ...), ``args`` and
``acl`` (aclexplode rows, PUBLIC as null), read into ``catalog.state.ObjectState``. Unless the
kind says ``owned=False``, its objects belong to the owner role (those outside the app's schema
may stay with the admin or a ``pg_privileged_roles`` role); privileges on them that nobody
declared are revoked, but for ``public_default``, what PostgreSQL grants PUBLIC on every new
object of the kind, which stays as it is. The kinds read before the registry (schemas,
relations, functions) keep their own rows and rules (ownership of sequences that follow their
table, foreign code, PUBLIC's EXECUTE); their queries moved here. Row-level security policies
are read here too and judged in ``access/privileges.py`` (``undeclared_row_security``).

To add a kind: an entry below and its query. Nothing else changes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    section: str  # the snapshot's JSON key, and the query's file name
    noun: str  # how plans and audit rows name one object ("type")
    privileges: tuple[str, ...]  # what the server knows on it
    generic: bool = True  # rows read into ObjectState, judged by the rules above
    public_default: tuple[str, ...] = ()  # PUBLIC's built-in privileges, left as they are
    owned: bool = True  # owners repaired (not an FDW's: only a superuser may own one)
    # Cluster-wide: judged only for the managed roles, the readers and the roles holding a
    # privilege in this database (a parameter's SET, say); the rest is another database's.
    cluster_wide: bool = False
    # Grants to the admin and pg_privileged_roles are theirs (a managed provider grants its own
    # role system functions); they bypass privileges anyway.
    privileged_left: bool = False

    @property
    def template(self) -> str:
        return f"kinds/{self.section}.sql.j2"


KINDS: tuple[Kind, ...] = (
    Kind("schemas", "schema", ("USAGE", "CREATE"), generic=False),
    Kind(
        "relations",
        "table",
        ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER", "MAINTAIN"),
        generic=False,
    ),
    Kind("columns", "column", ("SELECT", "INSERT", "UPDATE", "REFERENCES"), generic=False),
    Kind("functions", "function", ("EXECUTE",), generic=False),
    # Row-level security policies: no owner, no ACL; the deploy declares none, so every one
    # on an app table goes (pgprov.access.privileges.undeclared_row_security).
    Kind("policies", "policy", (), generic=False),
    # Publications feed other systems (CDC): never dropped; undeclared ones are named by the
    # audit and left for a person (pgprov.access.kept, as every kind that holds data).
    Kind("publications", "publication", (), generic=False),
    # Subscriptions (another system's feed) and user mappings (credentials of foreign tables):
    # the same; their connection strings and options, which carry passwords, are never read.
    Kind("subscriptions", "subscription", (), generic=False),
    Kind("user_mappings", "user mapping", (), generic=False),
    # Large objects hold data: never unlinked. Read aggregated per owner (an application may
    # hold millions); owners nobody declared are named and left for a person (access.kept),
    # undeclared privileges revoked on all of an owner's objects at once (access.privileges).
    Kind("large_objects", "large object", ("SELECT", "UPDATE"), generic=False),
    # Base, composite, enum and range types and domains; not a table's row type, an array
    # type or a multirange, which follow the object they belong to.
    Kind("types", "type", ("USAGE",), public_default=("USAGE",)),
    # Database-wide (no schema): only the privileges on them are judged.
    Kind("foreign_data_wrappers", "foreign data wrapper", ("USAGE",), owned=False),
    Kind("foreign_servers", "foreign server", ("USAGE",), owned=False),
    Kind("parameters", "parameter", ("SET", "ALTER SYSTEM"), owned=False, cluster_wide=True),
    # pg_catalog's functions: only the privileges granted since initdb (pg_init_privs), such as
    # EXECUTE on lo_export or pg_read_file (the server's files); revoked, owner left alone.
    Kind("system_functions", "function", ("EXECUTE",), owned=False, privileged_left=True),
)

BY_SECTION = {kind.section: kind for kind in KINDS}

# Default privileges (pg_default_acl.defaclobjtype -> ALTER DEFAULT PRIVILEGES' word) of every
# object type a server knows (LARGE OBJECTS from PostgreSQL 18), and what PostgreSQL gives PUBLIC
# on each new object of that type unless told otherwise (left as it is but for the managed
# roles' functions: PUBLIC may not EXECUTE what the migrator creates).
DEFAULT_OBJECTS = {
    "r": "TABLES", "S": "SEQUENCES", "f": "FUNCTIONS", "T": "TYPES", "n": "SCHEMAS",
    "L": "LARGE OBJECTS",
}  # fmt: skip
DEFAULT_PUBLIC = {"f": ("EXECUTE",), "T": ("USAGE",)}
GENERIC = tuple(kind for kind in KINDS if kind.generic)
