"""The PostgreSQL chain and the migration rules on PostgreSQL: the wrong-dialect guard, the Aerich CLI,
refusals of schemas that are not Daycare's, and `daycare db check` reading drift without changing anything."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from daycare.storage.db import postgres, sqlite
from daycare.storage.db.database import database_close, database_open
from daycare.storage.db.location import POSTGRES, SQLITE
from daycare.storage.errors import DatabaseRefused
from daycare.storage.migrations.adoption import adoption_check
from daycare.storage.migrations.catalog import schema_describe, schema_report
from daycare.storage.migrations.executor import migration_apply
from daycare.storage.migrations.inspection import FileKind, file_inspect
from daycare.storage.migrations.loader import migrations_load
from daycare.storage.migrations.migrate import CheckOutcome, database_check
from daycare.storage.migrations.schema_check import schema_tolerant_compare
from tests.postgres_server import PostgresServer, postgres_connection, postgres_schema

ROOT = Path(__file__).resolve().parents[3]
POSTGRES_CONFIG = "migrations/postgres/aerich.toml"


async def test_every_migration_refuses_the_other_dialect_before_changing_anything(
    tmp_path: Path, postgres_url: str
) -> None:
    on_sqlite = await database_open(tmp_path / "daycare.db")
    on_postgres = await database_open(postgres_url)
    try:
        for db, chain, found, command in (
            (on_postgres, SQLITE, "PostgreSQL", "aerich -c migrations/postgres/aerich.toml upgrade"),
            (on_sqlite, POSTGRES, "SQLite", "`aerich upgrade`"),
        ):
            for migration in migrations_load(dialect=chain):
                with pytest.raises(DatabaseRefused) as refused:
                    await migration_apply(db, migration)
                needed = "SQLite" if chain == SQLITE else "PostgreSQL"
                assert f"of the {needed} chain, but the database is {found}" in str(refused.value), migration.version
                assert command in str(refused.value) and "daycare upgrade" in str(refused.value)
        assert await postgres.table_names(on_postgres.connection()) == frozenset()
        assert await sqlite.table_names(on_sqlite.connection()) == frozenset()
    finally:
        await database_close(on_sqlite)
        await database_close(on_postgres)


def aerich(*args: str, url: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DAYCARE_DB_URL": url, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "aerich", "-c", POSTGRES_CONFIG, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


@pytest.fixture
async def other_postgres_url(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """A second fresh schema on the same server."""
    async with postgres_schema(postgres_server) as url:
        yield url


async def test_the_aerich_cli_runs_the_postgres_chain_as_daycare_does(
    postgres_url: str, other_postgres_url: str, tmp_path: Path
) -> None:
    result = aerich("upgrade", url=postgres_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success upgrading to 0_" in result.stdout
    again = aerich("upgrade", url=postgres_url)
    assert again.returncode == 0 and "No upgrade items found" in again.stdout, again.stdout + again.stderr

    by_daycare = await database_open(other_postgres_url)
    by_aerich = await database_open(postgres_url)
    try:
        for migration in migrations_load(dialect=POSTGRES):
            await migration_apply(by_daycare, migration)
        issues = schema_tolerant_compare(
            await schema_describe(by_daycare.connection()), await schema_describe(by_aerich.connection()), frozenset()
        )
        assert not issues, schema_report(issues)
        state = await file_inspect(by_aerich.connection())
        assert state.kind is FileKind.AERICH
        assert state.versions == tuple(migration.version for migration in migrations_load(dialect=POSTGRES))
    finally:
        await database_close(by_daycare)
        await database_close(by_aerich)
    rows = []
    for url in (postgres_url, other_postgres_url):
        async with postgres_connection(url) as connection:
            rows.append([tuple(row) for row in await connection.fetch("SELECT version, app, content FROM aerich")])
            assert await connection.fetchval("SELECT count(*) FROM users WHERE is_owner") == 1
    assert rows[0] == rows[1]

    # The chain's models state is the models': Aerich finds nothing to migrate.
    project = tmp_path / "project"
    shutil.copytree(ROOT / "migrations", project / "migrations")
    shutil.copyfile(ROOT / "pyproject.toml", project / "pyproject.toml")
    result = aerich("migrate", "--name", "check", "--no-input", url=postgres_url, cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No changes detected" in result.stdout
    assert sorted(path.name for path in (project / "migrations" / "postgres" / "models").glob("*.py")) == sorted(
        path.name for path in (ROOT / "migrations" / "postgres" / "models").glob("*.py")
    )


@pytest.mark.parametrize(
    ("ddl", "found"),
    [
        (
            "CREATE TABLE orders (id BIGINT PRIMARY KEY)",
            "its schema holds tables of another application (tables: orders)",
        ),
        (
            "CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)",
            "its schema has a _migrations table but no Aerich record",
        ),
    ],
)
async def test_a_schema_with_other_tables_is_refused_and_left_unchanged(
    postgres_url: str, ddl: str, found: str
) -> None:
    async with postgres_connection(postgres_url) as connection:
        await connection.execute(ddl)
    db = await database_open(postgres_url)
    try:
        conn = db.connection()
        before = await postgres.table_names(conn)
        state = await file_inspect(conn)
        assert state.kind is FileKind.FOREIGN
        with pytest.raises(DatabaseRefused, match=re.escape(found)):
            await adoption_check(conn, state, migrations_load(dialect=POSTGRES))
        with pytest.raises(DatabaseRefused, match="the baseline needs an empty schema"):
            await migration_apply(db, migrations_load(dialect=POSTGRES)[0])
        assert await postgres.table_names(conn) == before
    finally:
        await database_close(db)


async def test_db_check_reads_drift_on_a_read_only_connection_and_changes_nothing(postgres_url: str) -> None:
    db = await database_open(postgres_url)
    try:
        for migration in migrations_load(dialect=POSTGRES):
            await migration_apply(db, migration)
    finally:
        await database_close(db)
    reader = await database_open(postgres_url, read_only=True)
    try:
        assert (await database_check(reader)).outcome is CheckOutcome.MATCHES
        async with postgres_connection(postgres_url) as connection:
            schemas = {row[0] for row in await connection.fetch("SELECT nspname FROM pg_namespace")}
            await connection.execute(
                "DROP INDEX idx_users_parent;"
                ' ALTER TABLE agents ALTER COLUMN type TYPE text COLLATE "default";'
                " ALTER TABLE connections DROP CONSTRAINT connections_users_ordered"
            )
        check = await database_check(reader)
        assert check.outcome is CheckOutcome.DRIFT
        assert {issue.table: issue.lines for issue in check.issues} == {
            "agents": ['column type is text NOT NULL, expected text COLLATE "C" NOT NULL'],
            "connections": [
                "CHECK constraints are [], expected ['connections_users_ordered: (user_a_id < user_b_id)']"
            ],
            "users": ["missing index idx_users_parent: (parent_user_id) WHERE (parent_user_id IS NOT NULL)"],
        }
        with pytest.raises(DatabaseRefused, match=r"differs from what its 2 applied migration\(s\) create"):
            state = await file_inspect(reader.connection())
            await adoption_check(reader.connection(), state, migrations_load(dialect=POSTGRES))
        # The expected schema was built in a rolled-back transaction of the session's temporary schema:
        # no schema was made (other tests' t_<hex> schemas come and go) and no table is left behind.
        async with postgres_connection(postgres_url) as connection:
            after = {row[0] for row in await connection.fetch("SELECT nspname FROM pg_namespace")}
            assert {
                name for name in after - schemas if not name.startswith(("t_", "pg_temp_", "pg_toast_temp_"))
            } == set()
            leftovers = await connection.fetchval(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname LIKE 'pg_temp%' AND c.relname = 'token_stats_hourly'"
            )
            assert leftovers == 0
        assert len(await postgres.table_names(reader.connection())) == 23  # 22 tables and aerich
    finally:
        await database_close(reader)
