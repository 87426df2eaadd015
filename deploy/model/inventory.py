"""Reading an inventory file outside pyinfra's CLI: hosts, their data, and their specs.

The audit, the URL printer and ``make reset`` need an environment's specs without running a
deploy. Inventories here are plain pyinfra inventory files: module-level lists of hosts,
each a name or a ``(name, data)`` tuple, optionally grouped as ``(hosts, group_data)``.

    for name, spec in load_specs("inventories/staging.py"): ...
"""

from __future__ import annotations

import os
import runpy
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pgprov.model.spec import Spec, build_spec


class InventoryError(ValueError):
    """The inventory file cannot be read."""


def _hosts_of(value: Any) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(host, group data, host data) for every host of one inventory variable."""
    group_data: dict[str, Any] = {}
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], dict):
        value, group_data = value
    if not isinstance(value, list):
        return
    for entry in value:
        if isinstance(entry, str):
            yield entry, group_data, {}
        elif isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[1], dict):
            yield entry[0], group_data, entry[1]


def import_like_pyinfra() -> None:
    """Put the working directory on ``sys.path`` as pyinfra's CLI does (appended, once), so an
    inventory imports its own package (``from inventories.common import ...``) when a console
    script runs it from the directory that holds that package, without ``PYTHONPATH``."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.append(cwd)


def load_hosts(path: str | Path, limit: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """Every (host, data) in the file, once, in order; ``limit`` keeps one host or group."""
    path = Path(path)
    if not path.is_file():
        raise InventoryError(f"{path}: no such inventory file")
    import_like_pyinfra()
    try:
        namespace = runpy.run_path(str(path))
    except Exception as exc:
        from pyinfra.api.exceptions import PyinfraError

        if isinstance(exc, PyinfraError):
            # Raised on purpose by the inventory (inventories/local.py: the embedded server
            # was refused), already one line naming itself.
            raise InventoryError(str(exc)) from None
        raise
    group_data: dict[str, dict[str, Any]] = {}
    host_data: dict[str, dict[str, Any]] = {}
    groups: dict[str, list[str]] = {}
    for key, value in namespace.items():
        if key.startswith("_"):
            continue
        for name, from_group, own in _hosts_of(value):
            group_data.setdefault(name, {}).update(from_group)
            host_data.setdefault(name, {}).update(own)
            groups.setdefault(key, []).append(name)
    # As in pyinfra, what a host declares itself wins over any group's data.
    seen = {name: {**group_data[name], **host_data[name]} for name in group_data}
    if not seen:
        raise InventoryError(f"{path}: defines no hosts")
    if limit:
        keep = set(groups.get(limit, [])) or {limit}
        seen = {k: v for k, v in seen.items() if k in keep}
        if not seen:
            raise InventoryError(f"{path}: --limit {limit} matches no host or group")
    return list(seen.items())


def load_specs(path: str | Path, limit: str | None = None) -> list[tuple[str, Spec]]:
    """Validated specs for every host (SpecError on the first invalid one)."""
    specs = []
    for name, data in load_hosts(path, limit):
        data.setdefault("pg_inventory", str(path))
        specs.append((name, build_spec(data, inventory=str(data["pg_inventory"]), host=name)))
    return specs
