"""TasksRepository: the code a user's triggers run; ids are unique only within a user.

The key is (user_id, id): every query is filtered on both columns (`Task.key_filter`), so the
same task id under two users is two tasks. Deleting is soft (`deleted_at`), and a soft-deleted
task keeps its (user, id) reserved: creating it again fails. The cache is never complete:
`find_all` reads only the live tasks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack

from pypika_tortoise.queries import Query, QueryBuilder

from daycare.schema import Task
from daycare.storage.clock import now_ms
from daycare.storage.db.statements import ModelTable, Statement, slot
from daycare.storage.repositories.base import CachedRepository
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.patches import record_patch

TaskKey = tuple[str, str]  # (user_id, id)

_KEY_FIELDS = ("user_id", "id")
TASK_FIELDS = ("id", "user_id", "title", "description", "code", "created_at", "updated_at", "deleted_at")


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


class TaskChanges(TypedDict, total=False):
    """The fields `TasksRepository.update` can change; a blank or None user_id keeps the current user."""

    user_id: str | None
    title: str
    description: str | None
    code: str
    created_at: int
    updated_at: int
    deleted_at: int | None


def _upsert(query: type[Query]) -> QueryBuilder:
    # The WHERE makes the reservation check and the write one statement: the row of a soft-deleted
    # task is left alone (nothing changes), which `create` reports as "reserved".
    tasks = ModelTable(Task)
    statement = (
        query.into(tasks.table)
        .columns(*tasks.columns(TASK_FIELDS))
        .insert(*map(slot, TASK_FIELDS))
        .on_conflict(*(tasks.column_name(field) for field in _KEY_FIELDS))
    )
    for field in TASK_FIELDS:
        if field not in _KEY_FIELDS:
            statement = statement.do_update(tasks.column_name(field))
    return statement.where(tasks["deleted_at"].isnull())


_UPSERT = Statement(_upsert)


class TasksRepository(CachedRepository[TaskKey, TaskRecord]):
    """Tasks keyed by (user, id), cached per instance; returned records are frozen."""

    model = Task
    fields = TASK_FIELDS
    entity = "Task"
    conflict = _KEY_FIELDS
    key_fields = _KEY_FIELDS
    nullable = frozenset({"description", "deleted_at"})

    def record_read(self, row: Mapping[str, Any]) -> TaskRecord:
        return TaskRecord(**{field: row[field] for field in TASK_FIELDS})

    def key_of(self, record: TaskRecord) -> TaskKey:
        return (record.user_id, record.id)

    def key_filter(self, key: TaskKey) -> dict[str, Any]:
        user_id, id = key
        return Task.key_filter(user_id=user_id, id=id)

    def stored(self, record: TaskRecord) -> TaskRecord:
        """The record with its user_id trimmed; raises ValueError when it is blank or None."""
        user_id = record.user_id
        if user_id is not None and not isinstance(user_id, str):
            raise TypeError(f"Task userId must be a string, got {type(user_id).__name__} {user_id!r}")
        user_id = (user_id or "").strip()
        if not user_id:
            raise ValueError("Task userId is required.")
        return dataclasses.replace(record, user_id=user_id)

    async def find_by_id(self, ctx: Context, id: str) -> TaskRecord | None:
        """The user's live task with this id; None if it is missing or soft-deleted."""
        record = await self.find_any_by_id(ctx, id)
        return record if record is not None and record.deleted_at is None else None

    async def find_any_by_id(self, ctx: Context, id: str) -> TaskRecord | None:
        """The user's task with this id, soft-deleted or not; cached, else read and cached."""
        return await self._find((ctx.user_id, id))

    async def find_many(self, ctx: Context) -> list[TaskRecord]:
        """The user's live tasks, oldest update first (read from the database, not cached)."""
        return await self._read(self._query(user_id=ctx.user_id, deleted_at__isnull=True).order_by("updated_at"))

    async def find_all(self) -> list[TaskRecord]:
        """Every user's live tasks, oldest update first; they join the cache."""
        return await self._read_cached(self._query(deleted_at__isnull=True).order_by("updated_at"))

    async def create(self, record: TaskRecord) -> None:
        """Inserts the task or overwrites the user's live task with that id (created_at included).

        Raises ValueError when user_id or id is blank, or when the id belongs to the user's soft-deleted
        task; TypeError for a value of the wrong type.
        """
        stored = self.stored(record)
        self._write_check(stored)
        key = self.key_of(stored)
        async with self._writing(key):
            if not await _UPSERT.run(self._conn(), **self.row_of(stored)):
                raise ValueError(f"Task id is reserved by a deleted task: {record.id}")
            self._cache.put(key, stored)

    async def update(self, ctx: Context, id: str, /, **changes: Unpack[TaskChanges]) -> None:
        """Merges `changes` into the user's task (soft-deleted ones too) and writes the whole row.

        A blank or None user_id keeps the current one (another one moves the task to that user);
        None clears description or deleted_at. Raises LookupError("Task not found: <id>") when the
        user has no such task, TypeError for an unknown field.
        """
        merged: dict[str, Any] = dict(changes)
        if "user_id" in merged:
            moved_to = (merged.pop("user_id") or "").strip()
            if moved_to:
                merged["user_id"] = moved_to
        key = (ctx.user_id, id)
        async with self._writing(key):
            current = self._cache.get(key) or await self._read_first(self._query(**self.key_filter(key)))
            if current is None:
                raise LookupError(f"Task not found: {id}")
            changed = self.stored(record_patch(current, merged, entity=self.entity, nullable=self.nullable))
            self._write_check(changed)
            row = self.row_of(changed)
            del row["id"]  # user_id stays: it is how a task moves to another user
            await self._query(**self.key_filter(key)).update(**row)
            self._moved(key, changed)

    async def delete(self, ctx: Context, id: str) -> bool:
        """Soft-deletes the user's task (deleted_at = updated_at = now); False if missing or already deleted."""
        key = (ctx.user_id, id)
        async with self._writing(key):
            current = self._cache.get(key) or await self._read_first(self._query(**self.key_filter(key)))
            if current is None or current.deleted_at is not None:
                return False
            now = now_ms()
            changed = await self._query(**self.key_filter(key), deleted_at__isnull=True).update(
                deleted_at=now, updated_at=now
            )
            if not changed:
                # The cached task was deleted behind this repository's back: read it again next time.
                self._cache.evict(key)
                return False
            self._cache.put(key, dataclasses.replace(current, deleted_at=now, updated_at=now))
        return True
