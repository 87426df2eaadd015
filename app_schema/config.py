"""Tortoise ORM / Aerich configuration of the service's schema, from a URL or the environment.

The deploy builds a config for an explicit connection::

    from pgprov.app_schema.config import APP_LABEL, MIGRATIONS_LOCATION, tortoise_config
    config = tortoise_config("postgres://app_migrator:...@db:5432/hinfelaar_fastapi", "app")
    command = aerich.Command(tortoise_config=config, app=APP_LABEL, location=MIGRATIONS_LOCATION)

Aerich's CLI and the service read ``TORTOISE_ORM``, computed on access from ``DATABASE_URL``
and ``DB_SCHEMA`` (real environment first, then a ``.env`` file found from the working
directory upwards). Tables reach the schema through the connection's ``search_path`` (the
asyncpg client's ``schema`` credential), never through ``Meta.schema``, so the same models
and migrations serve any schema name.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

APP_LABEL = "models"
"""Tortoise app label; also Aerich's ``app`` and the name of the migrations subfolder."""

MODEL_MODULES: tuple[str, ...] = (
    "pgprov.app_schema.models.user",
    "pgprov.app_schema.models.rating",
    "pgprov.app_schema.models.checklist",
)
"""The service's model modules, in a stable order (Aerich's diffs depend on it)."""

AERICH_MODELS = "aerich.models"

MIGRATIONS_LOCATION = str(Path(__file__).resolve().parent / "migrations")
"""Aerich ``location``; the migration files are in ``<location>/<APP_LABEL>/``."""

DEFAULT_SCHEMA = "app"

OFFLINE_URL = "postgres://offline.invalid:5432/hinfelaar_fastapi"
"""Used only when no DATABASE_URL is set: Tortoise needs a dialect to load models and Aerich's
offline ``migrate`` never connects. ``.invalid`` can never resolve, so a command that does
try to connect fails on the host name instead of reaching some local server."""

# One plain lowercase identifier: the value becomes the connection's search_path, where a
# comma or quote would smuggle in extra schemas.
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_SCHEMES = ("postgres", "postgresql")


@dataclass(frozen=True)
class Settings:
    """Where the service's tables live: ``database_url`` is None when nothing configured it."""

    database_url: str | None
    schema: str


def tortoise_config(
    database_url: str,
    schema: str = DEFAULT_SCHEMA,
    models: Sequence[str] = MODEL_MODULES,
    *,
    with_aerich: bool = True,
) -> dict[str, Any]:
    """Tortoise config for the service's models (plus Aerich's) on ``database_url``.

    ``with_aerich=False`` leaves out Aerich's bookkeeping model: prototype mode builds the
    tables with ``generate_schemas`` and keeps no migration history.

    Raises ValueError naming the argument when the URL is not postgres:// or the schema is
    not a plain identifier.

    >>> cfg = tortoise_config("postgres://u@h:5432/d", "app")
    >>> cfg["connections"]["default"]["credentials"]["schema"]
    'app'
    """
    scheme = database_url.split("://", 1)[0] if "://" in database_url else ""
    if scheme not in _SCHEMES:
        raise ValueError("database_url: expected a postgres:// or postgresql:// URL")
    if not _SCHEMA_NAME.fullmatch(schema):
        raise ValueError(f"schema: {schema!r} is not a plain lowercase identifier")
    # Imported here: the deploy reads this module's constants on every run, Tortoise rarely.
    from tortoise.backends.base.config_generator import expand_db_url

    connection = expand_db_url(database_url)
    # The asyncpg client turns this into server_settings.search_path = schema, so
    # unqualified CREATE TABLE lands in the schema, and nothing falls back to public.
    connection["credentials"]["schema"] = schema
    return {
        "connections": {"default": connection},
        "apps": {
            APP_LABEL: {
                "models": [*models, *([AERICH_MODELS] if with_aerich else [])],
                "default_connection": "default",
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: str | Path | None = None
) -> Settings:
    """DATABASE_URL and DB_SCHEMA from ``environ`` (default os.environ), then ``env_file``.

    ``env_file`` defaults to the first ``.env`` found from the working directory upwards.
    Variables set in the environment win over the file; the process environment is never
    modified.
    """
    # Imported here: the deploy reads only the constants above on a converged run.
    from dotenv import dotenv_values, find_dotenv

    environ = os.environ if environ is None else environ
    path = find_dotenv(usecwd=True) if env_file is None else str(env_file)
    from_file = dotenv_values(path) if path and Path(path).is_file() else {}

    def lookup(name: str) -> str | None:
        value = environ.get(name)
        if value is None:
            value = from_file.get(name)
        return value or None

    return Settings(
        database_url=lookup("DATABASE_URL"),
        schema=lookup("DB_SCHEMA") or DEFAULT_SCHEMA,
    )


def config_from_env(
    environ: Mapping[str, str] | None = None, env_file: str | Path | None = None
) -> dict[str, Any]:
    """The service's config as the environment describes it (see ``load_settings``)."""
    settings = load_settings(environ, env_file)
    return tortoise_config(settings.database_url or OFFLINE_URL, settings.schema)


def __getattr__(name: str) -> Any:
    # PEP 562: TORTOISE_ORM is computed on access, so importing this module never needs
    # DATABASE_URL and a changed environment is seen by the next reader.
    if name == "TORTOISE_ORM":
        return config_from_env()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
