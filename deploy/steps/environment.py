"""The whole environment as one pyinfra deploy: spec from host data, then the three steps.

Used by the CLI entry (deploy/provision.py) and by the pyinfra API (tests, benchmarks):

    add_deploy(state, environment)
    add_deploy(state, environment, run=run)   # run = HostRun(): the plan and errors, as values
"""

from __future__ import annotations

from pgprov.catalog.psql import credentials_of
from pgprov.model.secrets import SecretError
from pgprov.model.spec import Spec, SpecError, build_spec
from pgprov.sql.locks import LockPolicy
from pgprov.steps import operations
from pgprov.steps.plan import HostInputs, HostRun
from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.exceptions import DeployError

SCHEMA_STEP = {"migrate": "Aerich migrations", "generate": "generate_schemas (prototype mode)"}


def load_spec() -> Spec:
    """This host's spec; bad input stops the run before anything is touched, in one line."""
    data = host.data.dict()
    inventory = str(data.get("pg_inventory", "inventory"))
    try:
        return build_spec(data, inventory=inventory, host=host.name)
    except SpecError as exc:
        raise DeployError(str(exc)) from None


def load_inputs(spec: Spec) -> HostInputs:
    """The run's secrets, resolved once, and its lock policy, built once: every step gets
    these; a missing secret stops the run before anything is touched, in one line."""
    try:
        credentials = credentials_of(spec)
    except SecretError as exc:
        raise DeployError(f"{spec.inventory}: host {spec.host}: {exc}") from None
    return HostInputs(credentials, LockPolicy.of(spec))


@deploy("hinfelaar_fastapi database")
def environment(
    spec: Spec | None = None, inputs: HostInputs | None = None, run: HostRun | None = None
) -> None:
    """The three steps for this host; ``run`` (a ``HostRun``) receives what they planned and
    what stopped them, for a caller that reports it."""
    spec = spec or load_spec()
    inputs = inputs or load_inputs(spec)
    run = run if run is not None else HostRun()
    operations.provision(
        name=f"Provision database {spec.database} ({spec.profile}) on {spec.admin.describe()}",
        spec=spec,
        inputs=inputs,
        run=run,
    )
    operations.migrate(
        name=f"Schema {spec.schema_name}: {SCHEMA_STEP[spec.schema_mode]} as {spec.owner}",
        spec=spec,
        inputs=inputs,
        run=run,
    )
    operations.gin_index(
        name=f"JSONB GIN index ({spec.gin_opclass}) on {spec.schema_name}.checklistresponse(answers)",
        spec=spec,
        inputs=inputs,
        run=run,
    )
