"""TokenStatsRepository: token and cost sums per hour, user, agent and model (no cache).

An increment adds to the row of its hour in one statement, so concurrent increments never lose
an update. Reads floor every counter at 0 (and truncate it); cost is floored at 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pypika_tortoise.queries import Query, QueryBuilder, Table

from daycare.schema import TokenStatsHourly
from daycare.storage.clock import now_ms
from daycare.storage.db.statements import ModelTable, Statement, slot
from daycare.storage.repositories.base import Repository
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.limits import limit_resolve
from daycare.storage.repositories.record_checks import number_check, text_check

HOUR_MS = 3_600_000

TOKEN_STATS_KEY = ("hour_start", "user_id", "agent_id", "model")
TOKEN_STATS_SUMS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost")
TOKEN_STATS_FIELDS = (*TOKEN_STATS_KEY, *TOKEN_STATS_SUMS)


def _increment(query: type[Query]) -> QueryBuilder:
    """Inserts the hour's row, or adds each sum of the excluded (new) row to the stored sum."""
    stats = ModelTable(TokenStatsHourly)
    excluded = Table("excluded")
    upsert = (
        query.into(stats.table)
        .columns(*stats.columns(TOKEN_STATS_FIELDS))
        .insert(*map(slot, TOKEN_STATS_FIELDS))
        .on_conflict(*(stats.column_name(field) for field in TOKEN_STATS_KEY))
    )
    for field in TOKEN_STATS_SUMS:
        column = stats.column_name(field)
        upsert = upsert.do_update(column, stats[field] + excluded[column])
    return upsert


# One statement: the database adds, so no increment reads a sum that another is about to replace.
_INCREMENT = Statement(_increment)


@dataclass(frozen=True, slots=True)
class TokenStatsRecord:
    """The sums of one hour (hour_start: ms floored to the hour) for a user, agent and model."""

    hour_start: int
    user_id: str
    agent_id: str
    model: str
    input: int
    output: int
    cache_read: int
    cache_write: int
    cost: float


def hour_start(at_ms: float) -> int:
    """The start of the hour that contains `at_ms`, in ms."""
    return math.floor(at_ms / HOUR_MS) * HOUR_MS


def token_count(value: Any) -> int:
    """A token count as stored: 0 unless a finite number, truncated, at least 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return 0
    return max(0, math.trunc(value))


def token_cost(value: Any) -> float:
    """A cost as stored: 0 unless a finite number, at least 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return 0.0
    return max(0.0, float(value))


class TokenStatsRepository(Repository[TokenStatsRecord]):
    """Hourly token and cost rollups; the user and the agent must exist (foreign keys)."""

    model = TokenStatsHourly
    fields = TOKEN_STATS_FIELDS
    entity = "Token stats"
    key_fields = TOKEN_STATS_KEY

    def record_read(self, row: Mapping[str, Any]) -> TokenStatsRecord:
        return TokenStatsRecord(
            hour_start=token_count(row["hour_start"]),
            user_id=row["user_id"],
            agent_id=row["agent_id"],
            model=row["model"],
            input=token_count(row["input_tokens"]),
            output=token_count(row["output_tokens"]),
            cache_read=token_count(row["cache_read_tokens"]),
            cache_write=token_count(row["cache_write_tokens"]),
            cost=token_cost(row["cost"]),
        )

    async def increment(
        self,
        ctx: Context,
        *,
        model: str,
        input: float,
        output: float,
        cache_read: float,
        cache_write: float,
        cost: float,
        at: int | None = None,
    ) -> None:
        """Adds the counts (floored at 0) to the hour of `at` (default now) for the context's agent.

        A blank model, or nothing to add, changes nothing; otherwise a user-only context raises.
        """
        text_check(model, "Token stats model")
        number_check(at, "Token stats at", nullable=True)
        model = model.strip()
        if not model:
            return
        counts = [token_count(value) for value in (input, output, cache_read, cache_write)]
        amount = token_cost(cost)
        if not any(counts) and amount <= 0:
            return
        input_tokens, output_tokens, cache_read_tokens, cache_write_tokens = counts
        await _INCREMENT.run(
            self._conn(),
            hour_start=hour_start(now_ms() if at is None else at),
            user_id=ctx.user_id,
            agent_id=ctx.agent_id,
            model=model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_tokens=cache_read_tokens,
            cache_write_tokens=cache_write_tokens,
            cost=amount,
        )

    async def find_many(
        self,
        ctx: Context,
        *,
        from_: float | None = None,
        to: float | None = None,
        agent_id: str | None = None,
        model: str | None = None,
        limit: float | None = None,
    ) -> list[TokenStatsRecord]:
        """The user's rows; agent_id defaults to the context's agent (a user-only context then raises)."""
        return await self.find_all(
            from_=from_,
            to=to,
            user_id=ctx.user_id,
            agent_id=ctx.agent_id if agent_id is None else agent_id,
            model=model,
            limit=limit,
        )

    async def find_all(
        self,
        *,
        from_: float | None = None,
        to: float | None = None,
        user_id: str | None = None,
        agent_id: str | None = None,
        model: str | None = None,
        limit: float | None = None,
    ) -> list[TokenStatsRecord]:
        """Rows by hour, user, agent and model; `from_`/`to` are floored to the hour and inclusive.

        Blank user, agent and model filters are ignored.
        """
        filters: dict[str, Any] = {}
        if from_ is not None:
            filters["hour_start__gte"] = hour_start(from_)
        if to is not None:
            filters["hour_start__lte"] = hour_start(to)
        for field, value in (("user_id", user_id), ("agent_id", agent_id), ("model", model)):
            if value is not None and value.strip():
                filters[field] = value.strip()
        query = self._query(**filters).order_by(*TOKEN_STATS_KEY)
        page_size = limit_resolve(limit)
        return await self._read(query if page_size is None else query.limit(page_size))
