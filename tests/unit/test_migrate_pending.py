"""Which Aerich migrations are pending, decided from the snapshot alone (no Aerich, no Tortoise)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pgprov.app_schema.config import APP_LABEL
from pgprov.migrate.upgrade import migration_files, pending_migrations

FILES = ["10_20270101_ten.py", "0_20261126_init.py", "2_20261203_two.py", "1_20261201_one.py"]
ORDERED = ["0_20261126_init.py", "1_20261201_one.py", "2_20261203_two.py", "10_20270101_ten.py"]


@pytest.fixture
def location(tmp_path: Path) -> str:
    folder = tmp_path / APP_LABEL
    folder.mkdir()
    for name in [*FILES, "__init__.py", "notes.txt", "x_not_a_version.py", "3_draft.sql"]:
        (folder / name).write_text("")
    return str(tmp_path)


def test_migration_files_are_ordered_by_numeric_prefix_not_by_text(location: str) -> None:
    assert migration_files(location) == ORDERED


def test_no_aerich_table_means_every_file_is_pending(location: str) -> None:
    files = migration_files(location)
    assert pending_migrations(None, files) == ORDERED


def test_everything_applied_means_nothing_pending(location: str) -> None:
    files = migration_files(location)
    assert pending_migrations(list(reversed(ORDERED)), files) == []


def test_pending_keeps_the_file_order_and_skips_what_is_applied(location: str) -> None:
    files = migration_files(location)
    applied = ["0_20261126_init.py", "2_20261203_two.py"]
    assert pending_migrations(applied, files) == ["1_20261201_one.py", "10_20270101_ten.py"]


def test_empty_aerich_table_means_every_file_is_pending(location: str) -> None:
    assert pending_migrations((), migration_files(location)) == ORDERED


def test_repository_lists_the_committed_initial_migration() -> None:
    files = migration_files()
    assert files, "no migration files found in app_schema/migrations/models"
    assert files[0].startswith("0_")
    assert files[0].endswith("_init.py")
    repo = Path(__file__).resolve().parents[2] / "app_schema" / "migrations" / APP_LABEL
    assert (repo / files[0]).is_file()
    assert pending_migrations(None) == files
    assert pending_migrations(files) == []
