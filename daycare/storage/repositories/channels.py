"""ChannelsRepository: named channels, behind a write-through cache, and their member agents (not cached).

Channel names are unique across all users. Channels are cached by id, with a lookup from name
to id checked on use. Re-adding a member keeps its row id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack

from pypika_tortoise.queries import Query, QueryBuilder

from daycare.schema import Channel, ChannelMember
from daycare.storage.db.database import Database
from daycare.storage.db.statements import ModelTable, Statement, returning, rows_statement, slot
from daycare.storage.repositories.base import CachedRepository
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.record_checks import (
    ROW_ERRORS,
    SkippedRows,
    UnreadableRow,
    record_check,
    records_read,
)

CHANNEL_FIELDS = ("id", "user_id", "name", "leader", "created_at", "updated_at")
MEMBER_FIELDS = ("id", "channel_id", "user_id", "agent_id", "username", "joined_at")
_ORDER = ("created_at", "id")


@dataclass(frozen=True, slots=True)
class ChannelRecord:
    """A channel owned by a user, led by one agent."""

    id: str
    user_id: str
    name: str
    leader: str
    created_at: int
    updated_at: int


class ChannelChanges(TypedDict, total=False):
    """The fields `ChannelsRepository.update` can change; None keeps any of them."""

    user_id: str | None
    name: str | None
    leader: str | None
    created_at: int | None
    updated_at: int | None


@dataclass(frozen=True, slots=True)
class ChannelMemberRecord:
    """An agent's membership of a channel; username is lowercase, without a leading @."""

    id: int
    channel_id: str
    user_id: str
    agent_id: str
    username: str
    joined_at: int


def _member_upsert(query: type[Query]) -> QueryBuilder:
    # ON CONFLICT DO UPDATE (not REPLACE) keeps the member's row id; RETURNING reads it in the same statement.
    members = ModelTable(ChannelMember)
    inserted = MEMBER_FIELDS[1:]
    statement = (
        query.into(members.table)
        .columns(*members.columns(inserted))
        .insert(*map(slot, inserted))
        .on_conflict(members.column_name("channel_id"), members.column_name("agent_id"))
    )
    for field in ("user_id", "username", "joined_at"):
        statement = statement.do_update(members.column_name(field))
    return returning(statement, *members.columns(MEMBER_FIELDS))


_MEMBER_UPSERT = Statement(_member_upsert)
_EVERY_CHANNEL = rows_statement(Channel, CHANNEL_FIELDS, order=_ORDER)  # read at every engine start


def _member_read(row: Mapping[str, Any]) -> ChannelMemberRecord:
    member = ChannelMemberRecord(*(row[field] for field in MEMBER_FIELDS))
    record_check(member, "Channel member")
    return member


def _order(record: ChannelRecord) -> tuple[int, str]:
    return (record.created_at, record.id)


class ChannelsRepository(CachedRepository[str, ChannelRecord]):
    """Channels (cached by id, found by name too) and their members (read and written directly)."""

    model = Channel
    fields = CHANNEL_FIELDS
    entity = "Channel"
    keep_if_none = frozenset(CHANNEL_FIELDS)

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        # A lookup into the cache; a stale entry is harmless: the name is checked on use.
        self._id_by_name: dict[str, str] = {}
        self._members_skipped = SkippedRows(ChannelMember._meta.db_table, ("id",))

    def record_read(self, row: Mapping[str, Any]) -> ChannelRecord:
        return ChannelRecord(*(row[field] for field in CHANNEL_FIELDS))

    async def create(self, record: ChannelRecord) -> None:
        """Inserts or overwrites the channel; a name taken by another channel raises IntegrityError."""
        stored = await self._create(record)
        self._id_by_name[stored.name] = stored.id

    async def find_by_id(self, id: str) -> ChannelRecord | None:
        """The channel with this id; once every channel is loaded a cache miss is final (no query)."""
        return await self._find(id)

    async def find_by_name(self, name: str) -> ChannelRecord | None:
        """The channel with exactly this name (not normalised)."""
        cached_id = self._id_by_name.get(name)
        if cached_id is not None:
            record = await self.find_by_id(cached_id)
            if record is not None and record.name == name:
                return record
            self._id_by_name.pop(name, None)
        if self._cache.all_loaded:
            return None
        found = await self._read_cached(self._query(name=name))
        if not found:
            return None
        self._id_by_name[name] = found[0].id
        return found[0]

    async def find_many(self, ctx: Context) -> list[ChannelRecord]:
        """The user's channels, oldest first; they are cached."""
        return await self._read_cached(self._query(user_id=ctx.user_id).order_by(*_ORDER))

    async def find_all(self) -> list[ChannelRecord]:
        """Every channel, oldest first; the first call loads them all and replaces the cache."""
        if self._cache.all_loaded:
            return sorted(self._cache.records.values(), key=_order)
        records = await self._read_cached(_EVERY_CHANNEL, complete=True)
        self._id_by_name = {record.name: record.id for record in records}
        return records

    async def update(self, id: str, /, **changes: Unpack[ChannelChanges]) -> None:
        """Overwrites the given fields (None keeps a field) and writes the whole row.

        Raises LookupError("Channel not found: <id>"), TypeError for an unknown field or another id.
        """
        changed = await self._update(id, changes)
        self._id_by_name[changed.name] = changed.id

    async def delete(self, id: str) -> bool:
        """Deletes the channel with its members and messages (ON DELETE CASCADE); whether there was one."""
        return await self._delete(id)

    async def add_member(
        self, channel_id: str, *, user_id: str, agent_id: str, username: str, joined_at: int
    ) -> ChannelMemberRecord:
        """Adds the agent to the channel, or updates its user, username and joined_at (same row id).

        A blank id, or a value of the wrong type, raises ValueError or TypeError and writes nothing.
        """
        record_check(ChannelMemberRecord(0, channel_id, user_id, agent_id, username, joined_at), "Channel member")
        rows = await _MEMBER_UPSERT.rows(
            self._conn(),
            channel_id=channel_id,
            user_id=user_id,
            agent_id=agent_id,
            username=username,
            joined_at=joined_at,
        )
        return _member_read(rows[0])

    async def remove_member(self, channel_id: str, agent_id: str) -> bool:
        """Removes the agent from the channel; whether it was a member."""
        removed = await ChannelMember.filter(channel_id=channel_id, agent_id=agent_id).using_db(self._conn()).delete()
        return bool(removed)

    async def find_members(self, channel_id: str) -> list[ChannelMemberRecord]:
        """The channel's members in joining order (a member row that cannot be read is left out)."""
        query = ChannelMember.filter(channel_id=channel_id).using_db(self._conn()).order_by("joined_at", "id")
        return records_read(await query.values(*MEMBER_FIELDS), _member_read, self._members_skipped)

    async def rows_unreadable(self) -> list[UnreadableRow]:
        """The unreadable rows of channels and of their members."""
        found = await super().rows_unreadable()
        async for row in self._rows_all(MEMBER_FIELDS, ChannelMember):
            try:
                _member_read(row)
            except ROW_ERRORS as error:
                found.append(self._members_skipped.unreadable(row, error))
        return found
