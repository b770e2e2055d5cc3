"""ChannelsRepository: named channels and their member agents (legacy §2.12).

Channel names are unique across all users. Channels are cached by id and by name; members are
not cached. Re-adding a member keeps its row id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tortoise.queryset import QuerySet

from daycare.schema import Channel, ChannelMember
from daycare.storage.db.database import Database
from daycare.storage.repositories.cache import RecordCache
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.patches import record_patch
from daycare.storage.repositories.statements import column_map, column_values, upsert_statement
from daycare.storage.repositories.write_through import cache_find

_COLUMNS = ("id", "user_id", "name", "leader", "created_at", "updated_at")
_UPSERT = upsert_statement("channels", _COLUMNS)
_MEMBER_COLUMNS = ("channel_id", "user_id", "agent_id", "username", "joined_at")
# ON CONFLICT DO UPDATE (not REPLACE) keeps the member's row id; RETURNING reads it in the same statement.
_MEMBER_UPSERT = (
    upsert_statement("channel_members", _MEMBER_COLUMNS, conflict=("channel_id", "agent_id")) + " RETURNING *"
)


@dataclass(frozen=True, slots=True)
class ChannelRecord:
    """A channel owned by a user, led by one agent."""

    id: str
    user_id: str
    name: str
    leader: str
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class ChannelMemberRecord:
    """An agent's membership of a channel; username is lowercase, without a leading @."""

    id: int
    channel_id: str
    user_id: str
    agent_id: str
    username: str
    joined_at: int


def _order(record: ChannelRecord) -> tuple[int, str]:
    return (record.created_at, record.id)


class ChannelsRepository:
    """Channels (cached by id and name) and their members (not cached)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: RecordCache[str, ChannelRecord] = RecordCache()
        self._ids_by_name: dict[str, str] = {}

    async def create(self, record: ChannelRecord) -> None:
        """Inserts or overwrites the channel; a name taken by another channel raises IntegrityError."""
        async with self._cache.create_lock:
            await self._db.connection().execute_query(_UPSERT, column_values(record, _COLUMNS))
            self._cache_set(record)

    async def find_by_id(self, id: str) -> ChannelRecord | None:
        record = await cache_find(self._cache, id, lambda: self._load(Channel.filter(id=id)))
        if record is not None:
            self._ids_by_name[record.name] = record.id
        return record

    async def find_by_name(self, name: str) -> ChannelRecord | None:
        """The channel with exactly this name (not normalised)."""
        cached_id = self._ids_by_name.get(name)
        if cached_id is not None:
            return await self.find_by_id(cached_id)
        if self._cache.all_loaded:
            return None
        record = await self._load(Channel.filter(name=name))
        if record is not None:
            self._cache_set(record)
        return record

    async def find_many(self, ctx: Context) -> list[ChannelRecord]:
        """The user's channels, oldest first; not cached."""
        rows = (
            await Channel.filter(user_id=ctx.user_id)
            .using_db(self._db.connection())
            .order_by("created_at", "id")
            .values()
        )
        return [ChannelRecord(**row) for row in rows]

    async def find_all(self) -> list[ChannelRecord]:
        """Every channel, oldest first; the first call caches them all."""
        if self._cache.all_loaded:
            return sorted(self._cache.records.values(), key=_order)
        rows = await Channel.all().using_db(self._db.connection()).order_by("created_at", "id").values()
        records = [ChannelRecord(**row) for row in rows]
        for record in records:
            self._cache_set(record)
        self._cache.all_loaded = True
        return records

    async def update(self, id: str, /, **changes: Any) -> None:
        """Merges `changes` (None keeps a field) and writes the whole row.

        Raises LookupError("Channel not found: <id>").
        """
        async with self._cache.key_locks.hold(id):
            current = self._cache.records.get(id) or await self._load(Channel.filter(id=id))
            if current is None:
                raise LookupError(f"Channel not found: {id}")
            updated = record_patch(current, changes, entity="Channel", keep_if_none=_COLUMNS)
            await Channel.filter(id=id).using_db(self._db.connection()).update(**column_map(updated, _COLUMNS[1:]))
            self._cache_set(updated)

    async def delete(self, id: str) -> bool:
        """Deletes the channel with its members and messages (ON DELETE CASCADE)."""
        async with self._cache.key_locks.hold(id):
            current = self._cache.records.get(id) or await self._load(Channel.filter(id=id))
            removed = await Channel.filter(id=id).using_db(self._db.connection()).delete()
            self._cache.records.pop(id, None)
            if current is not None and self._ids_by_name.get(current.name) == id:
                del self._ids_by_name[current.name]
            return removed > 0

    async def add_member(
        self, channel_id: str, *, user_id: str, agent_id: str, username: str, joined_at: int
    ) -> ChannelMemberRecord:
        """Adds the agent to the channel, or updates its user, username and joined_at (same row id)."""
        rows = await self._db.connection().execute_query_dict(
            _MEMBER_UPSERT, [channel_id, user_id, agent_id, username, joined_at]
        )
        return ChannelMemberRecord(**rows[0])

    async def remove_member(self, channel_id: str, agent_id: str) -> bool:
        removed = (
            await ChannelMember.filter(channel_id=channel_id, agent_id=agent_id)
            .using_db(self._db.connection())
            .delete()
        )
        return removed > 0

    async def find_members(self, channel_id: str) -> list[ChannelMemberRecord]:
        """The channel's members in joining order."""
        rows = (
            await ChannelMember.filter(channel_id=channel_id)
            .using_db(self._db.connection())
            .order_by("joined_at", "id")
            .values()
        )
        return [ChannelMemberRecord(**row) for row in rows]

    def _cache_set(self, record: ChannelRecord) -> None:
        previous = self._cache.records.get(record.id)
        # A renamed channel must not stay reachable under its old name (the legacy cache kept it).
        if previous is not None and previous.name != record.name and self._ids_by_name.get(previous.name) == record.id:
            del self._ids_by_name[previous.name]
        self._cache.records[record.id] = record
        self._ids_by_name[record.name] = record.id

    async def _load(self, query: QuerySet[Channel]) -> ChannelRecord | None:
        row = await query.using_db(self._db.connection()).first().values()
        return ChannelRecord(**row) if row else None
