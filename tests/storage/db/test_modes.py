"""Opening a database makes its files private: the file, -wal, -shm and backups end up 0600, said once."""

from __future__ import annotations

import logging
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from daycare.storage.db.database import database_close, database_open
from daycare.storage.db.files import private_modes_ensure

pytestmark = pytest.mark.sqlite_only  # about the file modes of a SQLite file, its -wal, -shm and backups


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def storage_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "daycare.storage"]


@pytest.mark.parametrize("legacy_mode", [0o644, 0o666])
async def test_a_shared_legacy_file_its_wal_shm_and_backups_become_private_in_one_line(
    tmp_path: Path, legacy_copy: Callable[[str], Path], caplog: pytest.LogCaptureFixture, legacy_mode: int
) -> None:
    path = legacy_copy("populated.db")
    path.chmod(legacy_mode)
    backup = tmp_path / "populated.db.bak-20260101T000000Z"
    shutil.copyfile(path, backup)
    backup.chmod(legacy_mode)
    other = tmp_path / "other.db"  # another database in the same folder is not this one's business
    other.write_bytes(b"")
    other.chmod(0o644)
    outside = tmp_path / "outside.txt"
    outside.write_text("a file a backup name links to")
    outside.chmod(0o644)
    (tmp_path / "populated.db.bak-20260101T000001Z").symlink_to(outside)
    caplog.set_level(logging.INFO)

    db = await database_open(path)
    try:
        wal, shm = path.with_name("populated.db-wal"), path.with_name("populated.db-shm")
        assert wal.exists() and shm.exists()  # SQLite created them with the file's mode; the open fixed that
        assert [mode(p) for p in (path, wal, shm, backup)] == [0o600] * 4
        assert mode(other) == 0o644 and mode(outside) == 0o644
        shown = f"{legacy_mode:04o}"
        assert storage_lines(caplog) == [
            f"In {tmp_path}, made private (owner only, 0600): populated.db ({shown}), populated.db-wal ({shown}), "
            f"populated.db-shm ({shown}), {backup.name} ({shown})"
        ]
        await db.connection().execute_query("UPDATE users SET name = 'x' WHERE is_owner = 1")
    finally:
        await database_close(db)
    caplog.clear()
    db = await database_open(path)
    await database_close(db)
    assert storage_lines(caplog) == []  # said once: nothing left to change


async def test_a_read_only_open_names_shared_files_and_changes_no_mode(
    legacy_copy: Callable[[str], Path], caplog: pytest.LogCaptureFixture
) -> None:
    path = legacy_copy("empty.db")
    path.chmod(0o644)
    caplog.set_level(logging.INFO)
    db = await database_open(path, read_only=True)
    await database_close(db)
    assert mode(path) == 0o644
    (line,) = storage_lines(caplog)
    assert "other users can access empty.db (0644)" in line and "makes them private" in line


async def test_a_private_file_and_a_memory_database_say_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for location in (tmp_path / "new.db", ":memory:"):
        db = await database_open(location)
        await database_close(db)
    assert mode(tmp_path / "new.db") == 0o600
    assert storage_lines(caplog) == []


def test_modes_keep_the_owner_bits_and_drop_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "daycare.db"
    path.write_bytes(b"")
    path.chmod(0o755)
    reported = private_modes_ensure(path)
    assert reported == [path] and mode(path) == 0o700
    assert private_modes_ensure(path) == []
