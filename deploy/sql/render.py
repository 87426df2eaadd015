"""The Jinja environment that turns already-decided SQL items into text a DBA can review.

Templates live in ``sql_templates/``; they receive plain data and never decide anything.
Every identifier goes through ``ident`` and every literal through ``literal`` (psycopg's
quoting, no connection needed; its common cases are spelled out so that a converged run never
imports psycopg); undefined variables are errors (StrictUndefined).

    render("roles.sql.j2", create=[...], alter=[...])
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jinja2
import jinja2.bccache
import pgprov.sql_templates
from pgprov.model.spec import PUBLIC

TEMPLATE_DIR = Path(pgprov.sql_templates.__file__).resolve().parent


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


def grantee(name: str) -> str:
    """A grantee: the keyword PUBLIC only for the pseudo-role (``pgprov.model.spec.PUBLIC``, an
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
        "SET", "ALTER SYSTEM",
    }  # fmt: skip
    out = []
    for word in words:
        if word not in allowed:
            raise ValueError(f"{word!r} is not a privilege keyword")
        out.append(word)
    return ", ".join(out)


class _BytecodeCache(jinja2.FileSystemBytecodeCache):
    """Compiled templates kept between runs, as Python keeps .pyc files: compiling
    inspect.sql.j2 is ~10 ms of a converged deploy. Jinja checks every entry against the
    template's source checksum; the options that shape the compiled code are in the file
    name. A cache that cannot be written is skipped, never an error."""

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with contextlib.suppress(OSError):
            super().dump_bytecode(bucket)


def _bytecode_cache(options: dict[str, Any]) -> jinja2.BytecodeCache | None:
    digest = hashlib.sha256(repr(sorted(options.items())).encode()).hexdigest()[:16]
    try:
        # Jinja's default place: a 0700 directory of this user's in the temp directory.
        return _BytecodeCache(pattern=f"__pgprov_{digest}_%s.cache")
    except (OSError, RuntimeError):
        return None


def _environment() -> jinja2.Environment:
    options: dict[str, Any] = {
        "autoescape": False,  # SQL, not HTML; quoting is done by the filters
        "trim_blocks": True,
        "lstrip_blocks": True,
        "keep_trailing_newline": True,
    }
    env = jinja2.Environment(  # noqa: S701 - autoescape is off on purpose, see above
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        undefined=jinja2.StrictUndefined,
        bytecode_cache=_bytecode_cache(options),
        **options,
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
