"""The Jinja environment that turns already-decided SQL items into text a DBA can review.

Templates live in ``sql_templates/``; they receive plain data and never decide anything.
Every identifier goes through ``ident`` and every literal through ``literal`` (psycopg's
quoting, no connection needed; its common cases are spelled out so that a converged run never
imports psycopg); undefined variables are errors (StrictUndefined).

    render("roles.sql.j2", create=[...], alter=[...])
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jinja2

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "sql_templates"


def _defined(value: Any) -> Any:
    """A missing template variable fails here, naming itself, not deep in psycopg."""
    if isinstance(value, jinja2.Undefined):
        str(value)  # StrictUndefined raises UndefinedError("'x' is undefined")
    return value


def ident(name: str) -> str:
    """A quoted SQL identifier: ``app"x`` becomes ``"app""x"``."""
    name = _defined(name)
    if not isinstance(name, str) or not name:
        raise ValueError(f"identifier must be a non-empty string, not {name!r}")
    # Exactly psycopg's sql.Identifier without a connection (its own pure-Python escaping),
    # written out so that a run which only reads the catalog does not import psycopg (about
    # 50 ms of a converged deploy). tests/unit/test_render.py holds the two equal.
    return '"' + name.replace('"', '""') + '"'


def qualified(parts: Iterable[str]) -> str:
    """A dotted, quoted name: ``["app", "user"]`` becomes ``"app"."user"``."""
    return ".".join(ident(part) for part in parts)


def literal(value: Any) -> str:
    """A quoted SQL literal (strings, numbers, booleans, None)."""
    value = _defined(value)
    if type(value) is str and "\\" not in value and "\0" not in value:
        # psycopg's sql.Literal for such a string (no backslash: standard_conforming_strings
        # does not matter), without importing psycopg; everything else is psycopg's.
        return "'" + value.replace("'", "''") + "'"
    from psycopg import sql

    return sql.Literal(value).as_string(None)


def idents(names: Iterable[str]) -> str:
    """A comma-separated list of quoted identifiers."""
    return ", ".join(ident(name) for name in names)


def keywords(words: Iterable[str]) -> str:
    """A comma-separated list of SQL keywords from a fixed vocabulary (privileges)."""
    allowed = {
        "SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER",
        "USAGE", "CREATE", "CONNECT", "TEMPORARY", "EXECUTE", "MAINTAIN", "ALL",
    }  # fmt: skip
    out = []
    for word in words:
        if word not in allowed:
            raise ValueError(f"{word!r} is not a privilege keyword")
        out.append(word)
    return ", ".join(out)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # noqa: S701 - SQL, not HTML; quoting is done by the filters
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(ident=ident, literal=literal, idents=idents, keywords=keywords)
    env.filters["qualified"] = qualified
    return env


ENV = _environment()


def render(template: str, **context: Any) -> str:
    """Render one template; blank lines are squeezed so empty sections leave no gaps."""
    text = ENV.get_template(template).render(**context)
    lines = [line.rstrip() for line in text.splitlines()]
    return "\n".join(line for line in lines if line) + ("\n" if any(lines) else "")
