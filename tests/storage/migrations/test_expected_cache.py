"""The on-disk cache of the expected SQLite schema: used by the next process, never stale, never in the way."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import marshal
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from daycare.storage.db.database import database_close, database_open
from daycare.storage.errors import DatabaseRefused
from daycare.storage.migrations import expected_cache, schema_check
from daycare.storage.migrations.catalog import TableIssues, schema_report
from daycare.storage.migrations.expected_cache import cache_key, expected_cache_read, expected_cache_write
from daycare.storage.migrations.loader import MigrationFile, migrations_load
from daycare.storage.migrations.migrate import database_migrate
from daycare.storage.migrations.schema_check import database_schema_check
from tests.storage.helpers import file_migrate
from tests.sqlite_files import file_execute
from tests.storage.migrations.migrated import VERSIONS
from tests.test_cold_start import ENGINE_START, loaded, python_run

pytestmark = pytest.mark.sqlite_only

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache folder for this test, and a process that has built no expected schema yet."""
    folder = tmp_path / "cache"
    monkeypatch.setenv(expected_cache.CACHE_VARIABLE, str(folder))
    monkeypatch.setattr(schema_check, "_expected_cache", {})
    return folder


@pytest.fixture
async def up_to_date(tmp_path: Path) -> Path:
    path = tmp_path / "daycare.db"
    await file_migrate(path, backup=False)
    return path


def entries(folder: Path) -> list[Path]:
    return sorted(folder.glob("sqlite-schema-*"))


async def check(path: Path) -> list[TableIssues]:
    """The schema check of the file, in a process that has built no expected schema yet."""
    schema_check._expected_cache.clear()
    db = await database_open(path, read_only=True)
    try:
        return await database_schema_check(db)
    finally:
        await database_close(db)


KEY = cache_key(migrations_load())


async def test_a_check_stores_what_the_scratch_gives_in_a_private_entry(cache: Path, up_to_date: Path) -> None:
    assert await check(up_to_date) == []
    [entry] = entries(cache)
    assert KEY is not None and entry.name == f"sqlite-schema-{KEY}"
    assert (cache.stat().st_mode & 0o777, entry.stat().st_mode & 0o777) == (0o700, 0o600)
    built = schema_check._expected_cache[("sqlite", "", VERSIONS)]
    assert built.texts is not None and built.tables.keys() == built.texts.keys()  # every table described
    assert expected_cache_read(KEY) == (built.texts, built.tables)  # with the types the catalog gives


def engine_start_builds_a_scratch(path: Path, cache: Path) -> bool:
    """Starts an engine on `path` in a fresh process; whether it ran the migrations on a scratch database
    (migration 0 makes a nametag there, which loads coolname: the file's owner exists already)."""
    result = python_run(ENGINE_START, str(path), cwd=path.parent, env={expected_cache.CACHE_VARIABLE: str(cache)})
    assert result.returncode == 0, result.stderr
    return loaded("coolname", json.loads(result.stdout.splitlines()[-1]))


def test_the_next_process_takes_the_expected_schema_from_the_entry(cache: Path, up_to_date: Path) -> None:
    assert engine_start_builds_a_scratch(up_to_date, cache) is True
    assert len(entries(cache)) == 1
    assert engine_start_builds_a_scratch(up_to_date, cache) is False
    entries(cache)[0].unlink()
    assert engine_start_builds_a_scratch(up_to_date, cache) is True


async def test_the_check_compares_with_the_entry(cache: Path, up_to_date: Path) -> None:
    assert await check(up_to_date) == []
    assert KEY is not None
    stored = expected_cache_read(KEY)
    assert stored is not None
    texts, tables = stored
    # An entry that expects one more column in users: the check must report it, so it read the entry.
    texts["users"] = texts["users"] | {("table", "ghost", None)}
    users = tables["users"]
    tables["users"] = dataclasses.replace(users, columns={**users.columns, "ghost": ("TEXT", False, None, 0)})
    expected_cache_write(KEY, texts, tables)
    assert schema_report(await check(up_to_date)) == "  users:\n    - missing column ghost: TEXT"


def damage(entry: Path, how: str) -> None:
    content = entry.read_bytes()
    header, _, body = content.partition(b"\n")
    if how == "cut short":
        entry.write_bytes(content[: len(content) // 2])
    elif how == "a byte changed":
        entry.write_bytes(content[:-10] + bytes([content[-10] ^ 1]) + content[-9:])
    elif how == "empty":
        entry.write_bytes(b"")
    elif how == "not the expected shape":  # the header is right for its body
        body = marshal.dumps(({"users": [("table", "users", None)]}, {"users": ()}))
        key = header.split(b" ")[0].decode()
        entry.write_bytes(f"{key} {hashlib.sha256(body).hexdigest()}\n".encode() + body)
    elif how == "writable by others":
        entry.chmod(0o666)
    elif how == "a folder":
        entry.unlink()
        entry.mkdir()
    else:
        raise AssertionError(how)


@pytest.mark.parametrize(
    "how", ["cut short", "a byte changed", "empty", "not the expected shape", "writable by others", "a folder"]
)
async def test_a_damaged_entry_is_ignored_and_written_again(cache: Path, up_to_date: Path, how: str) -> None:
    assert await check(up_to_date) == []
    [entry] = entries(cache)
    good = expected_cache_read(KEY or "")
    damage(entry, how)
    assert expected_cache_read(KEY or "") is None
    assert await check(up_to_date) == []
    if how == "a folder":  # cannot be replaced: left as it is, and every check builds the schema
        assert entry.is_dir() and expected_cache_read(KEY or "") is None
        return
    assert entry.stat().st_mode & 0o777 == 0o600
    stored = expected_cache_read(KEY or "")
    assert stored is not None and good is not None
    assert stored[0].keys() == good[0].keys() and stored[1].keys() == good[1].keys()


async def test_an_unusable_cache_folder_changes_no_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, up_to_date: Path
) -> None:
    monkeypatch.setattr(schema_check, "_expected_cache", {})
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(expected_cache.CACHE_VARIABLE, str(blocker / "cache"))
    assert await check(up_to_date) == []
    file_execute(up_to_date, "ALTER TABLE users ADD COLUMN extra TEXT")
    assert schema_report(await check(up_to_date)) == "  users:\n    - unexpected column extra: TEXT"
    assert blocker.read_text() == "not a folder"


def test_the_key_follows_the_migration_files_the_code_and_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrations = migrations_load()
    copies = []
    for migration in migrations:  # the same files elsewhere: the key is of their names and contents
        copy = tmp_path / migration.path.name
        shutil.copyfile(migration.path, copy)
        copies.append(MigrationFile(migration.version, copy, migration.module))
    assert cache_key(copies) == KEY
    assert cache_key(copies[:-1]) not in (None, KEY)  # another tuple of versions
    with copies[-1].path.open("a") as file:
        file.write("\n# edited\n")
    edited = cache_key(copies)
    assert edited not in (None, KEY)
    monkeypatch.setattr(expected_cache, "SQLITE_VERSION", "3.0.0")
    assert cache_key(migrations) not in (None, KEY, edited)
    monkeypatch.undo()
    catalog = tmp_path / "catalog.py"  # the code that describes a table, copied
    sources = tuple(catalog if path.name == catalog.name else path for path in expected_cache.SOURCES)
    assert catalog in sources
    shutil.copyfile(Path(schema_check.__file__).with_name(catalog.name), catalog)
    monkeypatch.setattr(expected_cache, "SOURCES", sources)
    assert cache_key(migrations) == KEY
    catalog.write_text(catalog.read_text() + "\n# edited\n")
    assert cache_key(migrations) not in (None, KEY, edited)
    monkeypatch.setattr(expected_cache, "SOURCES", (*expected_cache.SOURCES, tmp_path / "missing.py"))
    assert cache_key(migrations) is None  # an unreadable source: no entry is read or written


DRIFT = (
    "ALTER TABLE users ADD COLUMN extra TEXT",
    "DROP INDEX idx_signals_delayed_repeat",
    "DROP TRIGGER trg_users_nametag_required_insert",
    "CREATE TABLE strangers (id INTEGER PRIMARY KEY)",
    "ALTER TABLE agents ADD COLUMN mood TEXT",
)


async def test_a_drifted_file_is_refused_the_same_with_an_entry(
    cache: Path, up_to_date: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await check(up_to_date) == []
    assert len(entries(cache)) == 1
    file_execute(up_to_date, *DRIFT)
    refusals = []
    for folder in (cache, tmp_path / "no cache" / "here"):  # with the entry, then with none to read
        monkeypatch.setenv(expected_cache.CACHE_VARIABLE, str(folder))
        issues = await check(up_to_date)
        db = await database_open(up_to_date)
        try:
            with pytest.raises(DatabaseRefused) as refused:
                await database_migrate(db, backup=False)
        finally:
            await database_close(db)
        refusals.append((schema_report(issues), str(refused.value)))
    assert refusals[0] == refusals[1]
    report = refusals[0][0]
    for line in ("unexpected column extra", "missing index idx_signals_delayed_repeat", "unexpected table"):
        assert line in report
    assert "unexpected column mood" in report and report in refusals[0][1]
