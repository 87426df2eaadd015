"""``pgprov-plan``: the deploy's dry-run plan for every host of an inventory, as a CI artifact.

It drives pyinfra itself (its API, in dry mode: connect, then prepare the same deploy as
``pyinfra --dry INVENTORY deploy/provision.py``), so SSH targets, ``@db/<name>`` hosts and
``@local`` are planned exactly as a deploy would see them; nothing is executed. Each host's
items are what the operations announce (``pgprov.steps.operations.announce``): one sentence and the
SQL with passwords masked; pending migrations are listed by file name.

    pgprov-plan inventories/staging.py [--limit HOST] [--format text|markdown|json] [--output FILE]

Exit codes: 0 every host converged, 1 changes pending, 2 error (a bad inventory, an
unreachable host or server, a bad key: one line on stderr naming inventory and host).

JSON shape (``--format json``)::

    {
      "inventory": "inventories/staging.py",
      "summary": {"hosts": 2, "changed": 1, "converged": 1, "errors": 0, "changes": 14},
      "hosts": [
        {
          "host": "db1.staging.example.com",
          "status": "changes",              # "changes" | "converged" | "error"
          "database": "hinfelaar_fastapi",  # null when the spec could not be built
          "admin": "sudo -u postgres (peer) at local socket:5432",
          "error": null,                    # the one line, when status is "error"
          "pending_migrations": ["0_20250101000000_init.py"],
          "changes": [
            {"step": "provision",           # "provision" | "migrate" | "gin_index"
             "description": "create role app_runtime (LOGIN, INHERIT) with a ...",
             "sql": "CREATE ROLE \\"app_runtime\\" ... PASSWORD '********';\\n"}
          ],
          "notices": []                     # one line each: what may log a verifier, say
        }
      ]
    }

``sql`` is the masked display form; it is empty for a migration (Aerich runs the file).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pgprov.audit.report import exit_code, write_output

FORMATS = ("text", "markdown", "json")
Status = Literal["changes", "converged", "error"]


@dataclass
class Change:
    step: str
    description: str
    sql: str


@dataclass
class HostPlan:
    host: str
    status: Status = "converged"
    database: str | None = None
    admin: str | None = None
    error: str | None = None
    pending_migrations: list[str] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)  # one line each (e.g. what may log a verifier)


@dataclass
class PlanReport:
    inventory: str
    hosts: list[HostPlan]

    def count(self, status: Status) -> int:
        return sum(1 for h in self.hosts if h.status == status)

    @property
    def changes(self) -> int:
        return sum(len(h.changes) for h in self.hosts)

    @property
    def exit_code(self) -> int:
        if self.count("error"):
            return 2
        return 1 if self.count("changes") else 0

    def summary(self) -> str:
        hosts = len(self.hosts)
        parts = [
            f"{self.changes} change{'s' if self.changes != 1 else ''} on "
            f"{self.count('changes')} of {hosts} host{'s' if hosts != 1 else ''}",
            f"{self.count('converged')} converged",
        ]
        if self.count("error"):
            parts.append(f"{self.count('error')} failed")
        return "Plan: " + ", ".join(parts) + "."


class PlanError(RuntimeError):
    """The plan cannot be made at all (bad inventory, --limit matching nothing): one line."""


def _no_changes(host: HostPlan) -> str:
    return f"{host.host}: No changes (database {host.database} is as declared)"


def _host_title(host: HostPlan) -> str:
    if host.status == "error":
        return f"{host.host}: ERROR"
    n = len(host.changes)
    return f"{host.host}: {n} change{'s' if n != 1 else ''} to database {host.database} as {host.admin}"


def render_text(report: PlanReport) -> str:
    """The summary, one block per host with work or an error, then one "No changes" line per
    converged host (the plan ends with them)."""
    lines: list[str] = [report.summary()]
    for host in report.hosts:
        if host.status == "converged":
            continue
        lines.append(_host_title(host))
        if host.status == "error":
            lines.append(f"    {host.error}")
            continue
        for change in host.changes:
            lines.append(f"  + {change.description}")
            lines.extend(f"      {line}" for line in change.sql.rstrip("\n").splitlines())
    lines += [_no_changes(host) for host in report.hosts if host.status == "converged"]
    return "\n".join(lines) + "\n"


def render_markdown(report: PlanReport) -> str:
    """A pull-request comment: a summary line, then one section per host."""
    lines = [f"## pgprov plan: `{report.inventory}`", "", f"**{report.summary()}**", ""]
    for host in report.hosts:
        if host.status == "converged":
            lines += [
                f"### `{host.host}`: no changes",
                "",
                f"Database `{host.database}` is as declared.",
                "",
            ]
            continue
        if host.status == "error":
            lines += [f"### `{host.host}`: error", "", "```text", str(host.error), "```", ""]
            continue
        n = len(host.changes)
        lines += [
            f"### `{host.host}`: {n} change{'s' if n != 1 else ''}",
            "",
            f"Database `{host.database}`, as {host.admin}.",
            "",
        ]
        if host.pending_migrations:
            names = ", ".join(f"`{name}`" for name in host.pending_migrations)
            lines += [f"Pending migrations: {names}", ""]
        for number, change in enumerate(host.changes, 1):
            lines += [f"{number}. {change.description}", ""]
            if change.sql.strip():
                lines += ["```sql", change.sql.rstrip("\n"), "```", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def render_json(report: PlanReport) -> str:
    document = {
        "inventory": report.inventory,
        "summary": {
            "hosts": len(report.hosts),
            "changed": report.count("changes"),
            "converged": report.count("converged"),
            "errors": report.count("error"),
            "changes": report.changes,
        },
        "hosts": [asdict(host) for host in report.hosts],
    }
    return json.dumps(document, indent=2) + "\n"


RENDERERS = {"text": render_text, "markdown": render_markdown, "json": render_json}


def _step(key: str) -> str:
    return key.split(":", 1)[0]


def make_plan(inventory: str, limit: str | None = None) -> PlanReport:
    """Connect to every host (or the ``limit`` host/group) and prepare the deploy, in dry mode."""
    path = Path(inventory)
    if not path.is_file():
        raise PlanError(f"{inventory}: no such inventory file")
    # Imported here: pyinfra and the deploy are heavy, and the renderers need neither. The CLI
    # package first: importing it applies gevent's monkey patching, as `pyinfra` itself does,
    # before anything else imports ssl or socket.
    import pyinfra_cli  # noqa: F401

    # isort: split
    from pgprov.model.inventory import InventoryError, read_inventory
    from pgprov.steps.environment import environment, load_inputs, load_spec
    from pgprov.steps.plan import HostRun
    from pyinfra import logger as pyinfra_logger
    from pyinfra.api import Config, Inventory, State
    from pyinfra.api.connect import connect_all, disconnect_all
    from pyinfra.api.deploy import add_deploy
    from pyinfra.api.exceptions import PyinfraError
    from pyinfra.api.state import BaseStateCallback, StateStage
    from pyinfra.context import ctx_host, ctx_state

    # pyinfra's log is the console view of a deploy; the report replaces it, and an error
    # reaches the user once, through the report and its one line.
    pyinfra_logger.addHandler(logging.NullHandler())
    pyinfra_logger.propagate = False

    state = State(check_for_changes=True)
    try:
        # The one loader of every command (pgprov.model.inventory), handed to pyinfra as its
        # CLI would hand it.
        read = read_inventory(path)
        names_data, groups = read.pyinfra_arguments()
        pyinfra_inventory = Inventory(names_data, **groups)
        chosen = read.select(limit)
    except InventoryError as exc:
        raise PlanError(str(exc)) from None
    except Exception as exc:  # any error in the user's inventory file is reported, in one line
        raise PlanError(f"{inventory}: cannot load the inventory: {exc}") from None
    hosts = [pyinfra_inventory.get_host(name) for name in chosen]

    connect_errors: dict[str, str] = {}

    class Callbacks(BaseStateCallback):
        @staticmethod
        def host_connect_error(state: Any, host: Any, error: Any) -> None:
            connect_errors[host.name] = str(error.args[0] if error.args else error)

    state.init(pyinfra_inventory, Config(), initial_limit=hosts)
    state.add_callback_handler(Callbacks())
    plans = {h.name: HostPlan(h.name) for h in hosts}
    try:
        state.set_stage(StateStage.Connect)
        # Every host failing to connect raises; each has its own line below.
        with contextlib.suppress(PyinfraError):
            connect_all(state)
        state.set_stage(StateStage.Prepare)
        for host in hosts:
            plan = plans[host.name]
            where = f"{inventory}: host {host.name}"
            if host.name in connect_errors or not host.connected:
                plan.status = "error"
                plan.error = (
                    f"{where}: cannot connect: {connect_errors.get(host.name, 'no reason given')}"
                )
                continue
            with ctx_state.use(state), ctx_host.use(host):
                try:
                    spec = load_spec()
                    inputs = load_inputs(spec)
                except PyinfraError as exc:
                    plan.status, plan.error = "error", str(exc)
                    continue
                plan.database, plan.admin = spec.database, spec.admin.describe()
                where = f"{spec.inventory}: host {host.name}"
                run = HostRun()
                try:
                    add_deploy(state, environment, spec=spec, inputs=inputs, run=run, host=host)
                except PyinfraError as exc:
                    # fail_hosts raises once no host is left; the host's own line was recorded.
                    if not run.errors:
                        plan.status, plan.error = "error", f"{where}: {exc}"
                        continue
                if run.errors:
                    plan.status, plan.error = "error", f"{where}: {run.errors[0]}"
                    continue
                plan.changes = [
                    Change(_step(key), item.description, item.display) for key, item in run.items
                ]
                plan.pending_migrations = run.pending_migrations
                plan.notices = run.notices
                plan.status = "changes" if plan.changes else "converged"
    finally:
        disconnect_all(state)
    return PlanReport(inventory, [plans[h.name] for h in hosts])


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pgprov-plan",
        description="The deploy's plan (pyinfra --dry) for every host; exit 0 nothing to do, "
        "1 changes pending, 2 error.",
    )
    parser.add_argument("inventory", help="a pyinfra inventory file, e.g. inventories/staging.py")
    parser.add_argument("--limit", help="a group of the inventory, or a glob of host names")
    parser.add_argument("--format", choices=FORMATS, default="text")
    parser.add_argument("--output", type=Path, help="write the plan here (else stdout)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return exit_code("pgprov-plan", lambda: _plan(args))


def _plan(args: argparse.Namespace) -> int:
    try:
        report = make_plan(args.inventory, args.limit)
    except PlanError as exc:
        print(exc, file=sys.stderr)
        return 2
    for host in report.hosts:
        for notice in host.notices:
            print(notice, file=sys.stderr)
    text = RENDERERS[args.format](report)
    if args.output:
        if not write_output(args.output, text):
            return 2
        # The CI log still shows the outcome per host; an error is its one line, on stderr.
        for host in report.hosts:
            if host.error:
                print(host.error, file=sys.stderr)
            elif host.status == "converged":
                print(_no_changes(host))
            elif host.status == "changes":
                print(_host_title(host))
        print(report.summary())
    else:
        sys.stdout.write(text)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
