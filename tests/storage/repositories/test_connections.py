"""ConnectionsRepository: the legacy connectionsRepository.spec tests (users seeded with plain SQL)."""

from __future__ import annotations

import asyncio

import pytest

from daycare.storage.db.database import Database
from daycare.storage.facade import Storage
from daycare.storage.repositories.connections import ConnectionRecord, connection_pair
from tests.storage.helpers import violated
from tests.storage.raw_rows import sql_run, stored_rows
from tests.storage.seeds import user_insert


async def users(db: Database, *ids: str, parent: str | None = None) -> None:
    for id in ids:
        await user_insert(db, id, parent_user_id=parent)


def pairs(records: list[ConnectionRecord]) -> list[str]:
    return [f"{record.user_a_id}:{record.user_b_id}" for record in records]


async def test_upserts_requests_with_canonical_pair_ordering(storage: Storage, db: Database) -> None:
    """Legacy: "upserts requests with canonical pair ordering"."""
    await users(db, "alice", "bob")
    created = await storage.connections.upsert_request("alice", "bob", 100)
    assert created == ConnectionRecord("alice", "bob", True, False, 100, None)
    confirmed = await storage.connections.upsert_request("bob", "alice", 200)
    assert confirmed == ConnectionRecord("alice", "bob", True, True, 100, 200)


async def test_clears_the_selected_side_and_preserves_timestamps(storage: Storage, db: Database) -> None:
    """Legacy: "clears the selected side and preserves timestamps for cooldown checks"."""
    await users(db, "alice", "bob")
    await storage.connections.upsert_request("alice", "bob", 100)
    await storage.connections.upsert_request("bob", "alice", 200)
    cleared = await storage.connections.clear_side("alice", "bob")
    assert cleared == ConnectionRecord("alice", "bob", False, True, 100, 200)
    cleared = await storage.connections.clear_side("bob", "alice")
    assert cleared == ConnectionRecord("alice", "bob", False, False, 100, 200)


async def test_finds_friendships_scoped_to_a_user_and_deletes_rows(storage: Storage, db: Database) -> None:
    """Legacy: "finds friendships scoped to a user and deletes connection rows"."""
    await users(db, "alice", "bob", "charlie")
    await storage.connections.upsert_request("alice", "bob", 100)
    await storage.connections.upsert_request("bob", "alice", 200)
    await storage.connections.upsert_request("charlie", "alice", 300)
    alice_friends = await storage.connections.find_friends("alice")
    assert pairs(alice_friends) == ["alice:bob"]
    assert await storage.connections.delete("bob", "alice") is True
    assert await storage.connections.find("alice", "bob") is None
    assert await storage.connections.delete("bob", "alice") is False


async def test_finds_all_connections_that_involve_subusers_of_an_owner(storage: Storage, db: Database) -> None:
    """Legacy: "finds all connections that involve subusers of an owner"."""
    await users(db, "alice", "bob", "charlie")
    await users(db, "alice-sub-1", "alice-sub-2", parent="alice")
    await users(db, "bob-sub-1", parent="bob")
    await storage.connections.upsert_request("alice-sub-1", "bob", 100)
    await storage.connections.upsert_request("alice-sub-2", "bob", 200)
    await storage.connections.upsert_request("charlie", "alice-sub-1", 300)
    await storage.connections.upsert_request("alice", "bob-sub-1", 400)
    rows = await storage.connections.find_connections_for_subusers_of("alice")
    assert pairs(rows) == ["alice-sub-1:bob", "alice-sub-1:charlie", "alice-sub-2:bob"]


async def test_finds_connections_between_a_friend_and_another_owners_subusers(storage: Storage, db: Database) -> None:
    """Legacy: "finds connections between a friend and another owner's subusers"."""
    await users(db, "alice", "bob", "charlie")
    await users(db, "alice-sub-1", "alice-sub-2", parent="alice")
    await users(db, "charlie-sub-1", parent="charlie")
    await storage.connections.upsert_request("alice-sub-1", "bob", 100)
    await storage.connections.upsert_request("alice-sub-2", "bob", 200)
    await storage.connections.upsert_request("alice-sub-1", "charlie", 300)
    await storage.connections.upsert_request("bob", "charlie-sub-1", 400)
    rows = await storage.connections.find_connections_with_subusers_of("bob", "alice")
    assert pairs(rows) == ["alice-sub-1:bob", "alice-sub-2:bob"]


async def test_pairs_are_stored_sorted_and_the_check_holds(storage: Storage, db: Database) -> None:
    await users(db, "zed", "amy")
    record = await storage.connections.upsert_request(" zed ", "amy", 5)
    # The requester is "zed" even with spaces around it: side B (the legacy code compared the untrimmed id).
    assert record == ConnectionRecord("amy", "zed", False, True, None, 5)
    assert await stored_rows(db, "connections", "user_a_id") == [
        {
            "user_a_id": "amy",
            "user_b_id": "zed",
            "requested_a": 0,
            "requested_b": 1,
            "requested_a_at": None,
            "requested_b_at": 5,
        }
    ]
    with violated("check", "user_a_id < user_b_id", postgres="connections_users_ordered"):
        await sql_run(db, "INSERT INTO connections (user_a_id, user_b_id) VALUES ('zed', 'amy')")
    cleared = await storage.connections.clear_side("zed ", " amy")
    assert cleared == ConnectionRecord("amy", "zed", False, False, None, 5)


async def test_bad_pairs_are_refused(storage: Storage, db: Database) -> None:
    with pytest.raises(ValueError, match=r"^Connection user ids are required.$"):
        await storage.connections.upsert_request(" ", "bob")
    with pytest.raises(ValueError, match=r"^Connection user ids must be different.$"):
        await storage.connections.find("bob", " bob ")
    with violated("foreign key"):
        await storage.connections.upsert_request("ghost", "nobody", 1)
    assert await storage.connections.clear_side("a", "b") is None


def test_pair_order_is_code_point_order() -> None:
    assert connection_pair("b", "a") == ("a", "b")
    assert connection_pair("B", "a") == ("B", "a")
    # U+FF5E sorts below U+1F600 by code point (and in SQLite); JS UTF-16 order had them the other way round.
    assert connection_pair("\U0001f600", "\uff5e") == ("\uff5e", "\U0001f600")


async def test_upsert_request_defaults_to_now_and_cascades_with_users(storage: Storage, db: Database) -> None:
    await users(db, "alice", "bob")
    record = await storage.connections.upsert_request("alice", "bob")
    assert record.requested_a_at is not None and record.requested_a_at > 1_700_000_000_000
    await sql_run(db, "DELETE FROM users WHERE id = 'bob'")
    assert await storage.connections.find("alice", "bob") is None


async def test_sub_user_queries_list_each_pair_once(storage: Storage, db: Database) -> None:
    await users(db, "alice", "bob")
    await users(db, "alice-sub-1", "alice-sub-2", parent="alice")
    await users(db, "bob-sub-1", parent="bob")
    # Both sides are sub-users of alice: the pair matches on either side, and is listed once.
    await storage.connections.upsert_request("alice-sub-2", "alice-sub-1", 100)
    await storage.connections.upsert_request("bob", "alice-sub-2", 200)
    await storage.connections.upsert_request("bob-sub-1", "alice-sub-1", 300)
    await storage.connections.upsert_request("alice", "bob", 400)
    assert pairs(await storage.connections.find_connections_for_subusers_of("alice")) == [
        "alice-sub-1:alice-sub-2",
        "alice-sub-1:bob-sub-1",
        "alice-sub-2:bob",
    ]
    assert pairs(await storage.connections.find_connections_for_subusers_of("bob")) == ["alice-sub-1:bob-sub-1"]
    # The friend may sit on either side of the sorted pair.
    assert pairs(await storage.connections.find_connections_with_subusers_of("bob", "alice")) == ["alice-sub-2:bob"]
    assert pairs(await storage.connections.find_connections_with_subusers_of("alice-sub-1", "alice")) == [
        "alice-sub-1:alice-sub-2"
    ]
    assert pairs(await storage.connections.find_connections_with_subusers_of("alice-sub-1", "bob")) == [
        "alice-sub-1:bob-sub-1"
    ]
    assert await storage.connections.find_connections_with_subusers_of("bob", "nobody") == []


async def test_requests_from_both_sides_at_once_both_count(storage: Storage, db: Database) -> None:
    """Each request is one statement: two racing on a new pair both land, whichever inserts the row."""
    await users(db, "alice", "bob")
    for index in range(10):
        first, second = ("alice", "bob") if index % 2 else ("bob", "alice")
        await asyncio.gather(
            storage.connections.upsert_request(first, second, 10 * index + 1),
            storage.connections.upsert_request(second, first, 10 * index + 2),
        )
        stored = await storage.connections.find("alice", "bob")
        expected_a, expected_b = (
            (10 * index + 1, 10 * index + 2) if first == "alice" else (10 * index + 2, 10 * index + 1)
        )
        assert stored == ConnectionRecord("alice", "bob", True, True, expected_a, expected_b)
        await asyncio.gather(
            storage.connections.clear_side("alice", "bob"), storage.connections.clear_side("bob", "alice")
        )
        assert await storage.connections.find("alice", "bob") == ConnectionRecord(
            "alice", "bob", False, False, expected_a, expected_b
        )
        if index % 3 == 2:  # a new pair next index
            assert await storage.connections.delete("alice", "bob") is True
    [row] = await stored_rows(db, "connections", "user_a_id")
    assert (row["requested_a"], row["requested_b"]) == (0, 0)
