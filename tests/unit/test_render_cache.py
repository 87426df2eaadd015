"""Compiled templates are cached between runs, and the cache never serves stale SQL."""

from __future__ import annotations

from pathlib import Path

import jinja2
from pgprov.sql.render import ENV, _bytecode_cache, _BytecodeCache


class Counting(jinja2.Environment):
    """An environment that counts how often it compiles a template from source."""

    compiled = 0

    def compile(self, *args, **kwargs):  # type: ignore[override]
        self.compiled += 1
        return super().compile(*args, **kwargs)


def environment(templates: Path, cache: jinja2.BytecodeCache) -> Counting:
    return Counting(
        loader=jinja2.FileSystemLoader(templates), bytecode_cache=cache, autoescape=False
    )


def test_a_second_process_loads_the_compiled_template_instead_of_compiling(tmp_path: Path) -> None:
    (tmp_path / "t.sql.j2").write_text("SELECT {{ x }};\n")
    (tmp_path / "cache").mkdir()
    cache = _BytecodeCache(str(tmp_path / "cache"))
    first = environment(tmp_path, cache)
    assert first.get_template("t.sql.j2").render(x=1) == "SELECT 1;"
    assert first.compiled == 1
    assert len(list((tmp_path / "cache").iterdir())) == 1

    second = environment(tmp_path, cache)
    assert second.get_template("t.sql.j2").render(x=2) == "SELECT 2;"
    assert second.compiled == 0


def test_an_edited_template_is_recompiled_not_served_from_the_cache(tmp_path: Path) -> None:
    template = tmp_path / "t.sql.j2"
    template.write_text("SELECT 1;\n")
    (tmp_path / "cache").mkdir()
    cache = _BytecodeCache(str(tmp_path / "cache"))
    assert environment(tmp_path, cache).get_template("t.sql.j2").render() == "SELECT 1;"
    template.write_text("SELECT 2;\n")
    assert environment(tmp_path, cache).get_template("t.sql.j2").render() == "SELECT 2;"


def test_a_cache_that_cannot_be_written_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "t.sql.j2").write_text("SELECT {{ x }};\n")
    cache = _BytecodeCache(str(tmp_path / "missing" / "dir"))
    assert environment(tmp_path, cache).get_template("t.sql.j2").render(x=3) == "SELECT 3;"


def test_environment_options_that_shape_compiled_code_name_the_cache_files() -> None:
    one = _bytecode_cache({"trim_blocks": True})
    other = _bytecode_cache({"trim_blocks": False})
    assert one is not None and other is not None
    assert one.pattern != other.pattern
    assert ENV.bytecode_cache is not None
