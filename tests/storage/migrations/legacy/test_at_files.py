"""The partial-history fixtures: each upgrades to the legacy final schema, with the legacy result.

For the four files the legacy code upgraded, every table equals `legacy_upgraded/<name>.json`;
only values the legacy upgrade drew from the clock or at random are masked (the applied_at of
new `_migrations` rows and generated nametags). The fifth file, which the legacy code cannot
upgrade, upgrades too, and each trigger keeps its schedule and its text.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from daycare.storage.db.database import database_close, database_open
from daycare.storage.migrations.legacy import LEGACY_STEPS
from daycare.storage.migrations.migrate import database_migrate
from tests.conftest import legacy_dump
from tests.sqlite_files import file_master
from tests.storage.migrations.legacy.helpers import tables_dump
from tests.storage.migrations.migrated import LATER_TABLES, VERSIONS, migrated_schema_sql
from tests.storage.helpers import file_migrate as upgrade

UPGRADED_BY_LEGACY = [
    "at_20260222_add_processes",
    "at_20260224_add_memory_columns",
    "at_20260226_rename_usertag_to_nametag",
    "at_20260301_add_token_stats",
]
GENERATED = "<generated>"
MASKED = {"_migrations": ("name", "applied_at"), "users": ("id", "nametag")}


def masked(table: str, rows: list[dict[str, Any]], before: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows with the clock or random values the upgrade wrote replaced by a marker."""
    if table not in MASKED:
        return rows
    key, column = MASKED[table]
    kept = {row[key]: row.get(column) for row in before.get(table, {}).get("rows", [])}
    out = []
    for row in rows:
        if kept.get(row[key]) is None and row.get(column) is not None:
            row = {**row, column: GENERATED}
        out.append(row)
    return out


@pytest.mark.parametrize("name", UPGRADED_BY_LEGACY)
async def test_partial_file_matches_the_legacy_upgrade(name: str, legacy_copy: Callable[[str], Path]) -> None:
    path = legacy_copy(f"{name}.db")
    before = legacy_dump(f"{name}.json")
    pending = [step for step in LEGACY_STEPS if step not in before["migrations_applied"]]

    applied = await upgrade(path)

    assert applied == [*pending, *VERSIONS]
    assert file_master(path) == migrated_schema_sql()
    expected = legacy_dump(f"legacy_upgraded/{name}.json")["tables"]
    got = tables_dump(path)
    assert set(got) - {"aerich"} == set(expected) | LATER_TABLES
    assert all(not got[table] for table in LATER_TABLES)
    for table, content in expected.items():
        want = masked(table, content["rows"], before["tables"])
        assert masked(table, got[table], before["tables"]) == want, table
    nametags = [user["nametag"] for user in got["users"]]
    assert all(tag and tag.strip() for tag in nametags) and len(set(nametags)) == len(nametags)
    assert await upgrade(path) == []


async def test_file_the_legacy_code_cannot_upgrade(legacy_copy: Callable[[str], Path]) -> None:
    """at_..._cron_without_task stopped the legacy chain at step 27 for good; here each trigger gets a task."""
    path = legacy_copy("at_20260222_add_processes__cron_without_task.db")
    before = legacy_dump("at_20260222_add_processes__cron_without_task.json")["tables"]
    cron_before = before["tasks_cron"]["rows"][0]
    heartbeat_before = before["tasks_heartbeat"]["rows"][0]

    applied = await upgrade(path)

    assert applied[-len(VERSIONS) :] == list(VERSIONS)
    assert file_master(path) == migrated_schema_sql()
    got = tables_dump(path)
    owner = next(user["id"] for user in got["users"] if user["is_owner"])
    cron = got["tasks_cron"][0]
    heartbeat = got["tasks_heartbeat"][0]
    tasks = {(task["user_id"], task["id"]): task for task in got["tasks"]}
    assert len(tasks) == 2
    cron_task = tasks[(cron["user_id"], cron["task_id"])]
    heartbeat_task = tasks[(heartbeat["user_id"], heartbeat["task_id"])]
    # The cron trigger keeps every field; its task is named by the TASK.md taskId (task_uid).
    for column in ("id", "user_id", "name", "description", "schedule", "agent_id", "enabled", "delete_after_run"):
        assert cron[column] == cron_before[column], column
    assert (cron["last_run_at"], cron["created_at"], cron["updated_at"]) == (
        cron_before["last_run_at"],
        cron_before["created_at"],
        cron_before["updated_at"],
    )
    assert cron["task_id"] == cron_before["task_uid"]
    assert cron_task == {
        "id": cron_before["task_uid"],
        "user_id": cron_before["user_id"],
        "title": cron_before["name"],
        "description": cron_before["description"],
        "code": cron_before["prompt"],
        "created_at": cron_before["created_at"],
        "updated_at": cron_before["updated_at"],
        "deleted_at": None,
    }
    # The heartbeat had no user: step 18 gave it the owner, and its task is the owner's too.
    assert heartbeat["user_id"] == owner
    assert {key: heartbeat[key] for key in ("id", "title", "last_run_at", "created_at", "updated_at")} == {
        key: heartbeat_before[key] for key in ("id", "title", "last_run_at", "created_at", "updated_at")
    }
    assert heartbeat_task["title"] == heartbeat_before["title"]
    assert heartbeat_task["code"] == heartbeat_before["prompt"]
    assert heartbeat_task["description"] is None
    assert len(heartbeat_task["id"]) == 24 and heartbeat_task["id"].isalnum()
    # Everything else is what the legacy chain would have made of the file.
    for table in ("agents", "sessions", "channels", "channel_members", "processes", "sqlite_sequence"):
        assert len(got[table]) == len(before[table]["rows"]), table
    assert await upgrade(path) == []
