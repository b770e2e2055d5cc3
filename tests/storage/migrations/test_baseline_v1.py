"""Migration 0 alone, on fixed inputs: its result is pinned, and so is the frozen module of its rules."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from daycare.storage.db.database import database_close, database_open
from daycare.storage.errors import DatabaseRefused
from daycare.storage.migrations import baseline_v1
from daycare.storage.migrations.loader import migrations_load
from daycare.storage.migrations.migrate import database_migrate
from tests.conftest import legacy_dump
from tests.sqlite_files import file_master, file_query, file_sha256, legacy_schema_sql
from tests.storage.migrations.migrated import BASELINE

# The sha256 of daycare/storage/migrations/baseline_v1.py as migration 0 was released with it.
BASELINE_V1_SHA256 = "db28b5fc0dd9847646a2b4a557cff39290a28be9564830d1c500d58a71f5f993"


def test_the_frozen_rules_of_the_baseline_are_unchanged() -> None:
    path = Path(baseline_v1.__file__)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == BASELINE_V1_SHA256, (
        f"{path} changed, but it is frozen with migration 0 ({BASELINE}): every file that migration adopts"
        " from now on would come out differently from the files it adopted before. Undo the edit. To change"
        " a rule, copy the module to baseline_v2.py, change the copy, and add a migration that applies the"
        " difference (the module's header says how)."
    )


async def baseline_alone(path: Path) -> list[str]:
    db = await database_open(path)
    try:
        return await database_migrate(db, backup=False, migrations=migrations_load()[:1])
    finally:
        await database_close(db)


def btree_pages(path: Path) -> dict[str, dict[int, bytes]]:
    """The bytes of every page of every table and index, by object name; the schema table and `aerich` left out."""
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every page in the main file
        (page_size,) = connection.execute("PRAGMA page_size").fetchone()
        rows = connection.execute(
            "SELECT name, pageno FROM dbstat WHERE name NOT IN ('sqlite_schema', 'sqlite_master', 'aerich')"
        ).fetchall()
    finally:
        connection.close()
    data = path.read_bytes()
    pages: dict[str, dict[int, bytes]] = {}
    for name, number in rows:
        pages.setdefault(name, {})[number] = data[(number - 1) * page_size : number * page_size]
    return pages


def catalog_rows(path: Path) -> set[tuple[object, ...]]:
    """Every sqlite_master row with its root page: a table rebuilt or moved would change it."""
    return set(file_query(path, "SELECT type, name, tbl_name, rootpage, sql FROM sqlite_master"))


async def test_a_fresh_file_gets_the_legacy_schema_the_33_legacy_steps_and_an_owner(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    assert await baseline_alone(path) == [BASELINE]
    assert file_master(path) == legacy_schema_sql()  # every object but the owner id, as schema.sql has it
    legacy_steps = {row["name"] for row in legacy_dump("empty.json")["tables"]["_migrations"]["rows"]}
    assert {name for (name,) in file_query(path, "SELECT name FROM _migrations")} == legacy_steps
    ((owner_id, nametag),) = file_query(path, "SELECT id, nametag FROM users WHERE is_owner = 1")
    assert file_query(path, "SELECT count(*) FROM users") == [(1,)] and len(owner_id) == 24 and nametag
    (agents_sql,) = file_query(path, "SELECT sql FROM sqlite_master WHERE name = 'agents'")[0]
    assert f"user_id TEXT NOT NULL DEFAULT '{owner_id}')" in agents_sql
    assert file_query(path, "SELECT version, app FROM aerich") == [(BASELINE, "models")]


@pytest.mark.parametrize("name", ["empty.db", "populated.db"])
async def test_a_complete_legacy_file_gets_only_the_aerich_table(name: str, legacy_copy: Callable[[str], Path]) -> None:
    path = legacy_copy(name)
    catalog, pages = catalog_rows(path), btree_pages(path)
    assert await baseline_alone(path) == [BASELINE]
    added = catalog_rows(path) - catalog
    assert catalog <= catalog_rows(path) and [row[1] for row in added] == ["aerich"]
    assert btree_pages(path) == pages  # byte-identical tables and indexes, sqlite_sequence included
    assert file_query(path, "SELECT version, app FROM aerich") == [(BASELINE, "models")]


async def test_a_partial_legacy_file_gets_its_missing_steps_then_the_same_schema(
    legacy_copy: Callable[[str], Path],
) -> None:
    path = legacy_copy("at_20260301_add_token_stats.db")
    applied = await baseline_alone(path)
    assert applied[-1] == BASELINE and len(applied) == 5
    assert file_master(path) == legacy_schema_sql()


async def test_a_drifted_legacy_file_is_refused_unchanged(legacy_copy: Callable[[str], Path]) -> None:
    path = legacy_copy("populated.db")
    connection = sqlite3.connect(path)
    connection.execute("DROP INDEX idx_users_nametag")
    connection.execute("ALTER TABLE agents ADD COLUMN mood TEXT")
    connection.commit()
    connection.close()
    sha = file_sha256(path)
    with pytest.raises(DatabaseRefused) as refused:
        await baseline_alone(path)
    message = str(refused.value)
    assert "differs from the legacy final schema" in message
    assert "missing index idx_users_nametag: UNIQUE (nametag) WHERE nametag IS NOT NULL" in message
    assert "unexpected column mood: TEXT" in message and "left unchanged" in message
    assert file_sha256(path) == sha


async def test_the_owner_id_default_and_known_extra_steps_are_tolerated_nothing_else(
    legacy_copy: Callable[[str], Path],
) -> None:
    tolerated = legacy_copy("empty.db")
    connection = sqlite3.connect(tolerated)
    connection.execute("INSERT INTO _migrations VALUES ('20260221_add_permission_requests', 1)")
    connection.execute("CREATE TABLE permission_requests (id TEXT PRIMARY KEY)")
    connection.commit()
    connection.close()
    assert await baseline_alone(tolerated) == [BASELINE]

    stranger = legacy_copy("populated.db")
    connection = sqlite3.connect(stranger)
    connection.execute("CREATE TABLE permission_requests (id TEXT PRIMARY KEY)")  # without its legacy step
    connection.commit()
    connection.close()
    with pytest.raises(DatabaseRefused, match="unexpected table"):
        await baseline_alone(stranger)
