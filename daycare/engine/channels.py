"""Channels: named rooms of one user's agents, led by one agent.

Members are subscribed to the channel's signals (`channel.<name>:*`). A message is stored,
then posted as a `channel.<name>:message` signal to the leader and to the mentioned members,
with the channel's last twelve messages as history; it is not stored as a signal event.

Unlike the legacy code, which changed its in-memory channel before writing, every method
writes the database first, so a failed write leaves memory as it was.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from daycare.engine.agent_system import AgentSystem, AgentTarget
from daycare.engine.channel_messages import ChannelMessage, channel_signal_data_build
from daycare.engine.signals import Signal, Signals
from daycare.engine.timing import Clock, now_ms
from daycare.storage.identifiers import cuid_create
from daycare.storage.repositories.channel_messages import ChannelMessageRecord, ChannelMessagesRepository
from daycare.storage.repositories.channels import ChannelRecord, ChannelsRepository
from daycare.storage.repositories.context import Context, context_for_user
from daycare.storage.repositories.locks import KeyedLocks

log = logging.getLogger("daycare.engine.channels")

CHANNEL_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,79}")
# Messages of history sent with each channel signal, this one included.
HISTORY_CONTEXT_LIMIT = 12


def channel_name_normalize(name: str) -> str:
    """The trimmed, lowercased name; raises ValueError unless it is Slack-style."""
    normalized = name.strip().lower()
    if not CHANNEL_NAME.fullmatch(normalized):
        raise ValueError(
            "Channel name must be Slack-style: lowercase letters, numbers, hyphen, underscore (max 80 chars)."
        )
    return normalized


def username_normalize(username: str) -> str:
    """Trimmed, leading @s removed, lowercased; raises ValueError when nothing is left."""
    normalized = username.strip().lstrip("@").lower()
    if not normalized:
        raise ValueError("Username is required.")
    return normalized


def mentions_normalize(mentions: Iterable[str]) -> tuple[str, ...]:
    """Normalised usernames without blanks or repeats, in first-seen order."""
    return tuple(dict.fromkeys(username_normalize(mention) for mention in mentions if mention.strip()))


def channel_pattern(name: str) -> str:
    return f"channel.{name}:*"


def channel_signal_type(name: str) -> str:
    return f"channel.{name}:message"


@dataclass(frozen=True, slots=True)
class ChannelMember:
    agent_id: str
    username: str
    joined_at: int


@dataclass(frozen=True, slots=True)
class Channel:
    """A channel with its members in joining order; user_id is its owner."""

    id: str
    name: str
    leader: str
    user_id: str
    members: tuple[ChannelMember, ...]
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class ChannelSendResult:
    message: ChannelMessage
    delivered_agent_ids: tuple[str, ...]


class Channels:
    """Every channel, kept in memory by name after `load()`, written through to the database."""

    def __init__(
        self,
        *,
        channels: ChannelsRepository,
        channel_messages: ChannelMessagesRepository,
        signals: Signals,
        agent_system: AgentSystem,
        clock: Clock = now_ms,
    ) -> None:
        self._channels = channels
        self._channel_messages = channel_messages
        self._signals = signals
        self._agents = agent_system
        self._clock = clock
        # The live channels with their members, by name: the service's own state (the repository
        # caches no members), read synchronously by `list` and `get`, changed only after the rows are written.
        self._items: dict[str, Channel] = {}
        # One lock per channel name: a change reads the channel, writes the rows, then replaces it in memory.
        self._locks = KeyedLocks()

    async def load(self) -> None:
        """Reads every channel and its members, and subscribes each known member agent again."""
        self._items.clear()
        for record in await self._channels.find_all():
            members = tuple(
                ChannelMember(member.agent_id, member.username, member.joined_at)
                for member in await self._channels.find_members(record.id)
            )
            channel = Channel(
                record.id, record.name, record.leader, record.user_id, members, record.created_at, record.updated_at
            )
            self._items[channel.name] = channel
            for member in members:
                ctx = await self._agents.context_for_agent_id(member.agent_id)
                if ctx is not None:
                    await self._signals.subscribe(ctx, channel_pattern(channel.name), silent=False)

    def list(self) -> list[Channel]:
        return sorted(self._items.values(), key=lambda channel: channel.name)

    def list_for_user_ids(self, user_ids: Iterable[str]) -> builtins.list[Channel]:
        allowed = {user_id.strip() for user_id in user_ids if user_id.strip()}
        return [channel for channel in self.list() if channel.user_id in allowed]

    def get(self, name: str) -> Channel | None:
        return self._items.get(channel_name_normalize(name))

    async def create(self, ctx: Context, name: str, leader_agent_id: str) -> Channel:
        """Creates a channel of the caller's user, led by one of that user's agents."""
        channel_name = channel_name_normalize(name)
        leader = leader_agent_id.strip()
        if not leader:
            raise ValueError("Channel leader agent id is required.")
        if not await self._agents.agent_exists(leader):
            raise LookupError(f"Leader agent not found: {leader}")
        async with self._locks.hold(channel_name):
            return await self._create(ctx, channel_name, leader)

    async def _create(self, ctx: Context, channel_name: str, leader: str) -> Channel:
        if channel_name in self._items:
            raise ValueError(f"Channel already exists: {channel_name}")
        leader_ctx = await self._agents.context_for_agent_id(leader)
        if leader_ctx is None:
            raise LookupError(f"Leader agent not found: {leader}")
        if leader_ctx.user_id != ctx.user_id:
            raise ValueError(f"Channel leader user scope mismatch: {leader}")
        now = self._clock()
        channel = Channel(cuid_create(), channel_name, leader, ctx.user_id, (), now, now)
        await self._channels.create(ChannelRecord(channel.id, channel.user_id, channel.name, leader, now, now))
        self._items[channel_name] = channel
        return channel

    async def delete(self, name: str) -> bool:
        """Unsubscribes the members, then deletes the channel with its members and messages."""
        channel_name = channel_name_normalize(name)
        async with self._locks.hold(channel_name):
            return await self._delete(channel_name)

    async def _delete(self, channel_name: str) -> bool:
        channel = self._items.get(channel_name)
        if channel is None:
            return False
        for member in channel.members:
            ctx = await self._agents.context_for_agent_id(member.agent_id)
            if ctx is not None:
                await self._signals.unsubscribe(ctx, channel_pattern(channel.name))
        await self._channels.delete(channel.id)
        del self._items[channel.name]
        return True

    async def add_member(self, channel_name: str, ctx: Context, username: str) -> Channel:
        """Adds the context's agent under `username` (or renames it, keeping joined_at) and subscribes it."""
        async with self._locks.hold(channel_name_normalize(channel_name)):
            return await self._add_member(channel_name, ctx, username)

    async def _add_member(self, channel_name: str, ctx: Context, username: str) -> Channel:
        channel = self._channel_require(channel_name)
        member_name = username_normalize(username)
        agent_id = ctx.agent_id
        if not await self._agents.agent_exists(agent_id):
            raise LookupError(f"Agent not found: {agent_id}")
        if ctx.user_id != channel.user_id:
            raise ValueError(f"Agent user scope mismatch for #{channel.name}: {agent_id}")
        if any(member.username == member_name and member.agent_id != agent_id for member in channel.members):
            raise ValueError(f"Username already taken in #{channel.name}: @{member_name}")
        now = self._clock()
        current = next((member for member in channel.members if member.agent_id == agent_id), None)
        joined = ChannelMember(agent_id, member_name, current.joined_at if current else now)
        members = (
            tuple(joined if member.agent_id == agent_id else member for member in channel.members)
            if current
            else (*channel.members, joined)
        )
        await self._channels.add_member(
            channel.id, user_id=ctx.user_id, agent_id=agent_id, username=member_name, joined_at=joined.joined_at
        )
        await self._channels.update(channel.id, updated_at=now)
        updated = self._items[channel.name] = dataclasses.replace(channel, members=members, updated_at=now)
        await self._signals.subscribe(Context(ctx.user_id, agent_id), channel_pattern(channel.name), silent=False)
        return updated

    async def remove_member(self, channel_name: str, ctx: Context) -> bool:
        """Removes the context's agent and unsubscribes it; False when it was not a member."""
        async with self._locks.hold(channel_name_normalize(channel_name)):
            return await self._remove_member(channel_name, ctx)

    async def _remove_member(self, channel_name: str, ctx: Context) -> bool:
        channel = self._channel_require(channel_name)
        agent_id = ctx.agent_id
        members = tuple(member for member in channel.members if member.agent_id != agent_id)
        if len(members) == len(channel.members):
            return False
        now = self._clock()
        await self._channels.remove_member(channel.id, agent_id)
        await self._channels.update(channel.id, updated_at=now)
        self._items[channel.name] = dataclasses.replace(channel, members=members, updated_at=now)
        await self._signals.unsubscribe(Context(ctx.user_id, agent_id), channel_pattern(channel.name))
        return True

    async def send(
        self, ctx: Context, channel_name: str, sender_username: str, text: str, mentions: Sequence[str]
    ) -> ChannelSendResult:
        """Stores the message and posts it to the leader and to the mentioned members, in parallel."""
        async with self._locks.hold(channel_name_normalize(channel_name)):
            return await self._send(ctx, channel_name, sender_username, text, mentions)

    async def _send(
        self, ctx: Context, channel_name: str, sender_username: str, text: str, mentions: Sequence[str]
    ) -> ChannelSendResult:
        channel = self._channel_require(channel_name)
        if ctx.user_id != channel.user_id:
            raise ValueError(f"Channel user scope mismatch for #{channel.name}.")
        sender = username_normalize(sender_username)
        body = text.strip()
        if not body:
            raise ValueError("Channel message text is required.")
        mentioned = mentions_normalize(mentions)
        created_at = self._clock()
        message = ChannelMessage(cuid_create(), channel.name, sender, body, mentioned, created_at)
        await self._channel_messages.create(
            ChannelMessageRecord(message.id, channel.id, channel.user_id, sender, body, mentioned, created_at)
        )
        await self._channels.update(channel.id, updated_at=created_at)
        self._items[channel.name] = dataclasses.replace(channel, updated_at=created_at)

        targets = [channel.leader, *(member.agent_id for member in channel.members if member.username in mentioned)]
        delivered = tuple(dict.fromkeys(targets))
        history = await self.get_history(ctx, channel.name, HISTORY_CONTEXT_LIMIT)
        sender_member = next((member for member in channel.members if member.username == sender), None)
        source = (
            {"type": "agent", "id": sender_member.agent_id, "userId": channel.user_id}
            if sender_member
            else {"type": "system", "userId": channel.user_id}
        )
        signal_type = channel_signal_type(channel.name)
        data = channel_signal_data_build(message, history).to_json()
        signal = Signal(cuid_create(), signal_type, source, created_at, data)
        item = {"type": "signal", "signal": signal.to_json(), "subscriptionPattern": signal_type}
        owner = context_for_user(channel.user_id)
        await asyncio.gather(*(self._agents.post(owner, AgentTarget(agent_id), item) for agent_id in delivered))
        log.info("#%s: message from @%s delivered to %d agents", channel.name, sender, len(delivered))
        return ChannelSendResult(message, delivered)

    async def get_history(
        self, ctx: Context, channel_name: str, limit: float | None = None
    ) -> builtins.list[ChannelMessage]:
        """The channel's latest messages (50 by default, at most 500), oldest first."""
        channel = self._channel_require(channel_name)
        if ctx.user_id != channel.user_id:
            raise ValueError(f"Channel user scope mismatch for #{channel.name}.")
        owner = context_for_user(channel.user_id)
        records = (
            await self._channel_messages.find_recent(owner, channel.id)
            if limit is None
            else await self._channel_messages.find_recent(owner, channel.id, limit)
        )
        return [
            ChannelMessage(
                record.id, channel.name, record.sender_username, record.text, tuple(record.mentions), record.created_at
            )
            for record in records
        ]

    def _channel_require(self, name: str) -> Channel:
        channel_name = channel_name_normalize(name)
        channel = self._items.get(channel_name)
        if channel is None:
            raise LookupError(f"Channel not found: {channel_name}")
        return channel
