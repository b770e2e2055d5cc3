"""SignalEventsRepository: signals that were generated, in the order they happened (legacy §2.9).

`data` SQL NULL means the signal had no payload (`ABSENT` here); the text `null` is JSON null.
Reads order by `created_at, rowid`: events with the same time keep their insertion order.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from daycare.storage.db.database import Database
from daycare.storage.json_values import FrozenDict, frozen, json_encode
from daycare.storage.repositories.cache import RecordCache
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.lenient_json import json_decode_or
from daycare.storage.repositories.limits import limit_clamp, limit_resolve, offset_resolve
from daycare.storage.repositories.statements import column_values, upsert_statement
from daycare.storage.repositories.write_through import cache_fill, cache_find


class Absent(enum.Enum):
    """The type of ABSENT: a signal without a payload (JS `undefined`), distinct from JSON null."""

    ABSENT = "absent"

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = Absent.ABSENT

# What a source that is not valid JSON reads as.
_SOURCE_FALLBACK = FrozenDict(type="system", userId="unknown")


def signal_source_decode(text: str) -> Any:
    """A stored SignalSource; text that is not JSON reads as a system source of user "unknown"."""
    return json_decode_or(text, _SOURCE_FALLBACK)


def signal_data_decode(text: str | None) -> Any:
    """A stored payload; NULL and text that is not JSON both read as ABSENT."""
    return json_decode_or(text, ABSENT)


def signal_data_encode(data: Any) -> str | None:
    """NULL for ABSENT, otherwise the payload as JSON (None becomes the text `null`)."""
    return None if data is ABSENT else json_encode(data)


_COLUMNS = ("id", "user_id", "type", "source", "data", "created_at")
_UPSERT = upsert_statement("signals_events", _COLUMNS)
_ORDER = " ORDER BY created_at ASC, rowid ASC"
_RECENT = " ORDER BY created_at DESC, rowid DESC LIMIT ?"


@dataclass(frozen=True, slots=True)
class SignalEventRecord:
    """A generated signal; `source` is `{type, id?, userId}`, `data` any JSON value or ABSENT."""

    id: str
    user_id: str
    type: str
    source: Mapping[str, Any]
    created_at: int
    data: Any = ABSENT

    def __post_init__(self) -> None:
        object.__setattr__(self, "source", frozen(self.source))
        object.__setattr__(self, "data", frozen(self.data))


def _record_read(row: dict[str, Any]) -> SignalEventRecord:
    return SignalEventRecord(
        id=row["id"],
        user_id=row["user_id"],
        type=row["type"],
        source=signal_source_decode(row["source"]),
        data=signal_data_decode(row["data"]),
        created_at=row["created_at"],
    )


def _key(record: SignalEventRecord) -> str:
    return record.id


class SignalEventsRepository:
    """Signal events with a write-through cache."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: RecordCache[str, SignalEventRecord] = RecordCache()

    async def create(self, record: SignalEventRecord) -> None:
        """Inserts or overwrites the event."""
        values = column_values(record, _COLUMNS)
        values[3] = json_encode(record.source)
        values[4] = signal_data_encode(record.data)
        async with self._cache.create_lock:
            await self._db.connection().execute_query(_UPSERT, values)
            self._cache.records[record.id] = record

    async def find_many(
        self, ctx: Context, *, type: str | None = None, limit: float | None = None, offset: float | None = None
    ) -> list[SignalEventRecord]:
        """The user's events; see find_all."""
        return await self.find_all(user_id=ctx.user_id, type=type, limit=limit, offset=offset)

    async def find_all(
        self,
        *,
        user_id: str | None = None,
        type: str | None = None,
        limit: float | None = None,
        offset: float | None = None,
    ) -> list[SignalEventRecord]:
        """Events oldest first, filtered by user and type, paged by limit and offset.

        Empty filters are ignored. Without any filter, the first call loads every event into the
        cache and later calls read the cache.
        """
        page_size = limit_resolve(limit)
        skip = offset_resolve(offset)
        filtered = bool(user_id) or bool(type) or page_size is not None or skip > 0
        if not filtered and self._cache.all_loaded:
            return sorted(self._cache.records.values(), key=lambda record: record.created_at)
        where: list[str] = []
        values: list[Any] = []
        if user_id:
            where.append("user_id = ?")
            values.append(user_id)
        if type:
            where.append("type = ?")
            values.append(type)
        sql = "SELECT * FROM signals_events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += _ORDER
        if page_size is not None or skip > 0:
            # LIMIT -1 is "no limit": the legacy code wrote a bare OFFSET here, a syntax error.
            sql += " LIMIT ? OFFSET ?"
            values += [-1 if page_size is None else page_size, skip]
        rows = await self._db.connection().execute_query_dict(sql, values)
        records = [_record_read(row) for row in rows]
        if not filtered:
            cache_fill(self._cache, records, _key, complete=True)
        return records

    async def find_recent(self, ctx: Context, limit: float = 200) -> list[SignalEventRecord]:
        """The user's latest `limit` events (1..1000), oldest first; not cached."""
        rows = await self._db.connection().execute_query_dict(
            "SELECT * FROM signals_events WHERE user_id = ?" + _RECENT, [ctx.user_id, limit_clamp(limit, 1, 1000)]
        )
        return [_record_read(row) for row in reversed(rows)]

    async def find_recent_all(self, limit: float = 200) -> list[SignalEventRecord]:
        """Every user's latest `limit` events (1..1000), oldest first."""
        count = limit_clamp(limit, 1, 1000)
        if self._cache.all_loaded:
            return sorted(self._cache.records.values(), key=lambda record: record.created_at)[-count:]
        rows = await self._db.connection().execute_query_dict("SELECT * FROM signals_events" + _RECENT, [count])
        return [_record_read(row) for row in reversed(rows)]

    async def find_by_id(self, id: str) -> SignalEventRecord | None:
        return await cache_find(self._cache, id, lambda: self._load(id))

    async def _load(self, id: str) -> SignalEventRecord | None:
        rows = await self._db.connection().execute_query_dict("SELECT * FROM signals_events WHERE id = ? LIMIT 1", [id])
        return _record_read(rows[0]) if rows else None
