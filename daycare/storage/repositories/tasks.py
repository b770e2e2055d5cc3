"""TasksRepository: the code a user's triggers run; ids are unique only within a user (legacy §2.6).

The key is (user_id, id): every query is filtered on both columns, so the same task id under
two users is two tasks. Deleting is soft (`deleted_at`), and a soft-deleted task keeps its
(user, id) reserved: creating it again fails. The cache has no "all loaded" state.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from daycare.schema import Task
from daycare.storage.clock import now_ms
from daycare.storage.db.database import Database
from daycare.storage.repositories.cache import RecordCache
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.patches import record_patch
from daycare.storage.repositories.statements import column_map, column_values, upsert_statement
from daycare.storage.repositories.write_through import cache_fill, cache_find

TaskKey = tuple[str, str]

_COLUMNS = ("id", "user_id", "title", "description", "code", "created_at", "updated_at", "deleted_at")
# The WHERE makes the reservation check and the write one statement: a soft-deleted row is left
# alone (no change), which create() reports as "reserved".
_UPSERT = upsert_statement("tasks", _COLUMNS, conflict=("user_id", "id")) + " WHERE tasks.deleted_at IS NULL"


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """A task of one user; deleted_at is set once it is soft-deleted."""

    id: str
    user_id: str
    title: str
    description: str | None
    code: str
    created_at: int
    updated_at: int
    deleted_at: int | None = None


def _key(record: TaskRecord) -> TaskKey:
    return (record.user_id, record.id)


class TasksRepository:
    """Tasks keyed by (user, id), with a write-through cache."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: RecordCache[TaskKey, TaskRecord] = RecordCache()

    async def find_by_id(self, ctx: Context, id: str) -> TaskRecord | None:
        """The user's live task with this id; None if it is missing or soft-deleted."""
        record = await self.find_any_by_id(ctx, id)
        return record if record is not None and record.deleted_at is None else None

    async def find_any_by_id(self, ctx: Context, id: str) -> TaskRecord | None:
        """The user's task with this id, soft-deleted or not."""
        user_id = ctx.user_id
        return await cache_find(self._cache, (user_id, id), lambda: self._load(user_id, id))

    async def find_many(self, ctx: Context) -> list[TaskRecord]:
        """The user's live tasks, oldest update first (read from the database, not cached)."""
        rows = (
            await Task.filter(user_id=ctx.user_id, deleted_at__isnull=True)
            .using_db(self._db.connection())
            .order_by("updated_at")
            .values()
        )
        return [TaskRecord(**row) for row in rows]

    async def find_all(self) -> list[TaskRecord]:
        """Every user's live tasks, oldest update first; they are cached."""
        rows = (
            await Task.filter(deleted_at__isnull=True).using_db(self._db.connection()).order_by("updated_at").values()
        )
        records = [TaskRecord(**row) for row in rows]
        cache_fill(self._cache, records, _key)
        return records

    async def create(self, record: TaskRecord) -> None:
        """Inserts the task or overwrites the user's live task with that id (created_at included).

        Raises ValueError when user_id is blank, or when the id belongs to the user's soft-deleted task.
        """
        user_id = record.user_id.strip()
        if not user_id:
            raise ValueError("Task userId is required.")
        stored = dataclasses.replace(record, user_id=user_id)
        async with self._cache.create_lock:
            changed, _ = await self._db.connection().execute_query(_UPSERT, column_values(stored, _COLUMNS))
            if not changed:
                raise ValueError(f"Task id is reserved by a deleted task: {record.id}")
            self._cache.records[_key(stored)] = stored

    async def update(self, ctx: Context, id: str, /, **changes: Any) -> None:
        """Merges `changes` into the user's task (soft-deleted ones too) and writes the whole row.

        A blank or None user_id keeps the current one; None clears description or deleted_at.
        Raises LookupError("Task not found: <id>") when the user has no such task.
        """
        user_id = ctx.user_id
        if "user_id" in changes:
            changes = dict(changes)
            moved_to = (changes.pop("user_id") or "").strip()
            if moved_to:
                changes["user_id"] = moved_to
        async with self._cache.key_locks.hold((user_id, id)):
            current = self._cache.records.get((user_id, id)) or await self._load(user_id, id)
            if current is None:
                raise LookupError(f"Task not found: {id}")
            updated = record_patch(current, changes, entity="Task", nullable=("description", "deleted_at"))
            await (
                Task.filter(**Task.key_filter(user_id=current.user_id, id=id))
                .using_db(self._db.connection())
                .update(**column_map(updated, _COLUMNS[1:]))
            )
            # A task moved to another user leaves its old key; the legacy cache kept it there (stale).
            self._cache.records.pop(_key(current), None)
            self._cache.records[_key(updated)] = updated

    async def delete(self, ctx: Context, id: str) -> bool:
        """Soft-deletes the user's task (deleted_at = updated_at = now); False if missing or already deleted."""
        user_id = ctx.user_id
        async with self._cache.key_locks.hold((user_id, id)):
            current = self._cache.records.get((user_id, id)) or await self._load(user_id, id)
            if current is None or current.deleted_at is not None:
                return False
            now = now_ms()
            await (
                Task.filter(**Task.key_filter(user_id=user_id, id=id), deleted_at__isnull=True)
                .using_db(self._db.connection())
                .update(deleted_at=now, updated_at=now)
            )
            self._cache.records[(user_id, id)] = dataclasses.replace(current, deleted_at=now, updated_at=now)
            return True

    async def _load(self, user_id: str, id: str) -> TaskRecord | None:
        row = (
            await Task.filter(**Task.key_filter(user_id=user_id, id=id))
            .using_db(self._db.connection())
            .first()
            .values()
        )
        return TaskRecord(**row) if row else None
