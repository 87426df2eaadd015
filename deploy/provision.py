"""Entry deploy: spec -> roles, database, schema, privileges, search_path, hardening.

pyinfra -y inventories/production.py deploy/provision.py        # apply
pyinfra -y --dry inventories/production.py deploy/provision.py  # plan: the exact SQL
"""

from pyinfra import host
from pyinfra.api.exceptions import DeployError

from deploy import operations
from deploy.secrets import SecretError
from deploy.spec import SpecError, build_spec


def load_spec():
    data = host.data.dict()
    try:
        spec = build_spec(
            data, inventory=str(data.get("pg_inventory", "inventory")), host=host.name
        )
        operations.resolved_passwords(spec)
    except SpecError as exc:
        raise DeployError(str(exc)) from None
    except SecretError as exc:
        raise DeployError(
            f"{data.get('pg_inventory', 'inventory')}: host {host.name}: {exc}"
        ) from None
    return spec


spec = load_spec()

operations.provision(
    name=f"Provision database {spec.database} ({spec.profile}) on {spec.admin.describe()}",
    spec=spec,
)
SCHEMA_STEP = {"migrate": "Aerich migrations", "generate": "generate_schemas (prototype mode)"}

operations.migrate(
    name=f"Schema {spec.schema_name}: {SCHEMA_STEP[spec.schema_mode]} as {spec.owner}",
    spec=spec,
)
operations.gin_index(
    name=f"JSONB GIN index ({spec.gin_opclass}) on {spec.schema_name}.checklistresponse(answers)",
    spec=spec,
)
