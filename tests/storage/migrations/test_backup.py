"""Backups: written under a temporary name and renamed when complete, reused while the file is unchanged."""

from __future__ import annotations

import errno
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tortoise.exceptions import OperationalError

from daycare.storage.db.database import database_close, database_open
from daycare.storage.errors import StorageError
from daycare.storage.migrations.backup import (
    PARTIAL,
    Backup,
    _backup_error,
    backup_complete,
    backup_leftovers_remove,
    database_backup,
)
from daycare.storage.migrations.loader import migrations_load
from daycare.storage.migrations.migrate import database_migrate
from tests.conftest import ROOT
from tests.sqlite_files import file_query, file_sha256
from tests.storage.migrations.test_migrate import assert_rows_equal_dump, failing_migration, migrate_file

NAME = re.compile(r"populated\.db\.bak-\d{8}T\d{6}Z-[0-9a-f]{16}")


def backups(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.bak-*"))


def daycare(*args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "DAYCARE_DB_URL"}
    return subprocess.run(
        [sys.executable, "-m", "daycare", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300
    )


async def backup_of(path: Path) -> Backup:
    db = await database_open(path)
    try:
        return await database_backup(db)
    finally:
        await database_close(db)


def history_grow(path: Path, megabytes: int) -> None:
    """Adds about `megabytes` of history to a legacy file, so that copying it takes a while."""
    connection = sqlite3.connect(path)
    (session,) = connection.execute("SELECT id FROM sessions ORDER BY id LIMIT 1").fetchone()
    data = json.dumps({"text": "x" * 100_000})
    rows = [(session, "note", index, data) for index in range(megabytes * 10)]
    connection.executemany("INSERT INTO session_history (session_id, type, at, data) VALUES (?, ?, ?, ?)", rows)
    connection.commit()
    connection.close()


async def test_a_backup_is_complete_private_and_named_after_its_content(legacy_copy: Callable[[str], Path]) -> None:
    path = legacy_copy("populated.db")
    backup = await backup_of(path)
    assert not backup.reused and backup.line() == f"Backup written to {backup.path}"
    assert backups(path) == [backup.path]
    assert NAME.fullmatch(backup.path.name), backup.path.name
    assert backup.path.stat().st_mode & 0o777 == 0o600
    assert backup_complete(backup.path)
    assert file_query(backup.path, "PRAGMA integrity_check") == [("ok",)]
    assert_rows_equal_dump(backup.path, "populated.json")


async def test_an_unchanged_file_keeps_its_backup_and_a_committed_change_gets_a_new_one(
    legacy_copy: Callable[[str], Path],
) -> None:
    path = legacy_copy("populated.db")
    first = await backup_of(path)
    again = await backup_of(path)
    assert again == Backup(first.path, reused=True)
    assert "Backup kept" in again.line() and str(first.path) in again.line()
    connection = sqlite3.connect(path)
    connection.execute("UPDATE users SET name = 'changed' WHERE is_owner = 1")
    connection.commit()
    connection.close()
    changed = await backup_of(path)
    assert not changed.reused and changed.path != first.path
    assert backups(path) == sorted([first.path, changed.path])
    assert file_query(changed.path, "SELECT name FROM users WHERE is_owner = 1") == [("changed",)]


async def test_a_rerun_of_a_failed_upgrade_reuses_the_backup_it_wrote(
    tmp_path: Path, legacy_copy: Callable[[str], Path]
) -> None:
    path = legacy_copy("populated.db")
    await migrate_file(path, backup=False)
    broken = failing_migration(
        tmp_path, "ALTER TABLE users ADD COLUMN mood TEXT;\nINSERT INTO no_such_table VALUES (1);"
    )
    said: list[str] = []
    for _ in range(3):
        db = await database_open(path)
        try:
            with pytest.raises((OperationalError, StorageError), match="no_such_table"):
                await database_migrate(db, notify=said.append, migrations=[*migrations_load(), broken])
        finally:
            await database_close(db)
    (backup,) = backups(path)
    assert (
        said
        == [f"Backup written to {backup}"]
        + [f"Backup kept: {backup} already holds this content (an earlier run wrote it)"] * 2
    )


async def test_a_file_a_reader_keeps_in_the_wal_gets_a_fresh_backup_every_time(
    legacy_copy: Callable[[str], Path],
) -> None:
    path = legacy_copy("populated.db")
    reader = sqlite3.connect(path, isolation_level=None)
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM users").fetchall()  # a snapshot the checkpoint may not pass
        writer.execute("UPDATE users SET name = 'latest' WHERE is_owner = 1")
        first = await backup_of(path)
        second = await backup_of(path)
    finally:
        reader.close()
        writer.close()
    # Without a complete checkpoint the file has no fingerprint: never reused, and still a copy of the latest commit.
    assert not first.reused and not second.reused and first.path != second.path
    assert re.fullmatch(r"populated\.db\.bak-\d{8}T\d{6}Z(-\d+)?", first.path.name)
    assert file_query(second.path, "SELECT name FROM users WHERE is_owner = 1") == [("latest",)]


async def test_leftovers_of_interrupted_backups_are_removed_and_nothing_else(
    tmp_path: Path, legacy_copy: Callable[[str], Path]
) -> None:
    path = legacy_copy("populated.db")
    leftover = tmp_path / f"populated.db.bak-20260101T000000Z-0123456789abcdef{PARTIAL}"
    leftover.write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
    plain_leftover = tmp_path / f"populated.db.bak-20260101T000001Z{PARTIAL}"
    plain_leftover.write_bytes(b"")
    journal = tmp_path / f"populated.db.bak-20260101T000001Z{PARTIAL}-journal"  # VACUUM INTO's own journal
    journal.write_bytes(b"\xd9\xd5\x05\xf9")
    other = tmp_path / f"other.db.bak-20260101T000000Z{PARTIAL}"
    other.write_bytes(b"another database's backup in progress")
    outside = tmp_path / "outside"
    outside.write_bytes(b"keep")
    link = tmp_path / f"populated.db.bak-20260101T000002Z{PARTIAL}"
    link.symlink_to(outside)
    kept = tmp_path / "populated.db.bak-20250101T000000Z"  # a complete backup of an earlier version
    kept.write_bytes(b"old backup")
    backup = await backup_of(path)
    assert not leftover.exists() and not plain_leftover.exists() and not journal.exists()
    assert other.exists() and link.is_symlink() and outside.read_bytes() == b"keep" and kept.exists()
    assert backups(path) == sorted([kept, link, backup.path])
    assert backup_leftovers_remove(path) == []


def test_a_truncated_or_foreign_file_is_not_a_complete_backup(
    tmp_path: Path, legacy_copy: Callable[[str], Path]
) -> None:
    path = legacy_copy("populated.db")
    truncated = tmp_path / "truncated"
    truncated.write_bytes(path.read_bytes()[:8192])
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    text = tmp_path / "text"
    text.write_text("not a database\n" * 100)
    assert not backup_complete(truncated) and not backup_complete(empty) and not backup_complete(text)
    connection = sqlite3.connect(path)
    connection.execute(f"VACUUM INTO '{tmp_path / 'whole'}'")
    connection.close()
    assert backup_complete(tmp_path / "whole")


def test_backup_errors_give_advice_that_fits_the_cause(tmp_path: Path) -> None:
    target = tmp_path / "daycare.db.bak-20260101T000000Z"
    corrupt = str(_backup_error(target, OperationalError("database disk image is malformed")))
    assert "damaged" in corrupt and "daycare restore" in corrupt and "--no-backup" not in corrupt
    full = str(_backup_error(target, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))))
    assert "Free some disk space" in full and "--no-backup" in full
    sqlite_full = str(_backup_error(target, OperationalError("database or disk is full")))
    assert "Free some disk space" in sqlite_full
    denied = str(_backup_error(target, PermissionError(errno.EACCES, os.strerror(errno.EACCES))))
    assert f"Make {tmp_path} writable" in denied and "disk space" not in denied
    other = str(_backup_error(target, OSError(errno.EIO, os.strerror(errno.EIO))))
    assert "--no-backup" not in other and "disk space" not in other


def test_sigkill_during_the_backup_leaves_no_broken_backup_and_the_rerun_cleans_up(
    legacy_copy: Callable[[str], Path],
) -> None:
    path = legacy_copy("populated.db")
    history_grow(path, megabytes=200)
    rows = file_query(path, "SELECT count(*) FROM session_history")
    env = {key: value for key, value in os.environ.items() if key != "DAYCARE_DB_URL"}
    process = subprocess.Popen(
        [sys.executable, "-m", "daycare", "upgrade", "--db", str(path)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seen: list[Path] = []
    deadline = time.monotonic() + 120
    try:
        while not seen and process.poll() is None and time.monotonic() < deadline:
            seen = [p for p in backups(path) if p.name.endswith(PARTIAL) and p.stat().st_size > 0]
            time.sleep(0.001)
    finally:
        process.kill()
        process.wait()
    assert seen, "the upgrade ended before its backup was caught half-written"
    left = backups(path)
    # Nothing that looks like a complete backup: the copy and SQLite's -journal of it, both `.partial`.
    assert left and all(p.name.endswith((PARTIAL, f"{PARTIAL}-journal")) for p in left), left
    rerun = daycare("upgrade", "--db", str(path))
    assert rerun.returncode == 0, rerun.stderr
    assert f"Removed {len(left)} unfinished backup file(s)" in rerun.stderr
    (backup,) = backups(path)
    assert f"Backup written to {backup}" in rerun.stdout
    assert backup_complete(backup)
    assert file_query(backup, "PRAGMA integrity_check") == [("ok",)]
    assert file_query(backup, "SELECT count(*) FROM session_history") == rows
    assert file_query(backup, "SELECT count(*) FROM sqlite_master WHERE name = 'aerich'") == [(0,)]
    assert daycare("upgrade", "--db", str(path)).stdout.strip() == f"{path} is up to date."
    assert backups(path) == [backup]


async def test_a_rerun_of_daycare_upgrade_keeps_the_backup_an_interrupted_run_wrote(
    legacy_copy: Callable[[str], Path],
) -> None:
    path = legacy_copy("populated.db")
    written = await backup_of(path)  # as far as an upgrade killed right after its backup got
    sha = file_sha256(written.path)
    result = daycare("upgrade", "--db", str(path))
    assert result.returncode == 0, result.stderr
    assert f"Backup kept: {written.path} already holds this content" in result.stdout
    assert "Upgraded" in result.stdout
    assert backups(path) == [written.path] and file_sha256(written.path) == sha
