"""Shared fixtures: real SQLite files in temp folders, and copies of the legacy fixtures."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from daycare.storage.db import database as database_module
from daycare.storage.db.database import Database, database_close, database_open
from daycare.storage.facade import Storage
from daycare.storage.migrations.migrate import database_migrate

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = {"yielding": "tests.storage.yielding_backend"}


def pytest_configure(config: pytest.Config) -> None:
    """`DAYCARE_TEST_BACKEND=yielding` runs the databases the tests open on the yielding test backend."""
    name = os.environ.get("DAYCARE_TEST_BACKEND", "")
    if name:
        if name not in BACKENDS:
            raise pytest.UsageError(f"DAYCARE_TEST_BACKEND={name!r}: expected one of {sorted(BACKENDS)}")
        database_module.BACKEND = BACKENDS[name]


LEGACY_DIR = ROOT / "tests" / "fixtures" / "legacy"


def legacy_path(name: str) -> Path:
    """A file of tests/fixtures/legacy, written by the legacy code (copy it before opening)."""
    path = LEGACY_DIR / name
    if not path.exists():
        raise FileNotFoundError(f"legacy fixture {path} is missing")
    return path


def legacy_dump(name: str) -> dict[str, Any]:
    """The row dump (`<name>.json`) of a legacy fixture."""
    return json.loads(legacy_path(name).read_text(encoding="utf-8"))


@pytest.fixture
def legacy_copy(tmp_path: Path) -> Callable[[str], Path]:
    """Copies a legacy .db fixture into the test's temp folder and returns the copy's path."""

    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copyfile(legacy_path(name), target)
        target.chmod(0o600)
        return target

    return copy


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    """A new database file, migrated (baseline: legacy schema plus the bootstrap owner)."""
    database = await database_open(tmp_path / "daycare.db")
    await database_migrate(database)
    yield database
    await database_close(database)


@pytest.fixture
def storage(db: Database) -> Storage:
    """The Storage facade on the `db` fixture."""
    return Storage.from_database(db)
