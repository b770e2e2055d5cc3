"""DelayedSignalsRepository: signals to generate later, at most one per repeat key (legacy §2.11).

Creating a signal with a `repeat_key` replaces the user's other pending signals of the same type
and key; the delete and the upsert commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tortoise.queryset import QuerySet

from daycare.schema import DelayedSignal
from daycare.storage.db.database import Database
from daycare.storage.json_values import frozen, json_encode
from daycare.storage.repositories.cache import RecordCache
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.signal_events import (
    ABSENT,
    signal_data_decode,
    signal_data_encode,
    signal_source_decode,
)
from daycare.storage.repositories.statements import column_values, upsert_statement
from daycare.storage.repositories.write_through import cache_fill, cache_find

_COLUMNS = ("id", "user_id", "type", "deliver_at", "source", "data", "repeat_key", "created_at", "updated_at")
_UPSERT = upsert_statement("signals_delayed", _COLUMNS)


@dataclass(frozen=True, slots=True)
class DelayedSignalRecord:
    """A signal due at deliver_at (ms); `data` is any JSON value or ABSENT."""

    id: str
    user_id: str
    type: str
    deliver_at: int
    source: Mapping[str, Any]
    repeat_key: str | None
    created_at: int
    updated_at: int
    data: Any = ABSENT

    def __post_init__(self) -> None:
        object.__setattr__(self, "source", frozen(self.source))
        object.__setattr__(self, "data", frozen(self.data))


def _record_read(row: dict[str, Any]) -> DelayedSignalRecord:
    return DelayedSignalRecord(
        **{
            **row,
            "source": signal_source_decode(row["source"]),
            "data": signal_data_decode(row["data"]),
        }
    )


def _key(record: DelayedSignalRecord) -> str:
    return record.id


def _order(record: DelayedSignalRecord) -> tuple[int, str]:
    return (record.deliver_at, record.id)


def _same_repeat(record: DelayedSignalRecord, user_id: str, type: str, repeat_key: str | None) -> bool:
    return record.user_id == user_id and record.type == type and record.repeat_key == repeat_key


class DelayedSignalsRepository:
    """Delayed signals with a write-through cache."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: RecordCache[str, DelayedSignalRecord] = RecordCache()

    async def create(self, record: DelayedSignalRecord) -> None:
        """Inserts or overwrites the signal; with a repeat_key, first drops the user's others of that type and key.

        Both writes run in one transaction: if the upsert fails, the earlier signals stay.
        """
        values = column_values(record, _COLUMNS)
        values[4] = json_encode(record.source)
        values[5] = signal_data_encode(record.data)
        async with self._cache.create_lock:
            async with self._db.in_transaction():
                connection = self._db.connection()
                if record.repeat_key:
                    await (
                        DelayedSignal.filter(user_id=record.user_id, type=record.type, repeat_key=record.repeat_key)
                        .exclude(id=record.id)
                        .using_db(connection)
                        .delete()
                    )
                await connection.execute_query(_UPSERT, values)
            self._cache.records[record.id] = record
            if record.repeat_key:
                for key, cached in list(self._cache.records.items()):
                    if key != record.id and _same_repeat(cached, record.user_id, record.type, record.repeat_key):
                        del self._cache.records[key]

    async def find_by_id(self, id: str) -> DelayedSignalRecord | None:
        return await cache_find(self._cache, id, lambda: self._load(id))

    async def find_due(self, now: int) -> list[DelayedSignalRecord]:
        """Signals with deliver_at <= now, earliest first; they are cached."""
        return await self._query(DelayedSignal.filter(deliver_at__lte=now))

    async def find_many(self, ctx: Context) -> list[DelayedSignalRecord]:
        """The user's signals, earliest first; they are cached."""
        return await self._query(DelayedSignal.filter(user_id=ctx.user_id))

    async def find_all(self) -> list[DelayedSignalRecord]:
        """Every signal, earliest first; the first call marks the cache complete (without clearing it)."""
        if self._cache.all_loaded:
            return sorted(self._cache.records.values(), key=_order)
        records = await self._query(DelayedSignal.all())
        self._cache.all_loaded = True
        return records

    async def delete(self, id: str) -> bool:
        async with self._cache.key_locks.hold(id):
            removed = await DelayedSignal.filter(id=id).using_db(self._db.connection()).delete()
            self._cache.records.pop(id, None)
            return removed > 0

    async def delete_by_repeat_key(self, ctx: Context, type: str, repeat_key: str) -> int:
        """Cancels the user's signals of this type and repeat key; returns how many were removed."""
        user_id = ctx.user_id
        removed: int = (
            await DelayedSignal.filter(user_id=user_id, type=type, repeat_key=repeat_key)
            .using_db(self._db.connection())
            .delete()
        )
        if removed > 0:
            for key, cached in list(self._cache.records.items()):
                if _same_repeat(cached, user_id, type, repeat_key):
                    del self._cache.records[key]
        return removed

    async def _query(self, query: QuerySet[DelayedSignal]) -> list[DelayedSignalRecord]:
        rows = await query.using_db(self._db.connection()).order_by("deliver_at", "id").values()
        records = [_record_read(row) for row in rows]
        cache_fill(self._cache, records, _key)
        return records

    async def _load(self, id: str) -> DelayedSignalRecord | None:
        row = await DelayedSignal.filter(id=id).using_db(self._db.connection()).first().values()
        return _record_read(row) if row else None
