"""ChannelsRepository: the legacy channelsRepository.spec tests, run on the real schema."""

from __future__ import annotations

import asyncio

import pytest

from daycare.storage.db.database import Database
from daycare.storage.facade import Storage
from daycare.storage.repositories.channel_messages import ChannelMessageRecord
from daycare.storage.repositories.channels import ChannelMemberRecord, ChannelRecord, ChannelsRepository
from daycare.storage.repositories.context import Context
from tests.storage.helpers import violated
from tests.storage.raw_rows import sql_run, stored_query, stored_rows


def channel(id: str, user_id: str, name: str, leader: str, at: int) -> ChannelRecord:
    return ChannelRecord(id=id, user_id=user_id, name=name, leader=leader, created_at=at, updated_at=at)


async def test_supports_channel_crud_with_user_filters(storage: Storage) -> None:
    """Legacy: "supports channel CRUD with user filters"."""
    repo = storage.channels
    await repo.create(channel("channel-1", "user-a", "dev", "agent-leader", 1))
    await repo.create(channel("channel-2", "user-b", "ops", "agent-ops", 2))
    assert [item.id for item in await repo.find_all()] == ["channel-1", "channel-2"]
    assert [item.id for item in await repo.find_many(Context("user-a", "test-agent"))] == ["channel-1"]
    by_name = await repo.find_by_name("dev")
    assert by_name is not None and by_name.id == "channel-1"
    assert await repo.delete("channel-2") is True
    assert [item.id for item in await repo.find_all()] == ["channel-1"]


async def test_supports_member_operations(storage: Storage) -> None:
    """Legacy: "supports member operations"."""
    repo = storage.channels
    await repo.create(channel("channel-1", "user-a", "dev", "agent-leader", 1))
    await repo.add_member("channel-1", user_id="user-a", agent_id="agent-a", username="alice", joined_at=10)
    await repo.add_member("channel-1", user_id="user-a", agent_id="agent-b", username="bob", joined_at=11)
    assert [item.agent_id for item in await repo.find_members("channel-1")] == ["agent-a", "agent-b"]
    assert await repo.remove_member("channel-1", "agent-a") is True
    assert [item.agent_id for item in await repo.find_members("channel-1")] == ["agent-b"]


async def test_member_re_add_keeps_the_row_id(storage: Storage, db: Database) -> None:
    repo = storage.channels
    await repo.create(channel("c", "u", "dev", "l", 1))
    first = await repo.add_member("c", user_id="u", agent_id="a", username="alice", joined_at=10)
    other = await repo.add_member("c", user_id="u", agent_id="b", username="bob", joined_at=11)
    again = await repo.add_member("c", user_id="u2", agent_id="a", username="alice-renamed", joined_at=12)
    assert again == ChannelMemberRecord(first.id, "c", "u2", "a", "alice-renamed", 12)
    assert other.id > first.id
    assert [(row["id"], row["username"]) for row in await stored_rows(db, "channel_members", "id")] == [
        (first.id, "alice-renamed"),
        (other.id, "bob"),
    ]
    assert await repo.remove_member("c", "a") is True
    assert await repo.remove_member("c", "a") is False
    readded = await repo.add_member("c", user_id="u", agent_id="a", username="alice", joined_at=13)
    assert readded.id > other.id
    assert [item.agent_id for item in await repo.find_members("c")] == ["b", "a"]


async def test_members_need_an_existing_channel(storage: Storage) -> None:
    with violated("foreign key"):
        await storage.channels.add_member("missing", user_id="u", agent_id="a", username="x", joined_at=1)


async def test_names_are_unique_across_users(storage: Storage, db: Database) -> None:
    await storage.channels.create(channel("c1", "user-a", "dev", "l", 1))
    with violated("unique", "channels.name"):
        await storage.channels.create(channel("c2", "user-b", "dev", "l", 2))
    assert await storage.channels.find_by_id("c2") is None
    assert [row["id"] for row in await stored_rows(db, "channels", "id")] == ["c1"]


async def test_rename_drops_the_old_name(storage: Storage, db: Database) -> None:
    repo = storage.channels
    await repo.create(channel("c1", "u", "dev", "l", 1))
    assert await repo.find_by_name("dev") is not None
    await repo.update("c1", name="dev-team", updated_at=5)
    # The legacy cache kept "dev" -> c1 and returned the renamed channel here.
    assert await repo.find_by_name("dev") is None
    renamed = await repo.find_by_name("dev-team")
    assert renamed == ChannelRecord("c1", "u", "dev-team", "l", 1, 5)
    # The old name is free for another channel.
    await repo.create(channel("c2", "u", "dev", "l", 2))
    found = await repo.find_by_name("dev")
    assert found is not None and found.id == "c2"
    # Renaming through create (an upsert by id) also frees the old name.
    await repo.create(channel("c2", "u", "ops", "l", 2))
    assert await repo.find_by_name("dev") is None


async def test_update_merges_with_none_as_keep(storage: Storage, db: Database) -> None:
    await storage.channels.create(channel("c1", "u", "dev", "leader-1", 1))
    with pytest.raises(LookupError, match=r"^Channel not found: nope$"):
        await storage.channels.update("nope", leader="x")
    await storage.channels.update("c1", leader="leader-2", name=None, updated_at=9)
    [row] = await stored_rows(db, "channels", "id")
    assert row == {"id": "c1", "user_id": "u", "name": "dev", "leader": "leader-2", "created_at": 1, "updated_at": 9}


async def test_delete_cascades_to_members_and_messages(storage: Storage, db: Database) -> None:
    await storage.channels.create(channel("c1", "u", "dev", "l", 1))
    await storage.channels.add_member("c1", user_id="u", agent_id="a", username="alice", joined_at=1)
    await storage.channel_messages.create(ChannelMessageRecord("m1", "c1", "u", "alice", "hi", ["bob"], 1))
    assert await storage.channels.delete("c1") is True
    assert await storage.channels.delete("c1") is False
    assert await stored_query(db, "SELECT count(*) AS n FROM channel_members") == [{"n": 0}]
    assert await stored_query(db, "SELECT count(*) AS n FROM channel_messages") == [{"n": 0}]
    assert await storage.channels.find_by_name("dev") is None


async def test_caches_by_id_and_name(storage: Storage, db: Database) -> None:
    await storage.channels.create(channel("c1", "u", "dev", "l", 1))
    fresh = Storage.from_database(db).channels
    assert await fresh.find_by_name("dev") is not None
    await sql_run(db, "DELETE FROM channels")
    found = await fresh.find_by_id("c1")
    assert found is not None and found.name == "dev"
    assert await fresh.find_by_name("nope") is None
    assert await fresh.find_all() == []
    await sql_run(db, "INSERT INTO channels VALUES ('c9', 'u', 'late', 'l', 1, 1)")
    assert await fresh.find_by_name("late") is None  # every row is loaded: a miss is authoritative
    # The full load replaced the cache: the row deleted behind its back is gone from it too.
    assert await fresh.find_all() == []
    assert await fresh.find_by_id("c1") is None
    assert await fresh.find_by_id("c2") is None


async def test_update_refuses_an_unknown_field(storage: Storage, db: Database) -> None:
    await storage.channels.create(channel("c1", "u", "dev", "l", 1))
    with pytest.raises(TypeError, match=r"^Channel has no field 'leeder'$"):
        await storage.channels.update("c1", leeder="x")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"Channel id cannot be changed"):
        await storage.channels.update("c1", id="c2")  # type: ignore[call-arg]
    assert await stored_rows(db, "channels", "id") == [
        {"id": "c1", "user_id": "u", "name": "dev", "leader": "l", "created_at": 1, "updated_at": 1}
    ]
    assert await storage.channels.find_by_id("c1") == channel("c1", "u", "dev", "l", 1)


async def test_loads_racing_writes_leave_the_cache_equal_to_the_file(db: Database) -> None:
    """A cold load and a write of the same channel, run together in both orders: the cache ends as the file."""
    await ChannelsRepository(db).create(channel("c1", "u", "dev", "l", 0))
    for round in range(20):
        repo = ChannelsRepository(db)  # a cold cache: loads must read the file
        load = (
            repo.find_all() if round % 3 == 0 else repo.find_by_id("c1") if round % 3 == 1 else repo.find_by_name("dev")
        )
        write = (
            repo.update("c1", updated_at=round + 1)
            if round % 4
            else repo.create(channel("c1", "u", "dev", f"leader-{round}", round + 1))
        )
        await asyncio.gather(*((load, write) if round % 2 else (write, load)))
        stored = {record.id: record for record in await ChannelsRepository(db).find_all()}
        assert stored["c1"].updated_at == round + 1
        for key, record in repo._cache.records.items():
            assert stored.get(key) == record, (round, key)
        if repo._cache.all_loaded:
            assert repo._cache.records == stored
        assert await repo.find_by_name("dev") == stored["c1"]
