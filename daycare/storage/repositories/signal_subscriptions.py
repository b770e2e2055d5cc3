"""SignalSubscriptionsRepository: which agent hears which signal types (legacy §2.10).

A subscription is keyed by (user_id, agent_id, pattern). Creating one that exists rewrites its
id, silent flag and updated_at in one upsert, and keeps its created_at.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from daycare.schema import SignalSubscription
from daycare.storage.db.database import Database
from daycare.storage.repositories.cache import RecordCache
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.statements import column_values, upsert_statement
from daycare.storage.repositories.write_through import cache_fill, cache_find

SubscriptionKey = tuple[str, str, str]

_COLUMNS = ("id", "user_id", "agent_id", "pattern", "silent", "created_at", "updated_at")
# RETURNING gives the row as stored (created_at kept), so the cache never disagrees with the file.
_UPSERT = (
    upsert_statement(
        "signals_subscriptions",
        _COLUMNS,
        conflict=("user_id", "agent_id", "pattern"),
        updates=("id", "silent", "updated_at"),
    )
    + " RETURNING *"
)


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


def _record_read(row: dict[str, Any]) -> SignalSubscriptionRecord:
    return SignalSubscriptionRecord(**{**row, "silent": row["silent"] == 1})


def _key(record: SignalSubscriptionRecord) -> SubscriptionKey:
    return (record.user_id, record.agent_id, record.pattern)


def _order(record: SignalSubscriptionRecord) -> tuple[str, str, str, int, str]:
    return (record.user_id, record.agent_id, record.pattern, record.created_at, record.id)


class SignalSubscriptionsRepository:
    """Signal subscriptions with a write-through cache."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: RecordCache[SubscriptionKey, SignalSubscriptionRecord] = RecordCache()

    async def create(self, record: SignalSubscriptionRecord) -> None:
        """Inserts the subscription, or gives the existing one for that key this id, silent and updated_at.

        Another subscription that already has this id raises IntegrityError (id is the primary key).
        """
        async with self._cache.create_lock:
            rows = await self._db.connection().execute_query_dict(_UPSERT, column_values(record, _COLUMNS))
            stored = _record_read(rows[0])
            self._cache.records[_key(stored)] = stored

    async def delete(self, ctx: Context, pattern: str) -> bool:
        """Removes the context agent's subscription to `pattern` (taken verbatim); needs an agent context."""
        key = (ctx.user_id, ctx.agent_id, pattern)
        async with self._cache.key_locks.hold(key):
            removed = (
                await SignalSubscription.filter(user_id=key[0], agent_id=key[1], pattern=pattern)
                .using_db(self._db.connection())
                .delete()
            )
            self._cache.records.pop(key, None)
            return removed > 0

    async def find_by_user_and_agent(self, ctx: Context, pattern: str) -> SignalSubscriptionRecord | None:
        """The context agent's subscription to `pattern`; needs an agent context."""
        key = (ctx.user_id, ctx.agent_id, pattern)
        return await cache_find(self._cache, key, lambda: self._load(key))

    async def find_many(self) -> list[SignalSubscriptionRecord]:
        """Every subscription by user, agent, pattern, created_at, id; the first call caches them all."""
        if self._cache.all_loaded:
            return sorted(self._cache.records.values(), key=_order)
        rows = (
            await SignalSubscription.all()
            .using_db(self._db.connection())
            .order_by("user_id", "agent_id", "pattern", "created_at", "id")
            .values()
        )
        records = [_record_read(row) for row in rows]
        cache_fill(self._cache, records, _key, clear=True, complete=True)
        return records

    async def find_matching(self, ctx: Context, signal_type: str) -> list[SignalSubscriptionRecord]:
        """The user's subscriptions whose pattern matches `signal_type`."""
        return [
            record
            for record in await self.find_many()
            if record.user_id == ctx.user_id and signal_type_matches_pattern(signal_type, record.pattern)
        ]

    async def _load(self, key: SubscriptionKey) -> SignalSubscriptionRecord | None:
        user_id, agent_id, pattern = key
        row = (
            await SignalSubscription.filter(user_id=user_id, agent_id=agent_id, pattern=pattern)
            .using_db(self._db.connection())
            .first()
            .values()
        )
        return _record_read(row) if row else None
