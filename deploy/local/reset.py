"""``make reset ENV=dev``: drop and recreate an environment's database (local and dev only).

Refused for staging and production (and any environment not meant to be thrown away) with
one clear line. The drop runs through psql on the controller with the inventory's admin
connection (@local targets only); the Makefile then provisions again.

    pgprov-local reset inventories/dev.py
"""

from __future__ import annotations

import sys

from pgprov.catalog.psql import admin_password, run_local
from pgprov.model.inventory import InventoryError, load_specs
from pgprov.model.secrets import SecretError
from pgprov.model.spec import PROTECTED_ENVIRONMENTS, Spec, SpecError
from pgprov.sql.render import ident

RESETTABLE = frozenset({"local", "dev"})


class ResetRefused(RuntimeError):
    """This environment must not be reset."""


def check_resettable(host: str, spec: Spec) -> None:
    if spec.environment in PROTECTED_ENVIRONMENTS or spec.environment not in RESETTABLE:
        raise ResetRefused(
            f"{spec.inventory}: host {host}: refusing to reset environment "
            f"{spec.environment!r}: only local and dev databases may be dropped"
        )
    if host != "@local" and not host.startswith("@local"):
        raise ResetRefused(f"{spec.inventory}: host {host}: reset runs only against @local targets")


def reset(spec: Spec) -> None:
    script = f"DROP DATABASE IF EXISTS {ident(spec.database)} WITH (FORCE);\n"
    proc = run_local(spec.admin, script, password=admin_password(spec.admin))
    if proc.returncode != 0:
        raise RuntimeError(
            proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "psql failed"
        )


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: pgprov-local reset inventories/<env>.py", file=sys.stderr)
        return 2
    try:
        specs = load_specs(argv[0])
        for host, spec in specs:
            check_resettable(host, spec)
        for host, spec in specs:
            reset(spec)
            print(f"{host}: dropped database {spec.database}; provisioning it again")
    except (InventoryError, SpecError, SecretError, ResetRefused, RuntimeError) as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
