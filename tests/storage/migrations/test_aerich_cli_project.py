"""The real Aerich CLI on the project's config: same result as daycare upgrade, atomic, no diff."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.sqlite_files import file_master, file_query, file_sha256
from tests.storage.migrations.migrated import VERSIONS

ROOT = Path(__file__).resolve().parents[3]
TABLES_WITHOUT_CLOCK = ("agents", "sessions", "session_history", "inbox", "tasks", "channels", "processes")


def aerich(*args: str, db: Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DAYCARE_DB_URL": str(db), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "aerich", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )


def daycare_upgrade(db: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "daycare", "upgrade", "--db", str(db), "--no-backup"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def aerich_rows(path: Path) -> list[tuple[object, ...]]:
    return file_query(path, "SELECT version, app, content FROM aerich ORDER BY id")


def test_aerich_upgrade_adopts_a_legacy_file_like_daycare_upgrade(legacy_copy: Callable[[str], Path]) -> None:
    by_aerich = legacy_copy("populated.db")
    by_daycare = by_aerich.with_name("by_daycare.db")
    shutil.copyfile(by_aerich, by_daycare)
    result = aerich("upgrade", db=by_aerich)
    assert result.returncode == 0, result.stdout + result.stderr
    daycare_upgrade(by_daycare)
    assert file_master(by_aerich, masked=False) == file_master(by_daycare, masked=False)
    assert aerich_rows(by_aerich) == aerich_rows(by_daycare)
    for table in (*TABLES_WITHOUT_CLOCK, "users", "_migrations", "sqlite_sequence"):
        assert file_query(by_aerich, f"SELECT * FROM {table}") == file_query(by_daycare, f"SELECT * FROM {table}")


def test_aerich_upgrade_creates_a_fresh_file_like_daycare_upgrade(tmp_path: Path) -> None:
    by_aerich, by_daycare = tmp_path / "aerich.db", tmp_path / "daycare.db"
    result = aerich("upgrade", db=by_aerich)
    assert result.returncode == 0, result.stdout + result.stderr
    daycare_upgrade(by_daycare)
    assert file_master(by_aerich) == file_master(by_daycare)
    assert aerich_rows(by_aerich) == aerich_rows(by_daycare)
    assert file_query(by_aerich, "SELECT count(*), sum(is_owner) FROM users") == [(1, 1)]
    assert file_query(by_aerich, "PRAGMA journal_mode") == [("wal",)]
    assert by_aerich.stat().st_mode & 0o777 == 0o600


def test_aerich_upgrade_refuses_what_daycare_refuses(legacy_copy: Callable[[str], Path]) -> None:
    path = legacy_copy("populated.db")
    connection = sqlite3.connect(path)
    connection.execute("DROP INDEX idx_users_nametag")
    connection.commit()
    connection.close()
    sha = file_sha256(path)
    result = aerich("upgrade", db=path)
    assert result.returncode != 0
    assert "differs from the legacy final schema" in result.stdout + result.stderr
    assert file_sha256(path) == sha


def test_aerich_runs_a_failing_migration_atomically(tmp_path: Path, legacy_copy: Callable[[str], Path]) -> None:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "migrations", project / "migrations")
    (project / "pyproject.toml").write_text(
        '[tool.aerich]\ntortoise_orm = "daycare.storage.migrations.aerich_config.TORTOISE_ORM"\n'
        'location = "./migrations"\nsrc_folder = "./."\n'
    )
    baseline = next((project / "migrations" / "models").glob("0_*.py")).read_text()
    state = baseline[baseline.index("MODELS_STATE") :]
    (project / "migrations" / "models" / f"{len(VERSIONS)}_20270101000000_broken.py").write_text(
        "RUN_IN_TRANSACTION = True\n\n\nasync def upgrade(db):\n"
        '    return "ALTER TABLE users ADD COLUMN mood TEXT; INSERT INTO no_such_table VALUES (1);"\n\n\n'
        "async def downgrade(db):\n    return ''\n\n\n" + state
    )
    path = legacy_copy("empty.db")
    assert aerich("upgrade", db=path, cwd=project).returncode != 0
    # Aerich applied each of the project's files in its own transaction, then failed the broken file as a whole.
    assert [row[0] for row in aerich_rows(path)] == list(VERSIONS)
    columns = [row[1] for row in file_query(path, "PRAGMA table_info(users)")]
    assert "mood" not in columns


def test_aerich_migrate_finds_nothing_to_do_after_the_baseline(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "migrations", project / "migrations")
    shutil.copyfile(ROOT / "pyproject.toml", project / "pyproject.toml")
    db = tmp_path / "daycare.db"
    daycare_upgrade(db)
    result = aerich("migrate", "--name", "check", "--no-input", db=db, cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No changes detected" in result.stdout
    assert sorted(p.name for p in (project / "migrations" / "models").glob("*.py")) == sorted(
        p.name for p in (ROOT / "migrations" / "models").glob("*.py")
    )
