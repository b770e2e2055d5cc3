"""database_open / database_close: locations, pragmas, isolation between databases."""

from __future__ import annotations

import asyncio
import re
import shutil
import stat
from pathlib import Path

import pytest
from tortoise.exceptions import OperationalError

from daycare.schema import User
from daycare.storage.db.database import (
    Database,
    DatabaseCorrupt,
    DatabaseNotWritable,
    DiskFull,
    database_close,
    database_open,
    database_writable_check,
)
from daycare.storage.db.location import database_location
from daycare.storage.errors import StorageError
from daycare.storage.migrations.migrate import database_migrate
from tests.conftest import legacy_path
from tests.storage.db.file_states import disk_fill, full_disk, unwritable


async def pragma(db: Database, name: str) -> object:
    rows = await db.connection().execute_query_dict(f"PRAGMA {name}")
    return next(iter(rows[0].values()))


async def test_open_sets_wal_and_foreign_keys_on_files(tmp_path: Path) -> None:
    db = await database_open(tmp_path / "a.db")
    try:
        assert await pragma(db, "journal_mode") == "wal"
        assert await pragma(db, "foreign_keys") == 1
    finally:
        await database_close(db)


async def test_open_accepts_a_tortoise_url_with_pragmas(tmp_path: Path) -> None:
    db = await database_open(f"sqlite://{tmp_path}/b.db?synchronous=NORMAL")
    try:
        assert db.path == tmp_path / "b.db"
        assert await pragma(db, "synchronous") == 1
        assert await pragma(db, "foreign_keys") == 1
    finally:
        await database_close(db)


async def test_memory_database_has_foreign_keys_and_no_path() -> None:
    db = await database_open("sqlite://:memory:")
    try:
        assert db.path is None
        assert await pragma(db, "foreign_keys") == 1
        assert await database_migrate(db)
    finally:
        await database_close(db)


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("mysql://localhost/daycare", "Unsupported database URL scheme 'mysql'.*postgres:// URL"),
        ("postgres://localhost/", "names no database"),
        ("postgres://localhost:port/daycare", "port .* is not a number"),
        ("postgres://u:secret@localhost/daycare?schema=1x", "Invalid schema='1x'"),
        ("postgres://localhost/daycare?schema=a;DROP", "Invalid schema="),
        ("postgres://localhost/daycare?synchronous=FULL", "Unknown parameter 'synchronous'.*lock_timeout, schema"),
        ("postgres://localhost/daycare?sslmode=sometimes", "Invalid sslmode='sometimes'"),
        ("  ", "empty"),
        ("sqlite:///x.db?journal_mode=WAL;DROP", "Unknown parameter 'journal_mode'.*WAL mode itself"),
        ("sqlite:///x.db?synchronous=FUL", "Invalid synchronous='FUL'.*use one of OFF, NORMAL, FULL, EXTRA"),
        ("sqlite:///x.db?synchronus=FULL", "Unknown parameter 'synchronus'.*Known parameters: cache_size,"),
        ("sqlite:///x.db?foreign_keys=OFF", "foreign_keys=OFF .* is not allowed: Daycare needs foreign keys on"),
        ("sqlite:///x.db?foreign_keys=maybe", "Invalid foreign_keys='maybe'.*use one of ON"),
        ("sqlite:///x.db?synchronous=", "Invalid synchronous=''"),
        ("sqlite:///x.db?synchronous=FULL&synchronous=OFF", "synchronous is given twice"),
        ("sqlite:///x.db?cache_size=big", "Invalid cache_size='big'.*a whole number"),
        ("sqlite:///x.db?mmap_size=-1", "Invalid mmap_size='-1'.*a whole number from 0"),
        ("sqlite:///x.db?lock_timeout=1.5", "Invalid lock_timeout='1.5'"),
        ("sqlite:///x.db?busy_timeout=100", "Use lock_timeout"),
        ("sqlite:///x.db?mode=ro", "Unknown parameter 'mode'"),
    ],
)
def test_bad_locations_are_refused_with_a_clear_message(location: str, message: str) -> None:
    with pytest.raises(StorageError, match=re.compile(message, re.DOTALL)):
        database_location(location)


def test_postgres_passwords_never_reach_messages_or_reprs() -> None:
    with pytest.raises(StorageError) as refused:
        database_location("postgres://daycare:s3cret@db.example/daycare?nope=1")
    assert "s3cret" not in str(refused.value) and ":***@" in str(refused.value)
    location = database_location("postgresql://daycare:s3cret@db.example:6432/daycare?schema=team_a&sslmode=require")
    assert "s3cret" not in repr(location) and "s3cret" not in location.display
    assert location.display == "postgres://daycare@db.example:6432/daycare?schema=team_a"
    assert (location.dialect, location.schema, location.path) == ("postgres", "team_a", None)
    assert location.server is not None and location.server.password == "s3cret"


def test_known_parameters_are_passed_on_normalized() -> None:
    location = database_location("sqlite:///x.db?synchronous=normal&Cache_Size=-2000&lock_timeout=250&foreign_keys=on")
    assert location.pragmas == (
        ("synchronous", "NORMAL"),
        ("cache_size", "-2000"),
        ("lock_timeout", "250"),
        ("foreign_keys", "ON"),
    )


async def test_a_lowercase_pragma_value_takes_effect(tmp_path: Path) -> None:
    db = await database_open(f"sqlite://{tmp_path}/c.db?synchronous=full")
    try:
        assert await pragma(db, "synchronous") == 2
    finally:
        await database_close(db)


async def test_missing_folders_are_created_0700_each(tmp_path: Path) -> None:
    db = await database_open(tmp_path / "a" / "b" / "daycare.db")
    await database_close(db)
    assert [stat.S_IMODE(folder.stat().st_mode) for folder in (tmp_path / "a", tmp_path / "a" / "b")] == [0o700] * 2


def test_a_writable_database_passes_the_check(tmp_path: Path) -> None:
    database_writable_check(tmp_path / "new" / "daycare.db")  # a missing folder is judged by the one above it
    database_writable_check(None)


def test_an_unwritable_file_is_named_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "daycare.db"
    path.write_bytes(b"")
    with unwritable(path) as how, pytest.raises(DatabaseNotWritable) as refused:
        database_writable_check(path, outcome="Nothing was changed and no backup was written")
    reason = "it is immutable" if how == "chattr +i" else "its permissions (0400"
    assert f"{path} is read-only: {reason}" in str(refused.value)
    assert "Nothing was changed and no backup was written. Make it writable" in str(refused.value)


def test_an_unwritable_folder_is_named_with_the_reason(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    with unwritable(folder), pytest.raises(DatabaseNotWritable, match=f"its folder {folder} is read-only"):
        database_writable_check(folder / "daycare.db")


async def test_a_read_only_folder_at_open_is_not_called_an_unreadable_database(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    shutil.copyfile(legacy_path("empty.db"), folder / "daycare.db")  # WAL: SQLite must create -shm beside it
    with unwritable(folder), pytest.raises(DatabaseNotWritable, match=f"its folder {folder} is read-only"):
        await database_open(folder / "daycare.db")


async def test_a_damaged_file_is_called_damaged_and_never_told_to_skip_the_backup(tmp_path: Path) -> None:
    path = tmp_path / "daycare.db"
    shutil.copyfile(legacy_path("populated.db"), path)
    with open(path, "r+b") as file:  # the page after the header: sqlite_master's continuation and tables
        file.seek(100)
        file.write(b"\xff" * 4000)
    with pytest.raises(DatabaseCorrupt) as refused:
        await database_open(path)
    assert "is damaged: SQLite reports database disk image is malformed" in str(refused.value)
    assert "backup" in str(refused.value) and "--no-backup" not in str(refused.value)


async def test_a_full_disk_at_open_is_called_a_full_disk(tmp_path: Path) -> None:
    with full_disk(tmp_path / "small") as folder:
        shutil.copyfile(legacy_path("empty.db"), folder / "daycare.db")
        disk_fill(folder)
        for target in (folder / "daycare.db", folder / "new.db"):
            with pytest.raises(DiskFull, match=f"The disk that holds {target} is full"):
                await database_open(target)


async def test_a_folder_is_not_a_database(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="is a folder"):
        await database_open(tmp_path)


async def test_two_databases_in_one_task_never_see_each_other(tmp_path: Path) -> None:
    first = await database_open(tmp_path / "first.db")
    second = await database_open(tmp_path / "second.db")
    try:
        await database_migrate(first)
        await database_migrate(second)
        await User.create(
            id="only-in-first", nametag="firsttag100", created_at=1, updated_at=1, using_db=first.connection()
        )
        async with second.in_transaction():
            await User.create(
                id="only-in-second", nametag="secondtag100", created_at=1, updated_at=1, using_db=second.connection()
            )
            assert await User.filter(id="only-in-first").using_db(first.connection()).exists()
        assert not await User.filter(id="only-in-second").using_db(first.connection()).exists()
        assert not await User.filter(id="only-in-first").using_db(second.connection()).exists()
    finally:
        await database_close(first)
        await database_close(second)


async def test_a_transaction_in_one_database_does_not_block_another(tmp_path: Path) -> None:
    first = await database_open(tmp_path / "first.db")
    second = await database_open(tmp_path / "second.db")
    try:
        async with first.in_transaction():
            await asyncio.wait_for(second.connection().execute_query("SELECT 1"), timeout=1)
    finally:
        await database_close(first)
        await database_close(second)


async def test_a_query_without_a_database_fails_loudly(db: Database) -> None:
    with pytest.raises(OperationalError, match="no database bound"):
        await User.all().count()


async def test_a_closed_database_cannot_be_used(tmp_path: Path) -> None:
    db = await database_open(tmp_path / "closed.db")
    await database_close(db)
    with pytest.raises(Exception):  # noqa: B017 - Tortoise raises ConfigurationError after close
        await db.connection().execute_query("SELECT 1")


async def test_a_client_kept_past_close_does_not_reconnect(database_url: str) -> None:
    db = await database_open(database_url)
    client = db.connection()
    await database_close(db)
    with pytest.raises(OperationalError, match="is closed"):
        await client.execute_query("SELECT 1")
