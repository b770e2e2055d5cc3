"""TriggersRepository: what cron and heartbeat triggers share.

A trigger runs a task of its own user: `(user_id, task_id)` references `tasks(user_id, id)` in
the schema, so SQLite refuses a trigger that points at another user's task. Trigger ids are
global. The task id is trimmed when a trigger is written and required when it is read or written:
a row without one cannot be read, so reads leave it out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Protocol, TypeVar, cast

from daycare.storage.repositories.base import CachedRepository
from daycare.storage.repositories.context import Context


class TriggerRecord(Protocol):
    """What the shared code reads of a trigger record (a frozen dataclass)."""

    @property
    def id(self) -> str: ...

    @property
    def task_id(self) -> str: ...

    @property
    def updated_at(self) -> int: ...


R = TypeVar("R", bound=TriggerRecord)


class TriggersRepository(CachedRepository[str, R]):
    """Triggers by id, cached per instance; the user's triggers are read from the database."""

    record_type: ClassVar[type[Any]]  # the record dataclass, built from the columns of `fields`
    label: ClassVar[str]  # how validation messages name a trigger: "Cron trigger"
    keep_if_none = frozenset({"task_id"})

    def record_read(self, row: Mapping[str, Any]) -> R:
        """The record of a row; a row whose task_id is blank raises ValueError."""
        task_id = row["task_id"].strip() if isinstance(row["task_id"], str) else ""
        if not task_id:
            raise ValueError(f"{self.label} {row['id']} is missing required task_id.")
        values = {field: row[field] for field in self.fields}
        values["task_id"] = task_id
        record: R = self.record_type(**values)
        return record

    def stored(self, record: R) -> R:
        """The record with its task_id trimmed; raises ValueError when it is blank or None."""
        task_id = record.task_id
        if task_id is not None and not isinstance(task_id, str):
            raise TypeError(f"{self.label} taskId must be a string, got {type(task_id).__name__} {task_id!r}")
        task_id = (task_id or "").strip()
        if not task_id:
            raise ValueError(f"{self.label} taskId is required.")
        trimmed: R = dataclasses.replace(cast(Any, record), task_id=task_id)
        return trimmed

    async def find_by_id(self, id: str) -> R | None:
        """The trigger with this id; cached, else read and cached."""
        return await self._find(id)

    async def find_all(self) -> list[R]:
        """Every trigger, oldest update first; the first call loads the whole table into the cache."""
        if self._cache.all_loaded:
            return self._by_update(self._cache.records.values())
        return await self._read_cached(self._query().order_by("updated_at"), complete=True)

    async def find_many(self, ctx: Context) -> list[R]:
        """The user's triggers, oldest update first (read from the database, not cached)."""
        return await self._of_user(ctx)

    async def find_many_by_task_id(self, ctx: Context, task_id: str) -> list[R]:
        """The user's triggers of one task, oldest update first (read from the database, not cached)."""
        return await self._of_user(ctx, task_id=task_id)

    async def create(self, record: R) -> None:
        """Inserts or overwrites the trigger; its task must exist for the same user (foreign key)."""
        await self._create(record)

    async def delete(self, id: str) -> bool:
        """Deletes the trigger; whether it existed."""
        return await self._delete(id)

    async def _of_user(self, ctx: Context, **filters: Any) -> list[R]:
        return await self._read(self._query(user_id=ctx.user_id, **filters).order_by("updated_at"))

    @staticmethod
    def _by_update(records: Iterable[R]) -> list[R]:
        # Stable: ties keep cache order, as the table's order is unspecified for them too.
        return sorted(records, key=lambda record: record.updated_at)
