"""`db status` without the ORM: it answers a file under Aerich as the full path does, and defers everything else.

Each case runs the command line twice in fresh processes: as `daycare db status` runs (the quick
path first) and through the full path alone (`_command_full_load`, Tortoise and all). The two must
print the same lines and exit the same way; the modules loaded tell which path answered.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from daycare.storage.migrations.loader import migration_versions
from daycare.storage.migrations.status import status_quick_read, versions_compare
from tests.conftest import legacy_path
from tests.sqlite_files import file_execute, file_sha256
from tests.storage.migrations.migrated import VERSIONS
from tests.test_cold_start import command_run, loaded, python_run, up_to_date_file

FULL_PATH = """
    import sys
    from daycare.cli import _command_full_load, parser_build
    sys.exit(_command_full_load(parser_build().parse_args(sys.argv[1:]))())
"""
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ", re.MULTILINE)
FUTURE = "9_20300101000000_future.py"


def outcome(result: subprocess.CompletedProcess[str]) -> tuple[int, str, str]:
    """Exit code, stdout and stderr (without the log lines' timestamps and the last newline)."""
    return result.returncode, result.stdout, _TIMESTAMP.sub("", result.stderr).rstrip("\n")


def both_paths(*args: str) -> tuple[tuple[int, str, str], tuple[int, str, str], list[str]]:
    """`daycare ARGS` as it runs and through the full path only; the first run's modules too."""
    quick, modules = command_run(*args)
    return outcome(quick), outcome(python_run(FULL_PATH, *args)), modules


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return up_to_date_file(tmp_path_factory.mktemp("migrated"))


@pytest.fixture
def migrated_copy(migrated: Path, tmp_path: Path) -> Path:
    path = tmp_path / "daycare.db"
    shutil.copyfile(migrated, path)
    path.chmod(0o600)
    return path


# What each case does to an up-to-date copy before `db status` reads it.
UNDER_AERICH: dict[str, Callable[[Path], None]] = {
    "up to date": lambda path: None,
    "one migration pending": lambda path: file_execute(path, f"DELETE FROM aerich WHERE version = '{VERSIONS[-1]}'"),
    "migrated by a newer Daycare": lambda path: file_execute(
        path, f"INSERT INTO aerich (version, app, content) VALUES ('{FUTURE}', 'models', '{{}}')"
    ),
    "readable by others": lambda path: path.chmod(0o644),
    "another app's rows beside ours": lambda path: file_execute(
        path, "INSERT INTO aerich (version, app, content) VALUES ('0_x.py', 'other', '{}')"
    ),
}


@pytest.mark.parametrize("case", UNDER_AERICH)
def test_a_file_under_aerich_is_answered_without_the_orm_as_the_full_path_answers(
    migrated_copy: Path, case: str
) -> None:
    UNDER_AERICH[case](migrated_copy)
    quick, full, modules = both_paths("db", "status", "--db", str(migrated_copy))
    assert quick == full
    assert quick[0] == 0 and "State:    under Aerich" in quick[1]
    assert not loaded("tortoise", modules) and not loaded("asyncio", modules)  # no ORM, no event loop
    if case == "readable by others":
        assert "other users can access daycare.db (0644)" in quick[2]
    if case == "one migration pending":
        assert f"Pending:  {VERSIONS[-1]}\n" in quick[1]


def test_a_url_with_parameters_and_a_settings_file_name_the_same_file(migrated_copy: Path, tmp_path: Path) -> None:
    settings = tmp_path / "settings.json"
    settings.write_text(f'{{"engine": {{"db": {{"url": "sqlite://{migrated_copy}?synchronous=NORMAL"}}}}}}')
    for args in (("--db", f"sqlite://{migrated_copy}?lock_timeout=10"), ("--settings", str(settings))):
        quick, full, modules = both_paths("db", "status", *args)
        assert quick == full and quick[0] == 0, quick
        assert not loaded("tortoise", modules)


def not_sqlite(path: Path) -> None:
    path.write_bytes(b"this is not a database" * 100)


def foreign(path: Path) -> None:
    file_execute(path, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")


def other_apps_aerich(path: Path) -> None:
    file_execute(
        path,
        "CREATE TABLE aerich (id INTEGER PRIMARY KEY, version TEXT, app TEXT, content TEXT)",
        "INSERT INTO aerich (version, app, content) VALUES ('0_x.py', 'other', '{}')",
    )


# Files the quick path leaves to the full path, made in an empty folder; each returns what to pass to --db.
DEFERRED: dict[str, Callable[[Path], str]] = {
    "legacy file": lambda folder: str(shutil.copyfile(legacy_path("populated.db"), folder / "legacy.db")),
    "older legacy file": lambda folder: str(
        shutil.copyfile(legacy_path("at_20260301_add_token_stats.db"), folder / "older.db")
    ),
    "empty file": lambda folder: (folder / "empty.db").touch() or str(folder / "empty.db"),
    "foreign file": lambda folder: foreign(folder / "notes.db") or str(folder / "notes.db"),
    "aerich rows of another app only": lambda folder: other_apps_aerich(folder / "o.db") or str(folder / "o.db"),
    "not SQLite": lambda folder: not_sqlite(folder / "text.db") or str(folder / "text.db"),
    "missing": lambda folder: str(folder / "missing.db"),
    "a folder": lambda folder: (folder / "dir.db").mkdir() or str(folder / "dir.db"),
    "memory": lambda folder: ":memory:",
    "bad URL parameter": lambda folder: f"sqlite://{folder}/x.db?foreign_keys=OFF",
}


@pytest.mark.parametrize("case", DEFERRED)
def test_the_full_path_answers_every_other_file_with_its_own_messages(tmp_path: Path, case: str) -> None:
    where = DEFERRED[case](tmp_path)
    if where != ":memory:" and "://" not in where:
        assert status_quick_read(Path(where), VERSIONS) is None
    quick, full, modules = both_paths("db", "status", "--db", where)
    assert quick == full
    assert loaded("tortoise", modules)  # the full path answered
    assert "Traceback" not in quick[2]


def test_a_file_another_connection_locks_is_left_to_the_full_path_without_waiting(migrated_copy: Path) -> None:
    file_execute(migrated_copy, "PRAGMA journal_mode=DELETE")  # in WAL a reader is never blocked
    holder = sqlite3.connect(migrated_copy, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        assert status_quick_read(migrated_copy, VERSIONS) is None
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    read = status_quick_read(migrated_copy, VERSIONS)
    assert read is not None and read.applied == VERSIONS


def test_the_quick_read_changes_no_byte_of_the_file(migrated_copy: Path) -> None:
    before = file_sha256(migrated_copy)
    read = status_quick_read(migrated_copy, migration_versions())
    assert read is not None and read.applied == VERSIONS and read.pending == () and read.unknown == ()
    assert file_sha256(migrated_copy) == before


def test_versions_compare_keeps_the_chains_order_for_pending_and_the_files_for_unknown() -> None:
    compared = versions_compare(["0_a.py", "9_z.py", "2_c.py", "8_y.py"], ["0_a.py", "1_b.py", "2_c.py", "3_d.py"])
    assert compared.applied == ("0_a.py", "9_z.py", "2_c.py", "8_y.py")
    assert compared.pending == ("1_b.py", "3_d.py")
    assert compared.unknown == ("9_z.py", "8_y.py")
    assert versions_compare([], ["0_a.py"]).pending == ("0_a.py",)
