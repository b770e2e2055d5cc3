"""HeartbeatTasksRepository: tasks run together on every heartbeat.

What every trigger shares (task id rules, the user's triggers, the cache) is in
`daycare.storage.repositories.triggers`; a heartbeat adds the run stamps, written for many
entries in one statement.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TypedDict, Unpack

from daycare.schema import HeartbeatTrigger
from daycare.storage.repositories.record_checks import key_check, number_check
from daycare.storage.repositories.triggers import TriggersRepository

HEARTBEAT_FIELDS = ("id", "task_id", "user_id", "title", "last_run_at", "created_at", "updated_at")


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


class HeartbeatTaskChanges(TypedDict, total=False):
    """The fields `HeartbeatTasksRepository.update` can change; None keeps task_id and user_id."""

    task_id: str | None
    user_id: str | None
    title: str
    last_run_at: int | None
    created_at: int
    updated_at: int


class HeartbeatTasksRepository(TriggersRepository[HeartbeatTaskRecord]):
    """Heartbeat entries by id, cached."""

    model = HeartbeatTrigger
    fields = HEARTBEAT_FIELDS
    record_type = HeartbeatTaskRecord
    entity = "Heartbeat task"
    label = "Heartbeat trigger"
    keep_if_none = frozenset({"task_id", "user_id"})
    nullable = frozenset({"last_run_at"})

    async def update(self, id: str, /, **changes: Unpack[HeartbeatTaskChanges]) -> None:
        """Merges `changes` and writes the whole row; None keeps task_id and user_id, clears last_run_at.

        Raises LookupError("Heartbeat task not found: <id>"), TypeError for an unknown field.
        """
        await self._update(id, changes)

    async def record_run(self, run_at: int) -> None:
        """Sets last_run_at = updated_at = run_at on every entry of every user, in one update statement
        after reading which entries exist (so that it can hold their write locks).

        The legacy scheduler stamped every row this way even for a run of some entries; the
        engine's scheduler uses `record_run_for` with the entries that ran.
        """
        # The entries present now; one created meanwhile counts as created after this run.
        ids = await self._query().values_list("id", flat=True)
        await self._stamp([str(id) for id in ids], run_at)

    async def record_run_for(self, ids: Collection[str], run_at: int) -> None:
        """Sets last_run_at = updated_at = run_at on these entries only (one statement); unknown ids are skipped."""
        if isinstance(ids, str):
            raise TypeError("record_run_for takes a collection of ids, not one string")
        await self._stamp(ids, run_at)

    async def _stamp(self, ids: Collection[str], run_at: int) -> None:
        """Stamps the entries in one statement, holding their write locks (in sorted order, so that two
        stamps never deadlock) while it runs and while the cached records are replaced."""
        number_check(run_at, "Heartbeat task last_run_at")
        for id in ids:
            key_check(id, "Heartbeat task id")
        keys: Sequence[str] = sorted(set(ids))
        if not keys:
            return
        async with AsyncExitStack() as locks:
            for key in keys:
                await locks.enter_async_context(self._writing(key))
            await self._query(id__in=keys).update(last_run_at=run_at, updated_at=run_at)
            for key in keys:
                cached = self._cache.get(key)
                if cached is not None:
                    self._cache.put(key, dataclasses.replace(cached, last_run_at=run_at, updated_at=run_at))
