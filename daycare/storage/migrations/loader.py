"""Finds the Aerich migration files in `migrations/models/`, in the order Aerich applies them."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from aerich.utils import decompress_dict

from daycare.storage.errors import StorageError

MIGRATIONS_DIR = Path(__file__).resolve().parents[3] / "migrations" / "models"
_VERSION = re.compile(r"^(\d+)_\w+\.py$")


@dataclass(frozen=True)
class MigrationFile:
    """One migration: `version` is its file name, as Aerich records it."""

    version: str
    path: Path
    module: ModuleType

    @property
    def models_state(self) -> dict[str, Any]:
        return decompress_dict(self.module.MODELS_STATE)


def migrations_load(directory: Path = MIGRATIONS_DIR) -> tuple[MigrationFile, ...]:
    """Imports every `<n>_<name>.py` file, sorted by its number like Aerich does."""
    return _load(directory.resolve())


@cache
def _load(directory: Path) -> tuple[MigrationFile, ...]:
    if not directory.is_dir():
        raise StorageError(
            f"Migration folder not found: {directory}.",
            "Run daycare from its source checkout (pip install -e .), where migrations/models/ lives.",
        )
    files = sorted(
        (path for path in directory.iterdir() if _VERSION.match(path.name)),
        key=lambda path: int(_VERSION.match(path.name).group(1)),  # type: ignore[union-attr]
    )
    return tuple(MigrationFile(path.name, path, _module_import(path)) for path in files)


def _module_import(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"daycare_migrations.{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in ("upgrade", "MODELS_STATE"):
        if not hasattr(module, name):
            raise StorageError(f"Migration file {path.name} has no {name}.")
    if not getattr(module, "RUN_IN_TRANSACTION", True):
        raise StorageError(f"Migration file {path.name} sets RUN_IN_TRANSACTION = False; every file must be atomic.")
    return module
