"""SignalEventsRepository: signals that were generated, in the order they happened (no cache).

`data` SQL NULL means the signal had no payload (`ABSENT` here); the text `null` is JSON null.
Reads order by `created_at`, then insertion order: events of the same millisecond keep the
order they were written in.

Nothing is cached: an event is written once and read rarely, mostly as a page or the latest
few of a user, which a cache by id cannot answer, so caching every event only cost memory.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from pypika_tortoise.enums import Order
from pypika_tortoise.queries import Query, QueryBuilder
from pypika_tortoise.terms import Criterion

from daycare.schema import SignalEvent
from daycare.storage.db.dialect import insertion_order
from daycare.storage.db.statements import ModelTable, Statement, slot, upsert_statement
from daycare.storage.json_values import FrozenDict, frozen, json_encode
from daycare.storage.repositories.base import Repository
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.lenient_json import json_decode_or
from daycare.storage.repositories.limits import limit_clamp, limit_resolve, offset_resolve


class Absent(enum.Enum):
    """The type of ABSENT: a signal without a payload (JS `undefined`), distinct from JSON null."""

    ABSENT = "absent"

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = Absent.ABSENT

# What a source that is not valid JSON reads as.
_SOURCE_FALLBACK = FrozenDict(type="system", userId="unknown")


def signal_source_decode(text: str) -> Any:
    """A stored SignalSource; text that is not JSON reads as a system source of user "unknown"."""
    return json_decode_or(text, _SOURCE_FALLBACK)


def signal_data_decode(text: str | None) -> Any:
    """A stored payload; NULL and text that is not JSON both read as ABSENT."""
    return json_decode_or(text, ABSENT)


def signal_data_encode(data: Any, field: str = "Signal data") -> str | None:
    """NULL for ABSENT, otherwise the payload as JSON (None becomes the text `null`); `field` names it in errors."""
    return None if data is ABSENT else json_encode(data, field)


EVENT_FIELDS = ("id", "user_id", "type", "source", "data", "created_at")
# The largest LIMIT that SQLite and PostgreSQL both take: an offset without a page size. SQLite
# has no OFFSET without a LIMIT, and no table holds more rows than this.
_NO_LIMIT = 2**63 - 1


@dataclass(frozen=True, slots=True)
class SignalEventRecord:
    """A generated signal; `source` is `{type, id?, userId}`, `data` any JSON value or ABSENT."""

    id: str
    user_id: str
    type: str
    source: Mapping[str, Any]
    created_at: int
    data: Any = ABSENT

    def __post_init__(self) -> None:
        object.__setattr__(self, "source", frozen(self.source))
        object.__setattr__(self, "data", frozen(self.data))


def _select(query: type[Query], *, by_user: bool = False, by_type: bool = False, by_id: bool = False) -> QueryBuilder:
    events = ModelTable(SignalEvent)
    select = query.from_(events.table).select(*events.columns(EVENT_FIELDS))
    conditions: list[Criterion] = []
    if by_id:
        conditions.append(events["id"] == slot("id"))
    if by_user:
        conditions.append(events["user_id"] == slot("user_id"))
    if by_type:
        conditions.append(events["type"] == slot("type"))
    return select.where(Criterion.all(conditions)) if conditions else select


def _ordered(query: type[Query], select: QueryBuilder, order: Order = Order.asc) -> QueryBuilder:
    """`select` by created_at, then by insertion order (ties keep the order they were written in)."""
    events = ModelTable(SignalEvent)
    return select.orderby(events["created_at"], order=order).orderby(insertion_order(query, events.table), order=order)


@cache
def _page(by_user: bool, by_type: bool, paged: bool) -> Statement:
    """The events oldest first, filtered by the slots `user_id` and `type`, paged by `limit` and `offset`."""

    def build(query: type[Query]) -> QueryBuilder:
        select = _ordered(query, _select(query, by_user=by_user, by_type=by_type))
        return select.limit(slot("limit")).offset(slot("offset")) if paged else select

    return Statement(build)


@cache
def _recent(by_user: bool) -> Statement:
    """The `limit` latest events, newest first, of the slot `user_id` or of everyone."""
    return Statement(lambda query: _ordered(query, _select(query, by_user=by_user), Order.desc).limit(slot("limit")))


_UPSERT = upsert_statement(SignalEvent, EVENT_FIELDS)
_BY_ID = Statement(lambda query: _select(query, by_id=True).limit(1))


class SignalEventsRepository(Repository[SignalEventRecord]):
    """Signal events read and written directly; nothing is cached (see the module docstring)."""

    model = SignalEvent
    fields = EVENT_FIELDS
    entity = "Signal event"

    def record_read(self, row: Mapping[str, Any]) -> SignalEventRecord:
        return SignalEventRecord(
            id=row["id"],
            user_id=row["user_id"],
            type=row["type"],
            source=signal_source_decode(row["source"]),
            data=signal_data_decode(row["data"]),
            created_at=row["created_at"],
        )

    async def create(self, record: SignalEventRecord) -> None:
        """Inserts the event, or overwrites every column of the event with this id. A blank id or a value
        of the wrong type raises ValueError or TypeError and writes nothing."""
        self._write_check(record)
        await _UPSERT.run(
            self._conn(),
            id=record.id,
            user_id=record.user_id,
            type=record.type,
            source=json_encode(record.source, "Signal event source"),
            data=signal_data_encode(record.data, "Signal event data"),
            created_at=record.created_at,
        )

    async def find_many(
        self, ctx: Context, *, type: str | None = None, limit: float | None = None, offset: float | None = None
    ) -> list[SignalEventRecord]:
        """The user's events; see find_all."""
        return await self.find_all(user_id=ctx.user_id, type=type, limit=limit, offset=offset)

    async def find_all(
        self,
        *,
        user_id: str | None = None,
        type: str | None = None,
        limit: float | None = None,
        offset: float | None = None,
    ) -> list[SignalEventRecord]:
        """Events oldest first, filtered by user and type, paged by limit and offset; empty filters are ignored.

        An offset without a limit skips that many events and returns the rest.
        """
        page_size = limit_resolve(limit)
        skip = offset_resolve(offset)
        paged = page_size is not None or skip > 0
        bound: dict[str, Any] = {}
        if user_id:
            bound["user_id"] = user_id
        if type:
            bound["type"] = type
        if paged:
            bound["limit"] = _NO_LIMIT if page_size is None else page_size
            bound["offset"] = skip
        statement = _page(bool(user_id), bool(type), paged)
        return self._records(await statement.rows(self._conn(), **bound))

    async def find_recent(self, ctx: Context, limit: float = 200) -> list[SignalEventRecord]:
        """The user's latest `limit` events (1..1000), oldest first."""
        rows = await _recent(True).rows(self._conn(), user_id=ctx.user_id, limit=limit_clamp(limit, 1, 1000))
        return self._records(reversed(rows))

    async def find_recent_all(self, limit: float = 200) -> list[SignalEventRecord]:
        """Every user's latest `limit` events (1..1000), oldest first."""
        rows = await _recent(False).rows(self._conn(), limit=limit_clamp(limit, 1, 1000))
        return self._records(reversed(rows))

    async def find_by_id(self, id: str) -> SignalEventRecord | None:
        """The event with this id, or None."""
        rows = await _BY_ID.rows(self._conn(), id=id)
        return self._record(rows[0]) if rows else None
