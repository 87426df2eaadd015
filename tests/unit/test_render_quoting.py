"""The quoting filters render exactly what psycopg's sql.Identifier and sql.Literal render.

deploy/sql/render.py spells out psycopg's escaping for identifiers and plain strings, so that a
converged deploy does not import psycopg; these tests hold the two byte-for-byte equal, on
hand-picked hostile values and on a few thousand random ones.
"""

from __future__ import annotations

import random
import subprocess
import sys

import pytest
from pgprov.sql.render import ident, literal
from psycopg import sql

HOSTILE = [
    "app",
    "App",
    'a"b',
    '""',
    "it's",
    "''",
    "a\\b",
    "\\",
    "é",
    "日本",
    " ",
    "tab\tnew\nline",
    "'; DROP ROLE postgres; --",
    '"; DROP ROLE postgres; --',
    "SCRAM-SHA-256$4096:c2FsdA==$a2V5:c2Vy",
    "$$",
    "E'x'",
    "\x7f\x01",
]
ALPHABET = "ab'\"\\\n $;-éE0_%\x01"


def random_strings(count: int) -> list[str]:
    rng = random.Random(13)
    return ["".join(rng.choices(ALPHABET, k=rng.randint(1, 12))) for _ in range(count)]


def test_ident_renders_what_psycopg_renders() -> None:
    names = HOSTILE + random_strings(3000)
    differ = [n for n in names if ident(n) != sql.Identifier(n).as_string(None)]
    assert differ == []


def test_literal_renders_what_psycopg_renders() -> None:
    values: list[object] = ["", *HOSTILE, *random_strings(3000), 0, 42, -3, 1.5, True, None]
    differ = [v for v in values if literal(v) != sql.Literal(v).as_string(None)]
    assert differ == []


def test_literal_refuses_a_nul_character_as_psycopg_does() -> None:
    with pytest.raises(Exception, match="NUL") as ours:
        literal("a\0b")
    with pytest.raises(Exception, match="NUL") as theirs:
        sql.Literal("a\0b").as_string(None)
    assert type(ours.value) is type(theirs.value)


def test_rendering_a_catalog_query_does_not_import_psycopg() -> None:
    code = (
        "import sys\n"
        "from pgprov.catalog.facts import inspect_script\n"
        "from pgprov.model.spec import build_spec\n"
        "spec = build_spec({'pg_environment': 'local', 'pg_profile': 'split', "
        "'pg_runtime': 'it_s', 'pg_migrator_password': 'literal:a', "
        "'pg_runtime_password': 'literal:b', "
        "'pg_role_settings': {'runtime': {'statement_timeout': \"it's\"}}}, "
        "inventory='i', host='h')\n"
        "assert \"it''s\" in inspect_script(spec)\n"
        "print('psycopg' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
