"""The Jinja environment: every identifier and literal is quoted, and nothing is left undefined."""

from __future__ import annotations

import jinja2
import pytest
from pgprov.sql.render import ENV, ident, idents, keywords, literal, qualified, render


@pytest.mark.parametrize(
    ("name", "quoted"),
    [
        ("app", '"app"'),
        ("App", '"App"'),
        ('app"x', '"app""x"'),
        ('app"; DROP ROLE postgres; --', '"app""; DROP ROLE postgres; --"'),
        ("it's", '"it\'s"'),
        ("back\\slash", '"back\\slash"'),
    ],
)
def test_ident_double_quotes_and_doubles_embedded_quotes(name: str, quoted: str) -> None:
    assert ident(name) == quoted


@pytest.mark.parametrize("bad", ["", None, 42])
def test_ident_refuses_what_is_not_a_non_empty_string(bad: object) -> None:
    with pytest.raises(ValueError, match="identifier must be a non-empty string"):
        ident(bad)  # type: ignore[arg-type]


def test_qualified_quotes_each_part() -> None:
    assert qualified(["app", 'we"ird']) == '"app"."we""ird"'


def test_idents_is_a_comma_separated_quoted_list() -> None:
    assert idents(["a", "b"]) == '"a", "b"'


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("app", "'app'"),
        ("it's", "'it''s'"),
        ("'; DROP ROLE postgres; --", "'''; DROP ROLE postgres; --'"),
        (42, "42"),
        (True, "true"),
        (None, "NULL"),
    ],
)
def test_literal_quotes_strings_and_keeps_scalars(value: object, quoted: str) -> None:
    assert literal(value) == quoted


def test_literal_with_a_backslash_is_an_escape_string_holding_one_backslash() -> None:
    # E'' (with a separating space) means the same whatever standard_conforming_strings says.
    assert literal("a\\b") == " E'a\\\\b'"


def test_keywords_accepts_privilege_words_in_order() -> None:
    assert keywords(["SELECT", "INSERT", "MAINTAIN"]) == "SELECT, INSERT, MAINTAIN"


@pytest.mark.parametrize("word", ["select", "DROP", "SELECT; DROP TABLE x", "SUPERUSER", ""])
def test_keywords_refuses_anything_but_a_privilege_keyword(word: str) -> None:
    with pytest.raises(ValueError, match="is not a privilege keyword"):
        keywords([word])


def test_missing_template_variable_is_an_error_not_an_empty_string() -> None:
    with pytest.raises(jinja2.UndefinedError, match="lock_key"):
        render("transaction.sql.j2", connect=None, set_role=None, body="SELECT 1;")


def test_missing_variable_behind_a_quoting_filter_is_still_an_error() -> None:
    with pytest.raises(Exception):  # noqa: B017 - any error beats rendering '""' or 'NULL'
        render("bookkeeping.sql.j2", schema="app", table="aerich")


@pytest.mark.parametrize("template", ["{{ x | ident }}", "{{ x | literal }}"])
def test_missing_variable_behind_a_quoting_filter_names_the_variable(template: str) -> None:
    with pytest.raises(jinja2.UndefinedError, match="'x' is undefined"):
        ENV.from_string(template).render()


def test_environment_is_strict_and_does_not_autoescape() -> None:
    assert ENV.undefined is jinja2.StrictUndefined
    assert ENV.from_string("{{ x | ident }}").render(x="a<b") == '"a<b"'


def test_filters_apply_inside_templates() -> None:
    text = render("bookkeeping.sql.j2", schema='s"x', table="aerich", runtime="app_runtime")
    assert text == (
        'REVOKE ALL ON TABLE "s""x"."aerich" FROM "app_runtime";\n'
        'REVOKE ALL ON SEQUENCE "s""x"."aerich_id_seq" FROM "app_runtime";\n'
    )


def test_render_squeezes_blank_lines_from_empty_sections() -> None:
    text = render(
        "role_settings.sql.j2",
        set=[],
        reset=[{"role": "app_runtime", "database": "db", "name": "search_path"}],
    )
    assert text == 'ALTER ROLE "app_runtime" IN DATABASE "db" RESET "search_path";\n'


def test_render_of_nothing_is_empty() -> None:
    assert render("role_settings.sql.j2", set=[], reset=[]) == ""
