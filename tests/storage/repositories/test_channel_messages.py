"""ChannelMessagesRepository: the legacy channelMessagesRepository.spec test, run on the real schema."""

from __future__ import annotations

from daycare.storage.db.database import Database
from daycare.storage.facade import Storage
from daycare.storage.json_values import FrozenList
from daycare.storage.repositories.channel_messages import ChannelMessageRecord
from daycare.storage.repositories.context import Context
from tests.storage.helpers import violated
from tests.storage.raw_rows import sql_run, stored_rows
from tests.storage.seeds import channel_insert

CTX = Context("user-a", "test-agent")


async def test_creates_messages_and_returns_recent_entries(storage: Storage, db: Database) -> None:
    """Legacy: "creates messages and returns recent entries"."""
    await channel_insert(db, "channel-1", "user-a", "dev")
    for index in range(1, 5):
        mentions = ["bob"] if index % 2 == 0 else []
        await storage.channel_messages.create(
            ChannelMessageRecord(f"m-{index}", "channel-1", "user-a", "alice", f"message-{index}", mentions, index)
        )
    recent = await storage.channel_messages.find_recent(CTX, "channel-1", 2)
    assert [item.id for item in recent] == ["m-3", "m-4"]
    assert recent[1].mentions == ["bob"]
    assert isinstance(recent[1].mentions, FrozenList)


async def test_stores_mentions_as_compact_json(storage: Storage, db: Database) -> None:
    await channel_insert(db, "c", "u", "café-talk ☕")
    await storage.channel_messages.create(
        ChannelMessageRecord("m", "c", "u", "алиса", "Кофе? ☕", ["алиса", "chef-2"], 7)
    )
    [row] = await stored_rows(db, "channel_messages", "id")
    assert row == {
        "id": "m",
        "channel_id": "c",
        "user_id": "u",
        "sender_username": "алиса",
        "text": "Кофе? ☕",
        "mentions": '["алиса","chef-2"]',
        "created_at": 7,
    }


async def test_broken_mentions_read_as_strings_only(storage: Storage, db: Database) -> None:
    await channel_insert(db, "c", "u", "dev")
    for id, mentions in (("a", "not json"), ("b", '{"x":1}'), ("c", '["ok",1,null,"fine"]')):
        await sql_run(db, "INSERT INTO channel_messages VALUES (?, 'c', 'u', 's', 't', ?, 1)", [id, mentions])
    recent = await storage.channel_messages.find_recent(Context("u"), "c")
    assert [(item.id, list(item.mentions)) for item in recent] == [("a", []), ("b", []), ("c", ["ok", "fine"])]


async def test_scoped_to_user_and_channel_with_clamped_limit(storage: Storage, db: Database) -> None:
    await channel_insert(db, "c1", "u", "one")
    await channel_insert(db, "c2", "u", "two")
    for index in range(5):
        await storage.channel_messages.create(ChannelMessageRecord(f"c1-{index}", "c1", "u", "s", "t", [], index))
    await storage.channel_messages.create(ChannelMessageRecord("c2-0", "c2", "u", "s", "t", [], 0))
    await storage.channel_messages.create(ChannelMessageRecord("other", "c1", "someone-else", "s", "t", [], 9))
    assert len(await storage.channel_messages.find_recent(Context("u"), "c1", 1000)) == 5
    assert [item.id for item in await storage.channel_messages.find_recent(Context("u"), "c1", -3)] == ["c1-4"]
    assert [item.id for item in await storage.channel_messages.find_recent(Context("u"), "c2")] == ["c2-0"]


async def test_a_message_needs_its_channel(storage: Storage) -> None:
    with violated("foreign key"):
        await storage.channel_messages.create(ChannelMessageRecord("m", "missing", "u", "s", "t", [], 1))
