"""Ported legacy specs of the migration steps (`storage/migrations/*.spec.ts`), one test each.

Each runs the ported steps on a fresh file without recording them, as the specs called `up(db)`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tortoise.exceptions import IntegrityError

from daycare.storage.db.database import Database, database_close, database_open
from daycare.storage.errors import StorageError
from daycare.storage.migrations.baseline_v1 import legacy_steps_missing
from daycare.storage.migrations.inspection import file_inspect
from daycare.storage.migrations.legacy import LEGACY_STEPS
from tests.storage.migrations.legacy.helpers import chain_run, execute, rows, steps_run


@pytest.fixture
async def raw(tmp_path: Path) -> AsyncIterator[Database]:
    """An empty database file with no schema at all."""
    database = await database_open(tmp_path / "raw.db")
    yield database
    await database_close(database)


async def columns(db: Database, table: str) -> list[str]:
    return [row["name"] for row in await rows(db, "SELECT name FROM pragma_table_info(?)", [table])]


async def indexes(db: Database, table: str) -> list[str]:
    return [row["name"] for row in await rows(db, "SELECT name FROM pragma_index_list(?)", [table])]


async def owner_id(db: Database) -> str:
    return str((await rows(db, "SELECT id FROM users WHERE is_owner = 1 LIMIT 1"))[0]["id"])


async def agent_insert(db: Database, agent_id: str, descriptor: str, created_at: int) -> None:
    await execute(
        db,
        "INSERT INTO agents (id, type, descriptor, active_session_id, permissions, tokens, stats, lifecycle,"
        " created_at, updated_at) VALUES (?, json_extract(?, '$.type'), ?, NULL, '{}', NULL, '{}', 'active', ?, ?)",
        [agent_id, descriptor, descriptor, created_at, created_at],
    )


SHAPES = [
    ("20260221_add_inbox", "inbox", ["id", "agent_id", "posted_at", "type", "data"]),
    ("20260222_add_signals", "signals_events", ["id", "user_id", "type", "source", "data", "created_at"]),
    (
        "20260222_add_signals",
        "signals_subscriptions",
        ["id", "user_id", "agent_id", "pattern", "silent", "created_at", "updated_at"],
    ),
    (
        "20260222_add_signals",
        "signals_delayed",
        ["id", "user_id", "type", "deliver_at", "source", "data", "repeat_key", "created_at", "updated_at"],
    ),
    (
        "20260301_add_token_stats",
        "token_stats_hourly",
        [
            "hour_start",
            "user_id",
            "agent_id",
            "model",
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "cost",
        ],
    ),
    (
        "20260224_add_system_prompts",
        "system_prompts",
        ["id", "scope", "user_id", "kind", "condition", "prompt", "enabled", "created_at", "updated_at"],
    ),
]


@pytest.mark.parametrize(("step", "table", "expected"), SHAPES)
async def test_schema_steps_create_their_tables_and_are_idempotent(
    raw: Database, step: str, table: str, expected: list[str]
) -> None:
    """add_inbox / add_signals / add_token_stats / add_system_prompts: expected columns; a rerun is a no-op."""
    await steps_run(raw, [step, step])
    assert await columns(raw, table) == expected


async def test_add_tasks_creates_tasks_tables_with_expected_columns(raw: Database) -> None:
    await steps_run(raw, ["20260219_initial", "20260220_add_tasks"])
    assert await columns(raw, "tasks_cron") == [
        "id",
        "task_uid",
        "user_id",
        "name",
        "description",
        "schedule",
        "prompt",
        "agent_id",
        "enabled",
        "delete_after_run",
        "last_run_at",
        "created_at",
        "updated_at",
    ]
    assert await columns(raw, "tasks_heartbeat") == ["id", "title", "prompt", "last_run_at", "created_at", "updated_at"]


async def test_add_users_creates_tables_and_enforces_keys(raw: Database) -> None:
    """add_users: expected columns, connector_key unique, only one owner."""
    await steps_run(raw, ["20260220_add_users"])
    assert await columns(raw, "users") == ["id", "is_owner", "created_at", "updated_at"]
    assert await columns(raw, "user_connector_keys") == ["id", "user_id", "connector_key"]
    await execute(raw, "INSERT INTO users (id, is_owner, created_at, updated_at) VALUES ('user-1', 1, 1, 1)")
    await execute(raw, "INSERT INTO users (id, is_owner, created_at, updated_at) VALUES ('user-2', 0, 1, 1)")
    await execute(raw, "INSERT INTO user_connector_keys (user_id, connector_key) VALUES ('user-1', 'telegram:123')")
    with pytest.raises(IntegrityError):
        await execute(raw, "INSERT INTO user_connector_keys (user_id, connector_key) VALUES ('user-2', 'telegram:123')")
    with pytest.raises(IntegrityError):
        await execute(raw, "INSERT INTO users (id, is_owner, created_at, updated_at) VALUES ('owner-2', 1, 1, 1)")


async def test_users_bootstrap_creates_one_owner_when_agents_table_is_empty(raw: Database) -> None:
    await steps_run(raw, ["20260219_initial", "20260220_add_users", "20260220_users_bootstrap"])
    users = await rows(raw, "SELECT id, is_owner FROM users")
    assert len(users) == 1 and users[0]["is_owner"] == 1
    user_id = await rows(raw, "SELECT \"notnull\", dflt_value FROM pragma_table_info('agents') WHERE name = 'user_id'")
    assert user_id == [{"notnull": 1, "dflt_value": f"'{users[0]['id']}'"}]


async def test_users_bootstrap_deduplicates_connector_identities(raw: Database) -> None:
    await steps_run(raw, ["20260219_initial"])
    await agent_insert(raw, "agent-a", '{"type":"user","connector":"telegram","userId":"123","channelId":"a"}', 10)
    await agent_insert(raw, "agent-b", '{"type":"user","connector":"telegram","userId":"123","channelId":"b"}', 20)
    await steps_run(raw, ["20260220_add_users", "20260220_users_bootstrap"])
    assert [user["is_owner"] for user in await rows(raw, "SELECT is_owner FROM users")] == [1]
    assert await rows(raw, "SELECT connector_key FROM user_connector_keys") == [{"connector_key": "telegram:123"}]
    assert len(await rows(raw, "SELECT DISTINCT user_id FROM agents")) == 1


async def test_users_bootstrap_makes_the_earliest_identity_the_owner(raw: Database) -> None:
    await steps_run(raw, ["20260219_initial"])
    await agent_insert(raw, "agent-a", '{"type":"user","connector":"telegram","userId":"123","channelId":"a"}', 10)
    await agent_insert(raw, "agent-b", '{"type":"user","connector":"whatsapp","userId":"999","channelId":"b"}', 20)
    await steps_run(raw, ["20260220_add_users", "20260220_users_bootstrap"])
    assert len(await rows(raw, "SELECT id FROM users")) == 2
    owner_key = await rows(
        raw,
        "SELECT k.connector_key FROM users u JOIN user_connector_keys k ON k.user_id = u.id WHERE u.is_owner = 1",
    )
    assert owner_key == [{"connector_key": "telegram:123"}]


async def test_users_bootstrap_assigns_the_owner_to_non_user_agents(raw: Database) -> None:
    await steps_run(raw, ["20260219_initial"])
    await agent_insert(raw, "agent-user", '{"type":"user","connector":"telegram","userId":"123","channelId":"a"}', 10)
    await agent_insert(raw, "agent-cron", '{"type":"cron","id":"c","name":"cron-job"}', 20)
    await agent_insert(raw, "agent-system", '{"type":"system","tag":"cron"}', 30)
    await agent_insert(raw, "agent-sub", '{"type":"subagent","id":"s","parentAgentId":"p","name":"subagent"}', 40)
    await steps_run(raw, ["20260220_add_users", "20260220_users_bootstrap"])
    owner = await owner_id(raw)
    found = await rows(raw, "SELECT id, user_id FROM agents WHERE id != 'agent-user' ORDER BY id")
    assert found == [{"id": name, "user_id": owner} for name in ("agent-cron", "agent-sub", "agent-system")]
    assert "idx_agents_user_id" in await indexes(raw, "agents")


async def test_drop_gate_columns_drops_them_when_present_and_is_a_no_op_otherwise(raw: Database) -> None:
    await execute(raw, "CREATE TABLE tasks_cron (id TEXT PRIMARY KEY, prompt TEXT NOT NULL, gate TEXT)")
    await execute(raw, "CREATE TABLE tasks_heartbeat (id TEXT PRIMARY KEY, prompt TEXT NOT NULL, gate TEXT)")
    await steps_run(raw, ["20260221_drop_gate_columns"])
    assert await columns(raw, "tasks_cron") == ["id", "prompt"]
    assert await columns(raw, "tasks_heartbeat") == ["id", "prompt"]
    await steps_run(raw, ["20260221_drop_gate_columns"])


async def test_backfill_cron_users_fills_missing_users_with_the_owner(raw: Database) -> None:
    await steps_run(raw, ["20260219_initial", "20260220_add_users", "20260220_users_bootstrap", "20260220_add_tasks"])
    for cron_id, user_id in (("missing-user", None), ("empty-user", "   "), ("has-user", "user-123")):
        await execute(
            raw,
            "INSERT INTO tasks_cron (id, task_uid, user_id, name, schedule, prompt, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, '0 9 * * *', 'Do task', 1, 1)",
            [cron_id, f"uid-{cron_id}", user_id, cron_id],
        )
    await steps_run(raw, ["20260221_backfill_cron_users"])
    owner = await owner_id(raw)
    assert await rows(raw, "SELECT id, user_id FROM tasks_cron ORDER BY id") == [
        {"id": "empty-user", "user_id": owner},
        {"id": "has-user", "user_id": "user-123"},
        {"id": "missing-user", "user_id": owner},
    ]


async def test_add_heartbeat_users_adds_the_column_and_backfills_the_owner(raw: Database) -> None:
    await steps_run(raw, ["20260219_initial", "20260220_add_users", "20260220_users_bootstrap", "20260220_add_tasks"])
    await execute(
        raw,
        "INSERT INTO tasks_heartbeat (id, title, prompt, created_at, updated_at)"
        " VALUES ('heartbeat-a', 'A', 'Do', 1, 1)",
    )
    await steps_run(raw, ["20260223_add_heartbeat_users"])
    assert await rows(raw, "SELECT id, user_id FROM tasks_heartbeat") == [
        {"id": "heartbeat-a", "user_id": await owner_id(raw)}
    ]


async def test_add_heartbeat_users_fails_without_an_owner(raw: Database) -> None:
    await steps_run(raw, ["20260219_initial", "20260220_add_users", "20260220_add_tasks"])
    await execute(
        raw,
        "INSERT INTO tasks_heartbeat (id, title, prompt, created_at, updated_at)"
        " VALUES ('heartbeat-a', 'A', 'Do', 1, 1)",
    )
    with pytest.raises(StorageError, match=r"No owner user found for heartbeat user backfill\."):
        await steps_run(raw, ["20260223_add_heartbeat_users"])


async def test_add_tasks_table_links_both_trigger_tables(raw: Database) -> None:
    await steps_run(raw, ["20260219_initial", "20260220_add_tasks", "20260224_rename_prompt_to_code"])
    await steps_run(raw, ["20260224_add_tasks_table"])
    assert await columns(raw, "tasks") == [
        "id",
        "user_id",
        "title",
        "description",
        "code",
        "created_at",
        "updated_at",
        "deleted_at",
    ]
    assert "task_id" in await columns(raw, "tasks_cron")
    assert "task_id" in await columns(raw, "tasks_heartbeat")
    assert "code" in await columns(raw, "tasks_cron")


@pytest.mark.parametrize(
    ("steps", "table", "wanted", "index"),
    [
        (
            ["20260219_initial", "20260224_add_memory_columns"],
            "sessions",
            {"invalidated_at", "processed_until"},
            "idx_sessions_invalidated_at",
        ),
        (["20260219_initial", "20260222_session_ended_at"], "sessions", {"ended_at"}, None),
        (["20260220_add_users", "20260222_add_user_parent"], "users", {"parent_user_id", "name"}, "idx_users_parent"),
        (["20260220_add_users", "20260222_add_usertag_connections"], "users", {"usertag"}, "idx_users_usertag"),
        (["20260224_add_tasks_table", "20260228_soft_delete_tasks"], "tasks", {"deleted_at"}, None),
    ],
)  # fmt: skip
async def test_column_steps_add_their_columns_and_are_idempotent(
    raw: Database, steps: list[str], table: str, wanted: set[str], index: str | None
) -> None:
    """memory columns, ended_at, user parent, usertag and soft delete: columns, index, and a rerun."""
    if table == "tasks":
        await execute(raw, "CREATE TABLE tasks_cron (id TEXT PRIMARY KEY, prompt TEXT NOT NULL)")
        await execute(raw, "CREATE TABLE tasks_heartbeat (id TEXT PRIMARY KEY, prompt TEXT NOT NULL)")
    await steps_run(raw, [*steps, steps[-1]])
    assert wanted <= set(await columns(raw, table))
    if index:
        assert index in await indexes(raw, table)


async def test_soft_delete_adds_deleted_at_when_missing(raw: Database) -> None:
    await execute(
        raw,
        "CREATE TABLE tasks (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, title TEXT NOT NULL, description TEXT,"
        " code TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL)",
    )
    await steps_run(raw, ["20260228_soft_delete_tasks"])
    assert "deleted_at" in await columns(raw, "tasks")


async def test_add_usertag_connections_creates_connections(raw: Database) -> None:
    await steps_run(raw, ["20260220_add_users", "20260222_add_usertag_connections"])
    assert await columns(raw, "connections") == [
        "user_a_id",
        "user_b_id",
        "requested_a",
        "requested_b",
        "requested_a_at",
        "requested_b_at",
    ]
    assert "idx_connections_user_b" in await indexes(raw, "connections")


async def usertag_file(raw: Database) -> None:
    await steps_run(raw, ["20260220_add_users", "20260222_add_usertag_connections"])


async def test_require_usertag_backfills_and_enforces(raw: Database) -> None:
    await usertag_file(raw)
    await execute(raw, "INSERT INTO users (id, is_owner, created_at, updated_at) VALUES ('legacy-a', 0, 1, 1)")
    await execute(
        raw, "INSERT INTO users (id, is_owner, usertag, created_at, updated_at) VALUES ('legacy-b', 0, '', 2, 2)"
    )
    await execute(
        raw,
        "INSERT INTO users (id, is_owner, usertag, created_at, updated_at)"
        " VALUES ('legacy-c', 0, 'steady-falcon-44', 3, 3)",
    )
    await steps_run(raw, ["20260225_require_usertag"])
    tags = {row["id"]: row["usertag"] for row in await rows(raw, "SELECT id, usertag FROM users")}
    assert tags["legacy-c"] == "steady-falcon-44"
    assert all(tag and tag.strip() for tag in tags.values()) and len(set(tags.values())) == 3
    assert "idx_users_usertag_required" in await indexes(raw, "users")
    with pytest.raises(IntegrityError, match=r"users\.usertag is required"):
        await execute(raw, "INSERT INTO users (id, is_owner, created_at, updated_at) VALUES ('no-tag', 0, 4, 4)")
    with pytest.raises(IntegrityError, match=r"users\.usertag is required"):
        await execute(raw, "UPDATE users SET usertag = NULL WHERE id = 'legacy-a'")


async def test_require_usertag_is_idempotent_and_avoids_taken_tags(raw: Database) -> None:
    await usertag_file(raw)
    await execute(
        raw,
        "INSERT INTO users (id, is_owner, usertag, created_at, updated_at) VALUES ('owner', 1, 'ownerseed123', 1, 1)",
    )
    await execute(raw, "INSERT INTO users (id, is_owner, created_at, updated_at) VALUES ('alpha', 0, 2, 2)")
    await steps_run(raw, ["20260225_require_usertag"])
    before = await rows(raw, "SELECT id, usertag FROM users ORDER BY id")
    assert dict((row["id"], row["usertag"]) for row in before)["alpha"] not in ("", None, "ownerseed123")
    await steps_run(raw, ["20260225_require_usertag"])
    assert await rows(raw, "SELECT id, usertag FROM users ORDER BY id") == before


async def test_rename_usertag_to_nametag_keeps_data_and_recreates_indexes_and_triggers(raw: Database) -> None:
    await usertag_file(raw)
    await execute(
        raw,
        "INSERT INTO users (id, is_owner, usertag, created_at, updated_at) VALUES ('user-a', 1, 'swift-fox-42', 1, 1)",
    )
    await steps_run(raw, ["20260225_require_usertag", "20260226_rename_usertag_to_nametag"])
    before = await rows(raw, "SELECT id, nametag FROM users")
    assert before == [{"id": "user-a", "nametag": "swift-fox-42"}]
    assert "usertag" not in await columns(raw, "users")
    names = await indexes(raw, "users")
    assert {"idx_users_nametag", "idx_users_nametag_required"} <= set(names)
    assert not {"idx_users_usertag", "idx_users_usertag_required"} & set(names)
    with pytest.raises(IntegrityError, match=r"users\.nametag is required"):
        await execute(raw, "INSERT INTO users (id, is_owner, created_at, updated_at) VALUES ('no-tag', 0, 4, 4)")
    with pytest.raises(IntegrityError, match=r"users\.nametag is required"):
        await execute(raw, "UPDATE users SET nametag = NULL WHERE id = 'user-a'")
    await steps_run(raw, ["20260226_rename_usertag_to_nametag"])
    assert await rows(raw, "SELECT id, nametag FROM users") == before


async def cron_file(raw: Database) -> None:
    await steps_run(
        raw, ["20260219_initial", "20260220_add_tasks", "20260224_rename_prompt_to_code", "20260224_add_tasks_table"]
    )


async def test_require_cron_task_id_drops_task_uid_and_enforces_task_id(raw: Database) -> None:
    await cron_file(raw)
    await execute(
        raw,
        "INSERT INTO tasks (id, user_id, title, description, code, created_at, updated_at)"
        " VALUES ('task-a', 'user-1', 'Task A', NULL, 'print(''a'')', 1, 1)",
    )
    await execute(
        raw,
        "INSERT INTO tasks_cron (id, task_uid, task_id, user_id, name, schedule, code, created_at, updated_at)"
        " VALUES ('cron-a', 'legacy-uid-a', 'task-a', 'user-1', 'Cron A', '* * * * *', 'print(''a'')', 1, 1)",
    )
    await steps_run(raw, ["20260227_require_cron_task_id"])
    info = await rows(raw, "SELECT name, \"notnull\" FROM pragma_table_info('tasks_cron')")
    assert "task_uid" not in [column["name"] for column in info]
    assert {"name": "task_id", "notnull": 1} in info
    assert await rows(raw, "SELECT id, task_id, name, code FROM tasks_cron") == [
        {"id": "cron-a", "task_id": "task-a", "name": "Cron A", "code": "print('a')"}
    ]
    assert {"idx_tasks_cron_enabled", "idx_tasks_cron_updated_at", "idx_tasks_cron_task_id"} <= set(
        await indexes(raw, "tasks_cron")
    )


async def test_require_cron_task_id_gives_a_trigger_without_task_id_a_task(raw: Database) -> None:
    """The legacy spec "fails when a trigger has no task_id" inverted: the trigger gets a task instead."""
    await cron_file(raw)
    await execute(
        raw,
        "INSERT INTO tasks_cron (id, task_uid, task_id, user_id, name, schedule, code, created_at, updated_at)"
        " VALUES ('cron-missing-task', 'legacy-uid-missing', NULL, 'user-1', 'Cron missing task', '* * * * *',"
        " 'print(''x'')', 1, 2)",
    )
    await steps_run(raw, ["20260227_require_cron_task_id"])
    assert await rows(raw, "SELECT id, task_id FROM tasks_cron") == [
        {"id": "cron-missing-task", "task_id": "legacy-uid-missing"}
    ]
    assert await rows(raw, "SELECT * FROM tasks") == [
        {
            "id": "legacy-uid-missing",
            "user_id": "user-1",
            "title": "Cron missing task",
            "description": None,
            "code": "print('x')",
            "created_at": 1,
            "updated_at": 2,
            "deleted_at": None,
        }
    ]


async def test_require_cron_task_id_recreates_a_trigger_under_a_missing_task_id(raw: Database) -> None:
    """A trigger that names a task that does not exist gets that task (the legacy code stopped there)."""
    await cron_file(raw)
    await execute(raw, "PRAGMA foreign_keys = OFF")
    await execute(
        raw,
        "INSERT INTO tasks_cron (id, task_uid, task_id, user_id, name, schedule, code, created_at, updated_at)"
        " VALUES ('cron-orphan', 'uid-orphan', 'gone', 'user-1', 'Orphan', '* * * * *', 'x()', 1, 1)",
    )
    await execute(raw, "PRAGMA foreign_keys = ON")
    await steps_run(raw, ["20260227_require_cron_task_id"])
    assert await rows(raw, "SELECT id, user_id, code FROM tasks") == [
        {"id": "gone", "user_id": "user-1", "code": "x()"}
    ]


async def test_drop_trigger_code_keeps_trigger_metadata(raw: Database) -> None:
    await chain_run(raw, LEGACY_STEPS[: LEGACY_STEPS.index("20260303_drop_trigger_code")])
    await execute(
        raw,
        "INSERT INTO tasks (id, user_id, title, code, created_at, updated_at)"
        " VALUES ('task-1', 'user-1', 'T', 'p()', 1, 1)",
    )
    await execute(
        raw,
        "INSERT INTO tasks_cron (id, task_id, user_id, name, schedule, code, created_at, updated_at)"
        " VALUES ('cron-1', 'task-1', 'user-1', 'Cron 1', '* * * * *', 'print(''cron'')', 1, 1)",
    )
    await execute(
        raw,
        "INSERT INTO tasks_heartbeat (id, task_id, user_id, title, code, created_at, updated_at)"
        " VALUES ('hb-1', 'task-1', 'user-1', 'Heartbeat 1', 'print(''heartbeat'')', 1, 1)",
    )
    await steps_run(raw, ["20260303_drop_trigger_code"])
    assert "code" not in await columns(raw, "tasks_cron")
    assert "code" not in await columns(raw, "tasks_heartbeat")
    assert await rows(raw, "SELECT id, task_id, schedule FROM tasks_cron") == [
        {"id": "cron-1", "task_id": "task-1", "schedule": "* * * * *"}
    ]
    assert await rows(raw, "SELECT id, task_id, title FROM tasks_heartbeat") == [
        {"id": "hb-1", "task_id": "task-1", "title": "Heartbeat 1"}
    ]


SCOPE_TABLES = """
CREATE TABLE tasks (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, title TEXT NOT NULL, description TEXT,
    code TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, deleted_at INTEGER);
CREATE TABLE tasks_cron (id TEXT PRIMARY KEY, task_id TEXT NOT NULL REFERENCES tasks(id), user_id TEXT,
    name TEXT NOT NULL, description TEXT, schedule TEXT NOT NULL, code TEXT NOT NULL, agent_id TEXT,
    enabled INTEGER NOT NULL DEFAULT 1, delete_after_run INTEGER NOT NULL DEFAULT 0, last_run_at INTEGER,
    created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE tasks_heartbeat (id TEXT PRIMARY KEY, task_id TEXT NOT NULL REFERENCES tasks(id), user_id TEXT,
    title TEXT NOT NULL, code TEXT NOT NULL, last_run_at INTEGER, created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL);
"""


async def test_scope_task_ids_per_user(raw: Database) -> None:
    await raw.connection().execute_script(SCOPE_TABLES)
    await execute(raw, "INSERT INTO tasks VALUES ('shared', 'user-a', 'Shared A', NULL, 'print(''a'')', 1, 1, NULL)")
    await execute(raw, "INSERT INTO tasks VALUES ('only-a', 'user-a', 'Only A', NULL, 'print(''only'')', 1, 1, NULL)")
    await execute(
        raw,
        "INSERT INTO tasks_cron VALUES ('cron-shared', 'shared', 'user-a', 'Shared', NULL, '* * * * *', 'print(''a'')',"
        " NULL, 1, 0, NULL, 1, 1)",
    )
    await execute(
        raw, "INSERT INTO tasks_heartbeat VALUES ('heartbeat-shared', 'shared', 'user-a', 'Shared', 'x', NULL, 1, 1)"
    )
    await steps_run(raw, ["20260304_scope_task_ids_per_user"])
    keys = await rows(raw, "SELECT name FROM pragma_table_info('tasks') WHERE pk > 0 ORDER BY pk")
    assert [key["name"] for key in keys] == ["user_id", "id"]
    await execute(raw, "INSERT INTO tasks VALUES ('shared', 'user-b', 'Shared B', NULL, 'print(''b'')', 2, 2, NULL)")
    await execute(
        raw,
        "INSERT INTO tasks_cron VALUES ('cron-shared-user-b', 'shared', 'user-b', 'Shared', NULL, '* * * * *',"
        " 'print(''b'')', NULL, 1, 0, NULL, 2, 2)",
    )
    with pytest.raises(IntegrityError):
        await execute(
            raw,
            "INSERT INTO tasks_cron VALUES ('cross-user-ref', 'only-a', 'user-b', 'Invalid', NULL, '* * * * *', 'x',"
            " NULL, 1, 0, NULL, 3, 3)",
        )
    assert len(await rows(raw, "SELECT 1 FROM tasks WHERE id = 'shared'")) == 2


async def test_scope_task_ids_per_user_is_idempotent(raw: Database) -> None:
    await chain_run(raw, LEGACY_STEPS)
    schema = await rows(raw, "SELECT name, sql FROM sqlite_master ORDER BY name")
    await steps_run(raw, ["20260304_scope_task_ids_per_user", "20260304_scope_task_ids_per_user"])
    assert await rows(raw, "SELECT name, sql FROM sqlite_master ORDER BY name") == schema


async def test_scope_task_ids_fills_blank_users_and_copies_tasks_across_users(raw: Database) -> None:
    """Past the legacy code: a heartbeat with a blank user takes its task's user; a trigger whose task
    belongs to another user gets a copy of that task; a task without a user goes to the owner."""
    await chain_run(raw, LEGACY_STEPS[: LEGACY_STEPS.index("20260304_scope_task_ids_per_user")])
    owner = await owner_id(raw)
    await execute(
        raw,
        "INSERT INTO tasks (id, user_id, title, code, created_at, updated_at)"
        " VALUES ('t-a', 'user-a', 'A', 'a()', 1, 1)",
    )
    await execute(
        raw,
        "INSERT INTO tasks (id, user_id, title, code, created_at, updated_at)"
        " VALUES ('t-blank', ' ', 'B', 'b()', 1, 1)",
    )
    await execute(
        raw,
        "INSERT INTO tasks_cron (id, task_id, user_id, name, schedule, created_at, updated_at)"
        " VALUES ('cron-b', 't-a', 'user-b', 'Cron B', '* * * * *', 1, 1)",
    )
    await execute(
        raw,
        "INSERT INTO tasks_heartbeat (id, task_id, user_id, title, created_at, updated_at)"
        " VALUES ('hb-blank', 't-a', '', 'Blank', 1, 1), ('hb-owner', 't-blank', '', 'Owner', 1, 1)",
    )
    await steps_run(raw, ["20260304_scope_task_ids_per_user"])
    assert await rows(raw, "SELECT user_id, id, code FROM tasks ORDER BY user_id, id") == sorted(
        [
            {"user_id": owner, "id": "t-blank", "code": "b()"},
            {"user_id": "user-a", "id": "t-a", "code": "a()"},
            {"user_id": "user-b", "id": "t-a", "code": "a()"},
        ],
        key=lambda row: (row["user_id"], row["id"]),
    )
    assert await rows(raw, "SELECT id, user_id FROM tasks_heartbeat ORDER BY id") == [
        {"id": "hb-blank", "user_id": "user-a"},
        {"id": "hb-owner", "user_id": owner},
    ]
    assert await rows(raw, "SELECT * FROM pragma_foreign_key_check('tasks_cron')") == []


async def test_runner_applies_steps_once_and_is_idempotent(raw: Database) -> None:
    """migrationRun spec: the first run applies and records every step; the second applies none."""
    assert await chain_run(raw, LEGACY_STEPS) == list(LEGACY_STEPS)
    assert await chain_run(raw, LEGACY_STEPS) == []
    recorded = await rows(raw, "SELECT name FROM _migrations ORDER BY name")
    assert [row["name"] for row in recorded] == sorted(LEGACY_STEPS)


async def test_missing_steps_are_the_unrecorded_names_in_legacy_order(tmp_path: Path, raw: Database) -> None:
    """migrationPending spec: all steps without a _migrations table, else those not recorded (a set)."""
    assert await legacy_steps_missing(raw.connection(), await file_inspect(raw.connection())) == []  # new, no folders
    (tmp_path / "cron").mkdir()
    assert await legacy_steps_missing(raw.connection(), await file_inspect(raw.connection())) == list(LEGACY_STEPS)
    await chain_run(raw, [LEGACY_STEPS[32], LEGACY_STEPS[0]])  # recorded out of order
    missing = await legacy_steps_missing(raw.connection(), await file_inspect(raw.connection()))
    assert missing == list(LEGACY_STEPS[1:32])
