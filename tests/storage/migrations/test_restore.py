"""`daycare restore BACKUP`: checks the backup, moves the current file aside with its -wal, checks the result."""

from __future__ import annotations

import fcntl
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from daycare.storage.errors import StorageError
from daycare.storage.migrations.restore import database_restore
from tests.conftest import ROOT
from tests.engine_process import STARTED, LineReader
from tests.sqlite_files import file_query, file_sha256
from tests.storage.migrations.test_migrate import assert_rows_equal_dump

pytestmark = pytest.mark.sqlite_only  # `daycare restore` puts a SQLite backup file back in place of the file

OWNER_NAME = "SELECT name FROM users WHERE is_owner = 1"


def daycare(*args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "DAYCARE_DB_URL"}
    return subprocess.run(
        [sys.executable, "-m", "daycare", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120
    )


def crash_after_commit(path: Path, sql: str) -> None:
    """Commits `sql` from a process that then dies without closing: the change stays in the -wal only."""
    script = (
        "import os, sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\nc.execute(sys.argv[2])\nc.commit()\nos._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(path), sql], check=True, timeout=60)


def upgraded_with_backup(legacy_copy: Callable[[str], Path]) -> tuple[Path, Path]:
    path = legacy_copy("populated.db")
    result = daycare("upgrade", "--db", str(path))
    assert result.returncode == 0, result.stderr
    (backup,) = path.parent.glob("populated.db.bak-*")
    return path, backup


def names(folder: Path) -> list[str]:
    """The files of a folder, but the lock file (created by whoever takes the lock first, and kept)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock"))


def test_restore_after_a_crash_moves_the_file_and_its_wal_aside_and_can_be_undone(
    legacy_copy: Callable[[str], Path],
) -> None:
    path, backup = upgraded_with_backup(legacy_copy)
    crash_after_commit(path, "UPDATE users SET name = 'after crash' WHERE is_owner = 1")
    wal = path.with_name("populated.db-wal")
    assert wal.stat().st_size > 0  # the committed change lives only there, as after a crash
    wal_sha = file_sha256(wal)

    result = daycare("restore", str(backup), "--db", str(path))
    assert result.returncode == 0, result.stderr
    assert f"Checked {backup}: sound (integrity check ok), a legacy Daycare database" in result.stdout
    assert f"Restored {backup.name} to {path} (0600)" in result.stdout
    assert "Pending: 0_" in result.stdout
    # The restored file is the backup: the legacy rows, no aerich table, no stale -wal applied to it.
    assert not wal.exists() and not path.with_name("populated.db-shm").exists()
    assert path.stat().st_mode & 0o777 == 0o600
    assert file_query(path, "PRAGMA integrity_check") == [("ok",)]
    assert_rows_equal_dump(path, "populated.json")
    assert file_query(path, "SELECT count(*) FROM sqlite_master WHERE name = 'aerich'") == [(0,)]
    # The previous file and its -wal were moved aside together, so SQLite still pairs them: nothing was lost.
    (aside,) = path.parent.glob("populated.db.before-restore-*[0-9Z]")
    assert f"{path.name} -> {aside.name}" in result.stdout and f"populated.db-wal -> {aside.name}-wal" in result.stdout
    assert file_sha256(aside.with_name(aside.name + "-wal")) == wal_sha
    assert file_query(aside, OWNER_NAME) == [("after crash",)]
    assert f"daycare restore {aside} --db {path}" in result.stdout
    assert not [name for name in names(path.parent) if ".restore-" in name]  # no temporary copy left

    upgrade = daycare("upgrade", "--db", str(path))
    assert upgrade.returncode == 0, upgrade.stderr
    assert daycare("db", "check", "--db", str(path)).returncode == 0

    undo = daycare("restore", str(aside), "--db", str(path))
    assert undo.returncode == 0, undo.stderr
    assert file_query(path, OWNER_NAME) == [("after crash",)]
    assert file_query(path, "SELECT count(*) FROM sqlite_master WHERE name = 'aerich'") == [(1,)]
    assert len(list(path.parent.glob("populated.db.before-restore-*[0-9Z]"))) == 2


async def test_restore_refuses_while_the_database_is_held_and_changes_nothing(
    legacy_copy: Callable[[str], Path],
) -> None:
    path, backup = upgraded_with_backup(legacy_copy)
    before = (file_sha256(path), names(path.parent))
    descriptor = os.open(path.with_name("populated.db.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what a running engine holds
        with pytest.raises(StorageError, match="is in use by another process, which holds its lock file"):
            await database_restore(backup, path)
    finally:
        os.close(descriptor)
    assert (file_sha256(path), names(path.parent)) == before


def test_restore_refuses_while_an_engine_runs_on_the_file(legacy_copy: Callable[[str], Path]) -> None:
    path, backup = upgraded_with_backup(legacy_copy)
    env = {key: value for key, value in os.environ.items() if key != "DAYCARE_DB_URL"}
    engine = subprocess.Popen(
        [sys.executable, "-m", "daycare", "start", "--db", str(path)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr = LineReader(engine)
    try:
        stderr.until(STARTED, timeout=60)
        # The engine may write meanwhile: the file it has open must still be the one at that name.
        before = (path.stat().st_ino, names(path.parent))
        result = daycare("restore", str(backup), "--db", str(path))
        assert result.returncode == 1
        assert f"is in use by an engine (pid {engine.pid}" in result.stderr and "Traceback" not in result.stderr
        assert "Nothing was changed" in result.stderr
        assert (path.stat().st_ino, names(path.parent)) == before
    finally:
        engine.send_signal(signal.SIGTERM)
        engine.wait(timeout=60)
    assert engine.returncode == 0, stderr.text()
    assert daycare("restore", str(backup), "--db", str(path)).returncode == 0  # once the engine stopped


def corrupted(source: Path, target: Path) -> Path:
    data = bytearray(source.read_bytes())
    page = 4096
    middle = (len(data) // page // 2) * page
    data[middle + 8 : middle + page] = b"\xa5" * (page - 8)
    target.write_bytes(bytes(data))
    return target


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp, backup: corrupted(backup, tmp / "damaged.bak"), "The backup"),
        (lambda tmp, backup: tmp / "missing.bak", "Backup not found"),
        (lambda tmp, backup: (tmp / "notes.txt", (tmp / "notes.txt").write_text("notes\n" * 500))[0], "not a readable"),
        (lambda tmp, backup: (tmp / "empty.bak", (tmp / "empty.bak").write_bytes(b""))[0], "has no tables"),
        (lambda tmp, backup: tmp / "populated.db", "is the database itself"),
        (lambda tmp, backup: tmp / "populated.db-wal", "is the database itself"),
    ],
)
async def test_restore_refuses_an_unfit_backup_before_touching_anything(
    tmp_path: Path,
    legacy_copy: Callable[[str], Path],
    make: Callable[[Path, Path], Path],
    message: str,
) -> None:
    path, backup = upgraded_with_backup(legacy_copy)
    candidate = make(tmp_path, backup)
    before = (file_sha256(path), names(path.parent))
    with pytest.raises(StorageError, match=message) as refused:
        await database_restore(candidate, path)
    if "not found" not in message and "database itself" not in message:
        assert f"Nothing was changed: {path} is as it was." in str(refused.value)
    assert (file_sha256(path), names(path.parent)) == before


async def test_restore_refuses_another_applications_file(tmp_path: Path, legacy_copy: Callable[[str], Path]) -> None:
    path, _ = upgraded_with_backup(legacy_copy)
    other = tmp_path / "other.sqlite"
    connection = sqlite3.connect(other)
    connection.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    connection.commit()
    connection.close()
    sha = file_sha256(path)
    with pytest.raises(StorageError, match="is not a Daycare database"):
        await database_restore(other, path)
    assert file_sha256(path) == sha


def test_a_damaged_backup_is_refused_by_the_command_in_a_few_lines(
    tmp_path: Path, legacy_copy: Callable[[str], Path]
) -> None:
    path, backup = upgraded_with_backup(legacy_copy)
    damaged = corrupted(backup, tmp_path / "damaged.bak")
    assert file_query(damaged, "PRAGMA quick_check") != [("ok",)]
    sha = file_sha256(path)
    result = daycare("restore", str(damaged), "--db", str(path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "Nothing was changed" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) <= 10
    assert file_sha256(path) == sha


async def test_restore_into_a_missing_file_creates_it_privately(
    tmp_path: Path, legacy_copy: Callable[[str], Path]
) -> None:
    _, backup = upgraded_with_backup(legacy_copy)
    target = tmp_path / "new" / "daycare.db"
    restored = await database_restore(backup, target)
    assert restored.moved == ()
    assert f"There was no database at {target}." in restored.lines()
    assert target.stat().st_mode & 0o777 == 0o600 and target.parent.stat().st_mode & 0o777 == 0o700
    assert_rows_equal_dump(target, "populated.json")


async def test_leftovers_of_an_interrupted_restore_are_removed(legacy_copy: Callable[[str], Path]) -> None:
    path, backup = upgraded_with_backup(legacy_copy)
    leftover = path.with_name("populated.db.restore-20260101T000000Z.partial")
    leftover.write_bytes(b"half a copy")
    journal = path.with_name("populated.db.restore-20260101T000000Z.partial-journal")
    journal.write_bytes(b"journal")
    await database_restore(backup, path)
    assert not leftover.exists() and not journal.exists()
