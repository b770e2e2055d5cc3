"""Finds the Aerich migration files and imports them in the order Aerich applies them.

Each dialect has its own chain: SQLite's files live in the repository's top-level `migrations/models/`, where
Aerich's `location` points, and PostgreSQL's in `migrations/postgres/models/` (Aerich's config for it is
`migrations/postgres/aerich.toml`). Code run from
a source tree (a checkout, an editable install, a copy of the project) reads the files of that same tree. An
installed wheel carries them as the package `daycare_migrations` (setup.py maps it to `migrations/`).
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from daycare.storage.errors import StorageError

MIGRATIONS_PACKAGE = "daycare_migrations"
SOURCE_TREE = Path(__file__).resolve().parents[3]  # the folder that holds this `daycare` package
_VERSION = re.compile(r"^(\d+)_\w+\.py$")
_REINSTALL = "Reinstall daycare: pip install . (or pip install -e . in a checkout, which keeps migrations/ in place)."


@dataclass(frozen=True)
class MigrationFile:
    """One migration: `version` is its file name, as Aerich records it."""

    version: str
    path: Path
    module: ModuleType

    @property
    def models_state(self) -> dict[str, Any]:
        from aerich.utils import decompress_dict  # Aerich loads only when a migration is recorded

        return decompress_dict(self.module.MODELS_STATE)


# Where each dialect's chain lives inside `migrations/`.
CHAINS = {"sqlite": Path("models"), "postgres": Path("postgres", "models")}


@cache
def migrations_root() -> Path:
    """The source tree's `migrations/`, else the folder of the installed `daycare_migrations` package."""
    if (SOURCE_TREE / "pyproject.toml").is_file() and (SOURCE_TREE / "migrations" / "models").is_dir():
        return SOURCE_TREE / "migrations"
    spec = importlib.util.find_spec(MIGRATIONS_PACKAGE)
    if spec is None or spec.origin is None or not spec.submodule_search_locations:
        raise StorageError(f"The migration files are not installed: no {MIGRATIONS_PACKAGE} package found.", _REINSTALL)
    # A regular package (it has an __init__.py) has exactly one folder, so no other copy on sys.path can join in.
    return Path(spec.origin).resolve().parent


def migrations_dir(dialect: str = "sqlite") -> Path:
    """The folder of `dialect`'s chain ("sqlite": `migrations/models/`, "postgres": `migrations/postgres/models/`)."""
    if dialect not in CHAINS:
        raise StorageError(f"No migrations for the dialect {dialect!r}.")
    return migrations_root() / CHAINS[dialect]


def migrations_load(directory: Path | None = None, *, dialect: str = "sqlite") -> tuple[MigrationFile, ...]:
    """Imports every `<n>_<name>.py` file of `directory` (default: `dialect`'s chain), sorted by number like Aerich."""
    return _load((migrations_dir(dialect) if directory is None else directory).resolve())


def migration_versions(dialect: str = "sqlite") -> tuple[str, ...]:
    """The versions (file names) of `dialect`'s chain in Aerich's order, read from the folder without importing them."""
    return tuple(path.name for path in _files(migrations_dir(dialect).resolve()))


@cache
def _load(directory: Path) -> tuple[MigrationFile, ...]:
    return tuple(MigrationFile(path.name, path, _module_import(path)) for path in _files(directory))


def _files(directory: Path) -> list[Path]:
    """The `<n>_<name>.py` files of `directory`, sorted by number like Aerich."""
    if not directory.is_dir():
        raise StorageError(f"Migration folder not found: {directory}.", _REINSTALL)
    files = sorted(
        (path for path in directory.iterdir() if _VERSION.match(path.name)),
        key=lambda path: int(_VERSION.match(path.name).group(1)),  # type: ignore[union-attr]
    )
    if not files:
        raise StorageError(f"No migration files (<n>_<name>.py) in {directory}.", _REINSTALL)
    return files


def _module_import(path: Path) -> ModuleType:
    try:
        parts = path.with_suffix("").relative_to(migrations_root()).parts
    except ValueError:  # a folder outside the chains, as in tests
        parts = ("models", path.stem)
    spec = importlib.util.spec_from_file_location(".".join((MIGRATIONS_PACKAGE, *parts)), path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in ("upgrade", "MODELS_STATE"):
        if not hasattr(module, name):
            raise StorageError(f"Migration file {path.name} has no {name}.")
    if not getattr(module, "RUN_IN_TRANSACTION", True):
        raise StorageError(f"Migration file {path.name} sets RUN_IN_TRANSACTION = False; every file must be atomic.")
    return module
