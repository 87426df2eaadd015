"""Prints an environment's connection URLs, without passwords: ``pgprov-local urls INVENTORY``."""

from __future__ import annotations

import sys
from urllib.parse import quote

from pgprov.model.inventory import InventoryError, load_specs
from pgprov.model.spec import Spec, SpecError


def urls(spec: Spec) -> dict[str, str]:
    def url(role: str) -> str:
        return f"postgres://{quote(role)}@{spec.app_host}:{spec.app_port}/{quote(spec.database)}"

    if spec.profile == "single_user":
        return {"app user": url(spec.app_user)}
    return {"runtime": url(spec.runtime), "migrator": url(spec.migrator)}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: pgprov-local urls inventories/<env>.py", file=sys.stderr)
        return 2
    try:
        specs = load_specs(argv[0])
    except (InventoryError, SpecError) as exc:
        print(exc, file=sys.stderr)
        return 2
    for host, spec in specs:
        for label, url in urls(spec).items():
            password = spec.passwords[spec.runtime if label == "runtime" else spec.owner]
            print(f"{host}: {label:<9} {url}  (password: {password.describe()})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
