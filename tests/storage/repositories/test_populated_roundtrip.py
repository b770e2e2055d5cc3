"""The legacy populated.db through the thirteen repositories of this issue.

Read-back: every row of those tables, read through the repositories from an adopted copy of
populated.db, equals the row in populated.json with each repository's documented read rules.
Write: the same data written through the repositories into a new database (a file, or a
PostgreSQL schema) is stored exactly as the legacy code stored it (values and SQLite storage
classes, or the PostgreSQL types that stand for them), the key sequence included.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from daycare.storage.db.database import Database, database_close, database_open
from daycare.storage.facade import Storage
from daycare.storage.migrations.migrate import database_migrate
from daycare.storage.repositories.channel_messages import ChannelMessageRecord
from daycare.storage.repositories.channels import ChannelMemberRecord, ChannelRecord
from daycare.storage.repositories.connections import ConnectionRecord
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.cron_tasks import CronTaskRecord
from daycare.storage.repositories.delayed_signals import DelayedSignalRecord
from daycare.storage.repositories.expose_endpoints import ExposeEndpointRecord
from daycare.storage.repositories.heartbeat_tasks import HeartbeatTaskRecord
from daycare.storage.repositories.processes import ProcessRecord
from daycare.storage.repositories.signal_events import ABSENT, SignalEventRecord
from daycare.storage.repositories.signal_subscriptions import SignalSubscriptionRecord
from daycare.storage.repositories.system_prompts import SystemPromptRecord
from daycare.storage.repositories.tasks import TaskRecord
from daycare.storage.repositories.token_stats import TokenStatsRecord
from tests.conftest import legacy_dump
from tests.storage.raw_rows import key_sequence, sql_run, stored_rows, stored_types

TABLES = (
    "tasks",
    "tasks_cron",
    "tasks_heartbeat",
    "signals_events",
    "signals_subscriptions",
    "signals_delayed",
    "channels",
    "channel_members",
    "channel_messages",
    "connections",
    "expose_endpoints",
    "processes",
    "system_prompts",
    "token_stats_hourly",
)

DUMP = legacy_dump("populated.json")["tables"]


def rows(table: str) -> list[dict[str, Any]]:
    return [dict(row) for row in DUMP[table]["rows"]]


def data_or_absent(text: str | None) -> Any:
    return ABSENT if text is None else json.loads(text)


def task_record(row: dict[str, Any]) -> TaskRecord:
    return TaskRecord(**row)


def cron_record(row: dict[str, Any]) -> CronTaskRecord:
    return CronTaskRecord(**{**row, "enabled": row["enabled"] == 1, "delete_after_run": row["delete_after_run"] == 1})


def event_record(row: dict[str, Any]) -> SignalEventRecord:
    return SignalEventRecord(**{**row, "source": json.loads(row["source"]), "data": data_or_absent(row["data"])})


def subscription_record(row: dict[str, Any]) -> SignalSubscriptionRecord:
    return SignalSubscriptionRecord(**{**row, "silent": row["silent"] == 1})


def delayed_record(row: dict[str, Any]) -> DelayedSignalRecord:
    return DelayedSignalRecord(**{**row, "source": json.loads(row["source"]), "data": data_or_absent(row["data"])})


def message_record(row: dict[str, Any]) -> ChannelMessageRecord:
    return ChannelMessageRecord(**{**row, "mentions": json.loads(row["mentions"])})


def connection_record(row: dict[str, Any]) -> ConnectionRecord:
    return ConnectionRecord(**{**row, "requested_a": row["requested_a"] == 1, "requested_b": row["requested_b"] == 1})


def expose_record(row: dict[str, Any]) -> ExposeEndpointRecord:
    auth = None if row["auth"] is None else json.loads(row["auth"])
    return ExposeEndpointRecord(**{**row, "target": json.loads(row["target"]), "auth": auth})


def process_record(row: dict[str, Any], *, read: bool) -> ProcessRecord:
    """The record as written (`read=False`), or as a read returns it: permissions always carry readDirs."""
    permissions = json.loads(row["permissions"])
    if read:
        permissions.setdefault("readDirs", [])
    return ProcessRecord(
        **{
            **row,
            "env": json.loads(row["env"]),
            "package_managers": json.loads(row["package_managers"]),
            "allowed_domains": json.loads(row["allowed_domains"]),
            "allow_local_binding": row["allow_local_binding"] == 1,
            "permissions": permissions,
            "owner": None if row["owner"] is None else json.loads(row["owner"]),
            "keep_alive": row["keep_alive"] == 1,
        }
    )


def prompt_record(row: dict[str, Any]) -> SystemPromptRecord:
    return SystemPromptRecord(**{**row, "enabled": row["enabled"] == 1})


def token_record(row: dict[str, Any]) -> TokenStatsRecord:
    return TokenStatsRecord(
        hour_start=row["hour_start"],
        user_id=row["user_id"],
        agent_id=row["agent_id"],
        model=row["model"],
        input=row["input_tokens"],
        output=row["output_tokens"],
        cache_read=row["cache_read_tokens"],
        cache_write=row["cache_write_tokens"],
        cost=row["cost"],
    )


def by(key: Callable[[dict[str, Any]], Any], table: str) -> list[dict[str, Any]]:
    return sorted(rows(table), key=key)


@pytest.fixture
async def legacy_storage(legacy_copy: Callable[[str], Path]) -> Any:
    db = await database_open(legacy_copy("populated.db"))
    await database_migrate(db, backup=False)
    yield Storage.from_database(db)
    await database_close(db)


@pytest.mark.sqlite_only  # reads a copy of the legacy SQLite file populated.db
async def test_every_legacy_row_reads_back_through_the_repositories(legacy_storage: Storage) -> None:
    storage = legacy_storage
    for row in rows("tasks"):
        assert await storage.tasks.find_any_by_id(Context(row["user_id"]), row["id"]) == task_record(row)
    live = [task_record(row) for row in by(lambda row: row["updated_at"], "tasks") if row["deleted_at"] is None]
    assert await storage.tasks.find_all() == live
    assert await storage.tasks.find_by_id(Context("vhihmap1612jcv2fgglhoh0x"), "old-cleanup") is None

    cron = [cron_record(row) for row in by(lambda row: row["updated_at"], "tasks_cron")]
    assert await storage.cron_tasks.find_all(include_disabled=True) == cron
    heartbeat = [HeartbeatTaskRecord(**row) for row in by(lambda row: row["updated_at"], "tasks_heartbeat")]
    assert await storage.heartbeat_tasks.find_all() == heartbeat

    rowids = DUMP["signals_events"]["rowid_order_of_ids"]
    events = by(lambda row: (row["created_at"], rowids.index(row["id"])), "signals_events")
    assert await storage.signal_events.find_all() == [event_record(row) for row in events]
    subscriptions = by(lambda row: (row["user_id"], row["agent_id"], row["pattern"]), "signals_subscriptions")
    assert await storage.signal_subscriptions.find_all() == [subscription_record(row) for row in subscriptions]
    delayed = by(lambda row: (row["deliver_at"], row["id"]), "signals_delayed")
    assert await storage.delayed_signals.find_all() == [delayed_record(row) for row in delayed]

    channels = by(lambda row: (row["created_at"], row["id"]), "channels")
    assert await storage.channels.find_all() == [ChannelRecord(**row) for row in channels]
    for channel in channels:
        members = [row for row in by(lambda row: (row["joined_at"], row["id"]), "channel_members")]
        expected = [ChannelMemberRecord(**row) for row in members if row["channel_id"] == channel["id"]]
        assert await storage.channels.find_members(channel["id"]) == expected
        messages = by(lambda row: (row["created_at"], row["id"]), "channel_messages")
        expected_messages = [message_record(row) for row in messages if row["channel_id"] == channel["id"]]
        assert (
            await storage.channel_messages.find_recent(Context(channel["user_id"]), channel["id"]) == expected_messages
        )

    for row in rows("connections"):
        assert await storage.connections.find(row["user_b_id"], row["user_a_id"]) == connection_record(row)
    owner = "vhihmap1612jcv2fgglhoh0x"
    friends = [row for row in rows("connections") if owner in (row["user_a_id"], row["user_b_id"])]
    friends = [row for row in friends if row["requested_a"] and row["requested_b"]]
    assert await storage.connections.find_friends(owner) == [connection_record(row) for row in friends]
    sub_user_rows = [row for row in rows("connections") if "sp2yqcoz8ra1t31s1fk3qjs4" in row.values()]
    assert await storage.connections.find_connections_for_subusers_of(owner) == [
        connection_record(row) for row in sub_user_rows
    ]

    endpoints = by(lambda row: (row["created_at"], row["id"]), "expose_endpoints")
    assert await storage.expose_endpoints.find_all() == [expose_record(row) for row in endpoints]
    processes = by(lambda row: (row["created_at"], row["id"]), "processes")
    assert await storage.processes.find_all() == [process_record(row, read=True) for row in processes]
    prompts = by(lambda row: row["created_at"], "system_prompts")
    assert await storage.system_prompts.find_all() == [prompt_record(row) for row in prompts]
    stats = by(lambda row: (row["hour_start"], row["user_id"], row["agent_id"], row["model"]), "token_stats_hourly")
    assert await storage.token_stats.find_all() == [token_record(row) for row in stats]


async def parents_seed(db: Database) -> None:
    """The legacy users (none of them owner: the new file has its own) and agents, copied with plain SQL."""
    for user in sorted(rows("users"), key=lambda row: row["parent_user_id"] is not None):
        await sql_run(
            db,
            "INSERT INTO users (id, is_owner, created_at, updated_at, parent_user_id, name, nametag) "
            "VALUES (?, FALSE, ?, ?, ?, ?, ?)",
            [user["id"], user["created_at"], user["updated_at"], user["parent_user_id"], user["name"], user["nametag"]],
        )
    columns = DUMP["agents"]["columns"]
    for agent in rows("agents"):
        await sql_run(
            db,
            f"INSERT INTO agents ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
            [agent[column] for column in columns],
        )


async def legacy_data_write(storage: Storage) -> None:
    """Writes the populated.json data through the repositories, with the kinds of calls that made it."""
    for row in rows("tasks"):
        await storage.tasks.create(task_record(row))
    for row in rows("tasks_cron"):
        await storage.cron_tasks.create(cron_record(row))
    for row in rows("tasks_heartbeat"):
        await storage.heartbeat_tasks.create(HeartbeatTaskRecord(**row))
    event_rows = {row["id"]: row for row in rows("signals_events")}
    for id in DUMP["signals_events"]["rowid_order_of_ids"]:
        await storage.signal_events.create(event_record(event_rows[id]))
    for row in rows("signals_subscriptions"):
        final = subscription_record(row)
        if row["updated_at"] != row["created_at"]:
            # An earlier subscription to the same pattern: the upsert takes its row and keeps its created_at.
            first = SignalSubscriptionRecord(
                "earlier-id", final.user_id, final.agent_id, final.pattern, not final.silent, row["created_at"], 0
            )
            await storage.signal_subscriptions.create(first)
            final = SignalSubscriptionRecord(
                final.id, final.user_id, final.agent_id, final.pattern, final.silent, 1, final.updated_at
            )
        await storage.signal_subscriptions.create(final)
    for row in rows("signals_delayed"):
        final_signal = delayed_record(row)
        if final_signal.repeat_key:
            replaced = DelayedSignalRecord(**{**row, "id": "replaced", "data": {"round": 1}, "source": {}})
            await storage.delayed_signals.create(replaced)
        await storage.delayed_signals.create(final_signal)
    for row in rows("channels"):
        await storage.channels.create(ChannelRecord(**row))
    members = {row["id"]: row for row in rows("channel_members")}

    async def member_add(id: int, **changes: Any) -> None:
        row = {**members[id], **changes}
        fields = {name: row[name] for name in ("user_id", "agent_id", "username", "joined_at")}
        await storage.channels.add_member(row["channel_id"], **fields)

    # The member history behind ids 1, 2, 4, 6 and sequence 6: id 3 was removed, and the
    # re-add of member 1 (which kept its id) used up id 5.
    await member_add(1, username="owner-bot", joined_at=1)
    await member_add(2)
    await member_add(1, agent_id="removed-agent")
    assert await storage.channels.remove_member(members[1]["channel_id"], "removed-agent")
    await member_add(4)
    await member_add(1)
    await member_add(6)
    for row in rows("channel_messages"):
        await storage.channel_messages.create(message_record(row))
    for row in rows("connections"):
        a, b = row["user_a_id"], row["user_b_id"]
        if row["requested_b_at"] is not None:
            await storage.connections.upsert_request(b, a, row["requested_b_at"])
        if row["requested_a_at"] is not None:
            await storage.connections.upsert_request(a, b, row["requested_a_at"])
        if row["requested_a_at"] is not None and not row["requested_a"]:
            await storage.connections.clear_side(a, b)
        if row["requested_b_at"] is not None and not row["requested_b"]:
            await storage.connections.clear_side(b, a)
    for row in rows("expose_endpoints"):
        await storage.expose_endpoints.create(expose_record(row))
    for row in rows("processes"):
        await storage.processes.create(process_record(row, read=False))
    for row in rows("system_prompts"):
        await storage.system_prompts.create(prompt_record(row))
    for row in rows("token_stats_hourly"):
        ctx = Context(row["user_id"], row["agent_id"])
        half = {name: row[f"{name}_tokens"] // 2 for name in ("input", "output", "cache_read", "cache_write")}
        rest = {name: row[f"{name}_tokens"] - count for name, count in half.items()}
        await storage.token_stats.increment(ctx, at=row["hour_start"] + 59_000, model=row["model"], cost=0, **half)
        await storage.token_stats.increment(ctx, at=row["hour_start"], model=row["model"], cost=row["cost"], **rest)


async def test_rows_written_through_the_repositories_are_stored_as_legacy_stored_them(
    storage: Storage, db: Database
) -> None:
    await parents_seed(db)
    await legacy_data_write(storage)
    for table in TABLES:
        spec = DUMP[table]
        assert await stored_rows(db, table, spec["order_by"]) == spec["rows"], table
        for column, classes in spec["storage_classes"].items():
            found = await stored_types(db, table, column, spec["order_by"])
            assert sorted(set(found)) == classes, (table, column)
    assert await key_sequence(db, "channel_members") == 6
