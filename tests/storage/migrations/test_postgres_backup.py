"""Backups of a PostgreSQL database: pg_dump into <daycare home>/backups/ before a change, or a clear refusal."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest

from daycare.storage.db.database import Database, database_close, database_open
from daycare.storage.db.location import database_location
from daycare.storage.errors import StorageError
from daycare.storage.migrations import backup as backup_module
from daycare.storage.migrations.backup import PARTIAL, pg_dump_find, postgres_backup
from daycare.storage.migrations.loader import MigrationFile, migrations_load
from daycare.storage.migrations.migrate import database_migrate, database_status
from tests.postgres_server import PostgresServer, postgres_connection, postgres_schema

CHAIN = migrations_load(dialect="postgres")


def added_column_migration(tmp_path: Path) -> MigrationFile:
    """A migration after the PostgreSQL chain's own: it adds a column to users."""
    path = tmp_path / f"{len(CHAIN)}_20270101000000_mood.py"
    module = ModuleType("mood")
    module.RUN_IN_TRANSACTION = True  # type: ignore[attr-defined]
    module.MODELS_STATE = CHAIN[-1].module.MODELS_STATE  # type: ignore[attr-defined]

    async def upgrade(db: object) -> str:
        return "ALTER TABLE users ADD COLUMN mood TEXT;"

    module.upgrade = upgrade  # type: ignore[attr-defined]
    return MigrationFile(path.name, path, module)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The Daycare home of the test (DAYCARE_HOME), where PostgreSQL backups go."""
    monkeypatch.setenv("DAYCARE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def pg_dump() -> str:
    """The pg_dump on PATH (the tests wrap it)."""
    found = shutil.which("pg_dump")
    if found is None:
        pytest.skip("pg_dump is not installed (Debian: postgresql-client)")
    return found


@pytest.fixture
async def migrated(postgres_url: str) -> AsyncIterator[Database]:
    """The test's schema, migrated: an existing Daycare database, with its owner."""
    db = await database_open(postgres_url)
    try:
        assert await database_migrate(db) == [migration.version for migration in CHAIN]
        yield db
    finally:
        await database_close(db)


def programs(folder: Path, monkeypatch: pytest.MonkeyPatch, **scripts: str) -> Path:
    """Shell scripts named after the keywords in `folder`, which becomes the whole PATH (with no Debian fallback)."""
    folder.mkdir(exist_ok=True)
    for name, body in scripts.items():
        script = folder / name
        script.write_text("#!/bin/sh\n" + body)
        script.chmod(0o755)
    monkeypatch.setenv("PATH", str(folder))
    monkeypatch.setattr(backup_module, "PG_DUMP_FOLDERS", ())
    return folder


async def has_mood(url: str) -> bool:
    async with postgres_connection(url) as connection:
        return bool(
            await connection.fetchval(
                "SELECT count(*) FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = 'users' AND column_name = 'mood'"
            )
        )


async def test_changing_an_existing_schema_dumps_it_first_privately_and_says_where(
    postgres_url: str, postgres_server: PostgresServer, home: Path, tmp_path: Path, pg_dump: str
) -> None:
    async with postgres_schema(postgres_server) as neighbour:  # another schema of the same database
        async with postgres_connection(neighbour) as connection:
            await connection.execute("CREATE TABLE neighbours_table (id INTEGER)")
        await dump_before_a_change(postgres_url, home, tmp_path, pg_dump)


async def dump_before_a_change(postgres_url: str, home: Path, tmp_path: Path, pg_dump: str) -> None:
    db = await database_open(postgres_url)
    said: list[str] = []
    try:
        await database_migrate(db, notify=said.append)
        assert not (home / "backups").exists() and not any("Backup" in line for line in said)  # fresh: nothing to lose
        owner = (await db.connection().execute_query_dict("SELECT id FROM users"))[0]["id"]
        said.clear()
        applied = await database_migrate(db, notify=said.append, migrations=[*CHAIN, added_column_migration(tmp_path)])
    finally:
        await database_close(db)
    assert applied == [f"{len(CHAIN)}_20270101000000_mood.py"]
    schema = database_location(postgres_url).schema
    (dump,) = (home / "backups").iterdir()
    assert re.fullmatch(rf"daycare_test\.{schema}\.\d{{8}}T\d{{6}}Z\.dump", dump.name), dump.name
    assert said[0] == f"Backup written to {dump} (pg_dump custom format; pg_restore puts it back)"
    assert stat.S_IMODE(dump.stat().st_mode) == 0o600 and stat.S_IMODE(dump.parent.stat().st_mode) == 0o700
    script = subprocess.run(
        [pg_dump.replace("pg_dump", "pg_restore"), "--file=-", str(dump)], capture_output=True, text=True, check=True
    ).stdout
    assert f"CREATE TABLE {schema}.users" in script and owner in script  # the schema and its rows
    assert "mood" not in script  # written before the change
    assert "neighbours_table" not in script  # only the URL's schema
    assert await has_mood(postgres_url)


async def test_without_pg_dump_the_change_is_refused_and_nothing_changes(
    postgres_url: str, migrated: Database, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    programs(tmp_path / "bin", monkeypatch)
    migrations = [*CHAIN, added_column_migration(tmp_path)]
    with pytest.raises(StorageError) as refused:
        await database_migrate(migrated, migrations=migrations)
    message = str(refused.value)
    assert "pg_dump is not installed" in message and "apt install postgresql-client" in message
    assert "--no-backup" in message and "Nothing was changed" in message
    assert not await has_mood(postgres_url)
    assert (await database_status(migrated)).applied == tuple(migration.version for migration in CHAIN)
    assert not (home / "backups").exists()
    await database_migrate(migrated, backup=False, migrations=migrations)  # --no-backup goes ahead
    assert await has_mood(postgres_url)


async def test_a_pg_dump_older_than_the_server_is_refused(
    migrated: Database, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with postgres_connection(str(migrated.location.display)) as connection:
        major = int(await connection.fetchval("SHOW server_version_num")) // 10000
    programs(tmp_path / "bin", monkeypatch, pg_dump=f'echo "pg_dump (PostgreSQL) {major - 1}.3"\n')
    with pytest.raises(StorageError) as refused:
        await postgres_backup(migrated)
    message = str(refused.value)
    assert f"the server runs PostgreSQL {major}" in message
    assert f"found {tmp_path / 'bin' / 'pg_dump'} (version {major - 1})" in message
    assert f"apt install postgresql-client-{major}" in message and "--no-backup" in message
    programs(tmp_path / "bin", monkeypatch, pg_dump=f'echo "pg_dump (PostgreSQL) {major + 1}.0"\n')
    assert pg_dump_find(major) == tmp_path / "bin" / "pg_dump"  # a newer pg_dump dumps older servers


async def test_the_password_reaches_pg_dump_in_its_environment_only(
    postgres_url: str, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_dump: str
) -> None:
    # The test server trusts local logins, so any password connects; what matters is where pg_dump finds it.
    url = postgres_url.replace("postgres@", "postgres:s3cret-word@", 1)
    record = tmp_path / "record"
    programs(
        tmp_path / "bin",
        monkeypatch,
        pg_dump=f'echo "$@" >> {record}\necho "PGPASSWORD=$PGPASSWORD" >> {record}\nexec {pg_dump} "$@"\n',
    )
    db = await database_open(url)
    try:
        await database_migrate(db)
        backup = await postgres_backup(db)
    finally:
        await database_close(db)
    lines = record.read_text().splitlines()
    assert lines[-1] == "PGPASSWORD=s3cret-word"
    assert "--format=custom" in lines[-2] and "s3cret-word" not in lines[-2]
    assert backup.path.is_file() and backup.path.stat().st_size > 0


async def test_a_failing_pg_dump_leaves_no_file_and_shows_its_error(
    migrated: Database, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_dump: str
) -> None:
    failing = (
        'case "$1" in --version) exec {pg_dump} --version;; esac\necho "pg_dump: error: out of luck" >&2\nexit 3\n'
    )
    programs(tmp_path / "bin", monkeypatch, pg_dump=failing.format(pg_dump=pg_dump))
    with pytest.raises(StorageError) as refused:
        await postgres_backup(migrated)
    message = str(refused.value)
    assert "pg_dump exited with status 3" in message and "pg_dump: error: out of luck" in message
    assert "Nothing was changed" in message
    assert list((home / "backups").iterdir()) == []


async def test_an_interrupted_dump_of_the_same_schema_is_cleared_and_others_are_kept(
    migrated: Database, home: Path, pg_dump: str
) -> None:
    folder = home / "backups"
    folder.mkdir(parents=True)
    schema = migrated.location.schema
    mine = folder / f"daycare_test.{schema}.20260101T000000Z.dump{PARTIAL}"
    other = folder / "daycare_test.t_other.20260101T000000Z.dump.partial"
    for leftover in (mine, other):
        leftover.write_bytes(b"half")
    backup = await postgres_backup(migrated)
    assert sorted(os.listdir(folder)) == sorted([backup.path.name, other.name])
