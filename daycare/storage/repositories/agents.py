"""AgentsRepository: agents with their JSON descriptor, permissions, tokens and stats, cached (C7).

JSON columns are written exactly as the legacy code wrote them (`json_encode`) and parsed
strictly: a row with broken JSON raises, as it did in the legacy code.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, fields, replace
from typing import Any

from daycare.storage.db.database import Database
from daycare.storage.json_values import frozen, json_decode, json_encode
from daycare.storage.repositories.cache import RecordCache

_COLUMNS = (
    "id, user_id, type, descriptor, active_session_id, permissions, tokens, stats, lifecycle, created_at, updated_at"
)
# Fixed, parameterised statements: find_by_id misses and the writes of the facade's
# transactions are hot paths, where building a Tortoise queryset costs more than the statement.
_BY_ID = f"SELECT {_COLUMNS} FROM agents WHERE id = ? LIMIT 1"
_ALL = f"SELECT {_COLUMNS} FROM agents ORDER BY updated_at ASC"
_BY_USER = f"SELECT {_COLUMNS} FROM agents WHERE user_id = ? ORDER BY updated_at ASC"
# One atomic upsert, as the legacy code wrote it. Never INSERT OR REPLACE: REPLACE deletes the
# row first, and the delete would cascade to the agent's sessions and their history.
_UPSERT = (
    f"INSERT INTO agents ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(id) DO UPDATE SET user_id = excluded.user_id, type = excluded.type, "
    "descriptor = excluded.descriptor, active_session_id = excluded.active_session_id, "
    "permissions = excluded.permissions, tokens = excluded.tokens, stats = excluded.stats, "
    "lifecycle = excluded.lifecycle, created_at = excluded.created_at, updated_at = excluded.updated_at"
)
_UPDATE = (
    "UPDATE agents SET user_id = ?, type = ?, descriptor = ?, active_session_id = ?, permissions = ?, "
    "tokens = ?, stats = ?, lifecycle = ?, created_at = ?, updated_at = ? WHERE id = ?"
)
_SESSION_SET = "UPDATE agents SET active_session_id = ?, updated_at = ? WHERE id = ?"


@dataclass(frozen=True, slots=True)
class AgentRecord:
    """An agent row (legacy `AgentDbRecord`); the JSON fields hold frozen values."""

    id: str
    user_id: str
    type: str
    descriptor: Mapping[str, Any]
    active_session_id: str | None
    permissions: Mapping[str, Any]
    tokens: Mapping[str, Any] | None
    stats: Mapping[str, Any]
    lifecycle: str
    created_at: int
    updated_at: int

    def __post_init__(self) -> None:
        # Freezing copies the caller's dicts, so later changes to them never reach a cache.
        for name in ("descriptor", "permissions", "tokens", "stats"):
            object.__setattr__(self, name, frozen(getattr(self, name)))


_UPDATABLE: Set[str] = frozenset(field.name for field in fields(AgentRecord)) - {"id"}
_JSON_KEEP_ON_NONE = ("descriptor", "permissions", "stats")


def _agent_parse(row: Any) -> AgentRecord:
    tokens = row["tokens"]
    return AgentRecord(
        id=row["id"],
        user_id=row["user_id"],
        type=row["type"],
        descriptor=json_decode(row["descriptor"]),
        active_session_id=row["active_session_id"],
        permissions=json_decode(row["permissions"]),
        tokens=json_decode(tokens) if tokens else None,
        stats=json_decode(row["stats"]),
        lifecycle=row["lifecycle"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _agent_values(record: AgentRecord) -> list[Any]:
    """The row values in `_COLUMNS` order after the id."""
    return [
        record.user_id,
        record.type,
        json_encode(record.descriptor),
        record.active_session_id,
        json_encode(record.permissions),
        None if record.tokens is None else json_encode(record.tokens),
        json_encode(record.stats),
        record.lifecycle,
        record.created_at,
        record.updated_at,
    ]


def _agents_sort(records: list[AgentRecord]) -> list[AgentRecord]:
    return sorted(records, key=lambda record: record.updated_at)  # stable: ties keep cache order


class AgentsRepository:
    """Agents by id, cached per instance; returned records are frozen and shared with the cache."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: RecordCache[str, AgentRecord] = RecordCache()

    async def find_by_id(self, id: str) -> AgentRecord | None:
        """The agent with this id; a cache miss always asks the database."""
        cached = self._cache.records.get(id)
        if cached is not None:
            return cached
        async with self._cache.key_locks.hold(id):
            cached = self._cache.records.get(id)
            if cached is not None:
                return cached
            loaded = await self.row_load(id)
            if loaded is not None:
                self.cache_put(loaded)
            return loaded

    async def find_many(self) -> list[AgentRecord]:
        """Every agent by updated_at; the first call loads them all and replaces the cache."""
        if self._cache.all_loaded:
            return _agents_sort(list(self._cache.records.values()))
        _, rows = await self._db.connection().execute_query(_ALL)
        records = [_agent_parse(row) for row in rows]
        self._cache.records.clear()
        for record in records:
            self.cache_put(record)
        self._cache.all_loaded = True
        return records

    async def find_by_user_id(self, user_id: str) -> list[AgentRecord]:
        """The agents of a user by updated_at; rows read from the database join the cache."""
        if self._cache.all_loaded:
            return _agents_sort([record for record in self._cache.records.values() if record.user_id == user_id])
        _, rows = await self._db.connection().execute_query(_BY_USER, [user_id])
        records = [_agent_parse(row) for row in rows]
        for record in records:
            self.cache_put(record)
        return records

    async def create(self, record: AgentRecord) -> None:
        """Inserts the agent or overwrites every column of an existing one, then caches the record."""
        async with self._cache.create_lock:
            await self.row_upsert(record)
            self.cache_put(record)

    async def update(self, id: str, /, **changes: Any) -> None:
        """Overwrites the given fields (None keeps descriptor, permissions and stats; clears tokens).

        Raises LookupError when the agent does not exist, TypeError for an unknown field or an id.
        """
        if "id" in changes:
            raise TypeError("the id of an agent never changes")
        unknown = set(changes) - _UPDATABLE
        if unknown:
            raise TypeError(f"AgentRecord has no fields {sorted(unknown)}")
        for name in _JSON_KEEP_ON_NONE:
            if name in changes and changes[name] is None:
                del changes[name]
        async with self._cache.key_locks.hold(id):
            current = self._cache.records.get(id) or await self.row_load(id)
            if current is None:
                raise LookupError(f"Agent not found: {id}")
            changed = replace(current, **changes)
            await self._row_update(changed)
            self.cache_put(changed)

    async def invalidate(self, id: str) -> None:
        """Evicts the agent and forgets that all agents were loaded (after a rolled-back write)."""
        self._cache.records.pop(id, None)
        self._cache.all_loaded = False

    # The methods below serve the Storage facade's transactions: the caller holds `lock_hold(id)`
    # and an open transaction, and puts the record in the cache only after the commit.

    def lock_hold(self, id: str) -> AbstractAsyncContextManager[None]:
        """The per-agent lock that `update` takes (not re-entrant)."""
        return self._cache.key_locks.hold(id)

    def cached(self, id: str) -> AgentRecord | None:
        """The cached record, without touching the database."""
        return self._cache.records.get(id)

    async def row_load(self, id: str) -> AgentRecord | None:
        """Reads the row, bypassing the cache and the locks."""
        _, rows = await self._db.connection().execute_query(_BY_ID, [id])
        return _agent_parse(rows[0]) if rows else None

    async def row_upsert(self, record: AgentRecord) -> None:
        """Writes the row with the atomic upsert; the cache is left alone."""
        await self._db.connection().execute_query(_UPSERT, [record.id, *_agent_values(record)])

    async def _row_update(self, record: AgentRecord) -> None:
        """Overwrites every column of the row; the cache is left alone."""
        await self._db.connection().execute_query(_UPDATE, [*_agent_values(record), record.id])

    async def row_session_set(self, record: AgentRecord) -> None:
        """Writes only the record's active_session_id and updated_at (the rest is already stored)."""
        await self._db.connection().execute_query(
            _SESSION_SET, [record.active_session_id, record.updated_at, record.id]
        )

    def cache_put(self, record: AgentRecord) -> None:
        """Caches the record (cache writes never await, so they are atomic under asyncio)."""
        self._cache.records[record.id] = record
