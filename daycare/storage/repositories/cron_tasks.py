"""CronTasksRepository: cron triggers, each running a task of its own user.

What every trigger shares (task id rules, the user's triggers, the cache) is in
`daycare.storage.repositories.triggers`; cron adds the enabled flag, which the scheduler reads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TypedDict, Unpack

from daycare.schema import CronTrigger
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.triggers import TriggersRepository

CRON_FIELDS = (
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


class CronTaskChanges(TypedDict, total=False):
    """The fields `CronTasksRepository.update` can change; None keeps task_id."""

    task_id: str | None
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


class CronTasksRepository(TriggersRepository[CronTaskRecord]):
    """Cron triggers by id, cached; listings hold enabled triggers unless asked for the disabled ones too."""

    model = CronTrigger
    fields = CRON_FIELDS
    record_type = CronTaskRecord
    entity = "Cron task"
    label = "Cron trigger"
    nullable = frozenset({"description", "agent_id", "last_run_at"})

    def stored(self, record: CronTaskRecord) -> CronTaskRecord:
        """The record as the table holds it: trimmed task_id, real booleans."""
        trimmed = super().stored(record)
        return dataclasses.replace(
            trimmed, enabled=bool(trimmed.enabled), delete_after_run=bool(trimmed.delete_after_run)
        )

    async def find_all(self, *, include_disabled: bool = False) -> list[CronTaskRecord]:
        """Every trigger (enabled ones unless asked), oldest update first.

        Only the load with disabled triggers makes the cache complete; the enabled-only load adds to it.
        """
        if self._cache.all_loaded:
            return self._enabled(self._by_update(self._cache.records.values()), include_disabled)
        if include_disabled:
            return await super().find_all()
        return await self._read_cached(self._query(enabled=True).order_by("updated_at"))

    async def find_many(self, ctx: Context, *, include_disabled: bool = False) -> list[CronTaskRecord]:
        """The user's triggers (enabled ones unless asked), oldest update first; not cached."""
        if include_disabled:
            return await super().find_many(ctx)
        return await self._of_user(ctx, enabled=True)

    async def update(self, id: str, /, **changes: Unpack[CronTaskChanges]) -> None:
        """Merges `changes` and writes the whole row; None keeps task_id and clears the nullable fields.

        Raises LookupError("Cron task not found: <id>"), TypeError for an unknown field.
        """
        await self._update(id, changes)

    @staticmethod
    def _enabled(records: list[CronTaskRecord], include_disabled: bool) -> list[CronTaskRecord]:
        return records if include_disabled else [record for record in records if record.enabled]
