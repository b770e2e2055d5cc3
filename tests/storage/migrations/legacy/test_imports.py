"""The file-import steps (2, 6, 11, 13, 15, 17): the legacy data folders, broken files included.

`tests/fixtures/legacy_folders/` holds one folder per format, each with good and broken
entries. A broken entry is skipped with a warning naming it; everything else is imported.
The legacy specs of the import steps are ported below them.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daycare.storage.db.database import Database, database_close, database_open
from daycare.storage.migrations.legacy import LEGACY_STEPS
from daycare.storage.migrations.migrate import database_migrate
from tests.sqlite_files import file_master
from tests.storage.migrations.legacy.helpers import chain_run, execute, rows, steps_run, tables_dump
from tests.storage.migrations.migrated import VERSIONS, migrated_schema_sql

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "legacy_folders"
SKIPPED = {
    "agents/agent-alpha/history.jsonl",  # lines 4 and 5
    "agents/broken-descriptor",
    "agents/missing-state",
    "agents/no-type",
    "cron/bad-yaml",
    "cron/empty-prompt",
    "cron/invalid-task",
    "cron/no-task-file",
    "heartbeat/broken.md",
    "heartbeat/empty.md",
    "signals/events.jsonl",  # lines 4 and 5
    "signals/delayed.json",  # entries 3 and 4
    "channels/broken",
    "channels/noleader",
    "channels/dev/history.jsonl",  # lines 3 and 4
    "expose/endpoints/broken.json",
    "expose/endpoints/missing-domain.json",
    "processes/p-broken",
    "processes/p-empty",
    "processes/p-old",
}


def data_folder(target: Path) -> Path:
    """A copy of the fixture folders (with the empty folders git cannot keep)."""
    shutil.copytree(FIXTURES, target, dirs_exist_ok=True)
    for empty in ("cron/no-task-file", "cron/daily-report/files", "processes/p-empty"):
        (target / empty).mkdir(parents=True, exist_ok=True)
    return target


def mtime_ms(path: Path) -> int:
    return path.stat().st_mtime_ns // 1_000_000


def by_id(table: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    return {row["id"]: row for row in table}


@pytest.fixture
def warnings(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.WARNING, logger="daycare.storage.migrations.legacy"):
        yield caplog


async def test_first_start_imports_every_legacy_folder(tmp_path: Path, warnings: pytest.LogCaptureFixture) -> None:
    """A new database beside legacy data folders runs the legacy chain, imports and all, like the legacy code."""
    folder = data_folder(tmp_path)
    db = await database_open(folder / "daycare.db")
    try:
        applied = await database_migrate(db)
    finally:
        await database_close(db)

    assert applied == [*LEGACY_STEPS, *VERSIONS]
    assert file_master(folder / "daycare.db") == migrated_schema_sql()
    dump = tables_dump(folder / "daycare.db")
    skipped = {record.args[0] for record in warnings.records if isinstance(record.args, tuple)}
    assert {str(Path(path).relative_to(folder)) for path in skipped} == SKIPPED

    # Agents: the user agent's identity became the owner; its history split at the markers.
    owner = dump["users"][0]
    assert len(dump["users"]) == 1 and owner["is_owner"] == 1
    assert dump["user_connector_keys"] == [{"id": 1, "user_id": owner["id"], "connector_key": "telegram:100"}]
    agents = by_id(dump["agents"])
    assert set(agents) == {"agent-alpha", "agent-beta"}
    alpha = agents["agent-alpha"]
    assert (alpha["type"], alpha["lifecycle"], alpha["created_at"], alpha["updated_at"], alpha["user_id"]) == (
        "user",
        "sleeping",
        1700000000000,
        1700000005000,
        owner["id"],
    )
    assert alpha["descriptor"] == '{"type":"user","connector":"telegram","userId":"100","channelId":"100"}'
    assert alpha["permissions"] == '{"workingDir":"/home/alpha","writeDirs":["/home/alpha"]}'
    assert alpha["stats"] == '{"anthropic":{"claude":{"input":1}}}'
    assert json.loads(alpha["tokens"])["model"] == "claude"
    beta = agents["agent-beta"]
    assert (beta["lifecycle"], beta["tokens"], beta["stats"]) == ("sleeping", None, "{}")
    assert beta["permissions"] == '{"workingDir":"/","writeDirs":[]}'
    sessions = sorted((s for s in dump["sessions"] if s["agent_id"] == "agent-alpha"), key=lambda s: s["created_at"])
    assert [(s["created_at"], s["reset_message"], s["inference_session_id"]) for s in sessions] == [
        (1700000001000, None, None),
        (1700000002000, None, None),
        (1700000004000, "fresh start", "inf-alpha"),
    ]
    assert alpha["active_session_id"] == sessions[-1]["id"]
    history = [(h["session_id"], h["type"], h["at"], h["data"]) for h in dump["session_history"]]
    assert history == [
        (sessions[0]["id"], "user_message", 1700000001000, '{"text":"before any marker","files":[]}'),
        (
            sessions[1]["id"],
            "assistant_message",
            1700000003000,
            '{"content":[{"type":"text","text":"Grüß dich 👋"}],"tokens":null}',
        ),
        (sessions[2]["id"], "note", 1700000004500, '{"text":"after reset"}'),
    ]
    assert [s["agent_id"] for s in dump["sessions"]].count("agent-beta") == 1

    # Cron tasks: each trigger kept its fields and got a task named by its taskId, holding its prompt.
    cron = by_id(dump["tasks_cron"])
    assert set(cron) == {"daily-report", "owner-fallback", "aliases"}
    daily = folder / "cron" / "daily-report" / "TASK.md"
    assert cron["daily-report"] == {
        "id": "daily-report",
        "task_id": "dailyreportuid0000000000a",
        "user_id": "user-123",
        "name": "Daily Report",
        "description": "Daily status",
        "schedule": "0 9 * * *",
        "agent_id": "agent-123",
        "enabled": 1,
        "delete_after_run": 1,
        "last_run_at": 1771495200000,
        "created_at": mtime_ms(daily),
        "updated_at": mtime_ms(daily),
    }
    assert (cron["owner-fallback"]["user_id"], cron["owner-fallback"]["delete_after_run"]) == (owner["id"], 0)
    aliases = cron["aliases"]
    # `cron:`, `user_id:`, `agent_id:` and `once:` are aliases; `enabled: no` is the string "no" (YAML 1.2), so enabled.
    assert (aliases["schedule"], aliases["user_id"], aliases["agent_id"]) == ("30 6 * * 1", "user-456", "agent-456")
    assert (aliases["enabled"], aliases["delete_after_run"], aliases["last_run_at"]) == (1, 1, None)
    tasks = {(task["user_id"], task["id"]): task for task in dump["tasks"]}
    assert tasks[("user-123", "dailyreportuid0000000000a")]["code"] == "Summarize yesterday."
    assert tasks[("user-123", "dailyreportuid0000000000a")]["title"] == "Daily Report"
    assert tasks[(owner["id"], "ownerfallbackuid000000000")]["code"] == "Use owner fallback."
    assert tasks[("user-456", "aliasesuid000000000000000")]["code"] == "Weekly digest."

    # Heartbeats: title from front matter, heading or file name; one shared last run; all the owner's.
    heartbeats = by_id(dump["tasks_heartbeat"])
    assert set(heartbeats) == {"morning-check", "with-heading", "plain-name"}
    for row in heartbeats.values():
        assert (row["user_id"], row["last_run_at"]) == (owner["id"], 1771418096000)
        task = tasks[(row["user_id"], row["task_id"])]
        assert task["title"] == row["title"]
    titles_codes = {
        row["id"]: (row["title"], tasks[(owner["id"], row["task_id"])]["code"]) for row in heartbeats.values()
    }
    assert titles_codes == {
        "morning-check": ("Morning Check", "Check status."),
        "with-heading": ("Heading title", "Body prompt"),
        "plain-name": ("Plain Name", "Look at the inbox."),
    }
    assert heartbeats["plain-name"]["created_at"] == mtime_ms(folder / "heartbeat" / "Plain Name.md")

    # Signals: sources normalized; a missing user is the owner's; a missing data key is NULL.
    events = by_id(dump["signals_events"])
    assert set(events) == {"ev-1", "ev-2", "ev-3", "ev-4"}
    assert (events["ev-1"]["user_id"], events["ev-1"]["data"], events["ev-1"]["created_at"]) == (
        "user-a",
        '{"ok":true}',
        10,
    )
    assert (events["ev-2"]["source"], events["ev-2"]["data"]) == (
        '{"type":"webhook","id":"github","userId":"user-1"}',
        "null",
    )
    assert (events["ev-3"]["source"], events["ev-3"]["data"], events["ev-3"]["created_at"]) == (
        '{"type":"system"}',
        None,
        30,
    )
    assert (events["ev-4"]["user_id"], events["ev-4"]["source"]) == (owner["id"], '{"type":"process","id":"p-1"}')
    assert events["ev-4"]["created_at"] > 1700000000000  # a negative time became the clock
    delayed = by_id(dump["signals_delayed"])
    assert set(delayed) == {"delay-1", "delay-2"}
    assert (delayed["delay-1"]["repeat_key"], delayed["delay-1"]["deliver_at"]) == ("r1", 30)
    assert (delayed["delay-2"]["user_id"], delayed["delay-2"]["source"]) == (
        owner["id"],
        '{"type":"agent","id":"agent-x"}',
    )

    # Channels: the leader agent's user owns it; members keep their agent's user; messages need text.
    assert [(c["id"], c["user_id"], c["name"]) for c in dump["channels"]] == [("channel-1", owner["id"], "dev")]
    assert [(m["agent_id"], m["username"], m["joined_at"]) for m in dump["channel_members"]] == [
        ("agent-alpha", "alice", 10),
        ("agent-unknown", "bob", 11),
    ]
    assert [(m["id"], m["mentions"]) for m in dump["channel_messages"]] == [("msg-1", '["bob"]'), ("msg-2", "[]")]

    # Expose endpoints: all the owner's; auth kept only when set.
    endpoints = by_id(dump["expose_endpoints"])
    assert set(endpoints) == {"ep-1", "ep-2"}
    assert (endpoints["ep-1"]["auth"], endpoints["ep-1"]["target"]) == (None, '{"type":"port","port":8080}')
    assert endpoints["ep-2"]["auth"] == '{"enabled":true,"passwordHash":"h"}'
    assert endpoints["ep-2"]["domain"] == "Local.Example.com"

    # Processes: version 2 only; defaults for what is missing; non-string env values dropped.
    processes = by_id(dump["processes"])
    assert set(processes) == {"p-1", "p-min"}
    assert processes["p-1"]["env"] == '{"A":"1"}'
    assert (processes["p-1"]["owner"], processes["p-1"]["user_id"]) == (
        '{"type":"plugin","id":"agent-beta"}',
        owner["id"],
    )
    assert (processes["p-1"]["keep_alive"], processes["p-1"]["allow_local_binding"], processes["p-1"]["pid"]) == (
        1,
        1,
        123,
    )
    assert processes["p-min"]["permissions"] == (
        '{"workingDir":"/","writeDirs":[],"readDirs":[],"network":false,"events":false}'
    )
    assert (processes["p-min"]["status"], processes["p-min"]["desired_state"]) == ("stopped", "running")


async def test_import_steps_without_folders_are_recorded(tmp_path: Path) -> None:
    """Like the legacy code, a step that finds no folder does nothing and is still recorded."""
    db = await database_open(tmp_path / "daycare.db")
    try:
        await chain_run(db, LEGACY_STEPS[:1])
    finally:
        await database_close(db)
    data_folder(tmp_path / "elsewhere")  # not next to the database: ignored
    db = await database_open(tmp_path / "daycare.db")
    try:
        await database_migrate(db)
        recorded = {row["name"] for row in await rows(db, "SELECT name FROM _migrations")}
        assert recorded == set(LEGACY_STEPS)
        for table in ("agents", "tasks_cron", "tasks_heartbeat", "signals_events", "channels", "processes"):
            assert await rows(db, f"SELECT * FROM {table}") == [], table
    finally:
        await database_close(db)


async def test_partial_file_imports_the_folders_next_to_it(tmp_path: Path) -> None:
    """A file that stopped before the import steps gets them on upgrade, with the folders beside it."""
    db = await database_open(tmp_path / "daycare.db")
    try:
        await chain_run(db, LEGACY_STEPS[:5])  # agents exist already: the agents import is skipped
        await execute(
            db,
            "INSERT INTO agents (id, type, descriptor, permissions, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
            ["kept", "system", '{"type":"system","tag":"x"}', "{}", 1, 1],
        )
    finally:
        await database_close(db)
    data_folder(tmp_path)
    db = await database_open(tmp_path / "daycare.db")
    try:
        await database_migrate(db)
    finally:
        await database_close(db)
    dump = tables_dump(tmp_path / "daycare.db")
    assert [agent["id"] for agent in dump["agents"]] == ["kept"]  # step 2 was recorded before the folders came
    assert {row["id"] for row in dump["tasks_cron"]} == {"daily-report", "owner-fallback", "aliases"}
    assert {row["id"] for row in dump["processes"]} == {"p-1", "p-min"}


# Ported legacy specs of the import steps: each runs the steps it needs on a file beside its data.


async def open_beside(folder: Path) -> Database:
    return await database_open(folder / "daycare.db")


async def test_import_tasks_spec(tmp_path: Path) -> None:
    """migration20260220ImportTasks: imports legacy cron and heartbeat files into sqlite tables."""
    cron = tmp_path / "cron" / "daily-report"
    (cron / "files").mkdir(parents=True)
    (cron / "TASK.md").write_text(
        '---\ntaskId: abcdefghijklmnopqrstuvwx\nname: Daily Report\nschedule: "0 9 * * *"\ndescription: Daily status\n'
        'agentId: agent-123\nuserId: user-123\ngate:\n  command: echo gate\n  permissions:\n    - "@network"\n'
        "enabled: true\ndeleteAfterRun: true\n---\n\nSummarize yesterday.\n"
    )
    (cron / "STATE.json").write_text(json.dumps({"lastRunAt": "2026-02-19T10:00:00.000Z"}))
    (cron / "MEMORY.md").write_text("legacy memory")
    fallback = tmp_path / "cron" / "owner-fallback"
    fallback.mkdir()
    (fallback / "TASK.md").write_text(
        '---\ntaskId: bcdefghijklmnopqrstuvwxy\nname: Owner fallback\nschedule: "0 12 * * *"\n---\n'
        "\nUse owner fallback.\n"
    )
    empty = tmp_path / "cron" / "empty-prompt"
    empty.mkdir()
    (empty / "TASK.md").write_text(
        '---\ntaskId: cdefghijklmnopqrstuvwxyz\nname: Empty prompt\nschedule: "0 13 * * *"\n---\n'
    )
    invalid = tmp_path / "cron" / "invalid-task"
    invalid.mkdir()
    (invalid / "TASK.md").write_text('---\nname: Invalid\nschedule: "* * * * *"\n---\n\nShould not import.\n')
    heartbeat = tmp_path / "heartbeat"
    heartbeat.mkdir()
    (heartbeat / "morning-check.md").write_text(
        "---\ntitle: Morning Check\ngate:\n  command: echo hb\n---\n\nCheck status.\n"
    )
    (heartbeat / "with-heading.md").write_text("# Heading title\n\nBody prompt\n")
    (heartbeat / ".heartbeat-state.json").write_text(json.dumps({"lastRunAt": "2026-02-18T12:34:56.000Z"}))

    db = await open_beside(tmp_path)
    try:
        await steps_run(
            db,
            [
                "20260219_initial",
                "20260220_add_users",
                "20260220_users_bootstrap",
                "20260220_add_tasks",
                "20260220_import_tasks",
            ],
            tmp_path,
        )
        owner = (await rows(db, "SELECT id FROM users WHERE is_owner = 1"))[0]["id"]
        cron_rows = await rows(db, "SELECT * FROM tasks_cron ORDER BY id ASC")
        heartbeat_rows = await rows(db, "SELECT * FROM tasks_heartbeat ORDER BY id ASC")
    finally:
        await database_close(db)

    assert [row["id"] for row in cron_rows] == ["daily-report", "owner-fallback"]
    first, second = cron_rows
    assert (first["task_uid"], first["name"], first["description"], first["schedule"]) == (
        "abcdefghijklmnopqrstuvwx",
        "Daily Report",
        "Daily status",
        "0 9 * * *",
    )
    assert (first["prompt"], first["agent_id"], first["user_id"]) == ("Summarize yesterday.", "agent-123", "user-123")
    assert (first["enabled"], first["delete_after_run"], first["last_run_at"]) == (1, 1, 1771495200000)
    assert (second["task_uid"], second["description"], second["prompt"]) == (
        "bcdefghijklmnopqrstuvwxy",
        None,
        "Use owner fallback.",
    )
    assert (second["user_id"], second["enabled"], second["delete_after_run"], second["last_run_at"]) == (
        owner,
        1,
        0,
        None,
    )
    assert [(row["id"], row["title"], row["prompt"]) for row in heartbeat_rows] == [
        ("morning-check", "Morning Check", "Check status."),
        ("with-heading", "Heading title", "Body prompt"),
    ]
    assert all(row["last_run_at"] == 1771418096000 for row in heartbeat_rows)


async def test_import_signals_spec(tmp_path: Path) -> None:
    """migration20260222ImportSignals: imports legacy signal event and delayed files."""
    (tmp_path / "signals").mkdir()
    events = [
        {
            "id": "ev-1",
            "type": "build:ok",
            "source": {"type": "system", "userId": "user-a"},
            "data": {"ok": True},
            "createdAt": 10,
        },
        {
            "id": "ev-2",
            "type": "build:ok",
            "source": {"type": "system", "userId": "user-1"},
            "data": {"ok": False},
            "createdAt": 20,
        },
    ]
    (tmp_path / "signals" / "events.jsonl").write_text("".join(json.dumps(event) + "\n" for event in events))
    delayed = {
        "version": 1,
        "events": [
            {"id": "delay-1", "type": "notify", "deliverAt": 30, "source": {"type": "system", "userId": "user-a"},
             "data": {"a": True}, "repeatKey": "r1", "createdAt": 1, "updatedAt": 2},
            {"id": "delay-2", "type": "notify", "deliverAt": 40, "source": {"type": "system", "userId": "user-1"},
             "data": {"b": True}, "createdAt": 3, "updatedAt": 4},
        ],
    }  # fmt: skip
    (tmp_path / "signals" / "delayed.json").write_text(json.dumps(delayed, indent=2))
    db = await open_beside(tmp_path)
    try:
        await steps_run(db, ["20260220_add_users"], tmp_path)
        await execute(db, "INSERT INTO users (id, is_owner, created_at, updated_at) VALUES ('owner-user', 1, 1, 1)")
        await steps_run(db, ["20260222_add_signals", "20260222_import_signals"], tmp_path)
        assert await rows(db, "SELECT id, user_id, type FROM signals_events ORDER BY id ASC") == [
            {"id": "ev-1", "user_id": "user-a", "type": "build:ok"},
            {"id": "ev-2", "user_id": "user-1", "type": "build:ok"},
        ]
        assert await rows(db, "SELECT id, user_id, type, repeat_key FROM signals_delayed ORDER BY id ASC") == [
            {"id": "delay-1", "user_id": "user-a", "type": "notify", "repeat_key": "r1"},
            {"id": "delay-2", "user_id": "user-1", "type": "notify", "repeat_key": None},
        ]
    finally:
        await database_close(db)


async def test_import_channels_spec(tmp_path: Path) -> None:
    """migration20260222ImportChannels: imports legacy channel and history files."""
    channel = tmp_path / "channels" / "dev"
    channel.mkdir(parents=True)
    members = [
        {"agentId": "agent-a", "username": "alice", "joinedAt": 10},
        {"agentId": "agent-b", "username": "bob", "joinedAt": 11},
    ]
    (channel / "channel.json").write_text(
        json.dumps(
            {
                "id": "channel-1",
                "name": "dev",
                "leader": "agent-leader",
                "members": members,
                "createdAt": 1,
                "updatedAt": 2,
            }
        )
    )
    messages = [
        {"id": "msg-1", "senderUsername": "alice", "text": "hello", "mentions": ["bob"], "createdAt": 12},
        {"id": "msg-2", "senderUsername": "bob", "text": "hi", "mentions": [], "createdAt": 13},
    ]
    (channel / "history.jsonl").write_text("".join(json.dumps(message) + "\n" for message in messages))
    db = await open_beside(tmp_path)
    try:
        await steps_run(db, ["20260220_add_users"], tmp_path)
        await execute(db, "INSERT INTO users (id, is_owner, created_at, updated_at) VALUES ('owner-user', 1, 1, 1)")
        await execute(db, "CREATE TABLE agents (id TEXT PRIMARY KEY, user_id TEXT NOT NULL)")
        await execute(
            db, "INSERT INTO agents (id, user_id) VALUES ('agent-leader', 'user-leader'), ('agent-a', 'user-a')"
        )
        await steps_run(db, ["20260222_add_channels", "20260222_import_channels"], tmp_path)
        assert await rows(db, "SELECT id, user_id, name, leader FROM channels") == [
            {"id": "channel-1", "user_id": "user-leader", "name": "dev", "leader": "agent-leader"}
        ]
        assert await rows(
            db, "SELECT channel_id, user_id, agent_id, username FROM channel_members ORDER BY agent_id"
        ) == [
            {"channel_id": "channel-1", "user_id": "user-a", "agent_id": "agent-a", "username": "alice"},
            {"channel_id": "channel-1", "user_id": "user-leader", "agent_id": "agent-b", "username": "bob"},
        ]
        assert await rows(db, "SELECT id, channel_id, user_id, sender_username FROM channel_messages ORDER BY id") == [
            {"id": "msg-1", "channel_id": "channel-1", "user_id": "user-leader", "sender_username": "alice"},
            {"id": "msg-2", "channel_id": "channel-1", "user_id": "user-leader", "sender_username": "bob"},
        ]
    finally:
        await database_close(db)


async def test_import_expose_spec(tmp_path: Path) -> None:
    """migration20260222ImportExpose: imports legacy expose endpoint files."""
    endpoints = tmp_path / "expose" / "endpoints"
    endpoints.mkdir(parents=True)
    endpoint = {
        "id": "ep-1",
        "target": {"type": "port", "port": 8080},
        "provider": "provider-a",
        "domain": "app.example.com",
        "mode": "public",
        "auth": None,
        "createdAt": 1,
        "updatedAt": 2,
    }
    (endpoints / "ep-1.json").write_text(json.dumps(endpoint, indent=2))
    db = await open_beside(tmp_path)
    try:
        await steps_run(db, ["20260220_add_users"], tmp_path)
        await execute(db, "INSERT INTO users (id, is_owner, created_at, updated_at) VALUES ('owner-user', 1, 1, 1)")
        await steps_run(db, ["20260222_add_expose", "20260222_import_expose"], tmp_path)
        assert await rows(db, "SELECT id, user_id, provider, domain, mode FROM expose_endpoints ORDER BY id") == [
            {
                "id": "ep-1",
                "user_id": "owner-user",
                "provider": "provider-a",
                "domain": "app.example.com",
                "mode": "public",
            }
        ]
    finally:
        await database_close(db)


async def test_import_processes_spec(tmp_path: Path) -> None:
    """migration20260222ImportProcesses: imports legacy process records."""
    process = tmp_path / "processes" / "p-1"
    process.mkdir(parents=True)
    shutil.copyfile(FIXTURES / "processes" / "p-1" / "record.json", process / "record.json")
    db = await open_beside(tmp_path)
    try:
        await steps_run(db, ["20260220_add_users"], tmp_path)
        await execute(db, "INSERT INTO users (id, is_owner, created_at, updated_at) VALUES ('owner-user', 1, 1, 1)")
        await execute(db, "CREATE TABLE agents (id TEXT PRIMARY KEY, user_id TEXT NOT NULL)")
        await steps_run(db, ["20260222_add_processes", "20260222_import_processes"], tmp_path)
        found = await rows(db, "SELECT id, user_id, keep_alive, allow_local_binding, owner FROM processes ORDER BY id")
        assert found == [
            {
                "id": "p-1",
                "user_id": "owner-user",
                "keep_alive": 1,
                "allow_local_binding": 1,
                "owner": '{"type":"plugin","id":"agent-beta"}',
            }
        ]
    finally:
        await database_close(db)
