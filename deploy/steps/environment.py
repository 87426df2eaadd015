"""The whole environment as one pyinfra deploy: spec from host data, then the three steps.

Used by the CLI entry (deploy/provision.py) and by the pyinfra API (tests, benchmarks):

    add_deploy(state, environment)
    add_deploy(state, environment, run=run)   # run = HostRun(): the plan and errors, as values
"""

from __future__ import annotations

from pgprov.model.secrets import SecretError, resolve
from pgprov.model.spec import PASSWORD_KEYS, Spec, SpecError, build_spec
from pgprov.steps import operations
from pgprov.steps.plan import HostRun
from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.exceptions import DeployError

SCHEMA_STEP = {"migrate": "Aerich migrations", "generate": "generate_schemas (prototype mode)"}


def load_spec() -> Spec:
    """This host's spec; bad input stops the run before anything is touched, in one line."""
    data = host.data.dict()
    inventory = str(data.get("pg_inventory", "inventory"))
    try:
        spec = build_spec(data, inventory=inventory, host=host.name)
    except SpecError as exc:
        raise DeployError(str(exc)) from None
    references = {
        key: spec.passwords[getattr(spec, which)]
        for key, which in PASSWORD_KEYS.items()
        if getattr(spec, which) in spec.roles
    }
    if spec.admin.password is not None:
        references["pg_admin_password"] = spec.admin.password
    for key, reference in references.items():
        try:
            resolve(reference)
        except SecretError as exc:
            raise DeployError(f"{inventory}: host {host.name}: {key}: {exc}") from None
    return spec


@deploy("hinfelaar_fastapi database")
def environment(spec: Spec | None = None, run: HostRun | None = None) -> None:
    """The three steps for this host; ``run`` (a ``HostRun``) receives what they planned and
    what stopped them, for a caller that reports it."""
    spec = spec or load_spec()
    run = run if run is not None else HostRun()
    operations.provision(
        name=f"Provision database {spec.database} ({spec.profile}) on {spec.admin.describe()}",
        spec=spec,
        run=run,
    )
    operations.migrate(
        name=f"Schema {spec.schema_name}: {SCHEMA_STEP[spec.schema_mode]} as {spec.owner}",
        spec=spec,
        run=run,
    )
    operations.gin_index(
        name=f"JSONB GIN index ({spec.gin_opclass}) on {spec.schema_name}.checklistresponse(answers)",
        spec=spec,
        run=run,
    )
