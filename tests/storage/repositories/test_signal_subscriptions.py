"""SignalSubscriptionsRepository: the legacy signalSubscriptionsRepository.spec and signalTypeMatchesPattern.spec."""

from __future__ import annotations

import pytest
from tortoise.exceptions import IntegrityError

from daycare.storage.db.database import Database
from daycare.storage.facade import Storage
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.signal_subscriptions import SignalSubscriptionRecord, signal_type_matches_pattern
from tests.storage.seeds import file_rows


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
    assert file_rows(db, "signals_subscriptions", "id") == [
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
    assert await Storage.from_database(db).signal_subscriptions.find_many() == [expected]


async def test_an_id_taken_by_another_key_is_refused(storage: Storage, db: Database) -> None:
    await storage.signal_subscriptions.create(subscription("sub-1", "u", "a", "one", False, 1, 1))
    with pytest.raises(IntegrityError, match=r"UNIQUE constraint failed: signals_subscriptions.id"):
        await storage.signal_subscriptions.create(subscription("sub-1", "u", "a", "two", False, 2, 2))
    assert [row["pattern"] for row in file_rows(db, "signals_subscriptions", "id")] == ["one"]
    assert await storage.signal_subscriptions.find_by_user_and_agent(Context("u", "a"), "two") is None


async def test_keyed_methods_need_an_agent_context(storage: Storage) -> None:
    with pytest.raises(ValueError, match=r"^Context has no agentId$"):
        await storage.signal_subscriptions.delete(Context("u"), "x")
    with pytest.raises(ValueError, match=r"^Context has no agentId$"):
        await storage.signal_subscriptions.find_by_user_and_agent(Context("u"), "x")


async def test_find_many_orders_and_caches(storage: Storage, db: Database) -> None:
    repo = storage.signal_subscriptions
    await repo.create(subscription("s3", "u2", "a", "x", False, 1, 1))
    await repo.create(subscription("s2", "u1", "b", "x", False, 1, 1))
    await repo.create(subscription("s1", "u1", "a", "y", False, 1, 1))
    await repo.create(subscription("s0", "u1", "a", "x", False, 1, 1))
    fresh = Storage.from_database(db).signal_subscriptions
    expected = ["s0", "s1", "s2", "s3"]
    assert [item.id for item in await fresh.find_many()] == expected
    await db.connection().execute_query("DELETE FROM signals_subscriptions")
    assert [item.id for item in await fresh.find_many()] == expected
    assert await fresh.find_by_user_and_agent(Context("u9", "a"), "x") is None
    # A pattern is taken verbatim by delete: no trimming.
    assert await repo.delete(Context("u1", "a"), " x ") is False


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
