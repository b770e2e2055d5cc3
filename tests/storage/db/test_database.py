"""database_open / database_close: locations, pragmas, isolation between databases."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tortoise.exceptions import OperationalError

from daycare.schema import User
from daycare.storage.db.database import Database, database_close, database_location, database_open
from daycare.storage.errors import StorageError
from daycare.storage.migrations.migrate import database_migrate


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
        ("postgres://localhost/daycare", "Unsupported database URL scheme"),
        ("  ", "empty"),
        ("sqlite:///x.db?journal_mode=WAL;DROP", "Invalid pragma"),
    ],
)
def test_bad_locations_are_refused_with_a_clear_message(location: str, message: str) -> None:
    with pytest.raises(StorageError, match=message):
        database_location(location)


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


async def test_a_client_kept_past_close_does_not_reconnect(tmp_path: Path) -> None:
    db = await database_open(tmp_path / "kept.db")
    client = db.connection()
    await database_close(db)
    with pytest.raises(OperationalError, match="is closed"):
        await client.execute_query("SELECT 1")
