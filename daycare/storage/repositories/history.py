"""HistoryRepository: the records of each session, in append order (no cache).

A row stores `type` and `at` in their own columns and the rest of the record as JSON text.
Reads skip rows of an unknown type, with broken JSON or with a time that is not an integer, as
the legacy reader skipped the first two; each such row is logged once. The busy reads select no
id: a read that meets such a row reads again with the ids, to name the row it skips.
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
from daycare.storage.repositories.record_checks import ROW_ERRORS, json_column, key_check

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


_TYPE_SET, _AT_SET, _DATA_SET = (HistoryRecord.__dict__[name].__set__ for name in ("type", "at", "data"))


def _record_trusted(kind: str, at: int, data: FrozenDict) -> HistoryRecord:
    """A record from values the reader already checked and froze: skips the constructor's freezing
    (twice as fast; a session read builds one per row)."""
    record = object.__new__(HistoryRecord)
    _TYPE_SET(record, kind)
    _AT_SET(record, at)
    _DATA_SET(record, data)
    return record


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


_READ_FIELDS = ("type", "at", "data")
_KEYED_FIELDS = ("id", *_READ_FIELDS)  # a read that meets a bad row reads again with ids, to log its key


def _insert(query: type[Query]) -> QueryBuilder:
    history = ModelTable(SessionHistory)
    fields = ("session_id", "type", "at", "data")
    return returning(
        query.into(history.table).columns(*history.columns(fields)).insert(*map(slot, fields)), history["id"]
    )


def _by_session(query: type[Query], *, after_id: bool = False, keyed: bool = False) -> QueryBuilder:
    history = ModelTable(SessionHistory)
    condition = history["session_id"] == slot("session_id")
    if after_id:
        condition &= history["id"] > slot("after_id")
    columns = history.columns(_KEYED_FIELDS if keyed else _READ_FIELDS)
    return query.from_(history.table).select(*columns).where(condition).orderby(history["id"])


# Appends and per-session reads are the busiest statements of a running agent: built once.
_INSERT = Statement(_insert)
_BY_SESSION = Statement(_by_session)
_SINCE_ID = Statement(lambda query: _by_session(query, after_id=True))
_BY_SESSION_KEYED = Statement(lambda query: _by_session(query, keyed=True))
_SINCE_ID_KEYED = Statement(lambda query: _by_session(query, after_id=True, keyed=True))


def _parse(rows: Iterable[Any]) -> list[HistoryRecord] | None:
    """The records of `rows`, or None when one of them cannot be read (the checks of `record_read`,
    inline: this runs for every record of every session read)."""
    records = []
    for kind, at, text in rows:  # the columns of _READ_FIELDS, by position: faster than by name on both drivers
        if kind not in HISTORY_TYPES or type(at) is not int:
            return None
        try:
            data = json_decode(text)
        except ROW_ERRORS:
            return None
        if not isinstance(data, FrozenDict):
            return None
        records.append(_record_trusted(kind, at, data))
    return records


class HistoryRepository(Repository[HistoryRecord]):
    """Session history rows; ids grow with every append and are never reused."""

    model = SessionHistory
    fields = _KEYED_FIELDS
    entity = "History record"

    def record_read(self, row: Mapping[str, Any]) -> HistoryRecord:
        """The record of a row; raises ValueError for a row that reads skip."""
        kind = row["type"]
        if kind not in HISTORY_TYPES:
            raise ValueError(f"type {kind!r} is not a history record type")
        at = row["at"]
        if type(at) is not int:
            raise ValueError(f"at must be integer milliseconds, got {type(at).__name__} {at!r}")
        data = json_column(row, "data")
        if not isinstance(data, FrozenDict):
            raise ValueError(f"data must be a JSON object, got {type(data).__name__}")
        return HistoryRecord(kind, at, data)

    async def find_by_session_id(self, session_id: str) -> list[HistoryRecord]:
        """The records of a session in append order."""
        conn = self._conn()
        records = _parse(await _BY_SESSION.rows(conn, session_id=session_id))
        if records is None:
            records = self._records(await _BY_SESSION_KEYED.rows(conn, session_id=session_id))
        return records

    async def find_by_agent_id(self, agent_id: str, limit: int | None = None) -> list[HistoryRecord]:
        """The records of all of an agent's sessions (oldest session first); `limit` keeps the oldest N."""
        if limit is not None and limit_check(limit) == 0:
            return []  # Tortoise drops a zero LIMIT; a LIMIT 0 returns nothing.
        query = self._query(session__agent_id=agent_id).order_by("session__created_at", "id")
        if limit is not None:
            query = query.limit(limit)
        records = _parse(await query.values_list(*_READ_FIELDS))
        if records is None:
            records = self._records(await query.values(*_KEYED_FIELDS))
        return records

    async def append(self, session_id: str, record: HistoryRecord) -> int:
        """Stores the record and returns its new id; an unknown session raises the foreign key error.

        A blank session id, or data with NaN, Infinity or a value JSON cannot hold, raises and writes nothing.
        """
        key_check(session_id, "History record session_id")
        history_record_check(record)
        data = json_encode(record.data, "History record data")
        rows = await _INSERT.rows(self._conn(), session_id=session_id, type=record.type, at=record.at, data=data)
        return int(rows[0]["id"])

    async def find_since_id(self, session_id: str, after_id: int) -> list[HistoryRecord]:
        """The records of a session with an id above `after_id`, in append order."""
        conn = self._conn()
        records = _parse(await _SINCE_ID.rows(conn, session_id=session_id, after_id=after_id))
        if records is None:
            records = self._records(await _SINCE_ID_KEYED.rows(conn, session_id=session_id, after_id=after_id))
        return records

    async def max_id(self, session_id: str) -> int | None:
        """The largest record id of a session, or None when it has none."""
        value: Any = (
            await self._query(session_id=session_id).annotate(max_id=Max("id")).first().values_list("max_id", flat=True)
        )
        return None if value is None else int(value)
