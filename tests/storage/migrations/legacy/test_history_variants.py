"""Files from releases whose migration list differed: `_migrations` is a set of names.

Two real release shapes (from the legacy git history) are rebuilt here: the 2026-02-21 list with
`20260221_add_permission_requests` and `gate` columns, and the 2026-02-24 list that ran
`add_system_prompts` and `rename_prompt_to_code` before `add_tasks_table` existed. Also: a name
no release we know used, a step that fails, and files that only look like legacy files.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path

import pytest

from daycare.storage.db.database import Database, database_close, database_open
from daycare.storage.errors import DatabaseRefused
from daycare.storage.migrations.legacy import LEGACY_STEPS
from daycare.storage.migrations.legacy.catch_up import LegacyStepFailed
from daycare.storage.migrations.migrate import database_migrate
from tests.sqlite_files import file_master
from tests.storage.migrations.legacy.helpers import chain_run, execute, rows, tables_dump
from tests.storage.migrations.migrated import VERSIONS, migrated_schema_sql
from tests.storage.helpers import file_migrate as upgrade

STEP_NUMBER = {name: index + 1 for index, name in enumerate(LEGACY_STEPS)}
PERMISSION_REQUESTS = "20260221_add_permission_requests"

# 20260220_add_tasks before commit 6fb91513: both trigger tables had a `gate` column.
ADD_TASKS_WITH_GATE = """
CREATE TABLE IF NOT EXISTS tasks_cron (
  id TEXT PRIMARY KEY, task_uid TEXT NOT NULL UNIQUE, user_id TEXT, name TEXT NOT NULL, description TEXT,
  schedule TEXT NOT NULL, prompt TEXT NOT NULL, agent_id TEXT, gate TEXT, enabled INTEGER NOT NULL DEFAULT 1,
  delete_after_run INTEGER NOT NULL DEFAULT 0, last_run_at INTEGER, created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS idx_tasks_cron_enabled ON tasks_cron(enabled);
CREATE INDEX IF NOT EXISTS idx_tasks_cron_updated_at ON tasks_cron(updated_at);
CREATE TABLE IF NOT EXISTS tasks_heartbeat (
  id TEXT PRIMARY KEY, title TEXT NOT NULL, prompt TEXT NOT NULL, gate TEXT, last_run_at INTEGER,
  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS idx_tasks_heartbeat_updated_at ON tasks_heartbeat(updated_at);
"""

# What 20260221_add_permission_requests made (commit 00b29831); no later step removes it.
PERMISSION_REQUESTS_SQL = """
      CREATE TABLE IF NOT EXISTS permission_requests (
        id TEXT PRIMARY KEY,
        token TEXT UNIQUE NOT NULL,
        agent_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        permissions TEXT NOT NULL,
        reason TEXT NOT NULL,
        requester TEXT NOT NULL,
        scope TEXT,
        timeout_at INTEGER NOT NULL,
        decision TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      );
      CREATE INDEX IF NOT EXISTS idx_permission_requests_token
        ON permission_requests(token);
      CREATE INDEX IF NOT EXISTS idx_permission_requests_agent_id
        ON permission_requests(agent_id);
      CREATE INDEX IF NOT EXISTS idx_permission_requests_status
        ON permission_requests(status);
"""


def steps(*numbers: int) -> list[str]:
    return [LEGACY_STEPS[number - 1] for number in numbers]


async def record(db: Database, names: Sequence[str]) -> None:
    for name in names:
        await execute(db, "INSERT INTO _migrations (name, applied_at) VALUES (?, 1)", [name])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_file_from_the_permission_requests_release_with_gate_columns(tmp_path: Path) -> None:
    """2026-02-21 list: add_tasks with gate, permission_requests, no drop_gate and no inbox yet."""
    path = tmp_path / "daycare.db"
    db = await database_open(path)
    try:
        await chain_run(db, steps(1, 2, 3, 4))
        await db.connection().execute_script(ADD_TASKS_WITH_GATE)
        await record(db, steps(5))
        await chain_run(db, steps(6))
        await db.connection().execute_script(PERMISSION_REQUESTS_SQL)
        await record(db, [PERMISSION_REQUESTS])
        await chain_run(db, steps(8, *range(10, 19)))
        await execute(
            db,
            "INSERT INTO tasks_cron (id, task_uid, user_id, name, schedule, prompt, gate, created_at, updated_at)"
            " VALUES ('gated', 'gateduid00000000000000000', NULL, 'Gated', '0 8 * * *', 'Say hi', 'echo ok', 1, 2)",
        )
        await execute(
            db,
            "INSERT INTO tasks_heartbeat (id, title, prompt, gate, created_at, updated_at)"
            " VALUES ('beat', 'Beat', 'Anything new?', 'echo ok', 3, 4)",
        )
        await execute(
            db,
            "INSERT INTO permission_requests (id, token, agent_id, user_id, permissions, reason, requester, timeout_at,"
            " created_at, updated_at) VALUES ('pr-1', 'tok', 'a', 'u', '[]', 'why', 'me', 9, 1, 1)",
        )
        leftover = {
            row["name"]: row["sql"]
            for row in await rows(db, "SELECT name, sql FROM sqlite_master WHERE tbl_name = 'permission_requests'")
        }
    finally:
        await database_close(db)

    applied = await upgrade(path)

    assert applied == [*steps(7, 9, *range(19, 34)), *VERSIONS]
    assert file_master(path) == {**migrated_schema_sql(), **{name: sql for name, sql in leftover.items() if sql}}
    dump = tables_dump(path)
    assert {row["name"] for row in dump["_migrations"]} == {*LEGACY_STEPS, PERMISSION_REQUESTS}
    assert [row["id"] for row in dump["permission_requests"]] == ["pr-1"]
    owner = next(user["id"] for user in dump["users"] if user["is_owner"])
    tasks = {task["id"]: task for task in dump["tasks"]}
    (cron,) = dump["tasks_cron"]
    (beat,) = dump["tasks_heartbeat"]
    assert (cron["user_id"], cron["schedule"], cron["task_id"]) == (owner, "0 8 * * *", "gateduid00000000000000000")
    assert (tasks[cron["task_id"]]["code"], tasks[cron["task_id"]]["title"]) == ("Say hi", "Gated")
    assert (beat["user_id"], tasks[beat["task_id"]]["code"], tasks[beat["task_id"]]["title"]) == (
        owner,
        "Anything new?",
        "Beat",
    )
    assert "gate" not in cron and "gate" not in beat
    assert await upgrade(path) == []


async def test_file_from_the_release_that_renamed_prompt_before_tasks_existed(tmp_path: Path) -> None:
    """2026-02-24 list (808af509): ..., add_system_prompts, rename_prompt_to_code; no add_tasks_table yet."""
    path = tmp_path / "daycare.db"
    db = await database_open(path)
    try:
        await chain_run(db, steps(*range(1, 19), *range(21, 27)))
        await chain_run(db, steps(33))
        await chain_run(db, steps(19))
        owner = (await rows(db, "SELECT id FROM users WHERE is_owner = 1"))[0]["id"]
        await execute(
            db,
            "INSERT INTO tasks_cron (id, task_uid, user_id, name, schedule, code, created_at, updated_at)"
            " VALUES ('c1', 'cronuid000000000000000001', ?, 'Cron one', '*/10 * * * *', 'print(\"c1\")', 5, 6)",
            [owner],
        )
        await execute(
            db,
            "INSERT INTO tasks_heartbeat (id, title, code, user_id, created_at, updated_at)"
            " VALUES ('h1', 'Beat one', 'print(\"h1\")', ?, 7, 8)",
            [owner],
        )
        await execute(
            db,
            "INSERT INTO system_prompts (id, scope, kind, prompt, created_at, updated_at)"
            " VALUES ('sp', 'global', 'system', 'Be brief', 1, 1)",
        )
    finally:
        await database_close(db)

    applied = await upgrade(path)

    assert applied == [*steps(20, 27, 28, 29, 30, 31, 32), *VERSIONS]
    assert file_master(path) == migrated_schema_sql()
    dump = tables_dump(path)
    tasks = {task["id"]: task for task in dump["tasks"]}
    assert tasks[dump["tasks_cron"][0]["task_id"]]["code"] == 'print("c1")'
    assert tasks[dump["tasks_heartbeat"][0]["task_id"]]["code"] == 'print("h1")'
    assert [row["id"] for row in dump["system_prompts"]] == ["sp"]


async def test_a_name_no_release_used_is_kept_and_ignored(tmp_path: Path) -> None:
    path = tmp_path / "daycare.db"
    db = await database_open(path)
    try:
        await chain_run(db, LEGACY_STEPS[:10])
        await record(db, ["20260399_from_a_fork"])
    finally:
        await database_close(db)
    applied = await upgrade(path)
    assert applied == [*LEGACY_STEPS[10:], *VERSIONS]
    assert file_master(path) == migrated_schema_sql()
    assert {row["name"] for row in tables_dump(path)["_migrations"]} == {*LEGACY_STEPS, "20260399_from_a_fork"}


async def test_a_failing_step_is_named_rolled_back_and_can_be_retried(tmp_path: Path) -> None:
    """Heartbeats without an owner stop step 18 (as in the legacy code); the steps before it stay."""
    path = tmp_path / "daycare.db"
    db = await database_open(path)
    try:
        await chain_run(db, LEGACY_STEPS[:16])
        await execute(db, "UPDATE users SET is_owner = 0")
        await execute(
            db, "INSERT INTO tasks_heartbeat (id, title, prompt, created_at, updated_at) VALUES ('h', 'H', 'p', 1, 1)"
        )
    finally:
        await database_close(db)

    db = await database_open(path)
    try:
        with pytest.raises(LegacyStepFailed) as failure:
            await database_migrate(db)
        assert "20260223_add_heartbeat_users" in str(failure.value)
        assert "No owner user found for heartbeat user backfill." in str(failure.value)
        recorded = {row["name"] for row in await rows(db, "SELECT name FROM _migrations")}
        assert recorded == set(LEGACY_STEPS[:17])  # step 17 ran and stayed; step 18 left no trace
        assert "user_id" not in [
            c["name"] for c in await rows(db, "SELECT name FROM pragma_table_info('tasks_heartbeat')")
        ]
        assert list(tmp_path.glob("daycare.db.bak-*"))  # the backup came before the first change

        await execute(db, "UPDATE users SET is_owner = 1")
        applied = await database_migrate(db)
        assert applied == [*LEGACY_STEPS[17:], *VERSIONS]
    finally:
        await database_close(db)
    assert file_master(path) == migrated_schema_sql()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (
            "CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at INTEGER NOT NULL);"
            "INSERT INTO _migrations VALUES ('20260219_initial', 1);"
            "CREATE TABLE invoices (id INTEGER PRIMARY KEY);",
            "tables no Daycare release made: invoices",
        ),
        (
            "CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at INTEGER NOT NULL);"
            "INSERT INTO _migrations VALUES ('0001_create_accounts', 1);",
            "no known legacy step",
        ),
    ],
)
async def test_files_that_only_look_legacy_are_refused_unchanged(tmp_path: Path, setup: str, message: str) -> None:
    path = tmp_path / "other.db"
    with closing(sqlite3.connect(path)) as connection:  # another program's file: rollback journal, not WAL
        connection.executescript(setup)
    before = sha256(path)
    db = await database_open(path)
    try:
        with pytest.raises(DatabaseRefused, match=message):
            await database_migrate(db)
    finally:
        await database_close(db)
    assert sha256(path) == before
    assert not list(tmp_path.glob("other.db.bak-*"))
