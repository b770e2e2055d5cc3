"""CronTasksRepository: cron triggers, each running a task of its own user (legacy §2.7).

Trigger ids are global. `(user_id, task_id)` references `tasks(user_id, id)` in the schema, so
a trigger can only point at a task of the same user; SQLite refuses anything else.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from daycare.schema import CronTrigger
from daycare.storage.db.database import Database
from daycare.storage.repositories.cache import RecordCache
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.patches import record_patch
from daycare.storage.repositories.statements import column_map, column_values, upsert_statement
from daycare.storage.repositories.write_through import cache_fill, cache_find

_COLUMNS = (
    "id",
    "task_id",
    "user_id",
    "name",
    "description",
    "schedule",
    "agent_id",
    "enabled",
    "delete_after_run",
    "last_run_at",
    "created_at",
    "updated_at",
)
_UPSERT = upsert_statement("tasks_cron", _COLUMNS)


@dataclass(frozen=True, slots=True)
class CronTaskRecord:
    """A cron schedule for a task; agent_id None means the system agent tagged `cron`."""

    id: str
    task_id: str
    user_id: str
    name: str
    description: str | None
    schedule: str
    agent_id: str | None
    enabled: bool
    delete_after_run: bool
    last_run_at: int | None
    created_at: int
    updated_at: int


def _record_read(row: dict[str, Any]) -> CronTaskRecord:
    task_id = (row["task_id"] or "").strip()
    if not task_id:
        raise ValueError(f"Cron trigger {row['id']} is missing required task_id.")
    return CronTaskRecord(**{**row, "task_id": task_id})


def _task_id_required(task_id: str) -> str:
    trimmed = task_id.strip()
    if not trimmed:
        raise ValueError("Cron trigger taskId is required.")
    return trimmed


def _stored(record: CronTaskRecord) -> CronTaskRecord:
    """The record as the table holds it: trimmed task_id, real booleans."""
    return dataclasses.replace(
        record,
        task_id=_task_id_required(record.task_id),
        enabled=bool(record.enabled),
        delete_after_run=bool(record.delete_after_run),
    )


class CronTasksRepository:
    """Cron triggers with a write-through cache."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: RecordCache[str, CronTaskRecord] = RecordCache()

    async def find_by_id(self, id: str) -> CronTaskRecord | None:
        return await cache_find(self._cache, id, lambda: self._load(id))

    async def find_many(self, ctx: Context, *, include_disabled: bool = False) -> list[CronTaskRecord]:
        """The user's triggers (enabled ones unless asked), oldest update first; not cached."""
        query = CronTrigger.filter(user_id=ctx.user_id)
        if not include_disabled:
            query = query.filter(enabled=True)
        rows = await query.using_db(self._db.connection()).order_by("updated_at").values()
        return [_record_read(row) for row in rows]

    async def find_all(self, *, include_disabled: bool = False) -> list[CronTaskRecord]:
        """Every trigger (enabled ones unless asked), oldest update first.

        Only the query with disabled triggers makes the cache complete; the enabled-only query adds to it.
        """
        if self._cache.all_loaded:
            records = sorted(self._cache.records.values(), key=lambda record: record.updated_at)
            return records if include_disabled else [record for record in records if record.enabled]
        query = CronTrigger.all() if include_disabled else CronTrigger.filter(enabled=True)
        rows = await query.using_db(self._db.connection()).order_by("updated_at").values()
        records = [_record_read(row) for row in rows]
        cache_fill(self._cache, records, lambda record: record.id, clear=include_disabled, complete=include_disabled)
        return records

    async def find_many_by_task_id(self, ctx: Context, task_id: str) -> list[CronTaskRecord]:
        rows = (
            await CronTrigger.filter(user_id=ctx.user_id, task_id=task_id)
            .using_db(self._db.connection())
            .order_by("updated_at")
            .values()
        )
        return [_record_read(row) for row in rows]

    async def create(self, record: CronTaskRecord) -> None:
        """Inserts or overwrites the trigger; its task must exist for the same user (foreign key)."""
        stored = _stored(record)
        async with self._cache.create_lock:
            await self._db.connection().execute_query(_UPSERT, column_values(stored, _COLUMNS))
            self._cache.records[stored.id] = stored

    async def update(self, id: str, /, **changes: Any) -> None:
        """Merges `changes` and writes the whole row; None keeps task_id and clears the nullable fields.

        Raises LookupError("Cron task not found: <id>").
        """
        async with self._cache.key_locks.hold(id):
            current = self._cache.records.get(id) or await self._load(id)
            if current is None:
                raise LookupError(f"Cron task not found: {id}")
            updated = _stored(
                record_patch(
                    current,
                    changes,
                    entity="Cron task",
                    keep_if_none=("task_id",),
                    nullable=("description", "agent_id", "last_run_at"),
                )
            )
            await CronTrigger.filter(id=id).using_db(self._db.connection()).update(**column_map(updated, _COLUMNS[1:]))
            self._cache.records[id] = updated

    async def delete(self, id: str) -> bool:
        async with self._cache.key_locks.hold(id):
            removed = await CronTrigger.filter(id=id).using_db(self._db.connection()).delete()
            self._cache.records.pop(id, None)
            return removed > 0

    async def _load(self, id: str) -> CronTaskRecord | None:
        row = await CronTrigger.filter(id=id).using_db(self._db.connection()).first().values()
        return _record_read(row) if row else None
