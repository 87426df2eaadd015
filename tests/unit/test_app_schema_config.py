"""pgprov.app_schema.config: Tortoise config from an explicit URL, or from DATABASE_URL/DB_SCHEMA/.env."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest
from pgprov.app_schema import config
from pgprov.app_schema.config import (
    AERICH_MODELS,
    APP_LABEL,
    MODEL_MODULES,
    OFFLINE_URL,
    Settings,
    load_settings,
    tortoise_config,
)

URL = "postgres://app_migrator:s3cr%40t@db.example:6543/hinfelaar_fastapi"


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No DATABASE_URL/DB_SCHEMA in the environment, and a working directory without .env."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("DB_SCHEMA", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_explicit_url_becomes_asyncpg_credentials_with_schema_as_search_path() -> None:
    cfg = tortoise_config(URL, "tenant_a")

    connection = cfg["connections"]["default"]
    assert connection["engine"] == "tortoise.backends.asyncpg"
    assert connection["credentials"] == {
        "host": "db.example",
        "port": 6543,
        "user": "app_migrator",
        "password": "s3cr@t",
        "database": "hinfelaar_fastapi",
        "schema": "tenant_a",
    }


def test_config_lists_the_service_models_and_aerichs_in_one_app() -> None:
    cfg = tortoise_config(URL)

    assert list(cfg["apps"]) == [APP_LABEL]
    assert cfg["apps"][APP_LABEL]["models"] == [*MODEL_MODULES, AERICH_MODELS]
    assert cfg["connections"]["default"]["credentials"]["schema"] == "app"


def test_schema_argument_wins_over_a_schema_in_the_url_query() -> None:
    cfg = tortoise_config(URL + "?schema=public", "app")

    assert cfg["connections"]["default"]["credentials"]["schema"] == "app"


@pytest.mark.parametrize("schema", ["app, public", 'app"', "App", "", "1app", "a" * 64])
def test_schema_that_is_not_a_plain_identifier_is_refused(schema: str) -> None:
    with pytest.raises(ValueError, match=r"^schema: "):
        tortoise_config(URL, schema)


@pytest.mark.parametrize("url", ["mysql://u@h/d", "sqlite://:memory:", "db.example/hinfelaar"])
def test_non_postgres_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match=r"^database_url: "):
        tortoise_config(url)


def test_settings_come_from_the_environment(no_env: Path) -> None:
    settings = load_settings({"DATABASE_URL": URL, "DB_SCHEMA": "tenant_a"})

    assert settings == Settings(database_url=URL, schema="tenant_a")


def test_schema_defaults_to_app_and_url_to_none_without_any_setting(no_env: Path) -> None:
    assert load_settings({}) == Settings(database_url=None, schema="app")


def test_dotenv_file_fills_in_what_the_environment_lacks(no_env: Path) -> None:
    (no_env / ".env").write_text(f"DATABASE_URL={URL}\nDB_SCHEMA=from_file\n")

    settings = load_settings({"DB_SCHEMA": "from_env"})

    assert settings == Settings(database_url=URL, schema="from_env")


def test_dotenv_file_is_found_from_a_subdirectory(
    no_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (no_env / ".env").write_text(f"DATABASE_URL={URL}\n")
    (no_env / "sub").mkdir()
    monkeypatch.chdir(no_env / "sub")

    assert load_settings({}).database_url == URL


def test_real_environment_wins_over_dotenv_and_is_left_untouched(
    no_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (no_env / ".env").write_text("DATABASE_URL=postgres://file@h/d\nDB_SCHEMA=from_file\n")
    monkeypatch.setenv("DATABASE_URL", URL)

    settings = load_settings()

    assert settings == Settings(database_url=URL, schema="from_file")
    assert "DB_SCHEMA" not in os.environ


def test_explicit_env_file_is_read_instead_of_searching(no_env: Path) -> None:
    env_file = no_env / "service.env"
    env_file.write_text(f"DATABASE_URL={URL}\n")
    (no_env / ".env").write_text("DATABASE_URL=postgres://other@h/d\n")

    assert load_settings({}, env_file=env_file).database_url == URL


def test_tortoise_orm_follows_the_environment_on_each_access(
    no_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    monkeypatch.setenv("DB_SCHEMA", "tenant_a")
    credentials = config.TORTOISE_ORM["connections"]["default"]["credentials"]
    assert (credentials["host"], credentials["schema"]) == ("db.example", "tenant_a")

    monkeypatch.setenv("DB_SCHEMA", "tenant_b")
    assert config.TORTOISE_ORM["connections"]["default"]["credentials"]["schema"] == "tenant_b"


def test_import_and_tortoise_orm_work_without_database_url_and_hold_no_credentials(
    no_env: Path,
) -> None:
    module = importlib.reload(config)

    credentials = module.TORTOISE_ORM["connections"]["default"]["credentials"]
    assert credentials["host"] == "offline.invalid"
    assert (credentials["user"], credentials["password"]) == (None, None)
    assert tortoise_config(OFFLINE_URL) == module.TORTOISE_ORM


def test_unknown_module_attribute_still_raises() -> None:
    with pytest.raises(AttributeError):
        _ = config.NOT_A_SETTING  # type: ignore[attr-defined]
