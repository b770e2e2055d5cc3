"""Adoption on PostgreSQL: the same decisions as on SQLite, atomic migrations, and nothing changed on refusal.

The unit is a schema (`?schema=` in the URL). An empty one gets the chain's baseline; one with
another application's tables, one migrated by a newer Daycare and one whose Daycare schema
drifted are refused before anything is written: `pg_dump --schema-only` of the schema, every
table's rows and every sequence read the same before and after, and no backup is written.
`daycare db status` and `daycare db check` say the same, in process and from the command line.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import pytest
from tortoise.exceptions import OperationalError

from daycare.storage.db.database import Database, database_close, database_open
from daycare.storage.db.location import POSTGRES, SQLITE
from daycare.storage.errors import DatabaseRefused
from daycare.storage.migrations.executor import migration_apply
from daycare.storage.migrations.inspection import FileKind
from daycare.storage.migrations.loader import MigrationFile, migrations_dir, migrations_load
from daycare.storage.migrations.migrate import CheckOutcome, database_check, database_migrate, database_status
from tests.conftest import ROOT
from tests.postgres_server import pg_dump_require, postgres_connection
from tests.sqlite_files import file_sha256

PG_VERSIONS = tuple(migration.version for migration in migrations_load(dialect=POSTGRES))
FUTURE = "1_20300101000000_future.py"


@dataclass(frozen=True)
class Snapshot:
    """Everything a schema holds: its DDL as pg_dump prints it, each table's rows, each sequence's position."""

    ddl: str
    rows: dict[str, tuple[int, str]]  # table -> (row count, md5 of the rows' text in order)
    sequences: dict[str, int | None]


def url_schema(url: str) -> tuple[str, str]:
    """The libpq DSN of a test schema URL (no `?schema=`) and the schema's name."""
    parts = urlsplit(url)
    (schema,) = parse_qs(parts.query)["schema"]
    return urlunsplit(("postgresql", parts.netloc, parts.path, "", "")), schema


async def postgres_snapshot(url: str) -> Snapshot:
    """Reads the schema of `url` with pg_dump and plain asyncpg, independently of the package under test."""
    pg_dump_require()
    dsn, schema = url_schema(url)
    dump = await asyncio.to_thread(
        subprocess.run,
        ["pg_dump", "--schema-only", f"--schema={schema}", dsn],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dump.returncode == 0, dump.stderr
    # pg_dump (15.14 and later) brackets its output with a random \restrict key, different on every run.
    ddl = "\n".join(line for line in dump.stdout.splitlines() if not line.startswith(("\\restrict", "\\unrestrict")))
    assert f"CREATE SCHEMA {schema};" in ddl, ddl  # the dump is of this schema
    async with postgres_connection(url) as connection:
        tables = [
            row["tablename"]
            for row in await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = $1", schema)
        ]
        rows = {}
        for table in sorted(tables):
            found = await connection.fetchrow(
                f"SELECT count(*) AS n, md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) AS digest"
                f' FROM "{schema}"."{table}" t'
            )
            rows[table] = (int(found["n"]), str(found["digest"]))
        sequences = {
            row["sequencename"]: row["last_value"]
            for row in await connection.fetch(
                "SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = $1", schema
            )
        }
    return Snapshot(ddl, rows, sequences)


def backups(home: Path) -> list[str]:
    """The files in the Daycare home's backups folder (where pg_dump backups go)."""
    folder = home / "backups"
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Daycare home of the test's own (its backups folder is where a PostgreSQL backup would go)."""
    folder = tmp_path / "home"
    monkeypatch.setenv("DAYCARE_HOME", str(folder))
    return folder


def daycare(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """`python -m daycare <args>` in a fresh process, with the test's Daycare home."""
    env = {key: value for key, value in os.environ.items() if key != "DAYCARE_DB_URL"}
    env["DAYCARE_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "daycare", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=180
    )


async def opened(url: str, action: Callable[[Database], Awaitable[object]]) -> object:
    """`action(db)` on the database at `url`, opened for it and closed afterwards."""
    db = await database_open(url)
    try:
        return await action(db)
    finally:
        await database_close(db)


def migration_text(upgrade_body: str) -> str:
    """A migration file of the PostgreSQL chain whose `upgrade` runs `upgrade_body`, with the chain's models state."""
    state = migrations_load(dialect=POSTGRES)[-1].module.MODELS_STATE
    return (
        "from daycare.storage.migrations.dialect_guard import dialect_require\n\n"
        "RUN_IN_TRANSACTION = True\n\n\n"
        f"async def upgrade(db):\n    dialect_require(db, 'postgres')\n{upgrade_body}\n\n\n"
        "async def downgrade(db):\n    return ''\n\n\n"
        f"MODELS_STATE = {state!r}\n"
    )


def chain_folder(folder: Path, files: dict[str, str]) -> tuple[MigrationFile, ...]:
    """A copy of the PostgreSQL chain in `folder`, followed by `files` (name -> the SQL `upgrade` returns, or a
    whole file's text when it starts with `from `); loaded."""
    folder.mkdir(parents=True)
    for path in migrations_dir(POSTGRES).glob("[0-9]*_*.py"):
        shutil.copyfile(path, folder / path.name)
    for name, sql in files.items():
        (folder / name).write_text(sql if sql.startswith("from ") else migration_text(f"    return {sql!r}"))
    return migrations_load(folder)


# A later migration that works: what a refused schema must not get.
NOTES = {"1_20270101000000_add_notes.py": 'CREATE TABLE notes (id BIGINT PRIMARY KEY, body TEXT COLLATE "C");'}


async def test_an_empty_schema_gets_the_baseline(postgres_url: str, home: Path) -> None:
    async def status_migrate(db: Database) -> None:
        status = await database_status(db)
        assert status.state.kind is FileKind.FRESH and status.applied == () and status.pending == PG_VERSIONS
        assert (await database_check(db)).outcome is CheckOutcome.FRESH
        assert await database_migrate(db) == list(PG_VERSIONS)
        status = await database_status(db)
        assert status.state.kind is FileKind.AERICH and status.applied == PG_VERSIONS and status.pending == ()
        check = await database_check(db)
        assert check.outcome is CheckOutcome.MATCHES and check.issues == []

    await opened(postgres_url, status_migrate)
    assert backups(home) == []  # an empty schema holds nothing to back up
    migrated = await postgres_snapshot(postgres_url)
    assert len(migrated.rows) == 23 and migrated.rows["users"][0] == 1  # 22 tables, aerich; the bootstrap owner
    assert migrated.rows["aerich"][0] == len(PG_VERSIONS)
    assert await opened(postgres_url, database_migrate) == []  # up to date: nothing applied, nothing written
    assert await postgres_snapshot(postgres_url) == migrated
    assert backups(home) == []


async def foreign_tables(url: str) -> None:
    async with postgres_connection(url) as connection:
        await connection.execute(
            "CREATE TABLE orders (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, total NUMERIC);"
            " INSERT INTO orders (total) VALUES (12.50), (7);"
            " CREATE TABLE users (login TEXT PRIMARY KEY);"  # a name Daycare uses too, of another application
            " INSERT INTO users VALUES ('ada')"
        )


async def up_to_date(url: str) -> None:
    await opened(url, lambda db: database_migrate(db, backup=False))


async def newer_daycare(url: str) -> None:
    await up_to_date(url)
    async with postgres_connection(url) as connection:
        await connection.execute(f"INSERT INTO aerich (version, app, content) VALUES ('{FUTURE}', 'models', '{{}}')")


async def drifted(url: str) -> None:
    await up_to_date(url)
    async with postgres_connection(url) as connection:
        await connection.execute(
            "DROP INDEX idx_users_parent;"
            " ALTER TABLE agents ADD COLUMN mood TEXT;"
            " ALTER TABLE connections DROP CONSTRAINT connections_users_ordered;"
            " ALTER TABLE connections ADD CONSTRAINT connections_users_ordered CHECK (user_a_id <= user_b_id)"
        )


DRIFT = {
    "agents": ["unexpected column mood: text"],
    "connections": [
        "CHECK constraints are ['connections_users_ordered: (user_a_id <= user_b_id)'],"
        " expected ['connections_users_ordered: (user_a_id < user_b_id)']"
    ],
    "users": ["missing index idx_users_parent: (parent_user_id) WHERE (parent_user_id IS NOT NULL)"],
}


@dataclass(frozen=True)
class Refusal:
    """A schema Daycare must not touch: how to make it, and what each command says about it."""

    make: Callable[[str], Awaitable[None]]
    refused: tuple[str, ...]  # in the refusal of `daycare upgrade` and of `database_migrate`
    state: str  # `daycare db status`'s State line
    status_lines: tuple[str, ...]  # more lines of `daycare db status`


REFUSALS = {
    "foreign": Refusal(
        foreign_tables,
        ("is not a Daycare database", "tables of another application (tables: orders, users)", "nothing was changed"),
        "not a Daycare file",
        ("Applied:  none",),
    ),
    "newer": Refusal(
        newer_daycare,
        ("was migrated by a newer Daycare", f"this version does not have ({FUTURE})", "left unchanged"),
        "under Aerich",
        (f"Unknown:  {FUTURE} (applied by a newer Daycare)", "Pending:  cannot tell"),
    ),
    "drift": Refusal(
        drifted,
        (
            f"differs from what its {len(PG_VERSIONS)} applied migration(s) create",
            "  agents:\n    - unexpected column mood: text",
            "  connections:\n    - CHECK constraints are",
            "  users:\n    - missing index idx_users_parent",
            "Nothing was changed. Restore the schema from a backup (pg_dump)",
        ),
        "under Aerich",
        ("Pending:  none",),
    ),
}


@pytest.mark.parametrize("case", REFUSALS)
async def test_a_refused_schema_is_left_exactly_as_it_was(
    case: str, postgres_url: str, home: Path, tmp_path: Path
) -> None:
    refusal = REFUSALS[case]
    await refusal.make(postgres_url)
    before = await postgres_snapshot(postgres_url)
    # A pending migration that would change the schema if the refusal came too late.
    chain = chain_folder(tmp_path / "chain", NOTES)

    db = await database_open(postgres_url)
    try:
        with pytest.raises(DatabaseRefused) as refused:
            await database_migrate(db, migrations=chain)
        for fragment in refusal.refused:
            assert fragment in str(refused.value), str(refused.value)
        status = await database_status(db)
        assert status.state.kind is (FileKind.FOREIGN if case == "foreign" else FileKind.AERICH)
        if case == "newer":
            assert status.unknown == (FUTURE,) and status.applied == (*PG_VERSIONS, FUTURE)
        if case == "drift":
            check = await database_check(db)
            assert check.outcome is CheckOutcome.DRIFT
            assert {issue.table: issue.lines for issue in check.issues} == DRIFT
        else:
            with pytest.raises(DatabaseRefused, match=re.escape(refusal.refused[0])):
                await database_check(db)
    finally:
        await database_close(db)
    assert await postgres_snapshot(postgres_url) == before
    assert backups(home) == []

    # The commands, each in its own process: the same answers, and still nothing changed.
    upgrade = daycare("upgrade", "--db", postgres_url, home=home)
    assert upgrade.returncode == 1 and "Traceback" not in upgrade.stderr, upgrade.stdout + upgrade.stderr
    for fragment in refusal.refused:
        assert fragment in upgrade.stderr, upgrade.stderr
    status_run = daycare("db", "status", "--db", postgres_url, home=home)
    assert status_run.returncode == 0, status_run.stderr
    assert f"State:    {refusal.state}\n" in status_run.stdout, status_run.stdout
    for line in refusal.status_lines:
        assert line in status_run.stdout, status_run.stdout
    check_run = daycare("db", "check", "--db", postgres_url, home=home)
    assert check_run.returncode == 1 and "Traceback" not in check_run.stderr, check_run.stderr
    if case == "drift":
        assert f"Schema drift in {postgres_url}:\n" in check_run.stdout, check_run.stdout
        for table, lines in DRIFT.items():
            assert f"  {table}:\n" + "".join(f"    - {line}\n" for line in lines) in check_run.stdout
    else:
        assert refusal.refused[0] in check_run.stderr, check_run.stderr
    assert await postgres_snapshot(postgres_url) == before
    assert backups(home) == []


async def test_db_status_and_check_report_a_fresh_and_a_current_schema(postgres_url: str, home: Path) -> None:
    status = daycare("db", "status", "--db", postgres_url, home=home)
    assert status.returncode == 0, status.stderr
    assert f"Database: {postgres_url} (from --db)" in status.stdout
    assert "State:    fresh (no tables yet)" in status.stdout and f"Pending:  {', '.join(PG_VERSIONS)}" in status.stdout
    check = daycare("db", "check", "--db", postgres_url, home=home)
    assert check.returncode == 0 and "has no tables yet; run daycare upgrade" in check.stdout, check.stderr
    assert (await postgres_snapshot(postgres_url)).rows == {}  # status and check created nothing

    upgrade = daycare("upgrade", "--db", postgres_url, home=home)
    assert upgrade.returncode == 0, upgrade.stderr
    assert f"Upgraded {postgres_url}: applied {', '.join(PG_VERSIONS)}." in upgrade.stdout
    current = await postgres_snapshot(postgres_url)
    status = daycare("db", "status", "--db", postgres_url, home=home)
    assert "State:    under Aerich" in status.stdout and f"Applied:  {', '.join(PG_VERSIONS)}" in status.stdout
    assert "Pending:  none" in status.stdout
    check = daycare("db", "check", "--db", postgres_url, home=home)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"{postgres_url}: the schema matches the migrations it records." in check.stdout
    again = daycare("upgrade", "--db", postgres_url, home=home)
    assert again.returncode == 0 and f"{postgres_url} is up to date." in again.stdout, again.stderr
    assert await postgres_snapshot(postgres_url) == current
    assert backups(home) == []  # nothing to apply, so no backup either


# Atomic migrations


BROKEN = {
    "1_20270101000000_add_notes.py": (
        'CREATE TABLE notes (id BIGINT PRIMARY KEY, body TEXT COLLATE "C");\n'
        "CREATE INDEX idx_notes_body ON notes (body);\n"
        "UPDATE users SET name = 'first' WHERE is_owner;"
    ),
    "2_20270102000000_broken.py": (
        'CREATE TABLE moods (id BIGINT PRIMARY KEY, mood TEXT COLLATE "C");\n'
        "ALTER TABLE users ADD COLUMN mood TEXT;\n"
        "UPDATE users SET name = 'second', mood = 'ok';\n"
        "DROP INDEX idx_agents_user_id;\n"
        "INSERT INTO no_such_table VALUES (1);"
    ),
}


async def test_a_failing_second_migration_leaves_the_first_applied_and_nothing_of_itself(
    postgres_url: str, tmp_path: Path
) -> None:
    chain = chain_folder(tmp_path / "chain", BROKEN)
    first = chain[-2].version
    db = await database_open(postgres_url)
    try:
        with pytest.raises(OperationalError, match="no_such_table"):
            await database_migrate(db, migrations=chain)
        status = await database_status(db)
        assert status.applied == (*PG_VERSIONS, first)
    finally:
        await database_close(db)
    after_first = await postgres_snapshot(postgres_url)
    assert "notes" in after_first.rows and "moods" not in after_first.rows
    assert re.search(r"CREATE INDEX idx_notes_body ON \w+\.notes", after_first.ddl)
    assert re.search(r"CREATE INDEX idx_agents_user_id ON \w+\.agents", after_first.ddl)  # the DROP was undone
    assert "mood" not in after_first.ddl
    async with postgres_connection(postgres_url) as connection:
        assert await connection.fetchval("SELECT name FROM users WHERE is_owner") == "first"
        assert [row["version"] for row in await connection.fetch("SELECT version FROM aerich ORDER BY id")] == [
            *PG_VERSIONS,
            first,
        ]

    # The broken file alone, through the executor database_migrate uses (its adoption check would compare the
    # schema with the project's chain, which lacks the temp chain's first file): it fails and leaves everything.
    db = await database_open(postgres_url)
    try:
        with pytest.raises(OperationalError, match="no_such_table"):
            await migration_apply(db, chain[-1])
        assert (await database_status(db)).applied == (*PG_VERSIONS, first)
    finally:
        await database_close(db)
    assert await postgres_snapshot(postgres_url) == after_first


async def test_a_migration_whose_own_code_fails_after_writing_leaves_nothing(postgres_url: str, tmp_path: Path) -> None:
    await up_to_date(postgres_url)
    before = await postgres_snapshot(postgres_url)
    hook = (
        "    await db.execute_script(\"CREATE TABLE half (x BIGINT); UPDATE users SET name = 'half'\")\n"
        "    raise RuntimeError('the hook failed after writing')"
    )
    chain = chain_folder(tmp_path / "chain", {"1_20270101000000_hook.py": migration_text(hook)})
    db = await database_open(postgres_url)
    try:
        with pytest.raises(RuntimeError, match="the hook failed after writing"):
            await database_migrate(db, backup=False, migrations=chain)
    finally:
        await database_close(db)
    assert await postgres_snapshot(postgres_url) == before


async def test_each_chain_refuses_the_other_dialect_on_an_up_to_date_database(
    postgres_url: str, tmp_path: Path
) -> None:
    """Each file's own `upgrade`, called on the other dialect's connection, refuses before it changes anything."""
    await up_to_date(postgres_url)
    path = tmp_path / "daycare.db"
    await opened(str(path), lambda db: database_migrate(db, backup=False))
    before, sha = await postgres_snapshot(postgres_url), file_sha256(path)
    on_postgres, on_sqlite = await database_open(postgres_url), await database_open(path)
    try:
        for db, chain, found in ((on_postgres, SQLITE, "PostgreSQL"), (on_sqlite, POSTGRES, "SQLite")):
            for migration in migrations_load(dialect=chain):
                with pytest.raises(DatabaseRefused, match=f"the database is {found}") as refused:
                    async with db.in_transaction() as conn:
                        await migration.module.upgrade(conn)
                assert "Nothing was changed" in str(refused.value), migration.version
    finally:
        await database_close(on_postgres)
        await database_close(on_sqlite)
    assert await postgres_snapshot(postgres_url) == before
    assert file_sha256(path) == sha
