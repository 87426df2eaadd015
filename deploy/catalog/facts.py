"""pyinfra facts: ONE catalog snapshot query per database, returned as a typed ``Snapshot``.

The query (sql_templates/inspect.sql.j2) is a single psql session fed on stdin: cluster-wide
state from the maintenance database, then ``\\connect`` to the environment's database when
it exists. Callers go through ``snapshot(host, spec, admin)``, which runs the fact once per host and
run: pyinfra calls operation generators twice (to detect changes, then to execute), and a
converged deploy must cost exactly one round trip.

    snap = snapshot(host, spec, credentials.admin)
    if snap.database is None: ...
"""

from __future__ import annotations

import dataclasses
import json
import weakref
from dataclasses import dataclass
from typing import Any

from pgprov.catalog.kinds import KINDS
from pgprov.catalog.psql import Stdin, local_psql, shell_command, stdin_for
from pgprov.catalog.state import Snapshot, SnapshotError
from pgprov.model.secrets import Secret, new_password_key
from pgprov.model.spec import GIN_INDEX, GIN_TABLE, Spec
from pgprov.sql.locks import session_setup
from pgprov.sql.quiet import QUIET
from pgprov.sql.render import render
from pyinfra.api import FactBase
from pyinfra.api.exceptions import FactProcessError

_RUN_MEMORY: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


class CatalogSnapshot(FactBase):
    """The catalog state of one environment's database (roles, ACLs, default ACLs, indexes,
    applied migrations), read in one psql session. The script arrives on stdin.

    .. code:: python

        host.get_fact(CatalogSnapshot, command_line="psql -X ... -f -", _stdin=script)
    """

    def command(self, command_line: str) -> str:
        # psql's own errors and exit status come back as output, so a host that cannot be
        # read is reported once, by the deploy, in one line (not by pyinfra in three).
        return f"{command_line} 2>&1; echo {EXIT_MARKER}$?"

    def process(self, output: list[str]) -> Snapshot | Unreadable:
        status = next((line for line in reversed(output) if line.startswith(EXIT_MARKER)), None)
        lines = [line for line in output if not line.startswith(EXIT_MARKER)]
        if status != f"{EXIT_MARKER}0":
            messages = [line.strip() for line in lines if line.strip() and not line.startswith("{")]
            return Unreadable(" ".join(messages) or "psql failed without a message")
        try:
            return Snapshot.parse(line for line in lines if line.startswith("{"))
        except SnapshotError as exc:
            raise FactProcessError(str(exc)) from exc


EXIT_MARKER = "__pgprov_psql_exit="


@dataclass(frozen=True)
class Unreadable:
    """The catalog could not be read: psql's message, folded to one line."""

    message: str


def inspect_script(spec: Spec, password_key: str | None = None) -> str:
    """The snapshot query; ``password_key`` keys the stored passwords' digests (random if None:
    callers that compare passwords pass their own and keep it)."""
    return render(
        "inspect.sql.j2",
        password_key=password_key or new_password_key(),
        roles=spec.roles,
        readers=list(spec.readers),
        database=spec.database,
        schema=spec.schema_name,
        index_names=[GIN_INDEX, GIN_INDEX + "_new"],
        gin_table=GIN_TABLE,
        settings_input=check_input(spec),
        quiet_settings=QUIET,
        kinds=KINDS,
    )


def check_input(spec: Spec) -> str | None:
    """The JSON the snapshot's settings check reads (None: nothing declared, no check)."""
    values = sorted(
        {
            (name, value)
            for settings in spec.declared_settings().values()
            for name, value in settings.items()
        }
    )
    if not values:
        return None
    return json.dumps(
        {"roles": spec.roles, "database": spec.database, "values": [list(v) for v in values]}
    )


def is_local(host: Any) -> bool:
    from pyinfra.connectors.local import LocalConnector

    return isinstance(host.connector, LocalConnector)


def connection_args(
    host: Any, spec: Spec, script: str, *, admin: Secret | None, dbname: str | None = None
) -> dict[str, Any]:
    """command line + stdin (+ sudo) for one psql session on this host; ``admin`` is the
    run's admin password (``Credentials.admin``), sent on stdin where psql cannot find it."""
    password = None
    if not spec.admin.sudo_user and (spec.admin.password is not None or not is_local(host)):
        password = admin
    admin_connection = spec.admin
    psql = local_psql() if is_local(host) and spec.psql == "psql" else spec.psql
    # What this run's snapshot learned of event_triggers; before it, the session probes.
    known = run_memory(host, "snapshots", dict).get(spec.database)
    args: dict[str, Any] = {
        "command_line": shell_command(
            admin_connection,
            password_on_stdin=password is not None,
            dbname=dbname,
            psql=psql,
            event_triggers_off=known.event_triggers_off if isinstance(known, Snapshot) else None,
        ),
        "_stdin": Stdin(stdin_for(script, password)),
    }
    if admin_connection.sudo_user:
        args.update(_sudo=True, _sudo_user=admin_connection.sudo_user)
    return args


def run_memory(host: Any, name: str, factory: Any) -> Any:
    """Per-host, per-run memory (a run has its own Host objects; pyinfra's ``host`` is a proxy)."""
    real = host._get_module() if hasattr(host, "_get_module") else host
    return _RUN_MEMORY.setdefault(real, {}).setdefault(name, factory())


def snapshot(
    host: Any, spec: Spec, admin: Secret | None, *, refresh: bool = False
) -> Snapshot | Unreadable | None:
    """The host's snapshot for this run (queried once; ``refresh`` forces a new query);
    ``admin`` is the run's admin password (see ``connection_args``).

    ``Unreadable`` carries psql's error; None means the command could not run at all.
    """
    cache: dict[str, Snapshot | Unreadable | None] = run_memory(host, "snapshots", dict)
    if refresh or spec.database not in cache:
        key = new_password_key()
        # Recognisable in pg_stat_activity as the deploy's (deploy/sql/locks.py).
        args = connection_args(host, spec, session_setup() + inspect_script(spec, key), admin=admin)
        snap = host.get_fact(CatalogSnapshot, _ignore_errors=True, **args)
        if isinstance(snap, Snapshot):
            snap = dataclasses.replace(snap, password_key=key)
        cache[spec.database] = snap
    return cache[spec.database]
