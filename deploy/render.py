"""The Jinja environment that turns already-decided SQL items into text a DBA can review.

Templates live in ``sql_templates/``; they receive plain data and never decide anything.
Every identifier goes through ``ident`` and every literal through ``literal`` (psycopg's
quoting, no connection needed); undefined variables are errors (StrictUndefined).

    render("roles.sql.j2", create=[...], alter=[...])
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jinja2
from psycopg import sql

from deploy.state import PUBLIC

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
    return sql.Identifier(name).as_string(None)


def qualified(parts: Iterable[str]) -> str:
    """A dotted, quoted name: ``["app", "user"]`` becomes ``"app"."user"``."""
    return ".".join(ident(part) for part in parts)


def literal(value: Any) -> str:
    """A quoted SQL literal (strings, numbers, booleans, None)."""
    return sql.Literal(_defined(value)).as_string(None)


def grantee(name: str) -> str:
    """A grantee: the keyword PUBLIC only for the pseudo-role (``deploy.state.PUBLIC``, an
    empty name no real role can have); a role really named "PUBLIC" is quoted like any other."""
    return "PUBLIC" if _defined(name) == PUBLIC else ident(name)


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
    env.filters.update(
        ident=ident, literal=literal, idents=idents, keywords=keywords, grantee=grantee
    )
    env.filters["qualified"] = qualified
    return env


ENV = _environment()


def render(template: str, **context: Any) -> str:
    """Render one template; blank lines are squeezed so empty sections leave no gaps."""
    text = ENV.get_template(template).render(**context)
    lines = [line.rstrip() for line in text.splitlines()]
    return "\n".join(line for line in lines if line) + ("\n" if any(lines) else "")
