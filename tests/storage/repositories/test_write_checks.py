"""Writes check types before they reach the database: None or empty keys raise ValueError, values of the
wrong type TypeError (naming the record and the field), and nothing is written; NaN never reaches a row."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from daycare.storage.facade import Storage
from daycare.storage.repositories.channel_messages import ChannelMessageRecord
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.history import HistoryRecord
from tests.storage.helpers import agent_record, owner_id
from tests.storage.raw_rows import stored_rows
from tests.storage.repositories.test_channels import channel
from tests.storage.repositories.test_cron_tasks import trigger
from tests.storage.repositories.test_delayed_signals import delayed
from tests.storage.repositories.test_expose_endpoints import endpoint
from tests.storage.repositories.test_heartbeat_tasks import entry
from tests.storage.repositories.test_processes import process
from tests.storage.repositories.test_signal_events import event
from tests.storage.repositories.test_signal_subscriptions import subscription
from tests.storage.repositories.test_system_prompts import prompt
from tests.storage.repositories.test_tasks import task

Write = Callable[[Storage], Awaitable[Any]]


def test_an_agent_record_refuses_a_none_or_empty_id() -> None:
    with pytest.raises(ValueError, match=r"^Agent id is required, got None$"):
        agent_record(None, "user-1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^Agent id is required, got ''$"):
        agent_record("", "user-1")
    with pytest.raises(ValueError, match=r"^Agent user_id is required, got ' '$"):
        agent_record("agent-1", " ")
    with pytest.raises(TypeError, match=r"^Agent id must be a string, got int 5$"):
        agent_record(5, "user-1")  # type: ignore[arg-type]


async def _inbox_none_id(storage: Storage) -> None:
    await storage.inbox.insert(None, "agent-1", 1, "message", "{}")  # type: ignore[arg-type]


CASES: list[tuple[str, str, type[Exception], str, Write]] = [
    ("inbox", "id", ValueError, r"^Inbox item id is required, got None$", _inbox_none_id),
    (
        "inbox",
        "agent",
        ValueError,
        r"^Inbox item agent_id is required, got ''$",
        lambda s: s.inbox.insert("i-1", "", 1, "message", "{}"),
    ),
    (
        "inbox",
        "posted_at",
        TypeError,
        r"^Inbox item posted_at must be an integer, got str '1'$",
        lambda s: s.inbox.insert("i-1", "agent-1", "1", "message", "{}"),  # type: ignore[arg-type]
    ),
    (
        "agents",
        "updated_at",
        TypeError,
        r"^Agent updated_at must be an integer, got str 'abc'$",
        lambda s: s.agents.create(agent_record("agent-2", "user-1", updated_at="abc")),
    ),
    (
        "agents",
        "descriptor",
        TypeError,
        r"^Agent descriptor must be a JSON object, got FrozenList \[\]$",
        lambda s: s.agents.create(agent_record("agent-2", "user-1", descriptor=[])),
    ),
    (
        "agents",
        "NaN",
        ValueError,
        r"^Agent stats\.cost is NaN, which JSON cannot hold",
        lambda s: s.agents.create(agent_record("agent-2", "user-1", stats={"cost": math.nan})),
    ),
    (
        "agents",
        "facade",
        ValueError,
        r"^Agent tokens\.total is Infinity",
        lambda s: s.create_agent_with_session(agent_record("agent-2", "user-1", tokens={"total": math.inf})),
    ),
    ("sessions", "agent", ValueError, r"^Session agent_id is required, got None$", lambda s: s.sessions.create(None)),  # type: ignore[arg-type]
    (
        "sessions",
        "id",
        ValueError,
        r"^Session id is required, got ''$",
        lambda s: s.sessions.create("agent-1", id=""),
    ),
    (
        "session_history",
        "session",
        ValueError,
        r"^History record session_id is required, got None$",
        lambda s: s.history.append(None, HistoryRecord("note", 1, {})),  # type: ignore[arg-type]
    ),
    (
        "session_history",
        "facade",
        ValueError,
        r"^History append agent_id is required, got ''$",
        lambda s: s.append_history("", HistoryRecord("note", 1, {})),
    ),
    ("users", "id", ValueError, r"^User id is required, got ''$", lambda s: s.users.create(id="", nametag="x")),
    (
        "users",
        "created_at",
        TypeError,
        r"^User created_at must be an integer, got float 1.5$",
        lambda s: s.users.create(nametag="x", created_at=1.5),  # type: ignore[arg-type]
    ),
    (
        "user_connector_keys",
        "key",
        ValueError,
        r"^User connector_key is required, got ''$",
        lambda s: s.users.add_connector_key("user-1", ""),
    ),
    (
        "user_connector_keys",
        "facade",
        ValueError,
        r"^connectorKey is required$",
        lambda s: s.resolve_user_by_connector_key(None),  # type: ignore[arg-type]
    ),
    ("tasks", "id", ValueError, r"^Task id is required, got ''$", lambda s: s.tasks.create(task(""))),
    ("tasks", "user", ValueError, r"^Task userId is required.$", lambda s: s.tasks.create(task(user_id=None))),  # type: ignore[arg-type]
    (
        "tasks_cron",
        "id",
        ValueError,
        r"^Cron task id is required, got None$",
        lambda s: s.cron_tasks.create(trigger(None, "task-1")),  # type: ignore[arg-type]
    ),
    (
        "tasks_cron",
        "task",
        ValueError,
        r"^Cron trigger taskId is required.$",
        lambda s: s.cron_tasks.create(trigger("c", None)),  # type: ignore[arg-type]
    ),
    (
        "tasks_heartbeat",
        "id",
        ValueError,
        r"^Heartbeat task id is required, got ''$",
        lambda s: s.heartbeat_tasks.create(entry("", "task-1")),
    ),
    (
        "tasks_heartbeat",
        "run_at",
        TypeError,
        r"^Heartbeat task last_run_at must be an integer",
        lambda s: s.heartbeat_tasks.record_run_for(["h"], "now"),  # type: ignore[arg-type]
    ),
    (
        "signals_events",
        "id",
        ValueError,
        r"^Signal event id is required, got None$",
        lambda s: s.signal_events.create(event(None)),  # type: ignore[arg-type]
    ),
    (
        "signals_events",
        "NaN",
        ValueError,
        r"^Signal event data\[0\] is NaN",
        lambda s: s.signal_events.create(event("e", data=[math.nan])),
    ),
    (
        "signals_subscriptions",
        "id",
        ValueError,
        r"^Signal subscription id is required, got ''$",
        lambda s: s.signal_subscriptions.create(subscription("", "u", "a", "p", True, 1, 1)),
    ),
    (
        "signals_delayed",
        "id",
        ValueError,
        r"^Delayed signal id is required, got None$",
        lambda s: s.delayed_signals.create(delayed(None, "t", 1, "k")),  # type: ignore[arg-type]
    ),
    (
        "signals_delayed",
        "NaN",
        ValueError,
        r"^Delayed signal data\.v is Infinity",
        lambda s: s.delayed_signals.create(delayed("d", "t", 1, "k", data={"v": math.inf})),
    ),
    (
        "channels",
        "id",
        ValueError,
        r"^Channel id is required, got ''$",
        lambda s: s.channels.create(channel("", "user-1", "dev", "agent-1", 1)),
    ),
    (
        "channel_members",
        "channel",
        ValueError,
        r"^Channel member channel_id is required, got None$",
        lambda s: s.channels.add_member(None, user_id="u", agent_id="a", username="x", joined_at=1),  # type: ignore[arg-type]
    ),
    (
        "channel_messages",
        "id",
        ValueError,
        r"^Channel message id is required, got None$",
        lambda s: s.channel_messages.create(ChannelMessageRecord(None, "c", "u", "x", "hi", [], 1)),  # type: ignore[arg-type]
    ),
    (
        "connections",
        "user",
        ValueError,
        r"^Connection user ids are required.$",
        lambda s: s.connections.upsert_request(None, "user-b"),  # type: ignore[arg-type]
    ),
    (
        "expose_endpoints",
        "id",
        ValueError,
        r"^Expose endpoint id is required, got None$",
        lambda s: s.expose_endpoints.create(endpoint(None, "user-1", "a.example.com")),  # type: ignore[arg-type]
    ),
    (
        "processes",
        "id",
        ValueError,
        r"^Process id is required, got ''$",
        lambda s: s.processes.create(process("", "user-1", None)),
    ),
    (
        "processes",
        "pid",
        TypeError,
        r"^Process pid must be an integer, got str '12'$",
        lambda s: s.processes.create(process("p", "user-1", None, pid="12")),
    ),
    (
        "system_prompts",
        "id",
        ValueError,
        r"^System prompt id is required, got None$",
        lambda s: s.system_prompts.create(prompt(id=None)),
    ),
    (
        "token_stats_hourly",
        "model",
        ValueError,
        r"^Token stats model cannot be None$",
        lambda s: s.token_stats.increment(
            Context("u", "a"),
            model=None,  # type: ignore[arg-type]
            input=1,
            output=1,
            cache_read=0,
            cache_write=0,
            cost=0,
        ),
    ),
]


# The primary key of the tables whose key is not `id`.
KEYS = {
    "tasks": "user_id, id",
    "connections": "user_a_id, user_b_id",
    "token_stats_hourly": "hour_start, user_id, agent_id, model",
}


async def _rows(storage: Storage, table: str) -> list[dict[str, Any]]:
    return await stored_rows(storage.db, table, KEYS.get(table, "id"))


@pytest.mark.parametrize(("table", "what", "error", "message", "write"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
async def test_a_write_the_table_must_not_hold_raises_and_writes_nothing(
    storage: Storage, table: str, what: str, error: type[Exception], message: str, write: Write
) -> None:
    before = await _rows(storage, table)
    with pytest.raises(error, match=message):
        await write(storage)
    assert await _rows(storage, table) == before


async def test_updates_check_types_too(storage: Storage) -> None:
    record = agent_record("agent-1", await owner_id(storage))
    await storage.agents.create(record)
    with pytest.raises(TypeError, match=r"^Agent lifecycle must be a string, got int 3$"):
        await storage.agents.update("agent-1", lifecycle=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^Agent descriptor\.x is NaN"):
        await storage.agents.update("agent-1", descriptor={"x": math.nan})
    assert await Storage.from_database(storage.db).agents.find_by_id("agent-1") == record
    with pytest.raises(TypeError, match=r"^Session ended_at must be an integer"):
        await storage.sessions.end_session("s", "later")  # type: ignore[arg-type]
