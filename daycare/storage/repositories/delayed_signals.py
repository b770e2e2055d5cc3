"""DelayedSignalsRepository: signals to generate later, at most one per repeat key, behind a write-through cache.

Creating a signal with a `repeat_key` replaces the user's other pending signals of the same type
and key: the delete and the upsert commit together or not at all, and the write holds the
cache locks of every row it touches. Replacements of one repeat key also run one at a time, in
this process and across engines (a transaction lock): on PostgreSQL two transactions run side by
side, and each would miss the row the other inserts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from daycare.schema import DelayedSignal
from daycare.storage.db.database import Database
from daycare.storage.db.dialect import transaction_lock
from daycare.storage.db.statements import rows_statement
from daycare.storage.json_values import frozen, json_encode
from daycare.storage.repositories.base import CachedRepository
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.locks import KeyedLocks
from daycare.storage.repositories.signal_events import (
    ABSENT,
    signal_data_decode,
    signal_data_encode,
    signal_source_decode,
)

DELAYED_FIELDS = ("id", "user_id", "type", "deliver_at", "source", "data", "repeat_key", "created_at", "updated_at")
_ORDER = ("deliver_at", "id")
_EVERY_SIGNAL = rows_statement(DelayedSignal, DELAYED_FIELDS, order=_ORDER)  # read at every engine start


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


@dataclass(frozen=True, slots=True)
class _Repeat:
    """The signals one repeat key names: a user's pending signals of one type and key."""

    user_id: str
    type: str
    repeat_key: str


def _order(record: DelayedSignalRecord) -> tuple[int, str]:
    return (record.deliver_at, record.id)


class DelayedSignalsRepository(CachedRepository[str, DelayedSignalRecord]):
    """Delayed signals by id, cached per instance; returned records are frozen."""

    model = DelayedSignal
    fields = DELAYED_FIELDS
    entity = "Delayed signal"

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self._repeat_locks = KeyedLocks()  # one replacement per repeat key at a time

    def record_read(self, row: Mapping[str, Any]) -> DelayedSignalRecord:
        return DelayedSignalRecord(
            id=row["id"],
            user_id=row["user_id"],
            type=row["type"],
            deliver_at=row["deliver_at"],
            source=signal_source_decode(row["source"]),
            data=signal_data_decode(row["data"]),
            repeat_key=row["repeat_key"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    def row_of(self, record: DelayedSignalRecord) -> dict[str, Any]:
        row = super().row_of(record)
        row["source"] = json_encode(record.source, "Delayed signal source")
        row["data"] = signal_data_encode(record.data, "Delayed signal data")
        return row

    async def create(self, record: DelayedSignalRecord) -> None:
        """Inserts or overwrites the signal; with a repeat_key, also deletes the user's others of that type and key.

        Both writes run in one transaction: if the upsert fails, the earlier signals stay. A blank id
        or a value of the wrong type raises ValueError or TypeError and writes nothing.
        """
        self._write_check(record)
        self.row_of(record)  # JSON that cannot be written raises here, before any row is deleted
        if not record.repeat_key:
            await self._create(record)
            return
        await self._repeat_replace(_Repeat(record.user_id, record.type, record.repeat_key), record)

    async def find_by_id(self, id: str) -> DelayedSignalRecord | None:
        """The signal with this id; once every signal is loaded a cache miss is final (no query)."""
        return await self._find(id)

    async def find_due(self, now: int) -> list[DelayedSignalRecord]:
        """Signals with deliver_at <= now, earliest first; they are cached."""
        return await self._read_cached(self._query(deliver_at__lte=now).order_by(*_ORDER))

    async def find_many(self, ctx: Context) -> list[DelayedSignalRecord]:
        """The user's signals, earliest first; they are cached."""
        return await self._read_cached(self._query(user_id=ctx.user_id).order_by(*_ORDER))

    async def find_all(self) -> list[DelayedSignalRecord]:
        """Every signal, earliest first; the first call loads them all into the cache."""
        if self._cache.all_loaded:
            return sorted(self._cache.records.values(), key=_order)
        return await self._read_cached(_EVERY_SIGNAL, complete=True)

    async def delete(self, id: str) -> bool:
        """Deletes one signal; whether there was one."""
        return await self._delete(id)

    @asynccontextmanager
    async def delivering(self, id: str) -> AsyncIterator[bool]:
        """`async with signals.delivering(id) as mine:` deletes the signal in a transaction that the block's
        writes (its delivery) join; `mine` is False when it was gone (delivered or cancelled elsewhere).

        The delete commits with the delivery, or is undone with it when the block raises: of several
        engines delivering one signal, one does, once.
        """
        async with self._writing(id):
            async with self._db.in_transaction() as conn:
                removed = await self.model.filter(id=id).using_db(conn).delete()
                yield bool(removed)
            self._cache.drop(id)

    async def delete_by_repeat_key(self, ctx: Context, type: str, repeat_key: str) -> int:
        """Cancels the user's signals of this type and repeat key in one transaction; returns how many were removed."""
        return await self._repeat_replace(_Repeat(ctx.user_id, type, repeat_key), None)

    async def _repeat_replace(self, repeat: _Repeat, record: DelayedSignalRecord | None) -> int:
        """Deletes the signals of `repeat` other than `record`, and upserts `record`, in one transaction.

        It holds the repeat key's lock throughout: two transactions side by side (PostgreSQL runs them
        so) would each miss the row the other inserts. It holds the write locks of `record` and of every
        row it deletes, taken in key order so that two such writes never wait for each other in a cycle.
        A row of `repeat` that appears after the locks were taken means locking it too and trying again.
        Returns how many rows were deleted.
        """
        async with self._repeat_locks.hold(repeat):
            return await self._repeat_replace_locked(repeat, record)

    async def _repeat_replace_locked(self, repeat: _Repeat, record: DelayedSignalRecord | None) -> int:
        """`_repeat_replace`, once the repeat key's lock is held."""
        own_id = None if record is None else record.id
        locked = set(await self._repeat_ids(self._conn(), repeat, own_id))
        if record is None and not locked:
            return 0  # nothing to cancel when it was read: no transaction needed
        while True:
            async with AsyncExitStack() as held:
                for key in sorted(locked if own_id is None else locked | {own_id}):
                    await held.enter_async_context(self._writing(key))
                async with self._db.in_transaction() as conn:
                    if self._db.shared:  # other engines replace this repeat key one at a time with this one
                        await transaction_lock(
                            conn, f"signals_delayed {repeat.user_id} {repeat.type} {repeat.repeat_key}"
                        )
                    others = await self._repeat_ids(conn, repeat, own_id)
                    unlocked = set(others) - locked
                    if not unlocked:  # else nothing is written: the empty transaction commits
                        removed = await self.model.filter(id__in=others).using_db(conn).delete() if others else 0
                        if record is not None:
                            await self._upsert.run(conn, **self.row_of(record))
                if not unlocked:
                    for key in others:
                        self._cache.drop(key)
                    if record is not None:
                        self._cache.put(record.id, record)
                    return int(removed)
            locked |= unlocked

    async def _repeat_ids(self, conn: BaseDBAsyncClient, repeat: _Repeat, own_id: str | None) -> list[str]:
        query = self.model.filter(user_id=repeat.user_id, type=repeat.type, repeat_key=repeat.repeat_key)
        if own_id is not None:
            query = query.exclude(id=own_id)
        return [str(id) for id in await query.using_db(conn).values_list("id", flat=True)]
