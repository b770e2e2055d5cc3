"""AgentsRepository: agents with their JSON descriptor, permissions, tokens and stats, cached.

JSON columns are written exactly as the legacy code wrote them (`json_encode`) and parsed
strictly: a row with broken JSON cannot be read, so reads leave it out (and log it once).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack

from pypika_tortoise.queries import Query, QueryBuilder

from daycare.schema import Agent
from daycare.storage.db.statements import ModelTable, Statement, slot
from daycare.storage.json_values import frozen, json_encode
from daycare.storage.repositories.base import CachedRepository
from daycare.storage.repositories.cache import CacheWrite
from daycare.storage.repositories.record_checks import json_column, key_check

AGENT_FIELDS = (
    "id",
    "user_id",
    "type",
    "descriptor",
    "active_session_id",
    "permissions",
    "tokens",
    "stats",
    "lifecycle",
    "created_at",
    "updated_at",
)


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
        key_check(self.id, "Agent id")
        key_check(self.user_id, "Agent user_id")
        # Freezing copies the caller's dicts, so later changes to them never reach a cache.
        for name in ("descriptor", "permissions", "tokens", "stats"):
            object.__setattr__(self, name, frozen(getattr(self, name)))

    def with_session(self, session_id: str, updated_at: int) -> AgentRecord:
        """This agent with another active session (dataclasses.replace, spelt out: it is on a hot path)."""
        return AgentRecord(
            self.id,
            self.user_id,
            self.type,
            self.descriptor,
            session_id,
            self.permissions,
            self.tokens,
            self.stats,
            self.lifecycle,
            self.created_at,
            updated_at,
        )


class AgentChanges(TypedDict, total=False):
    """The fields `AgentsRepository.update` can change; None keeps descriptor, permissions and stats."""

    user_id: str
    type: str
    descriptor: Mapping[str, Any] | None
    active_session_id: str | None
    permissions: Mapping[str, Any] | None
    tokens: Mapping[str, Any] | None
    stats: Mapping[str, Any] | None
    lifecycle: str
    created_at: int
    updated_at: int


def _by_id(query: type[Query]) -> QueryBuilder:
    agents = ModelTable(Agent)
    return query.from_(agents.table).select(*agents.columns(AGENT_FIELDS)).where(agents["id"] == slot("id")).limit(1)


def _session_set(query: type[Query]) -> QueryBuilder:
    agents = ModelTable(Agent)
    return (
        query.update(agents.table)
        .set(agents["active_session_id"], slot("active_session_id"))
        .set(agents["updated_at"], slot("updated_at"))
        .where(agents["id"] == slot("id"))
    )


# A cache miss and the facade's writes are hot paths: built once, not as a queryset per call.
_BY_ID = Statement(_by_id)
_BY_ID_LOCKED = Statement(lambda query: _by_id(query).for_update())  # PostgreSQL only: SQLite has no FOR UPDATE
_SESSION_SET = Statement(_session_set)


def _agents_sort(records: list[AgentRecord]) -> list[AgentRecord]:
    return sorted(records, key=lambda record: record.updated_at)  # stable: ties keep cache order


class AgentsRepository(CachedRepository[str, AgentRecord]):
    """Agents by id, cached per instance; returned records are frozen and shared with the cache."""

    model = Agent
    fields = AGENT_FIELDS
    entity = "Agent"
    keep_if_none = frozenset({"descriptor", "permissions", "stats"})
    nullable = frozenset({"active_session_id", "tokens"})

    def record_read(self, row: Mapping[str, Any]) -> AgentRecord:
        return AgentRecord(
            id=row["id"],
            user_id=row["user_id"],
            type=row["type"],
            descriptor=json_column(row, "descriptor"),
            active_session_id=row["active_session_id"],
            permissions=json_column(row, "permissions"),
            tokens=json_column(row, "tokens") if row["tokens"] else None,
            stats=json_column(row, "stats"),
            lifecycle=row["lifecycle"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    def row_of(self, record: AgentRecord) -> dict[str, Any]:
        # Spelt out rather than looped over `fields`: it runs in every create_agent_with_session.
        return {
            "id": record.id,
            "user_id": record.user_id,
            "type": record.type,
            "descriptor": json_encode(record.descriptor, "Agent descriptor"),
            "active_session_id": record.active_session_id,
            "permissions": json_encode(record.permissions, "Agent permissions"),
            "tokens": None if record.tokens is None else json_encode(record.tokens, "Agent tokens"),
            "stats": json_encode(record.stats, "Agent stats"),
            "lifecycle": record.lifecycle,
            "created_at": record.created_at,
            "updated_at": record.updated_at,
        }

    async def find_by_id(self, id: str) -> AgentRecord | None:
        """The agent with this id; a cache miss always asks the database (a row it cannot read is None)."""
        cached = self._cache.get(id)
        if cached is not None:
            return cached
        with self._cache.loading() as load:
            loaded = await self.row_load(id)
            if loaded is not None:
                load.store([(id, loaded)])
        return loaded

    async def find_all(self) -> list[AgentRecord]:
        """Every agent by updated_at; the first call loads them all and replaces the cache."""
        if self._cache.all_loaded:
            return _agents_sort(list(self._cache.records.values()))
        return await self._read_cached(self._query().order_by("updated_at"), complete=True)

    async def find_by_user_id(self, user_id: str, *, type: str | None = None) -> list[AgentRecord]:
        """The agents of a user (of one type, if given) by updated_at; rows read from the database join the cache."""
        if self._cache.all_loaded:
            return _agents_sort(
                [
                    record
                    for record in self._cache.records.values()
                    if record.user_id == user_id and (type is None or record.type == type)
                ]
            )
        query = self._query(user_id=user_id) if type is None else self._query(user_id=user_id, type=type)
        return await self._read_cached(query.order_by("updated_at"))

    async def create(self, record: AgentRecord) -> None:
        """Inserts the agent or overwrites every column of an existing one, then caches the record."""
        await self._create(record)

    async def update(self, id: str, /, **changes: Unpack[AgentChanges]) -> None:
        """Overwrites the given fields (None keeps descriptor, permissions and stats; clears tokens).

        Raises LookupError when the agent does not exist, TypeError for an unknown field or an id.
        """
        if "id" in changes:
            raise TypeError("the id of an agent never changes")
        await self._update(id, changes)

    # The methods below serve the Storage facade's transactions: it writes the rows inside
    # `writing(id)` and its own transaction, and puts the record in the cache after the COMMIT.

    def writing(self, id: str) -> CacheWrite[str, AgentRecord]:
        """The agent's write lock (`async with`), taken before the facade opens its transaction (not re-entrant)."""
        return self._writing(id)

    def cached(self, id: str) -> AgentRecord | None:
        """The cached record, without touching the database."""
        return self._cache.get(id)

    def cache_put(self, record: AgentRecord) -> None:
        """Caches a record whose row the facade committed (inside `writing(record.id)`)."""
        self._cache.put(record.id, record)

    async def row_load(self, id: str, *, lock: bool = False) -> AgentRecord | None:
        """Reads the row, bypassing the cache; None when there is none or it cannot be read.

        `lock` (PostgreSQL, inside a transaction) locks the row until the transaction ends.
        """
        rows = await (_BY_ID_LOCKED if lock else _BY_ID).rows(self._conn(), id=id)
        return self._record(rows[0]) if rows else None

    async def row_upsert(self, record: AgentRecord) -> None:
        """Writes the row with the atomic upsert (after checking the record's types); the cache is left alone."""
        self._write_check(record)
        await self._upsert.run(self._conn(), **self.row_of(record))

    async def row_session_set(self, record: AgentRecord) -> None:
        """Writes only the record's active_session_id and updated_at (the rest is already stored)."""
        self._write_check(record)
        await _SESSION_SET.run(
            self._conn(), id=record.id, active_session_id=record.active_session_id, updated_at=record.updated_at
        )
