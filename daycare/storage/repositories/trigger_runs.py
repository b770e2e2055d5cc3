"""TriggerRunsRepository: the latest occurrence claimed of each cron trigger and of the heartbeat round.

A claim is the conditional upsert of one row, `occurrence_at` only ever moving forward: of two
engines claiming one occurrence, the second finds the row already there and claims nothing. A
scheduler claims inside the transaction that delivers the run (`claiming`), so a run is either
claimed and delivered, or neither: whichever engine leads, each occurrence runs once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from pypika_tortoise.queries import Query, QueryBuilder, Table

from daycare.schema import TriggerRun
from daycare.storage.db.statements import ModelTable, Statement, returning, rows_statement, slot
from daycare.storage.repositories.base import Repository

RUN_FIELDS = ("id", "occurrence_at", "claimed_at", "engine")
HEARTBEAT_ROUND = "heartbeat"  # the id of the heartbeat round: every heartbeat trigger runs in it


def cron_run_id(trigger_id: str) -> str:
    """The id under which a cron trigger's occurrences are claimed."""
    return f"cron:{trigger_id}"


@dataclass(frozen=True, slots=True)
class TriggerRunRecord:
    """The latest claimed occurrence of `id` (Unix ms), when and by which engine it was claimed."""

    id: str
    occurrence_at: int
    claimed_at: int
    engine: str


def _claim(query: type[Query]) -> QueryBuilder:
    """Inserts the claim, or moves the stored one forward when it is older; returns the row only when it did."""
    runs = ModelTable(TriggerRun)
    excluded = Table("excluded")
    upsert = (
        query.into(runs.table)
        .columns(*runs.columns(RUN_FIELDS))
        .insert(*map(slot, RUN_FIELDS))
        .on_conflict(runs.column_name("id"))
    )
    for field in RUN_FIELDS[1:]:
        column = runs.column_name(field)
        upsert = upsert.do_update(column, excluded[column])
    upsert = upsert.where(runs["occurrence_at"] < excluded[runs.column_name("occurrence_at")])
    return returning(upsert, runs["id"])


_CLAIM = Statement(_claim)
# Both read at every engine start.
_RUN_BY_ID = rows_statement(TriggerRun, RUN_FIELDS, where=("id",))
_EVERY_RUN = rows_statement(TriggerRun, RUN_FIELDS, order=("id",))


class TriggerRunsRepository(Repository[TriggerRunRecord]):
    """Claims of trigger occurrences; nothing is cached (every engine must see the others' claims)."""

    model = TriggerRun
    fields = RUN_FIELDS
    entity = "Trigger run"

    def record_read(self, row: Mapping[str, Any]) -> TriggerRunRecord:
        return TriggerRunRecord(row["id"], row["occurrence_at"], row["claimed_at"], row["engine"])

    async def find_by_id(self, id: str) -> TriggerRunRecord | None:
        rows = await _RUN_BY_ID.rows(self._conn(), id=id)
        return self._record(rows[0]) if rows else None

    async def find_all(self) -> list[TriggerRunRecord]:
        return await self._read(_EVERY_RUN)

    async def claim(self, id: str, occurrence_at: int, *, claimed_at: int, engine: str) -> bool:
        """Claims the occurrence unless it, or a later one, is claimed already; whether this call claimed it."""
        rows = await _CLAIM.rows(self._conn(), id=id, occurrence_at=occurrence_at, claimed_at=claimed_at, engine=engine)
        return bool(rows)

    @asynccontextmanager
    async def claiming(self, id: str, occurrence_at: int, *, claimed_at: int, engine: str) -> AsyncIterator[bool]:
        """`async with runs.claiming(...) as claimed:` claims in a transaction that the block's writes join.

        The claim commits with them, or is undone with them when the block raises.
        """
        async with self._db.in_transaction():
            yield await self.claim(id, occurrence_at, claimed_at=claimed_at, engine=engine)

    async def delete(self, id: str) -> bool:
        """Forgets the claims of `id` (its trigger is gone)."""
        return bool(await self._query(id=id).delete())
