"""Reading an inventory file: the one loader of every command, with pyinfra's semantics.

The deploy runs under pyinfra's CLI, which reads the inventory itself; every other command
(``pgprov-plan``, ``pgprov-verify``, ``pgprov-local``) reads it here, and ``pgprov-plan``
hands what it read to pyinfra's ``Inventory`` unchanged. The rules are pyinfra's
``make_inventory_from_files`` (pyinfra_cli/inventory.py), followed line for line and tested
against it on the same files (``tests/unit/test_inventory.py``), without importing
``pyinfra_cli``, whose import monkey-patches the standard library with gevent:

- every module-level list of hosts, or ``(hosts, group data)`` tuple, not named with a leading
  underscore, is a group; a host is a name or a ``(name, data)`` tuple;
- ``all``, when defined, lists every host and carries data for all of them; otherwise every
  host of every group, in file order; the file's own name (``staging`` for
  ``inventories/staging.py``) is a group of all hosts unless the file defines it;
- ``group_data/<group>.py`` next to the working directory and next to the inventory add data
  to their group (names a file imports are not data, unless it sets ``__all__``);
- a host's data: its own (every ``(name, data)`` entry, groups first, ``all`` last), over its
  groups' data (later groups win), over ``all``'s data.

    inventory = read_inventory("inventories/staging.py")
    for name, data in inventory.hosts(limit="db"): ...
"""

from __future__ import annotations

import ast
import os
import runpy
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from pgprov.model.spec import Spec, build_spec


class InventoryError(ValueError):
    """The inventory file cannot be read."""


Entry = Any  # a host name, or a (name, data) tuple
Group = tuple[list[Entry], dict[str, Any]]


def _entries(value: Any) -> list[Entry] | None:
    """The host entries of a module-level value, or None when it is not a group (pyinfra's
    ``_is_inventory_group``)."""
    if isinstance(value, tuple):
        value = value[0] if value else None
    if not isinstance(value, list) or not all(isinstance(e, str | tuple) for e in value):
        return None
    return value


def _name(entry: Entry) -> str:
    return entry[0] if isinstance(entry, tuple) else entry


def _data(entry: Entry) -> dict[str, Any]:
    return entry[1] if isinstance(entry, tuple) else {}


def _run(path: Path) -> dict[str, Any]:
    """A Python file's module-level names, after running it."""
    try:
        return runpy.run_path(str(path))
    except Exception as exc:
        if type(exc).__module__.startswith("pyinfra"):
            # Raised on purpose by the inventory (inventories/local.py: the embedded server
            # was refused), already one line naming itself.
            raise InventoryError(str(exc)) from None
        raise


def _imported_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                if alias.name != "*":
                    names.add(alias.asname or alias.name.split(".")[0])
    return names


def _group_data_files(folder: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(group, data) for every ``<group>.py`` in a ``group_data`` folder (pyinfra's order)."""
    if not folder.is_dir():
        return
    for file in (folder / name for name in os.listdir(folder)):
        if file.suffix != ".py":
            continue
        attrs = _run(file)
        keys = attrs["__all__"] if "__all__" in attrs else set(attrs) - _imported_names(file)
        yield file.stem, {k: v for k, v in attrs.items() if k in keys and not k.startswith("__")}


@dataclass(frozen=True)
class Inventory:
    """One inventory file as pyinfra's CLI reads it: ``everyone`` is the ``all`` group (hosts
    and their data), ``groups`` every other group in pyinfra's order."""

    path: Path
    everyone: Group
    groups: dict[str, Group]

    def pyinfra_arguments(self) -> tuple[Group, dict[str, Group]]:
        """``pyinfra.api.Inventory(names_data, **groups)``'s arguments, as pyinfra's CLI passes
        them."""
        return self.everyone, self.groups

    def names(self) -> list[str]:
        return [_name(entry) for entry in self.everyone[0]]

    def groups_of(self, name: str) -> list[str]:
        return [g for g, (entries, _) in self.groups.items() if name in map(_name, entries)]

    def data_of(self, name: str) -> dict[str, Any]:
        """The host's data as ``host.data`` shows it in a deploy (no override, no connector)."""
        own: dict[str, Any] = {}
        for entries, _ in self.groups.values():
            for entry in entries:
                if _name(entry) == name:
                    own.update(_data(entry))
        for entry in self.everyone[0]:
            if _name(entry) == name:
                own.update(_data(entry))
        from_groups: dict[str, Any] = {}
        for group in self.groups_of(name):
            from_groups.update(self.groups[group][1])
        return {**self.everyone[1], **from_groups, **own}

    def select(self, limit: str | None) -> list[str]:
        """Every host, or those of the group ``limit``, or those whose name matches it (a
        glob), as ``pgprov-plan --limit`` and ``pyinfra --limit`` choose them."""
        names = self.names()
        if not limit:
            return names
        if limit in self.groups:
            chosen = set(map(_name, self.groups[limit][0]))
        else:
            chosen = {name for name in names if fnmatch(name, limit)}
        if not chosen:
            raise InventoryError(f"{self.path}: --limit {limit} matches no host or group")
        return [name for name in names if name in chosen]

    def hosts(self, limit: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """(name, data) of every selected host, once, in order."""
        return [(name, self.data_of(name)) for name in self.select(limit)]


def read_inventory(path: str | Path) -> Inventory:
    """Run an inventory file (and its group_data files) and read it as pyinfra's CLI does."""
    path = Path(path)
    if not path.is_file():
        raise InventoryError(f"{path}: no such inventory file")
    import_like_pyinfra()
    groups: dict[str, Any] = {}
    for key, value in _run(path).items():
        if not key.startswith("_") and _entries(value) is not None:
            groups[key] = value
    all_data: dict[str, Any] = {}
    if "all" in groups:
        all_hosts = groups.pop("all")
        if isinstance(all_hosts, tuple):
            all_hosts, all_data = all_hosts
    else:
        all_hosts = []
        for value in groups.values():
            for entry in _entries(value) or []:
                if _name(entry) not in all_hosts:
                    all_hosts.append(_name(entry))
    if not all_hosts:
        raise InventoryError(f"{path}: defines no hosts")
    groups["all"] = (all_hosts, all_data)
    groups.setdefault(path.name.rsplit(".", 1)[0], all_hosts)
    folders = [Path.cwd() / "group_data"]
    if str(path.parent.resolve()) != os.getcwd():
        folders.append(path.parent.resolve() / "group_data")
    group_data: dict[str, dict[str, Any]] = {}
    for folder in folders:
        for group, data in _group_data_files(folder):
            group_data.setdefault(group, {}).update(data)
    resolved: dict[str, Group] = {}
    for name, value in groups.items():
        entries, data = value if isinstance(value, tuple) else (value, {})
        resolved[name] = (entries, {**data, **group_data.pop(name, {})})
    for name, data in group_data.items():
        resolved[name] = ([], data)
    everyone = resolved.pop("all")
    return Inventory(path, everyone, resolved)


def import_like_pyinfra() -> None:
    """Put the working directory on ``sys.path`` as pyinfra's CLI does (appended, once), so an
    inventory imports its own package (``from inventories.common import ...``) when a console
    script runs it from the directory that holds that package, without ``PYTHONPATH``."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.append(cwd)


def load_hosts(path: str | Path, limit: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """Every (host, data) in the file, once, in order; ``limit`` keeps a group, or the hosts
    whose name matches it."""
    return read_inventory(path).hosts(limit)


def load_specs(path: str | Path, limit: str | None = None) -> list[tuple[str, Spec]]:
    """Validated specs for every host (SpecError on the first invalid one)."""
    specs = []
    for name, data in load_hosts(path, limit):
        data.setdefault("pg_inventory", str(path))
        specs.append((name, build_spec(data, inventory=str(data["pg_inventory"]), host=name)))
    return specs
