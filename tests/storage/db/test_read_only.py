"""`db status` and `db check` open the file read-only: the database and its -wal are never written.

A WAL-mode file needs SQLite's -shm index to be read; when no -wal and -shm exist, a reader
creates them (an empty -wal and the index) beside the file and leaves them, as any SQLite reader
does. The database itself keeps its bytes, its mtime and its mode.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from tortoise.exceptions import OperationalError

from daycare.storage.db.database import database_close, database_open
from daycare.storage.errors import StorageError
from tests.conftest import ROOT
from tests.sqlite_files import file_query, file_sha256

pytestmark = pytest.mark.sqlite_only  # about a SQLite file's bytes, -wal and -shm under read-only commands


def daycare(*args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "DAYCARE_DB_URL"}
    return subprocess.run(
        [sys.executable, "-m", "daycare", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120
    )


def fingerprint(path: Path) -> tuple[str, int, int, int]:
    """Content, mtime, size and mode of a file."""
    info = path.stat()
    return file_sha256(path), info.st_mtime_ns, info.st_size, stat.S_IMODE(info.st_mode)


def inspect_twice(path: Path) -> None:
    for command in ("status", "check"):
        result = daycare("db", command, "--db", str(path))
        assert "Traceback" not in result.stderr, result.stderr
        assert result.returncode in (0, 1), result.stderr


def test_a_zero_byte_file_stays_zero_bytes_and_gets_no_companions(tmp_path: Path) -> None:
    path = tmp_path / "daycare.db"
    path.write_bytes(b"")
    path.chmod(0o644)
    before = fingerprint(path)
    status = daycare("db", "status", "--db", str(path))
    assert status.returncode == 0 and "fresh (no tables yet)" in status.stdout, status.stderr
    check = daycare("db", "check", "--db", str(path))
    assert check.returncode == 0, check.stderr
    assert fingerprint(path) == before  # still 0 bytes, 0644: read-only commands change no mode either
    assert sorted(p.name for p in tmp_path.iterdir()) == ["daycare.db"]
    assert "other users can access daycare.db (0644)" in status.stderr  # said, not changed


def test_a_legacy_wal_file_keeps_its_bytes_and_mtime(legacy_copy: Callable[[str], Path]) -> None:
    path = legacy_copy("populated.db")
    before = fingerprint(path)
    inspect_twice(path)
    assert fingerprint(path) == before
    wal = path.with_name("populated.db-wal")
    assert not wal.exists() or wal.stat().st_size == 0  # at most the empty -wal a WAL reader creates


def test_a_wal_holding_a_crashed_writers_commits_is_left_as_it_is(legacy_copy: Callable[[str], Path]) -> None:
    path = legacy_copy("populated.db")
    script = (
        "import os, sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\n"
        "c.execute(\"UPDATE users SET name = 'in the wal' WHERE is_owner = 1\")\nc.commit()\nos._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, timeout=60)
    wal = path.with_name("populated.db-wal")
    before, wal_before = fingerprint(path), fingerprint(wal)
    assert wal_before[2] > 0
    inspect_twice(path)
    assert fingerprint(path) == before and fingerprint(wal) == wal_before  # no checkpoint, no recovery written
    assert file_query(path, "SELECT name FROM users WHERE is_owner = 1") == [("in the wal",)]


def test_a_current_daycare_file_keeps_its_bytes_and_mtime(tmp_path: Path) -> None:
    path = tmp_path / "daycare.db"
    assert daycare("upgrade", "--db", str(path)).returncode == 0
    before = fingerprint(path)
    inspect_twice(path)
    assert fingerprint(path) == before
    assert daycare("db", "check", "--db", str(path)).returncode == 0


async def test_a_read_only_database_refuses_writes_and_never_creates_a_file(
    tmp_path: Path, legacy_copy: Callable[[str], Path]
) -> None:
    path = legacy_copy("empty.db")
    db = await database_open(path, read_only=True)
    try:
        (users,) = file_query(path, "SELECT count(*) FROM users")[0]
        assert await db.connection().execute_query_dict("SELECT count(*) AS n FROM users") == [{"n": users}]
        with pytest.raises(OperationalError, match="readonly"):
            await db.connection().execute_query("CREATE TABLE scratch (x)")
    finally:
        await database_close(db)
    missing = tmp_path / "missing" / "daycare.db"
    with pytest.raises(StorageError, match="not found"):
        await database_open(missing, read_only=True)
    assert not missing.parent.exists()


def test_status_on_a_file_that_is_not_sqlite_is_a_short_message(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes\n" * 300)
    before = fingerprint(path)
    result = daycare("db", "status", "--db", str(path))
    assert result.returncode == 1
    assert "not a readable SQLite database" in result.stderr and "Traceback" not in result.stderr
    assert fingerprint(path) == before
