"""HeartbeatTasksRepository: tasks run together on every heartbeat (legacy §2.8).

Like cron triggers, `(user_id, task_id)` references `tasks(user_id, id)`, so a heartbeat can
only point at a task of its own user.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from daycare.schema import HeartbeatTrigger
from daycare.storage.db.database import Database
from daycare.storage.repositories.cache import RecordCache
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.patches import record_patch
from daycare.storage.repositories.statements import column_map, column_values, upsert_statement
from daycare.storage.repositories.write_through import cache_fill, cache_find

_COLUMNS = ("id", "task_id", "user_id", "title", "last_run_at", "created_at", "updated_at")
_UPSERT = upsert_statement("tasks_heartbeat", _COLUMNS)


@dataclass(frozen=True, slots=True)
class HeartbeatTaskRecord:
    """A heartbeat entry for a task; title is copied from the task."""

    id: str
    task_id: str
    user_id: str
    title: str
    last_run_at: int | None
    created_at: int
    updated_at: int


def _record_read(row: dict[str, Any]) -> HeartbeatTaskRecord:
    task_id = (row["task_id"] or "").strip()
    if not task_id:
        raise ValueError(f"Heartbeat trigger {row['id']} is missing required task_id.")
    return HeartbeatTaskRecord(**{**row, "task_id": task_id})


def _stored(record: HeartbeatTaskRecord) -> HeartbeatTaskRecord:
    """The record as the table holds it, with a trimmed task_id."""
    task_id = record.task_id.strip()
    if not task_id:
        raise ValueError("Heartbeat trigger taskId is required.")
    return dataclasses.replace(record, task_id=task_id)


class HeartbeatTasksRepository:
    """Heartbeat entries with a write-through cache."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: RecordCache[str, HeartbeatTaskRecord] = RecordCache()

    async def find_by_id(self, id: str) -> HeartbeatTaskRecord | None:
        return await cache_find(self._cache, id, lambda: self._load(id))

    async def find_many(self, ctx: Context) -> list[HeartbeatTaskRecord]:
        """The user's entries, oldest update first; not cached."""
        rows = (
            await HeartbeatTrigger.filter(user_id=ctx.user_id)
            .using_db(self._db.connection())
            .order_by("updated_at")
            .values()
        )
        return [_record_read(row) for row in rows]

    async def find_all(self) -> list[HeartbeatTaskRecord]:
        """Every entry, oldest update first; the first call loads the whole table into the cache."""
        if self._cache.all_loaded:
            return sorted(self._cache.records.values(), key=lambda record: record.updated_at)
        rows = await HeartbeatTrigger.all().using_db(self._db.connection()).order_by("updated_at").values()
        records = [_record_read(row) for row in rows]
        cache_fill(self._cache, records, lambda record: record.id, clear=True, complete=True)
        return records

    async def find_many_by_task_id(self, ctx: Context, task_id: str) -> list[HeartbeatTaskRecord]:
        rows = (
            await HeartbeatTrigger.filter(user_id=ctx.user_id, task_id=task_id)
            .using_db(self._db.connection())
            .order_by("updated_at")
            .values()
        )
        return [_record_read(row) for row in rows]

    async def create(self, record: HeartbeatTaskRecord) -> None:
        """Inserts or overwrites the entry; its task must exist for the same user (foreign key)."""
        stored = _stored(record)
        async with self._cache.create_lock:
            await self._db.connection().execute_query(_UPSERT, column_values(stored, _COLUMNS))
            self._cache.records[stored.id] = stored

    async def update(self, id: str, /, **changes: Any) -> None:
        """Merges `changes` and writes the whole row; None keeps task_id and user_id, clears last_run_at.

        Raises LookupError("Heartbeat task not found: <id>").
        """
        async with self._cache.key_locks.hold(id):
            current = self._cache.records.get(id) or await self._load(id)
            if current is None:
                raise LookupError(f"Heartbeat task not found: {id}")
            updated = _stored(
                record_patch(
                    current,
                    changes,
                    entity="Heartbeat task",
                    keep_if_none=("task_id", "user_id"),
                    nullable=("last_run_at",),
                )
            )
            await (
                HeartbeatTrigger.filter(id=id)
                .using_db(self._db.connection())
                .update(**column_map(updated, _COLUMNS[1:]))
            )
            self._cache.records[id] = updated

    async def delete(self, id: str) -> bool:
        async with self._cache.key_locks.hold(id):
            removed = await HeartbeatTrigger.filter(id=id).using_db(self._db.connection()).delete()
            self._cache.records.pop(id, None)
            return removed > 0

    async def record_run(self, run_at: int) -> None:
        """Sets last_run_at = updated_at = run_at on every entry of every user (one statement).

        The legacy scheduler stamped every row this way even for a run of some entries; the
        engine's scheduler uses `record_run_for` with the entries that ran.
        """
        await HeartbeatTrigger.all().using_db(self._db.connection()).update(last_run_at=run_at, updated_at=run_at)
        for key, record in list(self._cache.records.items()):
            self._cache.records[key] = dataclasses.replace(record, last_run_at=run_at, updated_at=run_at)

    async def record_run_for(self, ids: Collection[str], run_at: int) -> None:
        """Sets last_run_at = updated_at = run_at on these entries only (one statement); unknown ids are skipped."""
        if isinstance(ids, str):
            raise TypeError("record_run_for takes a collection of ids, not one string")
        wanted = set(ids)
        if not wanted:
            return
        await (
            HeartbeatTrigger.filter(id__in=sorted(wanted))
            .using_db(self._db.connection())
            .update(last_run_at=run_at, updated_at=run_at)
        )
        for key in wanted & self._cache.records.keys():
            self._cache.records[key] = dataclasses.replace(
                self._cache.records[key], last_run_at=run_at, updated_at=run_at
            )

    async def _load(self, id: str) -> HeartbeatTaskRecord | None:
        row = await HeartbeatTrigger.filter(id=id).using_db(self._db.connection()).first().values()
        return _record_read(row) if row else None
