"""pgprov.app_schema.check_migrations run as `make check-migrations` runs it: subprocess, no database."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODELS_PACKAGE = REPO / "app_schema" / "models"


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (bytecode caches aside) with its content hash."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def run_check(*args: str, extra_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DB_SCHEMA")}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in (REPO, extra_path) if p)
    return subprocess.run(
        [sys.executable, "-m", "pgprov.app_schema.check_migrations", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def changed_models(tmp_path: Path) -> list[str]:
    """A copy of the service's models where Checklist gained a field no migration knows."""
    package = tmp_path / "changed_models"
    shutil.copytree(MODELS_PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    checklist = package / "checklist.py"
    anchor = "    version = fields.IntField(default=1)\n"
    source = checklist.read_text()
    assert anchor in source
    checklist.write_text(
        source.replace(anchor, anchor + "    priority = fields.SmallIntField(default=0)\n")
    )
    return [f"changed_models.{name}" for name in ("user", "rating", "checklist")]


def test_committed_models_and_migrations_agree_and_nothing_is_written() -> None:
    before = snapshot(REPO / "app_schema")

    result = run_check()

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert "models match the migrations" in lines[0]
    assert snapshot(REPO / "app_schema") == before


def test_model_changed_without_migration_fails_naming_model_and_sql(
    changed_models: list[str], tmp_path: Path
) -> None:
    before = snapshot(REPO / "app_schema")

    result = run_check("--models", *changed_models, extra_path=tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "models changed without a migration: models.Checklist\n" in result.stderr
    assert 'ALTER TABLE "checklist" ADD "priority" SMALLINT NOT NULL DEFAULT 0' in result.stderr
    assert snapshot(REPO / "app_schema") == before


def test_changed_models_pass_once_the_migration_exists(
    changed_models: list[str], tmp_path: Path
) -> None:
    """Same drift, against a migrations copy that has the missing migration: exit 0."""
    location = tmp_path / "migrations"
    shutil.copytree(
        REPO / "app_schema" / "migrations",
        location,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    generate = (
        "import asyncio, sys\n"
        "from aerich import Command\n"
        "from pgprov.app_schema.config import OFFLINE_URL, tortoise_config\n"
        "async def main():\n"
        "    cfg = tortoise_config(OFFLINE_URL, models=sys.argv[2:])\n"
        "    command = Command(cfg, app='models', location=sys.argv[1])\n"
        "    await command.init(offline=True)\n"
        "    print(await command.migrate('add_priority', no_input=True, offline=True))\n"
        "    await command.aclose()\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(REPO), str(tmp_path)))}
    subprocess.run(
        [sys.executable, "-c", generate, str(location), *changed_models],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert len(list((location / "models").glob("1_*_add_priority.py"))) == 1

    result = run_check(
        "--models", *changed_models, "--migrations", str(location), extra_path=tmp_path
    )

    assert result.returncode == 0, result.stderr


def test_missing_migrations_stop_with_exit_2_naming_the_folder(tmp_path: Path) -> None:
    result = run_check("--migrations", str(tmp_path))

    assert result.returncode == 2
    assert f"{tmp_path / 'models'}: no Aerich migrations found" in result.stderr


def test_unknown_models_module_stops_with_exit_2_naming_it() -> None:
    result = run_check("--models", "no_such_models_module")

    assert result.returncode == 2
    assert "no_such_models_module" in result.stderr
