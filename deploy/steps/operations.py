"""pyinfra operations: diff the spec against the catalog snapshot and yield only the SQL needed.

Each operation reads the world through ``pgprov.catalog.facts.snapshot`` (one query per run), asks
``pgprov.steps.plan`` what to change, shows every item with its one-sentence description and SQL
(passwords masked) while pyinfra prepares, and yields one psql command whose script arrives
on stdin. When nothing is needed it says why, through ``host.noop``.

    from pgprov.steps import operations
    run = HostRun()
    operations.provision(spec=spec, inputs=load_inputs(spec), run=run, name="Provision ...")
    run.items, run.errors      # what was planned for this host, and what stopped it
"""

from __future__ import annotations

import functools
from typing import Any

from pgprov.access.code import code_problem
from pgprov.access.privileges import predefined_problem
from pgprov.access.roles import identity_problem
from pgprov.access.settings import settings_problem
from pgprov.catalog.facts import Unreadable, connection_args, snapshot
from pgprov.catalog.tunnel import endpoint_problem
from pgprov.migrate.upgrade import pending_migrations, run_upgrade, warm_up
from pgprov.model.secrets import Secret, stored_password_matches
from pgprov.model.spec import Spec
from pgprov.sql.locks import LockTimeout, blockers_query, retry_on_lock_timeout
from pgprov.steps.gin import IndexPlanError, gin_items
from pgprov.steps.plan import HostInputs, HostRun, Item, build_plan, notices, quiet_notice
from pyinfra import host, logger, state
from pyinfra.api import FunctionCommand, StringCommand, operation
from pyinfra.api.state import StateStage


def announce(run: HostRun, key: str, items: list[Item], *, show_sql: bool = True) -> None:
    """Record the step's items in the host's run and print them, once per run (pyinfra may
    call a generator twice)."""
    if not run.add(key, items):
        return
    for item in items:
        logger.info(f"{host.print_prefix}  + {item.description}")
        if show_sql:
            for line in item.display.rstrip("\n").splitlines():
                logger.info(f"{host.print_prefix}      {line}")


def _fail(state, host, message: str) -> bool:
    host.log_styled(message, fg="red", log_func=logger.error)
    return False


def failure(run: HostRun, key: str, message: str) -> FunctionCommand:
    """A command that fails this host's operation with one clear line (and says so in plans)."""
    if state.current_stage == StateStage.Prepare and run.fail(key, message):
        # Plans (--dry) never execute the command: say it now, and count the host as failed
        # so a plan that cannot be made does not pass for an empty one.
        host.log_styled(message, fg="red", log_func=logger.error)
        state.fail_hosts({host._get_module() if hasattr(host, "_get_module") else host})
    return FunctionCommand(_fail, (message,), {})


def psql_command(
    spec: Spec, inputs: HostInputs, script: str, *, dbname: str | None = None
) -> StringCommand:
    args: dict[str, Any] = connection_args(
        host, spec, script, admin=inputs.credentials.admin, dbname=dbname
    )
    command_line = args.pop("command_line")
    return StringCommand(command_line, **args)


@operation(is_idempotent=True)
def provision(spec: Spec, inputs: HostInputs, run: HostRun):
    """Roles, database, schema, privileges, default privileges, search_path and hardening.

    + spec: the validated environment (``pgprov.model.spec.build_spec``)
    + inputs: the run's secrets and lock policy, resolved once (``HostInputs``)
    + run: the host's run, which receives the plan's items and the errors (``HostRun``)

    .. code:: python

        operations.provision(spec=spec, inputs=inputs, run=run, name="Provision hinfelaar_fastapi")
    """
    snap, problem = _current(spec, inputs)
    if problem:
        yield failure(run, "catalog", problem)
        return
    work = schema_work(spec, snap)
    if work and state.current_stage != StateStage.Prepare:
        # Before any change: migrations that cannot reach the database would leave the
        # environment provisioned but half-done.
        problem = endpoint_problem(host, spec.app_host, spec.app_port, tunnel=spec.tunnel)
        if problem:
            yield failure(run, "endpoint", f"pg_app_host/pg_app_port: {problem}")
            return
        warm_up()
    passwords = inputs.credentials.passwords
    plan = build_plan(
        spec,
        snap,
        inputs.policy,
        verifier_for=lambda role: _verifier(passwords[role]),
        password_matches=lambda role, stored: stored_password_matches(
            passwords[role], stored, snap.password_key
        ),
    )
    if plan.roles and not (snap.is_superuser or snap.can_create_role):
        yield failure(
            run,
            "createrole",
            f"the admin {snap.current_user} has neither SUPERUSER nor CREATEROLE, so it cannot "
            f"create or alter roles {', '.join(spec.roles)}: grant it CREATEROLE (managed "
            "services: the provider's admin role) or create the roles beforehand",
        )
        return
    for notice in notices(spec, snap):
        if run.notify(notice):
            host.log_styled(notice, fg="yellow", log_func=logger.warning)
    if plan.empty:
        host.noop(
            f"database {spec.database}: roles, ownership, privileges and settings already as declared"
        )
        return
    notice = quiet_notice(spec, snap) if plan.sends_verifier else None
    if notice and run.notify(notice):
        host.log_styled(notice, fg="yellow", log_func=logger.warning)
    announce(run, f"provision:{spec.database}", plan.items)
    yield psql_command(spec, inputs, plan.script())


def _current(spec: Spec, inputs: HostInputs) -> tuple[Any, str | None]:
    """(snapshot, None), or (None, the one line that stops this host)."""
    snap = snapshot(host, spec, inputs.credentials.admin)
    if snap is None:
        return None, f"cannot read the catalog as {spec.admin.describe()} (see above)"
    if isinstance(snap, Unreadable):
        return None, f"cannot read the catalog as {spec.admin.describe()}: {snap.message}"
    if snap.in_recovery:
        return None, (
            "the server is a standby (pg_is_in_recovery); roles and grants come from the "
            "primary through replication: point this host at the primary"
        )
    # Checked in the snapshot session, so a bad value stops every step before any change.
    problem = (
        settings_problem(spec, snap)
        or identity_problem(spec, snap)
        or predefined_problem(spec, snap)
        or code_problem(spec, snap)
    )
    if problem:
        return None, problem
    return snap, None


def schema_work(spec: Spec, snap: Any) -> list[str]:
    """What the schema step will do this run: pending migration files, or generate_schemas."""
    if spec.schema_mode == "generate":
        from pgprov.migrate.upgrade import model_tables

        present = {r.name for r in snap.relations if r.schema == spec.schema_name}
        missing = [t for t in model_tables() if t not in present]
        return ["generate_schemas"] if missing else []
    return pending_migrations(snap.migrations)


@operation(is_idempotent=True)
def migrate(spec: Spec, inputs: HostInputs, run: HostRun):
    """Bring schema ``app`` to the newest Aerich migration, as the migrator.

    Pending versions come from the catalog snapshot (the ``aerich`` table) compared with the
    migration files; with nothing pending neither Aerich nor Tortoise is started.

    .. code:: python

        operations.migrate(spec=spec, inputs=inputs, run=run, name="Apply migrations")
    """
    snap, problem = _current(spec, inputs)
    if problem:
        yield failure(run, "catalog", problem)
        return
    work = schema_work(spec, snap)
    if spec.schema_mode == "migrate":
        run.pending_migrations = list(work)
    if not work:
        applied = len(snap.migrations or ())
        if spec.schema_mode == "generate":
            host.noop(f"schema {spec.schema_name}: every model table exists (prototype mode)")
        else:
            host.noop(f"schema {spec.schema_name}: all {applied} migrations applied")
        return
    if spec.schema_mode == "generate":
        announce(
            run,
            "migrate",
            [Item("create missing tables with Tortoise generate_schemas (prototype mode)", "", "")],
            show_sql=False,
        )
    else:
        announce(
            run,
            "migrate",
            [Item(f"apply migration {name} as {spec.owner}", "", "") for name in work],
            show_sql=False,
        )
    blockers = functools.partial(blocking_sessions, spec=spec, inputs=inputs)
    password = inputs.credentials.password(spec.owner)
    yield FunctionCommand(run_upgrade, (spec, password, inputs.policy, blockers), {})


@operation(is_idempotent=True)
def gin_index(spec: Spec, inputs: HostInputs, run: HostRun):
    """The JSONB GIN index on checklistresponse(answers) with the environment's operator class.

    .. code:: python

        operations.gin_index(spec=spec, inputs=inputs, run=run, name="JSONB GIN index")
    """
    snap, problem = _current(spec, inputs)
    if problem:
        yield failure(run, "catalog", problem)
        return
    work = schema_work(spec, snap)
    try:
        items = gin_items(spec, snap, inputs.policy, table_will_exist=bool(work))
    except IndexPlanError as exc:
        yield failure(run, "gin", str(exc))
        return
    if not items:
        host.noop(
            f"index {spec.schema_name}.idx_checklistresponse_answers_gin is valid and as declared"
        )
        return
    announce(run, "gin_index", items)
    script = "".join(i.sql for i in items)
    yield FunctionCommand(run_with_lock_retries, (spec, inputs, script, "the GIN index step"), {})


def run_with_lock_retries(
    state, host, spec: Spec, inputs: HostInputs, script: str, what: str
) -> bool:
    """Run an idempotent psql script, again after a pause when a lock wait timed out, within
    pg_lock_wait; the script's own notices (what it waited for: an earlier deploy's index
    step, a running build) are shown when each try ends.

    On exhaustion: one line naming the blocking sessions, and a failed operation."""
    policy = inputs.policy

    def once() -> list[str]:
        ok, output = _run_psql(state, host, spec, inputs, script)
        for line in output.stderr_lines:
            if "NOTICE:" in line and "pgprov:" in line:
                logger.info(f"{host.print_prefix}{line.split('pgprov:', 1)[1].strip()}")
        errors = [line for line in output.stderr_lines if "NOTICE:" not in line]
        if not ok and any("due to lock timeout" in line for line in errors):
            raise LockTimeout(" ".join(errors))
        return [] if ok else errors or ["psql failed without a message"]

    try:
        errors = retry_on_lock_timeout(once, policy)
    except LockTimeout:
        errors = [
            f"{what}: locks not granted within pg_lock_wait ({policy.lock_wait:g} s, "
            f"pg_lock_timeout {policy.lock_timeout:g} s each); blocking sessions: "
            f"{blocking_sessions(state, host, spec, inputs)}"
        ]
    for line in errors:
        host.log_styled(line, fg="red", log_func=logger.error)
    return not errors


def blocking_sessions(state, host, spec: Spec, inputs: HostInputs) -> str:
    """The sessions holding locks in the environment's database, as the admin sees them."""
    ok, output = _run_psql(state, host, spec, inputs, blockers_query(inputs.policy) + ";\n")
    return output.stdout.strip() if ok else f"unknown ({output.stderr.strip()})"


def _run_psql(state, host, spec: Spec, inputs: HostInputs, script: str):
    args = connection_args(host, spec, script, admin=inputs.credentials.admin, dbname=spec.database)
    command = StringCommand(args.pop("command_line"))
    return host.run_shell_command(
        command, print_output=state.print_output, print_input=state.print_input, **args
    )


def _verifier(secret: Secret) -> str:
    from pgprov.model.secrets import scram_verifier

    return scram_verifier(secret)
