"""Signals: the legacy signals.spec tests, on a real database, plus delivery through the agent port."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daycare.engine.agent_system import signal_deliver
from daycare.engine.durable_inbox import DurableInboxAgentSystem
from daycare.engine.events import EngineEvent, EngineEvents
from daycare.engine.signals import Signal, Signals, SignalSubscription, signal_source_normalize
from daycare.storage.db.database import Database
from daycare.storage.facade import Storage
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.signal_events import ABSENT
from tests.engine.helpers import agent_create, inbox_items

Delivered = list[tuple[Signal, list[SignalSubscription]]]


def signals_build(storage: Storage, delivered: Delivered | None = None, events: EngineEvents | None = None) -> Signals:
    async def on_deliver(signal: Signal, subscriptions: list[SignalSubscription]) -> None:
        if delivered is not None:
            delivered.append((signal, subscriptions))

    return Signals(
        signal_events=storage.signal_events,
        signal_subscriptions=storage.signal_subscriptions,
        events=events,
        on_deliver=on_deliver,
    )


async def test_persists_and_reads_signal_events(storage: Storage, db: Database) -> None:
    """Legacy: "persists and reads signal events"."""
    events = EngineEvents()
    seen: list[EngineEvent] = []
    events.listen(seen.append)
    signals = signals_build(storage, events=events)
    signal = await signals.generate(
        "build.completed", {"type": "process", "id": "main-runtime", "userId": "user-1"}, {"ok": True}
    )

    assert len(signal.id) == 24 and signal.created_at > 0
    assert signal.type == "build.completed"
    assert signal.source == {"type": "process", "id": "main-runtime", "userId": "user-1"}
    assert signal.data == {"ok": True}
    assert [event.payload for event in seen if event.type == "signal.generated"] == [signal]
    assert [item.id for item in await signals.list_recent(10)] == [signal.id]
    assert [item.id for item in await signals.list_all()] == [signal.id]
    rows = await db.connection().execute_query_dict("SELECT type, source, data FROM signals_events")
    # Stored as the legacy code wrote it: a process source as {type, userId, id}.
    assert rows == [
        {
            "type": "build.completed",
            "source": '{"type":"process","userId":"user-1","id":"main-runtime"}',
            "data": '{"ok":true}',
        }
    ]


async def test_returns_all_persisted_events_without_recent_limit_truncation(storage: Storage) -> None:
    """Legacy: "returns all persisted events without recent-limit truncation"."""
    signals = signals_build(storage)
    await signals.generate("event.one", {"type": "system", "userId": "user-1"}, {"n": 1})
    await signals.generate("event.two", {"type": "system", "userId": "user-1"}, {"n": 2})
    assert [item.type for item in await signals.list_recent(1)] == ["event.two"]
    assert [item.type for item in await signals.list_all()] == ["event.one", "event.two"]


async def test_throws_a_validation_error_when_source_user_id_is_missing(storage: Storage, db: Database) -> None:
    """Legacy: "throws a validation error when source userId is missing at runtime"; nothing is stored."""
    signals = signals_build(storage)
    with pytest.raises(ValueError, match="^Signal source userId is required$"):
        await signals.generate("event.invalid", {"type": "system"})
    with pytest.raises(ValueError, match="^Signal type is required$"):
        await signals.generate("  ", {"type": "system", "userId": "user-1"})
    assert await db.connection().execute_query_dict("SELECT id FROM signals_events") == []


async def test_delivers_only_matching_subscriptions(storage: Storage) -> None:
    """Legacy: "delivers only matching subscriptions" (in the repository's order)."""
    delivered: Delivered = []
    signals = signals_build(storage, delivered)
    await signals.subscribe(Context("user-1", "agent-a"), "build:*:done", silent=True)
    await signals.subscribe(Context("user-1", "agent-b"), "build:*:done", silent=False)
    await signals.subscribe(Context("user-2", "agent-c"), "other:*")

    await signals.generate("build:alpha:done", {"type": "system", "userId": "user-1"})

    assert len(delivered) == 1
    signal, subscriptions = delivered[0]
    assert signal.type == "build:alpha:done" and signal.data is ABSENT
    assert [(s.ctx.user_id, s.ctx.agent_id, s.pattern, s.silent) for s in subscriptions] == [
        ("user-1", "agent-a", "build:*:done", True),
        ("user-1", "agent-b", "build:*:done", False),
    ]


async def test_stops_delivering_after_unsubscribe(storage: Storage) -> None:
    """Legacy: "stops delivering after unsubscribe"."""
    delivered: Delivered = []
    signals = signals_build(storage, delivered)
    ctx = Context("user-1", "agent-a")
    await signals.subscribe(ctx, "build:*:done", silent=True)
    assert await signals.unsubscribe(ctx, "build:*:done") is True
    await signals.generate("build:alpha:done", {"type": "system", "userId": "user-1"})
    assert delivered == []
    assert await signals.unsubscribe(ctx, "build:*:done") is False


async def test_filters_matched_subscriptions_by_signal_source_user_id(storage: Storage) -> None:
    """Legacy: "filters matched subscriptions by signal source userId when present"."""
    delivered: Delivered = []
    signals = signals_build(storage, delivered)
    await signals.subscribe(Context("user-a", "agent-a"), "build:*", silent=True)
    await signals.subscribe(Context("user-b", "agent-b"), "build:*", silent=True)
    await signals.generate("build:alpha", {"type": "agent", "id": "agent-origin", "userId": "user-a"})
    assert [(s.ctx.user_id, s.ctx.agent_id) for _, subs in delivered for s in subs] == [("user-a", "agent-a")]


async def test_subscribe_defaults_silent_and_keeps_identity_on_resubscribe(storage: Storage) -> None:
    signals = signals_build(storage)
    ctx = Context("user-1", "agent-a")
    first = await signals.subscribe(ctx, "  build:*  ")
    assert (first.pattern, first.silent) == ("build:*", True)
    record = await storage.signal_subscriptions.find_by_user_and_agent(ctx, "build:*")
    assert record is not None
    again = await signals.subscribe(ctx, "build:*")
    assert again.silent is True and again.created_at == first.created_at
    loud = await signals.subscribe(ctx, "build:*", silent=False)
    assert loud.silent is False
    stored = await storage.signal_subscriptions.find_by_user_and_agent(ctx, "build:*")
    assert stored is not None and stored.id == record.id and stored.silent is False
    assert await signals.subscription_get(ctx, "build:*") == loud
    with pytest.raises(ValueError, match="^Signal subscription agentId is required$"):
        await signals.subscribe(Context("user-1"), "build:*")
    with pytest.raises(ValueError, match="^Signal subscription pattern is required$"):
        await signals.subscribe(ctx, " ")


async def test_a_failing_delivery_is_logged_and_the_signal_still_stored(storage: Storage) -> None:
    async def on_deliver(signal: Signal, subscriptions: list[SignalSubscription]) -> None:
        raise RuntimeError("agent port down")

    signals = Signals(
        signal_events=storage.signal_events, signal_subscriptions=storage.signal_subscriptions, on_deliver=on_deliver
    )
    await signals.subscribe(Context("user-1", "agent-a"), "ping")
    signal = await signals.generate("ping", {"type": "system", "userId": "user-1"})
    assert [item.id for item in await signals.list_all()] == [signal.id]


def test_source_normalization_keeps_the_legacy_rules_and_messages() -> None:
    assert signal_source_normalize({"type": "system", "userId": " u "}) == {"type": "system", "userId": "u"}
    assert list(signal_source_normalize({"type": "webhook", "id": " gh ", "userId": "u"})) == ["type", "userId", "id"]
    assert list(signal_source_normalize({"type": "webhook", "id": "gh", "userId": "u"}, id_first=True)) == [
        "type",
        "id",
        "userId",
    ]
    assert signal_source_normalize({"type": "process", "id": "  ", "userId": "u"}) == {"type": "process", "userId": "u"}
    cases = [
        ({"type": "agent", "id": " ", "userId": "u"}, "Agent signal source id is required"),
        ({"type": "agent", "id": "a", "userId": " "}, "Signal source userId is required"),
        ({"type": "webhook", "userId": 7}, "Signal source userId is required"),
        ({"type": "robot", "userId": "u"}, "Unsupported signal source type: robot"),
        ({"userId": "u"}, "Unsupported signal source type: undefined"),
    ]
    for source, message in cases:
        with pytest.raises(ValueError, match=f"^{message}$"):
            signal_source_normalize(source)


async def test_limits_are_normalized(storage: Storage) -> None:
    signals = signals_build(storage)
    for n in range(3):
        await signals.generate(f"e{n}", {"type": "system", "userId": "user-1"})
    assert len(await signals.list_recent(float("nan"))) == 3
    assert len(await signals.list_recent(0)) == 1
    assert [s.type for s in await signals.list_recent_for_context(Context("user-1"), 2.9)] == ["e1", "e2"]


async def test_signals_reach_subscribed_agents_through_the_agent_port(storage: Storage, tmp_path: Path) -> None:
    """The engine's wiring: the sender, agents of another user and unknown agents are skipped."""
    agents = DurableInboxAgentSystem(storage=storage, users_dir=tmp_path / "users")

    async def deliver(signal: Signal, subscriptions: list[SignalSubscription]) -> None:
        await signal_deliver(agents, signal, subscriptions)

    signals = Signals(
        signal_events=storage.signal_events, signal_subscriptions=storage.signal_subscriptions, on_deliver=deliver
    )
    for agent_id in ("agent-a", "agent-b"):
        await agent_create(storage, agent_id)
        await signals.subscribe(Context("user-1", agent_id), "build:*")
    await agent_create(storage, "agent-moved", user_id="user-2")
    await signals.subscribe(Context("user-1", "agent-moved"), "build:*")  # the agent belongs to user-2 now
    await signals.subscribe(Context("user-1", "agent-ghost"), "build:*")  # no such agent

    signal = await signals.generate("build:done", {"type": "agent", "id": "agent-a", "userId": "user-1"}, {"n": 1})

    assert await inbox_items(storage, "agent-a") == []
    rows = await storage.inbox.find_by_agent_id("agent-b")
    assert [row.type for row in rows] == ["signal"]
    assert rows[0].data == (
        f'{{"type":"signal","signal":{{"id":"{signal.id}","type":"build:done","source":{{"type":"agent",'
        f'"id":"agent-a","userId":"user-1"}},"data":{{"n":1}},"createdAt":{signal.created_at}}},'
        '"subscriptionPattern":"build:*"}'
    )
    assert await inbox_items(storage, "agent-moved") == []
    assert json.loads(rows[0].data)["signal"]["id"] == signal.id
