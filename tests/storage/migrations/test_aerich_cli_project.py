"""The real Aerich CLI on the project's configs: same result as daycare upgrade, atomic, no diff.

SQLite's chain runs with `pyproject.toml`'s config (`aerich upgrade`), PostgreSQL's with
`aerich -c migrations/postgres/aerich.toml upgrade`, each in a fresh process.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from daycare.storage.db.database import Database, database_close, database_open
from daycare.storage.db.location import POSTGRES
from daycare.storage.migrations.catalog import schema_describe, schema_report
from daycare.storage.migrations.loader import migrations_load
from daycare.storage.migrations.schema_check import schema_tolerant_compare
from tests.postgres_server import PostgresServer, postgres_connection, postgres_schema
from tests.sqlite_files import file_master, file_query, file_sha256
from tests.storage.migrations.migrated import VERSIONS
from tests.storage.migrations.test_postgres_adoption import migration_text, postgres_snapshot

ROOT = Path(__file__).resolve().parents[3]
TABLES_WITHOUT_CLOCK = ("agents", "sessions", "session_history", "inbox", "tasks", "channels", "processes")


def aerich(*args: str, db: Path | str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DAYCARE_DB_URL": str(db), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "aerich", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )


def daycare_upgrade(db: Path | str) -> None:
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


@pytest.mark.sqlite_only  # a legacy SQLite file
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


@pytest.mark.sqlite_only  # the SQLite chain on a file; the PostgreSQL chain's tests follow
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


@pytest.mark.sqlite_only  # a legacy SQLite file
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


@pytest.mark.sqlite_only  # the SQLite chain on a file; the PostgreSQL chain's tests follow
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


@pytest.mark.sqlite_only  # the SQLite chain on a file; the PostgreSQL chain's tests follow
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


# The PostgreSQL chain

PG_CONFIG = "migrations/postgres/aerich.toml"
PG_VERSIONS = [migration.version for migration in migrations_load(dialect=POSTGRES)]


@pytest.fixture
async def second_url(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """A second fresh schema on the same server."""
    async with postgres_schema(postgres_server) as url:
        yield url


async def postgres_rows(url: str, sql: str) -> list[tuple[object, ...]]:
    async with postgres_connection(url) as connection:
        return [tuple(row) for row in await connection.fetch(sql)]


async def test_aerich_upgrade_creates_a_fresh_schema_like_daycare_upgrade(postgres_url: str, second_url: str) -> None:
    by_aerich, by_daycare = postgres_url, second_url
    result = aerich("-c", PG_CONFIG, "upgrade", db=by_aerich)
    assert result.returncode == 0, result.stdout + result.stderr
    daycare_upgrade(by_daycare)
    # Compared by the catalog description daycare db check uses (the owner id in agents.user_id's DEFAULT varies)...
    databases: list[Database] = [await database_open(by_daycare), await database_open(by_aerich)]
    try:
        expected, actual = [await schema_describe(db.connection()) for db in databases]
    finally:
        for db in databases:
            await database_close(db)
    assert len(expected) == 22
    issues = schema_tolerant_compare(expected, actual, frozenset())
    assert not issues, schema_report(issues)
    # ...and by pg_dump's text, with the schema names and owner ids masked.
    texts = []
    for url in (by_aerich, by_daycare):
        snapshot = await postgres_snapshot(url)
        ((owner,),) = await postgres_rows(url, "SELECT id FROM users WHERE is_owner")
        schema = url.rpartition("schema=")[2]
        texts.append(snapshot.ddl.replace(schema, "<schema>").replace(owner, "<owner>"))
        assert snapshot.rows["users"][0] == 1
    assert texts[0] == texts[1]
    aerich_table = "SELECT version, app, content::text FROM aerich ORDER BY id"
    assert await postgres_rows(by_aerich, aerich_table) == await postgres_rows(by_daycare, aerich_table)
    assert [row[0] for row in await postgres_rows(by_aerich, aerich_table)] == PG_VERSIONS
    heads = aerich("-c", PG_CONFIG, "heads", db=by_aerich)
    assert heads.returncode == 0 and "No available heads." in heads.stdout, heads.stdout + heads.stderr


async def test_aerich_runs_each_postgres_file_atomically_and_heads_lists_what_is_pending(
    tmp_path: Path, postgres_url: str
) -> None:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "migrations", project / "migrations")
    shutil.copyfile(ROOT / "pyproject.toml", project / "pyproject.toml")
    chain = project / "migrations" / "postgres" / "models"
    first, broken = (
        f"{len(PG_VERSIONS)}_20270101000000_add_notes.py",
        f"{len(PG_VERSIONS) + 1}_20270102000000_broken.py",
    )
    (chain / first).write_text(migration_text("    return 'CREATE TABLE notes (id BIGINT PRIMARY KEY);'"))
    (chain / broken).write_text(
        migration_text(
            "    return 'CREATE TABLE moods (id BIGINT); ALTER TABLE users ADD COLUMN mood TEXT;"
            " UPDATE users SET name = \\'second\\'; INSERT INTO no_such_table VALUES (1);'"
        )
    )
    daycare_upgrade(postgres_url)  # the project's own chain: the baseline
    heads = aerich("-c", PG_CONFIG, "heads", db=postgres_url, cwd=project)
    assert heads.returncode == 0 and first in heads.stdout and broken in heads.stdout, heads.stdout + heads.stderr

    upgrade = aerich("-c", PG_CONFIG, "upgrade", db=postgres_url, cwd=project)
    assert upgrade.returncode != 0 and "no_such_table" in upgrade.stdout + upgrade.stderr
    # Aerich applied the first file in its own transaction, then failed the broken file as a whole.
    assert [row[0] for row in await postgres_rows(postgres_url, "SELECT version FROM aerich ORDER BY id")] == [
        *PG_VERSIONS,
        first,
    ]
    after = await postgres_snapshot(postgres_url)
    assert "notes" in after.rows and "moods" not in after.rows and "mood" not in after.ddl
    assert await postgres_rows(postgres_url, "SELECT name FROM users WHERE is_owner") == [(None,)]
    heads = aerich("-c", PG_CONFIG, "heads", db=postgres_url, cwd=project)
    assert broken in heads.stdout and first not in heads.stdout, heads.stdout + heads.stderr
    assert await postgres_snapshot(postgres_url) == after  # heads reads only

    (chain / broken).unlink()
    again = aerich("-c", PG_CONFIG, "upgrade", db=postgres_url, cwd=project)
    assert again.returncode == 0 and "No upgrade items found" in again.stdout, again.stdout + again.stderr
    heads = aerich("-c", PG_CONFIG, "heads", db=postgres_url, cwd=project)
    assert "No available heads." in heads.stdout, heads.stdout + heads.stderr


async def test_aerich_upgrade_refuses_a_schema_of_another_application(postgres_url: str) -> None:
    async with postgres_connection(postgres_url) as connection:
        await connection.execute("CREATE TABLE invoices (id BIGINT PRIMARY KEY); INSERT INTO invoices VALUES (1)")
    before = await postgres_snapshot(postgres_url)
    result = aerich("-c", PG_CONFIG, "upgrade", db=postgres_url)
    assert result.returncode != 0
    assert "holds tables already (invoices): the baseline needs an empty schema" in result.stdout + result.stderr
    assert await postgres_snapshot(postgres_url) == before
