"""Drift check between the models and the committed Aerich migrations (no database needed).

Run as ``python -m pgprov.app_schema.check_migrations`` (``make check-migrations``). It copies the
migrations to a temporary directory, lets Aerich's offline ``migrate`` diff the models against
the last migration's MODELS_STATE there, and reports:

- exit 0 and one line when models and migrations agree;
- exit 1 naming the changed models and printing the SQL of the migration that is missing;
- exit 2 when the check cannot run (no migrations, unimportable models, old-format files).

Nothing is written into the repository. ``--models`` and ``--migrations`` point it at other
model modules or another Aerich location, e.g. a test's modified copy of the models.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aerich import Command
from aerich.migrate import Migrate
from aerich.utils import get_models_describe, import_py_file
from pgprov.app_schema.config import (
    APP_LABEL,
    MIGRATIONS_LOCATION,
    MODEL_MODULES,
    OFFLINE_URL,
    tortoise_config,
)
from tortoise.exceptions import ConfigurationError

EXIT_OK = 0
EXIT_DRIFT = 1
EXIT_ERROR = 2


class CheckError(Exception):
    """The check could not run; the message names the input at fault."""


@dataclass
class Drift:
    """What the models have that the migrations do not."""

    changed_models: list[str] = field(default_factory=list)
    upgrade_sql: str = ""

    @property
    def found(self) -> bool:
        return bool(self.upgrade_sql.strip())


def version_files(migration_dir: Path) -> list[str]:
    """Aerich version files (``<n>_<timestamp>_<name>.py``) in version order."""
    names = [
        p.name
        for p in migration_dir.glob("*.py")
        if "_" in p.stem and p.stem.split("_", 1)[0].isdigit()
    ]
    return sorted(names, key=lambda name: int(name.split("_", 1)[0]))


def changed_models(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Model names whose Aerich description differs, added or removed ones included."""
    # The stored state went through JSON (tuples came back as lists); compare like with like.
    old, new = (json.loads(json.dumps(state, default=str)) for state in (old, new))
    return sorted(name for name in old.keys() | new.keys() if old.get(name) != new.get(name))


async def _diff(models: Sequence[str], location: Path) -> Drift:
    config = tortoise_config(OFFLINE_URL, models=models)
    # Not `async with Command(...)`: entering it runs the online init, which queries the
    # database for the last applied version.
    command = Command(tortoise_config=config, app=APP_LABEL, location=str(location))
    try:
        await command.init(offline=True)
        last_state = dict(Migrate._last_version_content or {})
        new_file = await command.migrate("missing", no_input=True, offline=True)
        if not new_file:
            return Drift()
        module = import_py_file(Path(Migrate.migrate_location, new_file))
        return Drift(
            changed_models=changed_models(last_state, get_models_describe(APP_LABEL)),
            upgrade_sql=await module.upgrade(None),
        )
    finally:
        await command.aclose()


def check(
    models: Sequence[str] = MODEL_MODULES, location: str | Path = MIGRATIONS_LOCATION
) -> Drift:
    """Diff ``models`` against the migrations under ``location`` (an Aerich location).

    Works on a temporary copy, so Aerich's generated file never lands in ``location``.
    Raises CheckError when there is nothing to diff against or the models do not load.
    """
    source = Migrate.get_migration_dir(str(location), APP_LABEL)
    if not version_files(source):
        raise CheckError(
            f"{source}: no Aerich migrations found (create the first with `aerich init-migrations`)"
        )
    with tempfile.TemporaryDirectory(prefix="check-migrations-") as tmp:
        shutil.copytree(source, Migrate.get_migration_dir(tmp, APP_LABEL))
        try:
            return asyncio.run(_diff(models, Path(tmp)))
        except (ConfigurationError, ImportError) as exc:
            raise CheckError(f"models {', '.join(models)}: {exc}") from exc
        except RuntimeError as exc:
            # Aerich's offline mode refuses migration files without MODELS_STATE.
            raise CheckError(f"{source}: {exc}") from exc


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pgprov-check-migrations",
        description="Fail when the Tortoise models changed without an Aerich migration.",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=list(MODEL_MODULES),
        metavar="MODULE",
        help="model modules to check (default: the service's)",
    )
    parser.add_argument(
        "--migrations",
        default=MIGRATIONS_LOCATION,
        metavar="LOCATION",
        help=f"Aerich location holding <location>/{APP_LABEL}/ (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    try:
        drift = check(args.models, args.migrations)
    except CheckError as exc:
        print(f"check-migrations: {exc}", file=sys.stderr)
        return EXIT_ERROR
    source = Migrate.get_migration_dir(str(args.migrations), APP_LABEL)
    if not drift.found:
        last = version_files(source)[-1]
        print(f"check-migrations: models match the migrations (last: {last})")
        return EXIT_OK
    print(
        "check-migrations: models changed without a migration: "
        f"{', '.join(drift.changed_models) or 'unknown'}\n"
        f"Run `aerich migrate --name <change>` and commit the file in {source}. "
        "The missing migration would run:\n"
        f"{drift.upgrade_sql.strip()}",
        file=sys.stderr,
    )
    return EXIT_DRIFT


if __name__ == "__main__":
    sys.exit(main())
