"""database_migrate: fresh files, adoption of legacy files, refusals and atomic failures."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from tortoise.exceptions import OperationalError

from daycare.storage.db.database import database_close, database_open
from daycare.storage.errors import DatabaseRefused, StorageError
from daycare.storage.migrations.legacy import LEGACY_STEPS
from daycare.storage.migrations.loader import MigrationFile, migrations_load
from daycare.storage.migrations.migrate import database_migrate, database_status
from tests.conftest import legacy_dump
from tests.sqlite_files import file_master, file_query, file_rows, file_sha256
from tests.storage.helpers import file_migrate as migrate_file
from tests.storage.migrations.migrated import LATER_OBJECTS, VERSIONS, migrated_schema_sql

# About SQLite files: legacy fixtures, the 33 steps, WAL, modes, backups beside the file (PostgreSQL's
# counterparts are in test_postgres_adoption.py).
pytestmark = pytest.mark.sqlite_only


def assert_rows_equal_dump(path: Path, dump_name: str) -> None:
    dump = legacy_dump(dump_name)
    for table, expected in dump["tables"].items():
        order_by = expected["order_by"]
        assert file_rows(path, table, order_by) == expected["rows"], table


async def test_fresh_file_is_the_legacy_schema_with_33_steps_and_an_owner(tmp_path: Path) -> None:
    path = tmp_path / "new" / "daycare.db"
    assert await migrate_file(path) == list(VERSIONS)
    # schema.sql, plus exactly what the migrations after the baseline add.
    assert file_master(path) == migrated_schema_sql()
    assert sorted(name for (name,) in file_query(path, "SELECT name FROM _migrations")) == sorted(LEGACY_STEPS)
    owners = file_query(path, "SELECT id, is_owner, nametag, parent_user_id, name FROM users")
    assert len(owners) == 1
    owner_id, is_owner, nametag, parent, name = owners[0]
    assert is_owner == 1 and parent is None and name is None
    assert nametag and nametag[-3:].isdigit() and nametag[:-3].isalpha()
    (agents_sql,) = file_query(path, "SELECT sql FROM sqlite_master WHERE name = 'agents'")[0]
    assert agents_sql.endswith(f"user_id TEXT NOT NULL DEFAULT '{owner_id}')")
    assert file_query(path, "SELECT version, app FROM aerich ORDER BY id") == [(v, "models") for v in VERSIONS]
    assert file_query(path, "PRAGMA journal_mode") == [("wal",)]


async def test_fresh_file_has_private_folder_and_file_modes(tmp_path: Path) -> None:
    path = tmp_path / "private" / "daycare.db"
    await migrate_file(path)
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("name", ["empty.db", "populated.db"])
async def test_complete_legacy_file_is_adopted_without_touching_a_row(
    name: str, legacy_copy: Callable[[str], Path]
) -> None:
    path = legacy_copy(name)
    master_before = file_master(path, masked=False)
    assert await migrate_file(path) == list(VERSIONS)
    assert_rows_equal_dump(path, name.replace(".db", ".json"))
    assert file_master(path, masked=False) == {**master_before, **LATER_OBJECTS}
    assert file_query(path, "SELECT version FROM aerich ORDER BY id") == [(v,) for v in VERSIONS]
    sha_after_first = file_sha256(path)
    assert await migrate_file(path) == []
    assert file_sha256(path) == sha_after_first


async def test_adoption_keeps_sqlite_sequence_ahead_of_the_rows(legacy_copy: Callable[[str], Path]) -> None:
    path = legacy_copy("populated.db")
    before = file_query(path, "SELECT name, seq FROM sqlite_sequence ORDER BY name")
    await migrate_file(path, backup=False)
    after = file_query(path, "SELECT name, seq FROM sqlite_sequence ORDER BY name")
    assert after == before
    assert ("user_connector_keys", 7) in after  # ahead of MAX(id) = 6: a deleted user's key


async def test_backup_is_written_before_the_change_and_is_private(legacy_copy: Callable[[str], Path]) -> None:
    path = legacy_copy("populated.db")
    await migrate_file(path)
    (backup,) = path.parent.glob("populated.db.bak-*")
    assert backup.stat().st_mode & 0o777 == 0o600
    assert file_query(backup, "SELECT count(*) FROM sqlite_master WHERE name = 'aerich'") == [(0,)]
    assert_rows_equal_dump(backup, "populated.json")


async def test_no_backup_option_and_fresh_files_write_no_backup(
    tmp_path: Path, legacy_copy: Callable[[str], Path]
) -> None:
    path = legacy_copy("empty.db")
    await migrate_file(path, backup=False)
    await migrate_file(tmp_path / "fresh.db")
    assert not list(tmp_path.glob("*.bak-*"))


async def test_up_to_date_file_gets_no_backup(legacy_copy: Callable[[str], Path]) -> None:
    path = legacy_copy("empty.db")
    await migrate_file(path)
    for backup in path.parent.glob("*.bak-*"):
        backup.unlink()
    assert await migrate_file(path) == []
    assert not list(path.parent.glob("*.bak-*"))


async def assert_refused(path: Path, *fragments: str) -> None:
    sha = file_sha256(path)
    siblings = sorted(p.name for p in path.parent.iterdir())
    with pytest.raises(DatabaseRefused) as refused:
        await migrate_file(path)
    for fragment in fragments:
        assert fragment in str(refused.value)
    assert "unchanged" in str(refused.value) or "as it was" in str(refused.value)
    assert file_sha256(path) == sha
    assert sorted(p.name for p in path.parent.iterdir()) == siblings  # no backup, no leftover -wal


async def test_refuses_a_file_that_is_not_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 200)
    await assert_refused(path, "not a readable SQLite database")


async def test_refuses_a_corrupt_file(tmp_path: Path, legacy_copy: Callable[[str], Path]) -> None:
    path = legacy_copy("populated.db")
    data = bytearray(path.read_bytes())
    data[:16] = b"garbage-header!\x00"
    path.write_bytes(bytes(data))
    await assert_refused(path, "not a readable SQLite database")


async def test_refuses_another_applications_file_and_keeps_its_journal_mode(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    connection.execute("INSERT INTO invoices (total) VALUES (12.5)")
    connection.commit()
    connection.close()
    await assert_refused(path, "another application", "invoices")
    assert file_query(path, "PRAGMA journal_mode") == [("delete",)]


async def test_a_partial_legacy_file_gets_its_missing_steps(legacy_copy: Callable[[str], Path]) -> None:
    """Issue 5: the missing legacy steps run before adoption (tests/storage/legacy/ covers them in depth)."""
    path = legacy_copy("at_20260301_add_token_stats.db")
    applied = await migrate_file(path)
    assert applied == ["20260302_cleanup_rlm_snapshot_payloads", "20260303_drop_trigger_code",
                       "20260304_scope_task_ids_per_user", "20260224_add_system_prompts", *VERSIONS]  # fmt: skip
    assert file_master(path) == migrated_schema_sql()


async def test_refuses_a_partial_legacy_file_holding_another_applications_table(
    legacy_copy: Callable[[str], Path],
) -> None:
    path = legacy_copy("at_20260301_add_token_stats.db")
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    connection.commit()
    connection.close()
    await assert_refused(path, "not a Daycare file", "invoices")


async def test_refuses_a_file_from_a_newer_daycare(legacy_copy: Callable[[str], Path]) -> None:
    path = legacy_copy("empty.db")
    await migrate_file(path, backup=False)
    connection = sqlite3.connect(path)
    connection.execute(
        "INSERT INTO aerich (version, app, content) VALUES ('7_20300101000000_future.py', 'models', '{}')"
    )
    connection.commit()
    connection.close()
    await assert_refused(path, "newer Daycare", "7_20300101000000_future.py")


async def test_refuses_a_legacy_file_whose_schema_drifted(legacy_copy: Callable[[str], Path]) -> None:
    path = legacy_copy("populated.db")
    connection = sqlite3.connect(path)
    connection.execute("DROP INDEX idx_users_nametag")
    connection.execute("ALTER TABLE agents ADD COLUMN mood TEXT")
    connection.commit()
    connection.close()
    await assert_refused(path, "users:", "missing index idx_users_nametag", "agents:", "unexpected column mood")


async def test_refuses_an_adopted_file_whose_schema_drifted(legacy_copy: Callable[[str], Path]) -> None:
    path = legacy_copy("empty.db")
    await migrate_file(path, backup=False)
    connection = sqlite3.connect(path)
    connection.execute("DROP TRIGGER trg_users_nametag_required_update")
    connection.commit()
    connection.close()
    await assert_refused(path, "missing trigger trg_users_nametag_required_update")


async def test_tolerates_an_extra_legacy_step_and_the_table_it_left(legacy_copy: Callable[[str], Path]) -> None:
    path = legacy_copy("empty.db")
    connection = sqlite3.connect(path)
    connection.execute("INSERT INTO _migrations VALUES ('20260221_add_permission_requests', 1)")
    connection.execute("CREATE TABLE permission_requests (id TEXT PRIMARY KEY, agent_id TEXT NOT NULL)")
    connection.execute("CREATE INDEX idx_permission_requests_agent ON permission_requests(agent_id)")
    connection.commit()
    connection.close()
    assert await migrate_file(path, backup=False) == list(VERSIONS)
    assert file_query(path, "SELECT count(*) FROM permission_requests") == [(0,)]


def failing_migration(tmp_path: Path, sql: str) -> MigrationFile:
    """A migration file after the project's own, whose SQL fails part-way."""
    path = tmp_path / f"{len(VERSIONS)}_20270101000000_broken.py"
    module = ModuleType("broken")
    module.RUN_IN_TRANSACTION = True  # type: ignore[attr-defined]
    module.MODELS_STATE = migrations_load()[0].module.MODELS_STATE  # type: ignore[attr-defined]

    async def upgrade(db: object) -> str:
        return sql

    module.upgrade = upgrade  # type: ignore[attr-defined]
    return MigrationFile(path.name, path, module)


async def test_a_migration_failing_halfway_changes_nothing(tmp_path: Path, legacy_copy: Callable[[str], Path]) -> None:
    path = legacy_copy("populated.db")
    await migrate_file(path, backup=False)
    master, sha = file_master(path, masked=False), file_sha256(path)
    broken = failing_migration(
        tmp_path,
        "ALTER TABLE users ADD COLUMN mood TEXT;\nUPDATE users SET mood = 'ok';\nINSERT INTO no_such_table VALUES (1);",
    )
    db = await database_open(path)
    try:
        with pytest.raises(OperationalError, match="no_such_table"):
            await database_migrate(db, backup=False, migrations=[*migrations_load(), broken])
        assert (await database_status(db)).applied == VERSIONS
    finally:
        await database_close(db)
    assert file_master(path, masked=False) == master
    assert file_sha256(path) == sha
    assert_rows_equal_dump(path, "populated.json")


async def test_a_failing_baseline_on_a_fresh_file_leaves_it_empty(tmp_path: Path) -> None:
    baseline = migrations_load()[0]
    module = ModuleType("baseline_broken")
    module.RUN_IN_TRANSACTION = True  # type: ignore[attr-defined]
    module.MODELS_STATE = baseline.module.MODELS_STATE  # type: ignore[attr-defined]
    module.SCHEMA_SQL = baseline.module.SCHEMA_SQL  # type: ignore[attr-defined]

    async def upgrade(db: object) -> str:
        return str(await baseline.module.upgrade(db)) + "\nSELECT no_such_function();"

    module.upgrade = upgrade  # type: ignore[attr-defined]
    path = tmp_path / "fresh.db"
    db = await database_open(path)
    try:
        with pytest.raises(OperationalError):
            await database_migrate(db, migrations=[MigrationFile(baseline.version, baseline.path, module)])
    finally:
        await database_close(db)
    assert file_query(path, "SELECT count(*) FROM sqlite_master") == [(0,)]


async def test_status_reports_each_kind(tmp_path: Path, legacy_copy: Callable[[str], Path]) -> None:
    fresh = await database_open(tmp_path / "fresh.db")
    legacy = await database_open(legacy_copy("empty.db"))
    try:
        fresh_status = await database_status(fresh)
        assert fresh_status.state.kind.value == "fresh" and fresh_status.pending == VERSIONS
        legacy_status = await database_status(legacy)
        assert legacy_status.state.kind.value == "legacy" and legacy_status.state.legacy_missing == []
        await database_migrate(legacy, backup=False)
        adopted = await database_status(legacy)
        assert adopted.state.kind.value == "aerich" and adopted.applied == VERSIONS and adopted.pending == ()
    finally:
        await database_close(fresh)
        await database_close(legacy)


async def test_open_refuses_a_missing_file_when_asked_not_to_create(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="not found"):
        await database_open(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()
