"""docs/storage.md, "Adding a migration", done for real on a copy of the project.

A nullable column is added to a model of the copy, `aerich migrate` writes the file, and the
copy's own `daycare upgrade`, `daycare db check`, `daycare start` and repositories then work
on an upgraded legacy file. Every step runs in a fresh process on the copy's code.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.engine_process import engine_start_stop
from tests.conftest import ROOT, legacy_path
from tests.storage.migrations.migrated import VERSIONS

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


def run(project: Path, *args: str, db: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`python <args>` in a fresh process on the copy's code."""
    env = {key: value for key, value in os.environ.items() if key != "DAYCARE_DB_URL"}
    env["PYTHONPATH"] = str(project)
    if db is not None:
        env["DAYCARE_DB_URL"] = str(db)
    return subprocess.run([sys.executable, *args], cwd=project, env=env, capture_output=True, text=True, timeout=180)


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


def keys(path: Path, table: str, *columns: str, where: str = "1") -> list[Any]:
    found = rows(path, f'SELECT {", ".join(columns)} FROM "{table}" WHERE {where}')
    return sorted(row[0] if len(columns) == 1 else list(row) for row in found)


def test_adding_a_nullable_column_as_the_docs_say(tmp_path: Path) -> None:
    project = project_copy(tmp_path / "project")
    ours = sorted(path.name for path in (ROOT / "migrations" / "models").glob("*.py"))
    # Code run from a source tree reads that tree's migrations/ (not this checkout's, which the editable install maps).
    where = run(
        project,
        "-c",
        "import daycare; from daycare.storage.migrations.loader import migrations_dir; "
        "print(daycare.__file__, migrations_dir())",
    )
    assert where.returncode == 0, where.stderr
    assert all(path.startswith(str(project)) for path in where.stdout.split()), where.stdout

    # 1. The model change.
    schema = project / "daycare" / "schema.py"
    text = schema.read_text()
    channel = text.index("class Channel(Model):")
    leader = text.index("    leader = fields.TextField()\n", channel)
    schema.write_text(text[:leader] + "    topic = fields.TextField(null=True)\n" + text[leader:])

    # 2. The file, written by the real CLI against an up-to-date dev database.
    dev = tmp_path / "dev.db"
    upgraded = run(project, "-m", "daycare", "upgrade", db=dev)
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    made = run(project, "-m", "aerich", "migrate", "--name", "add_channel_topic", db=dev)
    assert made.returncode == 0, made.stdout + made.stderr
    models = project / "migrations" / "models"
    (new,) = [path for path in models.glob("*.py") if path.name not in ours]
    assert new.name.startswith(f"{len(VERSIONS)}_") and new.name.endswith("_add_channel_topic.py")

    # 3. Review: one added column, no transaction statements, atomic.
    generated = new.read_text()
    assert 'ALTER TABLE "channels" ADD "topic" TEXT' in generated, generated
    assert "RUN_IN_TRANSACTION = True" in generated
    assert not re.search(r"\b(BEGIN|COMMIT|ROLLBACK)\b", generated[: generated.index("MODELS_STATE")], re.I)
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

    env = {key: value for key, value in os.environ.items() if key != "DAYCARE_DB_URL"}
    env["PYTHONPATH"] = str(project)
    started = engine_start_stop([sys.executable, "-m", "daycare", "start", "--db", path], cwd=project, env=env)
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
    assert sorted(path.name for path in (ROOT / "migrations" / "models").glob("*.py")) == ours  # the checkout untouched
