"""SignalSubscriptionsRepository: the legacy signalSubscriptionsRepository.spec and signalTypeMatchesPattern.spec."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from daycare.storage.db.database import Database
from daycare.storage.facade import Storage
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.signal_subscriptions import (
    SignalSubscriptionRecord,
    SignalSubscriptionsRepository,
    signal_type_matches_pattern,
)
from tests.storage.helpers import violated
from tests.storage.raw_rows import sql_run, stored_rows


def subscription(
    id: str, user_id: str, agent_id: str, pattern: str, silent: bool, created: int, updated: int
) -> SignalSubscriptionRecord:
    return SignalSubscriptionRecord(id, user_id, agent_id, pattern, silent, created, updated)


async def test_creates_updates_deletes_and_reads_subscriptions(storage: Storage) -> None:
    """Legacy: "creates, updates, deletes, and reads subscriptions"."""
    repo = storage.signal_subscriptions
    await repo.create(subscription("sub-1", "user-a", "agent-1", "build:*", True, 10, 10))
    await repo.create(subscription("sub-2", "user-a", "agent-1", "build:*", False, 10, 20))
    ctx = Context("user-a", "agent-1")
    found = await repo.find_by_user_and_agent(ctx, "build:*")
    assert found is not None and found.id == "sub-2" and found.silent is False
    assert await repo.delete(ctx, "build:*") is True
    assert await repo.find_by_user_and_agent(ctx, "build:*") is None


async def test_matches_patterns_and_user_scope(storage: Storage) -> None:
    """Legacy: "matches patterns and user scope"."""
    repo = storage.signal_subscriptions
    await repo.create(subscription("sub-a", "user-a", "agent-a", "build:*:done", False, 1, 1))
    await repo.create(subscription("sub-b", "user-b", "agent-b", "build:*:done", True, 2, 2))
    await repo.create(subscription("sub-c", "user-a", "agent-c", "deploy:*", True, 3, 3))
    all_matches = [
        *await repo.find_matching(Context("user-a", "test-agent"), "build:app:done"),
        *await repo.find_matching(Context("user-b", "test-agent"), "build:app:done"),
    ]
    user_matches = await repo.find_matching(Context("user-a", "test-agent"), "build:app:done")
    assert sorted(item.id for item in all_matches) == ["sub-a", "sub-b"]
    assert [item.id for item in user_matches] == ["sub-a"]


async def test_normalizes_ctx_user_id_for_keyed_and_matching_lookups(storage: Storage) -> None:
    """Legacy: "normalizes ctx userId for keyed and matching lookups" (Context trims its ids)."""
    await storage.signal_subscriptions.create(subscription("sub-trim", "user-trim", "agent-1", "build:*", False, 1, 1))
    by_key = await storage.signal_subscriptions.find_by_user_and_agent(Context("  user-trim  ", "agent-1"), "build:*")
    matching = await storage.signal_subscriptions.find_matching(Context("  user-trim  ", "test-agent"), "build:foo")
    assert by_key is not None and by_key.id == "sub-trim"
    assert [item.id for item in matching] == ["sub-trim"]


async def test_upsert_replaces_id_silent_and_updated_at_and_keeps_created_at(storage: Storage, db: Database) -> None:
    repo = storage.signal_subscriptions
    await repo.create(subscription("sub-1", "u", "a", "build:*", True, 10, 10))
    await repo.create(subscription("sub-2", "u", "a", "build:*", False, 99, 20))
    assert await stored_rows(db, "signals_subscriptions", "id") == [
        {
            "id": "sub-2",
            "user_id": "u",
            "agent_id": "a",
            "pattern": "build:*",
            "silent": 0,
            "created_at": 10,
            "updated_at": 20,
        }
    ]
    # The cache holds the stored row: created_at 10, not the 99 of the second call (the legacy cache had 99).
    expected = subscription("sub-2", "u", "a", "build:*", False, 10, 20)
    assert await repo.find_by_user_and_agent(Context("u", "a"), "build:*") == expected
    assert await Storage.from_database(db).signal_subscriptions.find_all() == [expected]


async def test_an_id_taken_by_another_key_is_refused(storage: Storage, db: Database) -> None:
    await storage.signal_subscriptions.create(subscription("sub-1", "u", "a", "one", False, 1, 1))
    with violated("unique", "signals_subscriptions.id"):
        await storage.signal_subscriptions.create(subscription("sub-1", "u", "a", "two", False, 2, 2))
    assert [row["pattern"] for row in await stored_rows(db, "signals_subscriptions", "id")] == ["one"]
    assert await storage.signal_subscriptions.find_by_user_and_agent(Context("u", "a"), "two") is None


async def test_keyed_methods_need_an_agent_context(storage: Storage) -> None:
    with pytest.raises(ValueError, match=r"^Context has no agentId$"):
        await storage.signal_subscriptions.delete(Context("u"), "x")
    with pytest.raises(ValueError, match=r"^Context has no agentId$"):
        await storage.signal_subscriptions.find_by_user_and_agent(Context("u"), "x")


async def test_find_all_orders_and_caches(storage: Storage, db: Database) -> None:
    repo = storage.signal_subscriptions
    await repo.create(subscription("s3", "u2", "a", "x", False, 1, 1))
    await repo.create(subscription("s2", "u1", "b", "x", False, 1, 1))
    await repo.create(subscription("s1", "u1", "a", "y", False, 1, 1))
    await repo.create(subscription("s0", "u1", "a", "x", False, 1, 1))
    fresh = Storage.from_database(db).signal_subscriptions
    expected = ["s0", "s1", "s2", "s3"]
    assert [item.id for item in await fresh.find_all()] == expected
    await sql_run(db, "DELETE FROM signals_subscriptions")
    assert [item.id for item in await fresh.find_all()] == expected
    assert await fresh.find_by_user_and_agent(Context("u9", "a"), "x") is None
    # A pattern is taken verbatim by delete: no trimming.
    assert await repo.delete(Context("u1", "a"), " x ") is False


async def test_find_matching_reads_only_the_users_matching_subscriptions(storage: Storage, db: Database) -> None:
    """Among many users' subscriptions, exactly the user's matching ones, by agent and pattern."""
    repo = storage.signal_subscriptions
    patterns = ("build:*", "build:*:done", "deploy:*", "*:app", "build:app")
    for user in range(40):
        for agent in range(3):
            for index, pattern in enumerate(patterns):
                id = f"s-{user}-{agent}-{index}"
                await repo.create(subscription(id, f"user-{user}", f"agent-{2 - agent}", pattern, False, 1, 1))
    fresh = Storage.from_database(db).signal_subscriptions  # a cold cache: the query alone answers
    matching = await fresh.find_matching(Context("user-7"), "build:app")
    expected = [f"s-7-{agent}-{index}" for agent in (2, 1, 0) for index in (3, 0, 4)]
    assert [item.id for item in matching] == expected
    assert {item.user_id for item in matching} == {"user-7"}
    assert [item.id for item in await fresh.find_matching(Context("user-7"), "build:app:done")] == [
        f"s-7-{agent}-1" for agent in (2, 1, 0)
    ]
    assert await fresh.find_matching(Context("user-99"), "build:app") == []
    await repo.delete(Context("user-7", "agent-1"), "build:*")
    assert len(await fresh.find_matching(Context("user-7"), "build:app")) == 8


async def test_loads_racing_writes_leave_the_cache_equal_to_the_file(db: Database) -> None:
    """A cold load and a write of the same key, run together in both orders: the cache ends as the file."""
    ctx = Context("u", "a")
    await SignalSubscriptionsRepository(db).create(subscription("s-0", "u", "a", "x", False, 1, 1))
    for round in range(20):
        repo = SignalSubscriptionsRepository(db)  # a cold cache: loads must read the file
        load = repo.find_all() if round % 4 < 2 else repo.find_by_user_and_agent(ctx, "x")
        write: Coroutine[Any, Any, object]
        if round % 3 == 2:
            write = repo.delete(ctx, "x")
        else:
            write = repo.create(subscription(f"s-{round}", "u", "a", "x", bool(round % 2), 1, round + 2))
        await asyncio.gather(*((load, write) if round % 2 else (write, load)))
        stored = {(r.user_id, r.agent_id, r.pattern): r for r in await SignalSubscriptionsRepository(db).find_all()}
        for key, record in repo._cache.records.items():
            assert stored.get(key) == record, (round, key)
        if repo._cache.all_loaded:
            assert repo._cache.records == stored
        assert await repo.find_by_user_and_agent(ctx, "x") == stored.get(("u", "a", "x"))
        if round % 3 == 2:
            await repo.create(subscription(f"s-{round}", "u", "a", "x", False, 1, 1))


def test_matches_star_segments() -> None:
    """Legacy signalTypeMatchesPattern: "matches star segments"."""
    assert signal_type_matches_pattern("asdasd:mid:asdasd", "asdasd:*:asdasd") is True


def test_requires_same_segment_count() -> None:
    """Legacy signalTypeMatchesPattern: "requires same segment count"."""
    assert signal_type_matches_pattern("a:b:c", "a:*") is False


def test_matches_literal_segments_exactly() -> None:
    """Legacy signalTypeMatchesPattern: "matches literal segments exactly"."""
    assert signal_type_matches_pattern("build:done", "build:*") is True
    assert signal_type_matches_pattern("build:done", "build:failed") is False
    assert signal_type_matches_pattern(" build:done ", "build:*") is True
    assert signal_type_matches_pattern("", "*") is False
    assert signal_type_matches_pattern("build", "  ") is False
