"""HistoryRepository: the records of each session, in append order (no cache).

A row stores `type` and `at` in their own columns and the rest of the record as JSON text.
Reads skip rows of an unknown type or with broken JSON, as the legacy reader did.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pypika_tortoise.queries import Query, QueryBuilder
from tortoise.functions import Max

from daycare.schema import SessionHistory
from daycare.storage.db.statements import ModelTable, Statement, returning, slot
from daycare.storage.json_values import FrozenDict, frozen, json_decode, json_encode
from daycare.storage.repositories.base import Repository
from daycare.storage.repositories.limits import limit_check

HISTORY_TYPES = frozenset(
    {
        "user_message",
        "assistant_message",
        "rlm_start",
        "rlm_tool_call",
        "rlm_tool_result",
        "rlm_complete",
        "assistant_rewrite",
        "note",
    }
)


@dataclass(frozen=True, slots=True)
class HistoryRecord:
    """One history record: its type, its time (ms) and the rest of the record as frozen JSON.

    `data` keeps the legacy camelCase keys in their stored order (for example `toolCallId`).
    """

    type: str
    at: int
    data: Mapping[str, Any]

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", frozen(self.data))


def history_record_check(record: HistoryRecord) -> None:
    """Raises ValueError for a record the reader would skip or misread: it would be lost."""
    if record.type not in HISTORY_TYPES:
        raise ValueError(f"Unknown history record type {record.type!r}; expected one of {sorted(HISTORY_TYPES)}")
    if isinstance(record.at, bool) or not isinstance(record.at, int):
        raise ValueError(f"History record time must be integer milliseconds, got {record.at!r}")
    if not isinstance(record.data, dict):
        raise ValueError(f"History record data must be a JSON object, got {type(record.data).__name__}")
    clashing = {"type", "at"} & record.data.keys()
    if clashing:
        raise ValueError(f"History record data must not hold {sorted(clashing)}: they are columns of their own")


def _history_parse(rows: Iterable[Any]) -> list[HistoryRecord]:
    records = []
    for row in rows:
        kind = row["type"]
        if kind not in HISTORY_TYPES:
            continue
        try:
            data = json_decode(row["data"])
        except ValueError:
            continue
        if isinstance(data, FrozenDict):
            records.append(HistoryRecord(kind, row["at"], data))
    return records


_READ_FIELDS = ("type", "at", "data")


def _insert(query: type[Query]) -> QueryBuilder:
    history = ModelTable(SessionHistory)
    fields = ("session_id", "type", "at", "data")
    return returning(
        query.into(history.table).columns(*history.columns(fields)).insert(*map(slot, fields)), history["id"]
    )


def _by_session(query: type[Query], *, after_id: bool = False) -> QueryBuilder:
    history = ModelTable(SessionHistory)
    condition = history["session_id"] == slot("session_id")
    if after_id:
        condition &= history["id"] > slot("after_id")
    return query.from_(history.table).select(*history.columns(_READ_FIELDS)).where(condition).orderby(history["id"])


# Appends and per-session reads are the busiest statements of a running agent: built once.
_INSERT = Statement(_insert)
_BY_SESSION = Statement(_by_session)
_SINCE_ID = Statement(lambda query: _by_session(query, after_id=True))


class HistoryRepository(Repository[HistoryRecord]):
    """Session history rows; ids grow with every append and are never reused."""

    model = SessionHistory
    fields = _READ_FIELDS

    async def find_by_session_id(self, session_id: str) -> list[HistoryRecord]:
        """The records of a session in append order."""
        return _history_parse(await _BY_SESSION.rows(self._conn(), session_id=session_id))

    async def find_by_agent_id(self, agent_id: str, limit: int | None = None) -> list[HistoryRecord]:
        """The records of all of an agent's sessions (oldest session first); `limit` keeps the oldest N."""
        if limit is not None and limit_check(limit) == 0:
            return []  # Tortoise drops a zero LIMIT; a LIMIT 0 returns nothing.
        query = self._query(session__agent_id=agent_id).order_by("session__created_at", "id")
        if limit is not None:
            query = query.limit(limit)
        return _history_parse(await query.values(*_READ_FIELDS))

    async def append(self, session_id: str, record: HistoryRecord) -> int:
        """Stores the record and returns its new id; an unknown session raises the foreign key error."""
        history_record_check(record)
        rows = await _INSERT.rows(
            self._conn(), session_id=session_id, type=record.type, at=record.at, data=json_encode(record.data)
        )
        return int(rows[0]["id"])

    async def find_since_id(self, session_id: str, after_id: int) -> list[HistoryRecord]:
        """The records of a session with an id above `after_id`, in append order."""
        return _history_parse(await _SINCE_ID.rows(self._conn(), session_id=session_id, after_id=after_id))

    async def max_id(self, session_id: str) -> int | None:
        """The largest record id of a session, or None when it has none."""
        value: Any = (
            await self._query(session_id=session_id).annotate(max_id=Max("id")).first().values_list("max_id", flat=True)
        )
        return None if value is None else int(value)
