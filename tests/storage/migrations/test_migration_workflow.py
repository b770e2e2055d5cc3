"""docs/storage.md, "Adding a migration", done for real on a copy of the project.

A nullable column is added to a model of the copy, `aerich migrate` writes the file of each
chain (SQLite's against a dev file, PostgreSQL's against a dev schema), the file is reviewed
as the docs say, and the copy's own `daycare upgrade`, `daycare db check`, `daycare start` and
repositories then work on an upgraded legacy file, and on PostgreSQL on a copy of it. Every
step runs in a fresh process on the copy's code.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from daycare.storage.db.location import POSTGRES
from daycare.storage.migrations.loader import migrations_load
from tests.conftest import ROOT, legacy_path
from tests.engine_process import engine_start_stop
from tests.postgres_server import PostgresServer, pg_dump_require, postgres_connection, postgres_schema
from tests.storage.migrations.migrated import VERSIONS

PG_VERSIONS = tuple(migration.version for migration in migrations_load(dialect=POSTGRES))
PG_CONFIG = "migrations/postgres/aerich.toml"  # the Aerich CLI's config for the PostgreSQL chain

# Reads every repository of the copy's Storage and prints, per repository, the keys it returned.
READ_EVERY_REPOSITORY = r"""
import asyncio, json, sys
from daycare.storage.db.database import database_close, database_open
from daycare.storage.facade import Storage
from daycare.storage.repositories.context import Context


async def found(find, keys):
    # The keys for which find(*key) returned a record (a one-column key as its value).
    return sorted([key if len(key) > 1 else key[0] for key in keys if await find(*key) is not None])


async def union(find, keys):
    return sorted({record.id for key in keys for record in await find(*key)})


async def reads(storage, db):
    async def table(name, *columns):
        rows = await db.connection().execute_query_dict(f'SELECT * FROM "{name}"')
        return [tuple(row[c] for c in columns) for row in rows]

    def ids(records):
        return sorted(record.id for record in records)

    s = storage
    users, agents = await table("users", "id"), await table("agents", "id")
    sessions, channels = await table("sessions", "id"), await table("channels", "id")
    all_users = await s.users.find_all()
    got = {
        "users": ids(all_users),
        "user_connector_keys": sorted(key.connector_key for user in all_users for key in user.connector_keys),
        "agents": ids(await s.agents.find_all()),
        "sessions.find_by_agent_id": await union(s.sessions.find_by_agent_id, agents),
        # History records carry no id: count them per session.
        "session_history": sorted(
            [[i, n] for (i,) in sessions if (n := len(await s.history.find_by_session_id(i)))]
        ),
        "inbox": await union(s.inbox.find_by_agent_id, agents),
        "tasks": sorted((t.user_id, t.id) for t in await s.tasks.find_all()),
        "tasks.find_many": sorted(
            {(t.user_id, t.id) for (u,) in users for t in await s.tasks.find_many(Context(u))}
        ),
        "tasks.find_any_by_id": await found(
            lambda u, i: s.tasks.find_any_by_id(Context(u), i), await table("tasks", "user_id", "id")
        ),
        "tasks_cron": ids(await s.cron_tasks.find_all(include_disabled=True)),
        "tasks_heartbeat": ids(await s.heartbeat_tasks.find_all()),
        "signals_events": ids(await s.signal_events.find_all()),
        "signals_subscriptions": ids(await s.signal_subscriptions.find_all()),
        "signals_delayed": ids(await s.delayed_signals.find_all()),
        "channels": ids(await s.channels.find_all()),
        "channel_members": sorted(
            [(m.channel_id, m.agent_id) for (c,) in channels for m in await s.channels.find_members(c)]
        ),
        "channel_messages": sorted({
            m.id for (u,) in users for (c,) in channels
            for m in await s.channel_messages.find_recent(Context(u), c, 500)
        }),
        "connections": await found(s.connections.find, await table("connections", "user_a_id", "user_b_id")),
        "expose_endpoints": ids(await s.expose_endpoints.find_all()),
        "processes": ids(await s.processes.find_all()),
        "system_prompts": ids(await s.system_prompts.find_all()),
        "token_stats_hourly": sorted(
            (r.hour_start, r.user_id, r.agent_id, r.model) for r in await s.token_stats.find_all()
        ),
    }
    by_id = {
        "users": s.users, "agents": s.agents, "sessions": s.sessions, "tasks_cron": s.cron_tasks,
        "tasks_heartbeat": s.heartbeat_tasks, "signals_events": s.signal_events, "signals_delayed": s.delayed_signals,
        "channels": s.channels, "expose_endpoints": s.expose_endpoints, "processes": s.processes,
        "system_prompts": s.system_prompts,
    }
    for name, repository in by_id.items():
        got[f"{name}.find_by_id"] = await found(repository.find_by_id, await table(name, "id"))
    return got


async def main(path):
    db = await database_open(path, create=False)
    try:
        print(json.dumps(await reads(Storage.from_database(db), db)))
    finally:
        await database_close(db)


asyncio.run(main(sys.argv[1]))
"""


def project_copy(target: Path) -> Path:
    """daycare/, migrations/ and pyproject.toml of this checkout, copied to `target`."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "daycare", target / "daycare", ignore=ignore)
    shutil.copytree(ROOT / "migrations", target / "migrations", ignore=ignore)
    shutil.copyfile(ROOT / "pyproject.toml", target / "pyproject.toml")
    return target


def project_env(project: Path) -> dict[str, str]:
    """The environment of a process on the copy's code, with a Daycare home of its own (PostgreSQL backups go there)."""
    env = {key: value for key, value in os.environ.items() if key != "DAYCARE_DB_URL"}
    env["PYTHONPATH"] = str(project)
    env["DAYCARE_HOME"] = str(project.parent / "home")
    return env


def run(project: Path, *args: str, db: Path | str | None = None) -> subprocess.CompletedProcess[str]:
    """`python <args>` in a fresh process on the copy's code."""
    env = project_env(project)
    if db is not None:
        env["DAYCARE_DB_URL"] = str(db)
    return subprocess.run([sys.executable, *args], cwd=project, env=env, capture_output=True, text=True, timeout=300)


def model_change(project: Path) -> None:
    """Step 1 of the docs: a nullable `topic` column on the Channel model of the copy."""
    schema = project / "daycare" / "schema.py"
    text = schema.read_text()
    channel = text.index("class Channel(Model):")
    leader = text.index("    leader = fields.TextField()\n", channel)
    schema.write_text(text[:leader] + "    topic = fields.TextField(null=True)\n" + text[leader:])


def file_generate(project: Path, folder: Path, ours: list[str], *args: str, db: Path | str) -> Path:
    """Step 2: `daycare upgrade` brings the dev database up to date, then `aerich [args] migrate` writes one file."""
    upgraded = run(project, "-m", "daycare", "upgrade", db=db)
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    made = run(project, "-m", "aerich", *args, "migrate", "--name", "add_channel_topic", db=db)
    assert made.returncode == 0, made.stdout + made.stderr
    (new,) = [path for path in folder.glob("[0-9]*_*.py") if path.name not in ours]
    assert new.name.startswith(f"{len(ours)}_") and new.name.endswith("_add_channel_topic.py"), new.name
    return new


def file_review(path: Path, dialect: str, added: str, reviewed: str | None = None) -> None:
    """Step 3: Aerich wrote `added`, and nothing that manages a transaction; the dialect guard goes first in
    `upgrade`, and `added` becomes `reviewed` (PostgreSQL: text columns in collation "C")."""
    generated = path.read_text()
    assert added in generated, generated
    assert "RUN_IN_TRANSACTION = True" in generated
    assert not re.search(r"\b(BEGIN|COMMIT|ROLLBACK)\b", generated[: generated.index("MODELS_STATE")], re.I)
    header = "from tortoise import BaseDBAsyncClient\n"
    signature = "async def upgrade(db: BaseDBAsyncClient) -> str:\n"
    assert generated.count(header) == 1 and generated.count(signature) == 1, generated
    reviewed_text = generated.replace(
        header, header + "\nfrom daycare.storage.migrations.dialect_guard import dialect_require\n"
    ).replace(signature, signature + f'    dialect_require(db, "{dialect}")\n')
    path.write_text(reviewed_text.replace(added, reviewed or added))


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


def keys(path: Path, table: str, *columns: str, where: str = "1") -> list[Any]:
    found = rows(path, f'SELECT {", ".join(columns)} FROM "{table}" WHERE {where}')
    return sorted(row[0] if len(columns) == 1 else list(row) for row in found)


@pytest.mark.sqlite_only  # the SQLite chain on a legacy file; the next test does both chains and PostgreSQL
def test_adding_a_nullable_column_as_the_docs_say(tmp_path: Path) -> None:
    project = project_copy(tmp_path / "project")
    ours = sorted(path.name for path in (ROOT / "migrations" / "models").glob("[0-9]*_*.py"))
    # Code run from a source tree reads that tree's migrations/ (not this checkout's, which the editable install maps).
    where = run(
        project,
        "-c",
        "import daycare; from daycare.storage.migrations.loader import migrations_dir; "
        "print(daycare.__file__, migrations_dir())",
    )
    assert where.returncode == 0, where.stderr
    assert all(path.startswith(str(project)) for path in where.stdout.split()), where.stdout

    # 1. The model change. 2. The file, written by the real CLI against an up-to-date dev database.
    model_change(project)
    dev = tmp_path / "dev.db"
    new = file_generate(project, project / "migrations" / "models", ours, db=dev)
    # 3. Review: one added column, no transaction statements, atomic; the dialect guard added.
    file_review(new, "sqlite", 'ALTER TABLE "channels" ADD "topic" TEXT;')
    # The dev database takes the file; then the models and the files agree again.
    upgraded = run(project, "-m", "daycare", "upgrade", db=dev)
    assert upgraded.returncode == 0 and f"Applied {new.name}" in upgraded.stdout, upgraded.stdout + upgraded.stderr
    again = run(project, "-m", "aerich", "migrate", "--name", "nothing", "--no-input", db=dev)
    assert "No changes detected" in again.stdout, again.stdout + again.stderr

    # 4. A legacy file, upgraded by the copy's daycare, checked, and run.
    path = tmp_path / "data" / "populated.db"
    path.parent.mkdir()
    shutil.copyfile(legacy_path("populated.db"), path)
    path.chmod(0o600)
    upgrade = run(project, "-m", "daycare", "upgrade", "--db", str(path))
    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
    assert [version for (version,) in rows(path, "SELECT version FROM aerich ORDER BY id")] == [*VERSIONS, new.name]
    assert ("topic", "TEXT", 0) in [
        (name, kind, notnull) for _, name, kind, notnull, *_ in rows(path, "PRAGMA table_info(channels)")
    ]
    legacy = json.loads(legacy_path("populated.json").read_text())["tables"]
    for table, dumped in legacy.items():  # the upgrade kept every row
        assert rows(path, f'SELECT count(*) FROM "{table}"') == [(dumped["row_count"],)], table
    check = run(project, "-m", "daycare", "db", "check", "--db", str(path))
    assert check.returncode == 0, check.stdout + check.stderr

    started = engine_start_stop(
        [sys.executable, "-m", "daycare", "start", "--db", path], cwd=project, env=project_env(project)
    )
    assert f"{len(VERSIONS) + 1} migrations applied, none pending" in started

    # 5. Every repository reads the rows (the populated ones and what the engine's start added),
    # the new column notwithstanding.
    script = tmp_path / "read_every_repository.py"
    script.write_text(READ_EVERY_REPOSITORY)
    read = run(project, str(script), str(path))
    assert read.returncode == 0, read.stderr
    got = json.loads(read.stdout)
    expected = {
        "users": keys(path, "users", "id"),
        "user_connector_keys": keys(path, "user_connector_keys", "connector_key"),
        "agents": keys(path, "agents", "id"),
        "session_history": keys(path, "session_history", "session_id", "count(*)", where="1 GROUP BY session_id"),
        "inbox": keys(path, "inbox", "id"),
        "tasks": keys(path, "tasks", "user_id", "id", where="deleted_at IS NULL"),
        "tasks.find_any_by_id": keys(path, "tasks", "user_id", "id"),
        "tasks_cron": keys(path, "tasks_cron", "id"),
        "tasks_heartbeat": keys(path, "tasks_heartbeat", "id"),
        "signals_events": keys(path, "signals_events", "id"),
        "signals_subscriptions": keys(path, "signals_subscriptions", "id"),
        "signals_delayed": keys(path, "signals_delayed", "id"),
        "channels": keys(path, "channels", "id"),
        "channel_members": keys(path, "channel_members", "channel_id", "agent_id"),
        "channel_messages": keys(path, "channel_messages", "id"),
        "connections": keys(path, "connections", "user_a_id", "user_b_id"),
        "expose_endpoints": keys(path, "expose_endpoints", "id"),
        "processes": keys(path, "processes", "id"),
        "system_prompts": keys(path, "system_prompts", "id"),
        "token_stats_hourly": keys(path, "token_stats_hourly", "hour_start", "user_id", "agent_id", "model"),
    }
    for name in ("users", "agents", "sessions", "tasks_cron", "tasks_heartbeat", "signals_events", "signals_delayed",
                 "channels", "expose_endpoints", "processes", "system_prompts"):  # fmt: skip
        expected[f"{name}.find_by_id"] = keys(path, name, "id")
    expected["sessions.find_by_agent_id"] = keys(path, "sessions", "id")
    expected["tasks.find_many"] = expected["tasks"]
    assert got == expected
    assert sorted(path.name for path in (ROOT / "migrations" / "models").glob("[0-9]*_*.py")) == ours  # untouched


EQUIVALENCE = "tests/storage/migrations/test_dialect_equivalence.py"  # both chains end in the same logical schema


@pytest.fixture
async def target_url(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """A second fresh schema: the PostgreSQL database a legacy file is copied to."""
    async with postgres_schema(postgres_server) as url:
        yield url


async def test_adding_a_nullable_column_to_both_chains_as_the_docs_say(
    tmp_path: Path, postgres_url: str, target_url: str
) -> None:
    pg_dump_require()  # the dev schema's upgrade writes a pg_dump backup
    project = project_copy(tmp_path / "project")
    # The tests too, to run the chains' equivalence test on the copy's chains.
    shutil.copytree(ROOT / "tests", project / "tests", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    sqlite_chain, pg_chain = project / "migrations" / "models", project / "migrations" / "postgres" / "models"
    sqlite_ours = sorted(path.name for path in sqlite_chain.glob("[0-9]*_*.py"))
    pg_ours = sorted(path.name for path in pg_chain.glob("[0-9]*_*.py"))
    assert pg_ours == sorted(PG_VERSIONS)

    # 1. The model change. 2. One file per chain, each against an up-to-date dev database of its dialect.
    model_change(project)
    sqlite_new = file_generate(project, sqlite_chain, sqlite_ours, db=tmp_path / "dev.db")
    pg_new = file_generate(project, pg_chain, pg_ours, "-c", PG_CONFIG, db=postgres_url)
    # 3. Review. Aerich writes plain TEXT on PostgreSQL, which the equivalence test reports until the column
    # gets the collation every text column of the PostgreSQL chain has.
    added = 'ALTER TABLE "channels" ADD "topic" TEXT;'
    file_review(sqlite_new, "sqlite", added)
    unreviewed = run(
        project,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        f"{EQUIVALENCE}::test_both_chains_end_in_the_same_logical_schema",
    )
    assert unreviewed.returncode == 1, unreviewed.stdout + unreviewed.stderr
    assert "column topic is text (no SQLite equivalent), expected TEXT" in unreviewed.stdout, unreviewed.stdout
    file_review(pg_new, "postgres", added, 'ALTER TABLE "channels" ADD "topic" TEXT COLLATE "C";')
    reviewed = run(project, "-m", "pytest", "-q", "-p", "no:cacheprovider", EQUIVALENCE)
    assert reviewed.returncode == 0 and " passed" in reviewed.stdout, reviewed.stdout + reviewed.stderr

    # 5. The dev schema takes the file (after a pg_dump backup: it is not empty); then the models, the files and
    # the schema agree again.
    upgraded = run(project, "-m", "daycare", "upgrade", db=postgres_url)
    assert upgraded.returncode == 0 and f"Applied {pg_new.name}" in upgraded.stdout, upgraded.stdout + upgraded.stderr
    assert "Backup written to" in upgraded.stdout and list((project.parent / "home" / "backups").glob("*.dump"))
    again = run(project, "-m", "aerich", "-c", PG_CONFIG, "migrate", "--name", "nothing", "--no-input", db=postgres_url)
    assert "No changes detected" in again.stdout, again.stdout + again.stderr
    heads = run(project, "-m", "aerich", "-c", PG_CONFIG, "heads", db=postgres_url)
    assert heads.returncode == 0 and "No available heads." in heads.stdout, heads.stdout + heads.stderr
    check = run(project, "-m", "daycare", "db", "check", "--db", postgres_url)
    assert check.returncode == 0 and "the schema matches" in check.stdout, check.stdout + check.stderr

    # A legacy file, upgraded by the copy's daycare, then copied to a new schema, which gets both files of its chain.
    path = tmp_path / "data" / "populated.db"
    path.parent.mkdir()
    shutil.copyfile(legacy_path("populated.db"), path)
    path.chmod(0o600)
    upgrade = run(project, "-m", "daycare", "upgrade", "--db", str(path))
    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
    copied = run(project, "-m", "daycare", "db", "copy", "--from", str(path), "--to", target_url)
    assert copied.returncode == 0, copied.stdout + copied.stderr
    async with postgres_connection(target_url) as connection:
        versions = [row["version"] for row in await connection.fetch("SELECT version FROM aerich ORDER BY id")]
        topic = await connection.fetchrow(
            "SELECT data_type, collation_name, is_nullable FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = 'channels' AND column_name = 'topic'"
        )
    assert versions == [*PG_VERSIONS, pg_new.name]
    assert tuple(topic) == ("text", "C", "YES")
    check = run(project, "-m", "daycare", "db", "check", "--db", target_url)
    assert check.returncode == 0 and "the schema matches" in check.stdout, check.stdout + check.stderr

    # Every repository reads the same from the file and from its copy on PostgreSQL, the new column notwithstanding.
    script = tmp_path / "read_every_repository.py"
    script.write_text(READ_EVERY_REPOSITORY)
    reads = {}
    for db in (str(path), target_url):
        read = run(project, str(script), db)
        assert read.returncode == 0, read.stderr
        reads[db] = json.loads(read.stdout)
    assert reads[target_url] == reads[str(path)]
    assert len(reads[target_url]["users"]) > 1 and reads[target_url]["channels"]

    started = engine_start_stop(
        [sys.executable, "-m", "daycare", "start", "--db", target_url], cwd=project, env=project_env(project)
    )
    assert f"{len(PG_VERSIONS) + 1} migrations applied, none pending" in started
    for chain, ours in ((Path("models"), sqlite_ours), (Path("postgres", "models"), pg_ours)):  # the checkout untouched
        assert sorted(path.name for path in (ROOT / "migrations" / chain).glob("[0-9]*_*.py")) == ours
