"""TokenStatsRepository: token and cost sums per hour, user, agent and model (legacy §2.18, no cache).

An increment adds to the row of its hour in one statement, so concurrent increments never lose
an update. Reads floor every counter at 0 (and truncate it); cost is floored at 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from daycare.storage.clock import now_ms
from daycare.storage.db.database import Database
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.limits import limit_resolve

HOUR_MS = 3_600_000

_INCREMENT = (
    "INSERT INTO token_stats_hourly (hour_start, user_id, agent_id, model, input_tokens, output_tokens, "
    "cache_read_tokens, cache_write_tokens, cost) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(hour_start, user_id, agent_id, model) DO UPDATE SET "
    "input_tokens = input_tokens + excluded.input_tokens, "
    "output_tokens = output_tokens + excluded.output_tokens, "
    "cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens, "
    "cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens, "
    "cost = cost + excluded.cost"
)


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


def _record_read(row: dict[str, Any]) -> TokenStatsRecord:
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


class TokenStatsRepository:
    """Hourly token and cost rollups; the user and the agent must exist (foreign keys)."""

    def __init__(self, db: Database) -> None:
        self._db = db

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
        model = model.strip()
        if not model:
            return
        counts = [token_count(value) for value in (input, output, cache_read, cache_write)]
        amount = token_cost(cost)
        if not any(counts) and amount <= 0:
            return
        hour = hour_start(now_ms() if at is None else at)
        await self._db.connection().execute_query(_INCREMENT, [hour, ctx.user_id, ctx.agent_id, model, *counts, amount])

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
        where: list[str] = []
        values: list[Any] = []
        if from_ is not None:
            where.append("hour_start >= ?")
            values.append(hour_start(from_))
        if to is not None:
            where.append("hour_start <= ?")
            values.append(hour_start(to))
        for column, value in (("user_id", user_id), ("agent_id", agent_id), ("model", model)):
            if value is not None and value.strip():
                where.append(f"{column} = ?")
                values.append(value.strip())
        sql = "SELECT * FROM token_stats_hourly"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY hour_start ASC, user_id ASC, agent_id ASC, model ASC"
        page_size = limit_resolve(limit)
        if page_size is not None:
            sql += " LIMIT ?"
            values.append(page_size)
        rows = await self._db.connection().execute_query_dict(sql, values)
        return [_record_read(row) for row in rows]
