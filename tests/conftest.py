"""Shared fixtures: each database test runs on SQLite (a file in a temp folder) and on PostgreSQL (a fresh
schema on the server tests/postgres_server.py finds), and copies of the legacy fixtures."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from daycare.storage.db import database as database_module
from daycare.storage.db.database import Database, database_close, database_open
from daycare.storage.facade import Storage
from daycare.storage.migrations.expected_cache import CACHE_VARIABLE
from daycare.storage.migrations.migrate import database_migrate

pytest_plugins = ["tests.postgres_server"]  # finds the PostgreSQL server once per session

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = {"yielding": "tests.storage.yielding_backend"}
# The yielding backend is a SQLite backend: its run leaves PostgreSQL out.
DATABASES = ["sqlite"] if os.environ.get("DAYCARE_TEST_BACKEND") == "yielding" else ["sqlite", "postgres"]


_CACHE_FOLDER: str | None = None  # the session's own cache folder, removed at its end


def pytest_configure(config: pytest.Config) -> None:
    """`DAYCARE_TEST_BACKEND=yielding` runs the databases the tests open on the yielding test backend.

    The expected-schema cache of the session (and of the processes it starts) lives in a folder of its
    own: tests never write to the user's ~/.cache, and each session starts with an empty cache.
    """
    global _CACHE_FOLDER
    if CACHE_VARIABLE not in os.environ:
        _CACHE_FOLDER = os.environ[CACHE_VARIABLE] = tempfile.mkdtemp(prefix="daycare-test-cache-")
    name = os.environ.get("DAYCARE_TEST_BACKEND", "")
    if name:
        if name not in BACKENDS:
            raise pytest.UsageError(f"DAYCARE_TEST_BACKEND={name!r}: expected one of {sorted(BACKENDS)}")
        database_module.BACKEND = BACKENDS[name]


def pytest_unconfigure(config: pytest.Config) -> None:
    if _CACHE_FOLDER is not None:
        shutil.rmtree(_CACHE_FOLDER, ignore_errors=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leaves out the postgres instances of tests marked `sqlite_only` (they are about SQLite files)."""
    kept, left_out = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and callspec.params.get("database_url") == "postgres"
        (left_out if on_postgres and item.get_closest_marker("sqlite_only") else kept).append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept


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


@pytest.fixture(params=DATABASES)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Where a new database goes: `sqlite` a file in tmp_path; `postgres` a fresh schema URL, skipped if no server."""
    # Imported here, after pytest_plugins registered the module (an earlier import escapes assertion rewriting).
    from tests.postgres_server import postgres_discovery, postgres_schema

    if request.param == "sqlite":
        yield str(tmp_path / "daycare.db")
        return
    discovery = postgres_discovery(request.config)
    if discovery.server is None:
        pytest.skip(discovery.line)
    async with postgres_schema(discovery.server) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A new database file's path in tmp_path, for tests about SQLite files (mark them `sqlite_only`)."""
    return str(tmp_path / "daycare.db")


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """A new database (SQLite file or PostgreSQL schema), migrated: legacy schema plus the bootstrap owner."""
    database = await database_open(database_url)
    await database_migrate(database)
    yield database
    await database_close(database)


@pytest.fixture
def storage(db: Database) -> Storage:
    """The Storage facade on the `db` fixture."""
    return Storage.from_database(db)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test started; killed at its end if still running."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()
