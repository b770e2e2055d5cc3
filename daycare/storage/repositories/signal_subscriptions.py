"""SignalSubscriptionsRepository: which agent hears which signal types, behind a write-through cache.

A subscription is keyed by (user_id, agent_id, pattern). Creating one that exists rewrites its
id, silent flag and updated_at in one upsert, and keeps its created_at. Matching a signal
reads the user's subscriptions with one indexed query, whatever the other users hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pypika_tortoise.queries import Query, QueryBuilder

from daycare.schema import SignalSubscription
from daycare.storage.db.statements import ModelTable, Statement, returning, slot
from daycare.storage.repositories.base import CachedRepository
from daycare.storage.repositories.context import Context

SubscriptionKey = tuple[str, str, str]

SUBSCRIPTION_FIELDS = ("id", "user_id", "agent_id", "pattern", "silent", "created_at", "updated_at")
_KEY_FIELDS = ("user_id", "agent_id", "pattern")
_ORDER = ("user_id", "agent_id", "pattern", "created_at", "id")


def signal_type_matches_pattern(signal_type: str, pattern: str) -> bool:
    """True when both have the same `:`-separated segments, a `*` segment matching any one segment."""
    type_segments = signal_type.strip().split(":")
    pattern_segments = pattern.strip().split(":")
    if not signal_type.strip() or not pattern.strip() or len(type_segments) != len(pattern_segments):
        return False
    return all(wanted in ("*", actual) for wanted, actual in zip(pattern_segments, type_segments, strict=True))


@dataclass(frozen=True, slots=True)
class SignalSubscriptionRecord:
    """An agent's subscription; silent ones are delivered without waking the agent."""

    id: str
    user_id: str
    agent_id: str
    pattern: str
    silent: bool
    created_at: int
    updated_at: int


def _upsert(query: type[Query]) -> QueryBuilder:
    # RETURNING gives the row as stored (created_at kept), so the cache never disagrees with the file.
    subscriptions = ModelTable(SignalSubscription)
    statement = (
        query.into(subscriptions.table)
        .columns(*subscriptions.columns(SUBSCRIPTION_FIELDS))
        .insert(*map(slot, SUBSCRIPTION_FIELDS))
        .on_conflict(*map(subscriptions.column_name, _KEY_FIELDS))
    )
    for field in ("id", "silent", "updated_at"):
        statement = statement.do_update(subscriptions.column_name(field))
    return returning(statement, *subscriptions.columns(SUBSCRIPTION_FIELDS))


def _by_user(query: type[Query]) -> QueryBuilder:
    # The unique (user_id, agent_id, pattern) index answers both the filter and the order.
    subscriptions = ModelTable(SignalSubscription)
    return (
        query.from_(subscriptions.table)
        .select(*subscriptions.columns(SUBSCRIPTION_FIELDS))
        .where(subscriptions["user_id"] == slot("user_id"))
        .orderby(subscriptions["agent_id"])
        .orderby(subscriptions["pattern"])
    )


_UPSERT = Statement(_upsert)
# Every generated signal reads its user's subscriptions: built once.
_BY_USER = Statement(_by_user)


def _order(record: SignalSubscriptionRecord) -> tuple[Any, ...]:
    return tuple(getattr(record, field) for field in _ORDER)


class SignalSubscriptionsRepository(CachedRepository[SubscriptionKey, SignalSubscriptionRecord]):
    """Subscriptions by (user, agent, pattern), cached per instance; returned records are frozen."""

    model = SignalSubscription
    fields = SUBSCRIPTION_FIELDS
    entity = "Signal subscription"
    conflict = _KEY_FIELDS
    key_fields = _KEY_FIELDS

    def key_of(self, record: SignalSubscriptionRecord) -> SubscriptionKey:
        return (record.user_id, record.agent_id, record.pattern)

    def key_filter(self, key: SubscriptionKey) -> dict[str, Any]:
        return dict(zip(_KEY_FIELDS, key, strict=True))

    def record_read(self, row: Mapping[str, Any]) -> SignalSubscriptionRecord:
        return SignalSubscriptionRecord(
            id=row["id"],
            user_id=row["user_id"],
            agent_id=row["agent_id"],
            pattern=row["pattern"],
            silent=bool(row["silent"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    async def create(self, record: SignalSubscriptionRecord) -> None:
        """Inserts the subscription, or gives the existing one for that key this id, silent and updated_at.

        Another subscription that already has this id raises IntegrityError (id is the primary key); a
        blank id or a value of the wrong type raises ValueError or TypeError and writes nothing.
        """
        self._write_check(record)
        key = self.key_of(record)
        async with self._writing(key):
            rows = await _UPSERT.rows(self._conn(), **self.row_of(record))
            stored = self._record(rows[0])
            if stored is None:
                self._cache.evict(key)
            else:
                self._cache.put(key, stored)

    async def delete(self, ctx: Context, pattern: str) -> bool:
        """Removes the context agent's subscription to `pattern` (taken verbatim); needs an agent context."""
        return await self._delete((ctx.user_id, ctx.agent_id, pattern))

    async def find_by_user_and_agent(self, ctx: Context, pattern: str) -> SignalSubscriptionRecord | None:
        """The context agent's subscription to `pattern`; needs an agent context."""
        return await self._find((ctx.user_id, ctx.agent_id, pattern))

    async def find_all(self) -> list[SignalSubscriptionRecord]:
        """Every subscription by user, agent, pattern, created_at, id; the first call loads them all into the cache."""
        if self._cache.all_loaded:
            return sorted(self._cache.records.values(), key=_order)
        return await self._read_cached(self._query().order_by(*_ORDER), complete=True)

    async def find_matching(self, ctx: Context, signal_type: str) -> list[SignalSubscriptionRecord]:
        """The user's subscriptions whose pattern matches `signal_type`, by agent and pattern.

        One indexed query on the user's rows; they are not cached (a signal's delivery needs none again).
        """
        rows = await _BY_USER.rows(self._conn(), user_id=ctx.user_id)
        return [record for record in self._records(rows) if signal_type_matches_pattern(signal_type, record.pattern)]
