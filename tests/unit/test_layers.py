"""The package's layers hold: no import against their order, no module cycle, no subpackage cycle.

Every ``import`` in pgprov's source is read from the AST, those inside functions included (a
lazy import is still a dependency). Layers, lowest first, as the README's "Where things are"
states them; a module may import its own subpackage and any lower layer, nothing higher.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Source folder -> the package it installs as (pyproject's package-dir).
SOURCES = {"deploy": "pgprov", "app_schema": "pgprov.app_schema"}
LAYERS = (
    "app_schema",
    "model",
    "sql",
    "catalog",
    "access",
    "migrate",
    "steps",
    "audit",
    "local",
    "testing",
    "",  # the entry files: provision.py, verify.py
)


def modules() -> dict[str, Path]:
    found = {}
    for folder, package in SOURCES.items():
        for path in (REPO / folder).rglob("*.py"):
            parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
            if "migrations" in parts:
                continue  # Aerich's version files: data
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


def imports_of(path: Path, known: set[str]) -> Iterator[str]:
    """Every pgprov module ``path`` imports, wherever the import statement stands."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        yield from (name for name in names if name in known)


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    return ""


def graph() -> dict[str, set[str]]:
    found = modules()
    return {module: set(imports_of(path, set(found))) - {module} for module, path in found.items()}


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph, as a path that ends where it starts; None when there is none."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def subpackage_graph(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    packages: dict[str, set[str]] = {}
    for module, targets in edges.items():
        packages.setdefault(layer_of(module), set()).update(
            layer_of(t) for t in targets if layer_of(t) != layer_of(module)
        )
    return packages


def test_every_source_folder_is_read() -> None:
    found = modules()
    assert "pgprov.catalog.session" in found and "pgprov.app_schema.config" in found
    assert {layer_of(m) for m in found} == set(LAYERS)


def test_no_module_imports_a_higher_layer() -> None:
    upward = sorted(
        f"{module} imports {target}"
        for module, targets in graph().items()
        for target in targets
        if LAYERS.index(layer_of(target)) > LAYERS.index(layer_of(module))
    )
    assert upward == []


def test_no_module_cycle() -> None:
    assert cycle(graph()) is None


def test_no_subpackage_cycle() -> None:
    assert cycle(subpackage_graph(graph())) is None


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
        ({"a": {"b"}, "b": {"b2"}, "b2": {"b"}}, ["b", "b2", "b"]),
    ],
)
def test_the_cycle_finder_finds_what_it_must(
    edges: dict[str, set[str]], expected: list[str] | None
) -> None:
    assert cycle(edges) == expected
