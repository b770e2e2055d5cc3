"""The database lock (`<name>.lock`, flock): one engine or upgrade per file, released when its holder dies."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from pathlib import Path

import pytest

from daycare.engine import Engine
from daycare.storage.db.database import DatabaseNotWritable
from daycare.storage.db.lock import (
    ENGINE,
    UPGRADE,
    DatabaseInUse,
    database_lock,
    database_lock_try,
    database_lock_wait,
    lock_holder_read,
    lock_path,
)
from tests.engine.helpers import engine_config
from tests.storage.db.file_states import unwritable
from tests.storage.db.lock_holder import lock_held


def test_the_lock_file_is_beside_the_database_private_and_names_its_holder(tmp_path: Path) -> None:
    database = tmp_path / "daycare.db"
    with database_lock(database, ENGINE) as lock:
        assert lock is not None and lock.path == tmp_path / "daycare.db.lock" == lock_path(database)
        assert stat.S_IMODE(lock.path.stat().st_mode) == 0o600
        holder = lock_holder_read(lock.path)
        assert holder is not None and holder.pid == os.getpid() and holder.purpose == ENGINE
        assert "pytest" in holder.command or "python" in holder.command
    assert lock.path.exists() and lock.path.read_text() == ""  # kept, emptied: never two files of one name
    assert not database.exists()  # the lock does not create the database


def test_a_second_lock_in_the_same_process_is_refused_and_the_first_release_frees_it(tmp_path: Path) -> None:
    database = tmp_path / "daycare.db"
    first = database_lock_try(database, ENGINE)
    with pytest.raises(DatabaseInUse, match=rf"in use by an engine \(pid {os.getpid()}, this process") as refused:
        database_lock_try(database, UPGRADE)
    assert refused.value.holder is not None and refused.value.holder.purpose == ENGINE
    first.release()
    first.release()  # twice is harmless
    database_lock_try(database, UPGRADE).release()


def test_another_process_holding_the_lock_is_named_and_its_death_frees_the_lock(tmp_path: Path) -> None:
    database = tmp_path / "daycare.db"
    with lock_held(database, ENGINE) as holder:
        with pytest.raises(DatabaseInUse) as refused:
            database_lock_try(database, ENGINE)
        message = str(refused.value)
        assert f"{database} is in use by an engine (pid {holder.pid}: " in message
        assert str(lock_path(database)) in message and "Nothing was changed" in message
        holder.kill()  # SIGKILL: no cleanup runs, the OS drops the flock
        database_lock_try(database, ENGINE).release()


def test_memory_databases_need_no_lock() -> None:
    with database_lock(None) as lock:
        assert lock is None


def test_missing_folders_are_created_0700_each(tmp_path: Path) -> None:
    database = tmp_path / "a" / "b" / "c" / "daycare.db"
    with database_lock(database, ENGINE):
        for folder in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"):
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


async def test_a_running_engine_is_not_waited_for(tmp_path: Path) -> None:
    database = tmp_path / "daycare.db"
    with lock_held(database, ENGINE):
        started = time.monotonic()
        with pytest.raises(DatabaseInUse, match="in use by an engine"):
            await database_lock_wait(database, UPGRADE, wait=30)
        assert time.monotonic() - started < 5


async def test_an_upgrade_is_waited_for_saying_so_once(tmp_path: Path) -> None:
    database = tmp_path / "daycare.db"
    said: list[str] = []
    with lock_held(database, UPGRADE) as holder:
        waiting = asyncio.create_task(database_lock_wait(database, UPGRADE, wait=30, notify=said.append))
        await asyncio.sleep(0.5)
        assert not waiting.done()
        assert len(said) == 1 and said[0].startswith(f"Waiting up to 30 s for an upgrade (pid {holder.pid}")
        await asyncio.to_thread(holder.release)
        lock = await asyncio.wait_for(waiting, timeout=10)
    assert lock is not None
    lock.release()
    assert len(said) == 1


async def test_an_upgrade_that_outlasts_the_wait_is_named(tmp_path: Path) -> None:
    database = tmp_path / "daycare.db"
    with (
        lock_held(database, UPGRADE),
        pytest.raises(DatabaseInUse, match=r"in use by an upgrade[\s\S]*Waited 0.3 s for that upgrade to finish"),
    ):
        await database_lock_wait(database, UPGRADE, wait=0.3)


def test_a_folder_that_cannot_be_written_is_diagnosed(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o700)
    with unwritable(folder), pytest.raises(DatabaseNotWritable, match=f"its folder {folder} is read-only"):
        database_lock_try(folder / "daycare.db", ENGINE)
    assert list(folder.iterdir()) == []


async def test_a_second_engine_on_the_same_file_is_refused_while_the_first_runs(tmp_path: Path) -> None:
    path = tmp_path / "daycare.db"
    async with Engine(engine_config(path, tmp_path)) as first:
        second = Engine(engine_config(path, tmp_path))
        with pytest.raises(DatabaseInUse, match=rf"{path} is in use by an engine \(pid {os.getpid()}"):
            await second.start()
        with pytest.raises(RuntimeError, match="not started"):
            _ = second.storage
        assert await first.storage.users.find_owner() is not None  # the first engine is untouched
        holder = lock_holder_read(lock_path(path))
        assert holder is not None and holder.purpose == ENGINE
    async with Engine(engine_config(path, tmp_path)) as again:  # stop() released the lock
        assert await again.storage.users.find_owner() is not None
    assert lock_path(path).read_text() == ""
