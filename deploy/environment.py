"""The whole environment as one pyinfra deploy: spec from host data, then the three steps.

Used by the CLI entry (deploy/provision.py) and by the pyinfra API (tests, benchmarks):

    add_deploy(state, environment)
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.exceptions import DeployError

from deploy import operations
from deploy.secrets import SecretError
from deploy.spec import Spec, SpecError, build_spec

SCHEMA_STEP = {"migrate": "Aerich migrations", "generate": "generate_schemas (prototype mode)"}


def load_spec() -> Spec:
    """This host's spec; bad input stops the run before anything is touched, in one line."""
    data = host.data.dict()
    inventory = str(data.get("pg_inventory", "inventory"))
    try:
        spec = build_spec(data, inventory=inventory, host=host.name)
        operations.resolved_passwords(spec)
    except SpecError as exc:
        raise DeployError(str(exc)) from None
    except SecretError as exc:
        raise DeployError(f"{inventory}: host {host.name}: {exc}") from None
    return spec


@deploy("hinfelaar_fastapi database")
def environment(spec: Spec | None = None) -> None:
    spec = spec or load_spec()
    operations.provision(
        name=f"Provision database {spec.database} ({spec.profile}) on {spec.admin.describe()}",
        spec=spec,
    )
    operations.migrate(
        name=f"Schema {spec.schema_name}: {SCHEMA_STEP[spec.schema_mode]} as {spec.owner}",
        spec=spec,
    )
    operations.gin_index(
        name=f"JSONB GIN index ({spec.gin_opclass}) on {spec.schema_name}.checklistresponse(answers)",
        spec=spec,
    )
