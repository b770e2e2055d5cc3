"""Channels: the legacy channels.spec, channelNameNormalize.spec and channelMessageBuild.spec tests.

Delivery is read from the agents' durable inboxes; subscriptions from the signals table.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from daycare.engine import Engine
from daycare.engine.channel_messages import (
    ChannelMessage,
    ChannelSignalData,
    channel_message_build,
    channel_signal_data_parse,
)
from daycare.engine.channels import Channels, channel_name_normalize, mentions_normalize, username_normalize
from daycare.engine.durable_inbox import DurableInboxAgentSystem
from daycare.engine.signals import Signals
from daycare.storage.facade import Storage
from daycare.storage.repositories.context import Context
from tests.engine.helpers import agent_create, engine_config, inbox_items

CALLER = Context("user-1", "agent-caller")


def channels_build(storage: Storage, tmp_path: Path) -> tuple[Channels, Signals]:
    signals = Signals(signal_events=storage.signal_events, signal_subscriptions=storage.signal_subscriptions)
    agents = DurableInboxAgentSystem(storage=storage, users_dir=tmp_path / "users")
    channels = Channels(
        channels=storage.channels, channel_messages=storage.channel_messages, signals=signals, agent_system=agents
    )
    return channels, signals


async def patterns_of(signals: Signals) -> list[tuple[str, str, bool]]:
    return [(s.ctx.agent_id, s.pattern, s.silent) for s in await signals.list_subscriptions()]


async def test_creates_channels_and_manages_memberships_with_signal_subscriptions(
    storage: Storage, tmp_path: Path
) -> None:
    """Legacy: "creates channels and manages memberships with signal subscriptions"."""
    for agent_id in ("leader-agent", "agent-alice", "agent-bob"):
        await agent_create(storage, agent_id)
    channels, signals = channels_build(storage, tmp_path)

    created = await channels.create(CALLER, "dev", "leader-agent")
    assert (created.name, created.leader, created.members) == ("dev", "leader-agent", ())

    await channels.add_member("dev", Context("user-1", "agent-alice"), "Alice")
    await channels.add_member("dev", Context("user-1", "agent-bob"), "bob")
    assert await patterns_of(signals) == [
        ("agent-alice", "channel.dev:*", False),
        ("agent-bob", "channel.dev:*", False),
    ]
    channel = channels.get(" DEV ")
    assert channel is not None and [(m.agent_id, m.username) for m in channel.members] == [
        ("agent-alice", "alice"),
        ("agent-bob", "bob"),
    ]

    assert await channels.remove_member("dev", Context("user-1", "agent-bob")) is True
    assert await channels.remove_member("dev", Context("user-1", "agent-bob")) is False
    assert await patterns_of(signals) == [("agent-alice", "channel.dev:*", False)]
    members = await storage.channels.find_members(created.id)
    assert [member.agent_id for member in members] == ["agent-alice"]


async def test_delivers_addressed_messages_to_mentions_and_leader_and_unaddressed_only_to_leader(
    storage: Storage, tmp_path: Path
) -> None:
    """Legacy: "delivers addressed messages to mentions + leader and unaddressed only to leader"."""
    for agent_id in ("agent-leader", "agent-alice", "agent-bob"):
        await agent_create(storage, agent_id)
    channels, _ = channels_build(storage, tmp_path)
    await channels.create(CALLER, "dev", "agent-leader")
    await channels.add_member("dev", Context("user-1", "agent-alice"), "alice")
    await channels.add_member("dev", Context("user-1", "agent-bob"), "bob")

    mentioned = await channels.send(CALLER, "dev", "alice", "check this", ["@Bob", "bob", " "])
    assert mentioned.delivered_agent_ids == ("agent-leader", "agent-bob")
    assert mentioned.message.mentions == ("bob",)
    assert len(await inbox_items(storage, "agent-bob")) == 1
    assert await inbox_items(storage, "agent-alice") == []

    unaddressed = await channels.send(CALLER, "dev", "alice", "  what next?  ", [])
    assert unaddressed.delivered_agent_ids == ("agent-leader",)
    leader_items = await inbox_items(storage, "agent-leader")
    assert len(leader_items) == 2 and len(await inbox_items(storage, "agent-bob")) == 1
    item = leader_items[1]
    signal = item["signal"]
    assert (item["type"], item["subscriptionPattern"]) == ("signal", "channel.dev:message")
    assert list(item) == ["type", "signal", "subscriptionPattern"]
    assert list(signal) == ["id", "type", "source", "data", "createdAt"]
    assert signal["type"] == "channel.dev:message"
    assert signal["source"] == {"type": "agent", "id": "agent-alice", "userId": "user-1"}
    data = signal["data"]
    assert list(data) == ["channelName", "messageId", "senderUsername", "text", "mentions", "createdAt", "history"]
    assert (data["channelName"], data["senderUsername"], data["text"], data["mentions"]) == (
        "dev",
        "alice",
        "what next?",
        [],
    )
    assert [entry["text"] for entry in data["history"]] == ["check this", "what next?"]
    # Rows in the inbox table carry the item's type; the signal is not stored as a signal event.
    assert [row.type for row in await storage.inbox.find_by_agent_id("agent-leader")] == ["signal", "signal"]
    assert await storage.signal_events.find_all() == []

    history = await channels.get_history(CALLER, "dev")
    assert sorted(entry.text for entry in history) == ["check this", "what next?"]
    assert [entry.text for entry in await channels.get_history(CALLER, "dev", 1)] == ["what next?"]


async def test_a_sender_who_is_not_a_member_sends_as_the_system(storage: Storage, tmp_path: Path) -> None:
    await agent_create(storage, "agent-leader")
    channels, _ = channels_build(storage, tmp_path)
    await channels.create(CALLER, "ops", "agent-leader")
    await channels.send(Context("user-1"), "ops", "@Visitor", "hello", [])
    (item,) = await inbox_items(storage, "agent-leader")
    assert item["signal"]["source"] == {"type": "system", "userId": "user-1"}
    assert item["signal"]["data"]["senderUsername"] == "visitor"


async def test_restores_channels_from_disk_and_replays_member_subscriptions(database_url: str, tmp_path: Path) -> None:
    """Legacy: "restores channels from disk and replays member subscriptions" (a second Engine on the database)."""
    async with Engine(engine_config(database_url, tmp_path)) as first:
        storage = first.storage
        for agent_id in ("agent-leader", "agent-a"):
            await agent_create(storage, agent_id)
        channels = first.services.channels
        await channels.create(CALLER, "ops", "agent-leader")
        await channels.add_member("ops", Context("user-1", "agent-a"), "alice")
        # The subscription is gone from the table: only the restore can bring it back.
        await first.services.signals.unsubscribe(Context("user-1", "agent-a"), "channel.ops:*")

    async with Engine(engine_config(database_url, tmp_path)) as second:
        listed = second.services.channels.list()
        assert [(c.name, c.leader, [m.username for m in c.members]) for c in listed] == [
            ("ops", "agent-leader", ["alice"])
        ]
        subscriptions = await second.services.signals.list_subscriptions()
        assert [(s.ctx.user_id, s.ctx.agent_id, s.pattern, s.silent) for s in subscriptions] == [
            ("user-1", "agent-a", "channel.ops:*", False)
        ]


async def test_validation_keeps_the_legacy_messages_and_changes_nothing(storage: Storage, tmp_path: Path) -> None:
    await agent_create(storage, "agent-leader")
    await agent_create(storage, "agent-other", user_id="user-2")
    await agent_create(storage, "agent-alice")
    await agent_create(storage, "agent-bob")
    channels, signals = channels_build(storage, tmp_path)
    with pytest.raises(ValueError, match="^Channel leader agent id is required.$"):
        await channels.create(CALLER, "dev", " ")
    with pytest.raises(LookupError, match="^Leader agent not found: ghost$"):
        await channels.create(CALLER, "dev", "ghost")
    with pytest.raises(ValueError, match="^Channel leader user scope mismatch: agent-other$"):
        await channels.create(CALLER, "dev", "agent-other")
    with pytest.raises(ValueError, match="Channel name must be Slack-style"):
        await channels.create(CALLER, "bad.name", "agent-leader")
    assert channels.list() == [] and await storage.channels.find_all() == []

    await channels.create(CALLER, "dev", "agent-leader")
    with pytest.raises(ValueError, match="^Channel already exists: dev$"):
        await channels.create(CALLER, "Dev", "agent-leader")
    with pytest.raises(LookupError, match="^Channel not found: nope$"):
        await channels.add_member("nope", Context("user-1", "agent-alice"), "alice")
    with pytest.raises(LookupError, match="^Agent not found: ghost$"):
        await channels.add_member("dev", Context("user-1", "ghost"), "ghost")
    with pytest.raises(ValueError, match="^Agent user scope mismatch for #dev: agent-other$"):
        await channels.add_member("dev", Context("user-2", "agent-other"), "other")
    with pytest.raises(ValueError, match="^Username is required.$"):
        await channels.add_member("dev", Context("user-1", "agent-alice"), " @@ ")
    with pytest.raises(ValueError, match="^Context has no agentId$"):
        await channels.add_member("dev", Context("user-1"), "alice")
    await channels.add_member("dev", Context("user-1", "agent-alice"), "alice")
    with pytest.raises(ValueError, match=r"^Username already taken in #dev: @alice$"):
        await channels.add_member("dev", Context("user-1", "agent-bob"), "@ALICE")
    with pytest.raises(ValueError, match=r"^Channel user scope mismatch for #dev.$"):
        await channels.send(Context("user-2"), "dev", "x", "hi", [])
    with pytest.raises(ValueError, match="^Channel message text is required.$"):
        await channels.send(CALLER, "dev", "alice", "   ", [])
    with pytest.raises(ValueError, match=r"^Channel user scope mismatch for #dev.$"):
        await channels.get_history(Context("user-2"), "dev")
    dev = channels.get("dev")
    assert dev is not None and [m.username for m in dev.members] == ["alice"]
    assert await channels.get_history(CALLER, "dev") == []
    assert len(await signals.list_subscriptions()) == 1


async def test_re_adding_a_member_renames_it_and_keeps_joined_at(storage: Storage, tmp_path: Path) -> None:
    await agent_create(storage, "agent-leader")
    await agent_create(storage, "agent-alice")
    channels, _ = channels_build(storage, tmp_path)
    created = await channels.create(CALLER, "dev", "agent-leader")
    first = await channels.add_member("dev", Context("user-1", "agent-alice"), "alice")
    again = await channels.add_member("dev", Context("user-1", "agent-alice"), "ally")
    assert [(m.username, m.joined_at) for m in again.members] == [("ally", first.members[0].joined_at)]
    assert [(m.username, m.joined_at) for m in await storage.channels.find_members(created.id)] == [
        ("ally", first.members[0].joined_at)
    ]


async def test_delete_unsubscribes_members_and_removes_the_rows(storage: Storage, tmp_path: Path) -> None:
    await agent_create(storage, "agent-leader")
    await agent_create(storage, "agent-alice")
    channels, signals = channels_build(storage, tmp_path)
    created = await channels.create(CALLER, "dev", "agent-leader")
    await channels.add_member("dev", Context("user-1", "agent-alice"), "alice")
    await channels.send(CALLER, "dev", "alice", "hello", [])
    assert await channels.delete("DEV") is True
    assert await channels.delete("dev") is False
    assert channels.get("dev") is None and channels.list() == []
    assert await signals.list_subscriptions() == []
    assert await storage.channels.find_by_id(created.id) is None
    assert await storage.channels.find_members(created.id) == []


async def test_list_for_user_ids_filters_on_trimmed_owner_ids(storage: Storage, tmp_path: Path) -> None:
    await agent_create(storage, "agent-1")
    await agent_create(storage, "agent-2", user_id="user-2")
    channels, _ = channels_build(storage, tmp_path)
    await channels.create(CALLER, "zeta", "agent-1")
    await channels.create(Context("user-2"), "alpha", "agent-2")
    await channels.create(CALLER, "beta", "agent-1")
    assert [c.name for c in channels.list()] == ["alpha", "beta", "zeta"]
    assert [c.name for c in channels.list_for_user_ids([" user-1 ", ""])] == ["beta", "zeta"]


def test_normalizes_valid_channel_names() -> None:
    """Legacy channelNameNormalize.spec: "normalizes valid channel names"."""
    assert channel_name_normalize(" Dev_Team ") == "dev_team"
    assert channel_name_normalize("a" * 80) == "a" * 80


def test_throws_for_invalid_channel_names() -> None:
    """Legacy channelNameNormalize.spec: "throws for invalid channel names"."""
    for name in ("bad.name", "", "-dev", "a" * 81, "dev team"):
        with pytest.raises(ValueError, match="Channel name must be Slack-style"):
            channel_name_normalize(name)


def test_usernames_and_mentions_normalize() -> None:
    assert username_normalize("  @@Alice ") == "alice"
    assert mentions_normalize([" @Bob", "bob", "", "  ", "Carol", "@carol"]) == ("bob", "carol")


def _message(id: str, sender: str, text: str, mentions: tuple[str, ...], at: int) -> ChannelMessage:
    return ChannelMessage(id, "dev", sender, text, mentions, at)


def test_formats_channel_messages_with_mentions_and_history() -> None:
    """Legacy channelMessageBuild.spec: "formats channel messages with mentions and history"."""
    history = (
        _message("m1", "bob", "hi", (), 1),
        _message("m2", "carol", "hello", ("alice",), 2),
        _message("m3", "alice", "check this out", ("bob", "carol"), 3),
    )
    text = channel_message_build(
        ChannelSignalData("dev", "m3", "alice", "check this out", ("bob", "carol"), 3, history)
    )
    assert text == (
        "[Channel: #dev] @alice: check this out\nmentions: @bob, @carol\nrecent:\n- @bob: hi\n- @carol: hello"
    )
    quiet = channel_message_build(ChannelSignalData("dev", "m1", "bob", "hi", (), 1, history[:1]))
    assert quiet == "[Channel: #dev] @bob: hi\nmentions: none"


def test_returns_null_when_channel_signal_payload_shape_is_invalid() -> None:
    """Legacy channelMessageBuild.spec: "returns null when channel signal payload shape is invalid"."""
    assert channel_signal_data_parse(None) is None
    assert channel_signal_data_parse({"channelName": "dev"}) is None
    valid = {
        "channelName": "dev",
        "messageId": "m1",
        "senderUsername": "alice",
        "text": "hello",
        "mentions": [],
        "createdAt": 5,
        "history": [],
    }
    parsed = channel_signal_data_parse(valid)
    assert parsed is not None and parsed.to_json() == valid
    assert channel_signal_data_parse({**valid, "mentions": [1]}) is None
    assert channel_signal_data_parse({**valid, "history": [{"id": "m0"}]}) is None
    assert channel_signal_data_parse({**valid, "createdAt": True}) is None
