"""A file at every point of the legacy chain upgrades to the final schema with all of its data.

Point k is an empty file on which the ported steps 1..k ran (and were recorded), then a row
for every table that exists at that point, in the shape it has there. After the upgrade the
schema is `schema.sql`, every seeded value is still there (renamed columns under their new
name), and every trigger has a task that holds its text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from daycare.storage.db.database import Database, database_close, database_open
from daycare.storage.migrations.legacy import LEGACY_STEPS
from daycare.storage.migrations.migrate import database_migrate
from tests.sqlite_files import file_master
from tests.storage.migrations.legacy.helpers import chain_run, execute, rows, tables_dump
from tests.storage.migrations.migrated import VERSIONS, migrated_schema_sql

SNAPSHOT = '{"toolCallId":"t1","snapshot":"QUJD","snapshotId":"not-a-cuid","toolName":"read","args":{"n":1.5}}'
SNAPSHOT_CLEANED = '{"toolCallId":"t1","toolName":"read","args":{"n":1.5}}'
CRON_UID = "seedcronuid0000000000000a"
FREE_CRON_UID = "seedcronuid0000000000000b"

USER = {"is_owner": 0, "created_at": 1, "updated_at": 1, "parent_user_id": None}
SEED: list[tuple[str, dict[str, Any]]] = [
    ("users", {"id": "seed-user-a", **USER, "name": "Seed A", "usertag": "seedtaga", "nametag": "seedtaga"}),
    ("users", {"id": "seed-user-b", **USER, "name": "Seed B", "usertag": "seedtagb", "nametag": "seedtagb"}),
    ("user_connector_keys", {"user_id": "seed-user-a", "connector_key": "seed:a"}),
    (
        "agents",
        {
            "id": "seed-agent",
            "type": "user",
            "descriptor": '{"type":"user","connector":"seed","userId":"agent"}',
            "active_session_id": "seed-session",
            "permissions": '{"workingDir":"/"}',
            "tokens": None,
            "stats": "{}",
            "lifecycle": "sleeping",
            "created_at": 2,
            "updated_at": 2,
            "user_id": "seed-user-a",
        },
    ),
    (
        "sessions",
        {
            "id": "seed-session",
            "agent_id": "seed-agent",
            "inference_session_id": "inf",
            "created_at": 3,
            "reset_message": "reset",
            "invalidated_at": 2,
            "processed_until": 1,
            "ended_at": 30,
        },
    ),
    ("session_history", {"session_id": "seed-session", "type": "user_message", "at": 4, "data": '{"text":"hi"}'}),
    ("session_history", {"session_id": "seed-session", "type": "rlm_tool_call", "at": 5, "data": SNAPSHOT}),
    ("inbox", {"id": "seed-inbox", "agent_id": "seed-agent", "posted_at": 6, "type": "message", "data": "{}"}),
    (
        "tasks",
        {
            "id": "seed-task",
            "user_id": "seed-user-a",
            "title": "Seed task",
            "description": None,
            "code": "print(1)",
            "created_at": 7,
            "updated_at": 7,
            "deleted_at": None,
        },
    ),
    (
        "tasks_cron",
        {
            "id": "seed-cron",
            "task_uid": CRON_UID,
            "task_id": "seed-task",
            "user_id": "seed-user-a",
            "name": "Seed cron",
            "description": "daily",
            "schedule": "0 9 * * *",
            "prompt": "Seed cron prompt",
            "code": "Seed cron prompt",
            "agent_id": "seed-agent",
            "enabled": 0,
            "delete_after_run": 1,
            "last_run_at": 11,
            "created_at": 8,
            "updated_at": 9,
        },
    ),
    (
        "tasks_heartbeat",
        {
            "id": "seed-heartbeat",
            "task_id": "seed-task",
            "user_id": "seed-user-a",
            "title": "Seed heartbeat",
            "prompt": "Seed beat",
            "code": "Seed beat",
            "last_run_at": 12,
            "created_at": 10,
            "updated_at": 11,
        },
    ),
    (
        "signals_events",
        {"id": "seed-event", "user_id": "seed-user-a", "type": "t", "source": "{}", "data": None, "created_at": 12},
    ),
    (
        "signals_subscriptions",
        {
            "id": "seed-sub",
            "user_id": "seed-user-a",
            "agent_id": "seed-agent",
            "pattern": "t.*",
            "silent": 1,
            "created_at": 13,
            "updated_at": 13,
        },
    ),
    (
        "signals_delayed",
        {
            "id": "seed-delayed",
            "user_id": "seed-user-a",
            "type": "t",
            "deliver_at": 99,
            "source": "{}",
            "data": "null",
            "repeat_key": "k",
            "created_at": 14,
            "updated_at": 14,
        },
    ),
    (
        "channels",
        {
            "id": "seed-channel",
            "user_id": "seed-user-a",
            "name": "général",
            "leader": "seed-agent",
            "created_at": 15,
            "updated_at": 15,
        },
    ),
    (
        "channel_members",
        {
            "channel_id": "seed-channel",
            "user_id": "seed-user-a",
            "agent_id": "seed-agent",
            "username": "u",
            "joined_at": 16,
        },
    ),
    (
        "channel_messages",
        {
            "id": "seed-message",
            "channel_id": "seed-channel",
            "user_id": "seed-user-a",
            "sender_username": "u",
            "text": "hello",
            "mentions": "[]",
            "created_at": 17,
        },
    ),
    (
        "expose_endpoints",
        {
            "id": "seed-endpoint",
            "user_id": "seed-user-a",
            "target": '{"type":"port","port":1}',
            "provider": "p",
            "domain": "d.example",
            "mode": "public",
            "auth": None,
            "created_at": 18,
            "updated_at": 18,
        },
    ),
    (
        "processes",
        {
            "id": "seed-process",
            "user_id": "seed-user-a",
            "name": "web",
            "command": "run",
            "cwd": "/",
            "env": "{}",
            "package_managers": "[]",
            "allowed_domains": "[]",
            "permissions": "{}",
            "settings_path": "/s",
            "log_path": "/l",
            "created_at": 19,
            "updated_at": 19,
        },
    ),
    ("connections", {"user_a_id": "seed-user-a", "user_b_id": "seed-user-b", "requested_a": 1, "requested_a_at": 20}),
    (
        "token_stats_hourly",
        {"hour_start": 3600000, "user_id": "seed-user-a", "agent_id": "seed-agent", "model": "m", "input_tokens": 5},
    ),
    (
        "system_prompts",
        {
            "id": "seed-prompt",
            "scope": "global",
            "kind": "system",
            "prompt": "Be kind",
            "created_at": 21,
            "updated_at": 21,
        },
    ),
]
# Triggers from before tasks existed: only where their table still lets task_id be empty.
FREE_CRON = {
    "id": "seed-cron-free",
    "task_uid": FREE_CRON_UID,
    "user_id": "seed-user-b",
    "name": "Free cron",
    "description": None,
    "schedule": "*/5 * * * *",
    "prompt": "Free cron prompt",
    "code": "Free cron prompt",
    "enabled": 1,
    "delete_after_run": 0,
    "created_at": 22,
    "updated_at": 23,
}
FREE_HEARTBEAT = {
    "id": "seed-heartbeat-free",
    "user_id": "seed-user-b",
    "title": "Free heartbeat",
    "prompt": "Free beat",
    "code": "Free beat",
    "created_at": 24,
    "updated_at": 25,
}
KEYS = {
    "user_connector_keys": ("connector_key",),
    "session_history": ("session_id", "at"),
    "channel_members": ("channel_id", "agent_id"),
    "connections": ("user_a_id", "user_b_id"),
    "token_stats_hourly": ("hour_start", "user_id", "agent_id", "model"),
    "tasks": ("user_id", "id"),
}
RENAMED = {"usertag": "nametag", "prompt": "code"}


async def task_id_required(db: Database, table: str) -> bool:
    found = await rows(db, "SELECT \"notnull\" FROM pragma_table_info(?) WHERE name = 'task_id'", [table])
    return bool(found and found[0]["notnull"])


async def seed(db: Database) -> list[tuple[str, dict[str, Any]]]:
    """Inserts every seed row whose table exists, with the columns that exist; returns what went in."""
    wanted = list(SEED)
    if not await task_id_required(db, "tasks_cron"):
        wanted.append(("tasks_cron", FREE_CRON))
    if not await task_id_required(db, "tasks_heartbeat"):
        wanted.append(("tasks_heartbeat", FREE_HEARTBEAT))
    inserted = []
    for table, values in wanted:
        columns = {row["name"] for row in await rows(db, "SELECT name FROM pragma_table_info(?)", [table])}
        if not columns:
            continue
        present = {column: value for column, value in values.items() if column in columns}
        marks = ", ".join("?" * len(present))
        await execute(db, f"INSERT INTO {table} ({', '.join(present)}) VALUES ({marks})", list(present.values()))
        inserted.append((table, present))
    return inserted


def row_find(dump: dict[str, list[dict[str, Any]]], table: str, values: dict[str, Any]) -> dict[str, Any]:
    keys = KEYS.get(table, ("id",))
    found = [row for row in dump[table] if all(row[key] == values[key] for key in keys if key in values)]
    assert len(found) == 1, (table, values)
    return found[0]


def expected_value(table: str, column: str, value: Any, point: int) -> Any:
    if (
        table == "session_history"
        and column == "data"
        and value == SNAPSHOT
        and point < LEGACY_STEPS.index("20260302_cleanup_rlm_snapshot_payloads") + 1
    ):
        return SNAPSHOT_CLEANED
    return value


@pytest.mark.parametrize("point", range(len(LEGACY_STEPS) + 1))
async def test_file_at_each_point_of_the_chain_upgrades(point: int, tmp_path: Path) -> None:
    path = tmp_path / "daycare.db"
    db = await database_open(path)
    try:
        assert await chain_run(db, LEGACY_STEPS[:point]) == list(LEGACY_STEPS[:point])
        inserted = await seed(db)
    finally:
        await database_close(db)

    db = await database_open(path)
    try:
        applied = await database_migrate(db, backup=False)
        assert applied == [*LEGACY_STEPS[point:], *VERSIONS]
        assert await database_migrate(db) == []
    finally:
        await database_close(db)

    assert file_master(path) == migrated_schema_sql()
    dump = tables_dump(path)
    assert {row["name"] for row in dump["_migrations"]} == set(LEGACY_STEPS)
    owner = next(user["id"] for user in dump["users"] if user["is_owner"])
    tasks = {(task["user_id"], task["id"]): task for task in dump["tasks"]}
    for table, values in inserted:
        final = row_find(dump, table, values)
        for column, value in values.items():
            column_now = RENAMED.get(column, column)
            if column_now in final and not (column == "task_id" and value is None):
                assert final[column_now] == expected_value(table, column, value, point), (table, column)
        if table in ("tasks_cron", "tasks_heartbeat"):
            task = tasks[(final["user_id"], final["task_id"])]
            if values.get("task_id") is None:
                # A trigger that had no task got one of its own user, holding its text.
                assert task["title"] == values.get("name", values.get("title"))
                assert task["code"] == values.get("code", values.get("prompt", ""))
                assert task["created_at"] == values["created_at"]
                if values.get("task_uid"):
                    assert final["task_id"] == values["task_uid"]
            else:
                assert final["task_id"] == values["task_id"]
        if table == "tasks_heartbeat" and "user_id" not in values:
            assert final["user_id"] == owner  # step 18 gave user-less heartbeats to the owner
        if table == "agents" and "user_id" not in values:
            keys = {key["connector_key"]: key["user_id"] for key in dump["user_connector_keys"]}
            assert final["user_id"] == keys["seed:agent"]  # step 4 made a user for the agent's identity
    nametags = [user["nametag"] for user in dump["users"]]
    assert all(nametags) and len(set(nametags)) == len(nametags)
