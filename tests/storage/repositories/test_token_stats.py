"""TokenStatsRepository: the legacy tokenStatsRepository.spec tests (users and agents seeded), plus concurrency."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime

import pytest

from daycare.storage.db import database as database_module
from daycare.storage.db.database import Database, database_close, database_open
from daycare.storage.facade import Storage
from daycare.storage.migrations.migrate import database_migrate
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.token_stats import TokenStatsRecord
from tests.storage.helpers import violated
from tests.storage.raw_rows import sql_run, stored_rows
from tests.storage.seeds import agent_insert, user_insert

YIELDING_BACKEND = "tests.storage.yielding_backend"


def utc_ms(year: int, month: int, day: int, hour: int, minute: int) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp() * 1000)


async def seed(db: Database, *pairs: tuple[str, str]) -> None:
    for user_id in sorted({user for user, _ in pairs}):
        await user_insert(db, user_id)
    for user_id, agent_id in pairs:
        await agent_insert(db, agent_id, user_id)


async def test_increments_hourly_rows_and_merges_by_hour_user_agent_model(storage: Storage, db: Database) -> None:
    """Legacy: "increments hourly rows and merges by hour/user/agent/model"."""
    await seed(db, ("user-a", "agent-a"))
    ctx = Context("user-a", "agent-a")
    hour = utc_ms(2026, 2, 26, 9, 12)
    model = "openai/gpt-5-mini"
    await storage.token_stats.increment(
        ctx, at=hour, model=model, input=10, output=4, cache_read=2, cache_write=1, cost=0.25
    )
    await storage.token_stats.increment(
        ctx, at=hour + 30_000, model=model, input=1, output=3, cache_read=4, cache_write=5, cost=0.05
    )
    assert await storage.token_stats.find_all() == [
        TokenStatsRecord(utc_ms(2026, 2, 26, 9, 0), "user-a", "agent-a", model, 11, 7, 6, 6, 0.3)
    ]


async def test_filters_rows_by_range_and_identity(storage: Storage, db: Database) -> None:
    """Legacy: "filters rows by range and identity"."""
    await seed(db, ("user-a", "agent-a"), ("user-a", "agent-b"), ("user-b", "agent-c"))
    repo = storage.token_stats
    await repo.increment(
        Context("user-a", "agent-a"),
        at=utc_ms(2026, 2, 26, 8, 5),
        model="anthropic/claude-sonnet-4-5",
        input=10,
        output=1,
        cache_read=0,
        cache_write=0,
        cost=0.2,
    )
    await repo.increment(
        Context("user-a", "agent-b"),
        at=utc_ms(2026, 2, 26, 9, 5),
        model="openai/gpt-5",
        input=2,
        output=3,
        cache_read=1,
        cache_write=1,
        cost=0.1,
    )
    await repo.increment(
        Context("user-b", "agent-c"),
        at=utc_ms(2026, 2, 26, 10, 5),
        model="openai/gpt-5",
        input=9,
        output=9,
        cache_read=9,
        cache_write=9,
        cost=0.9,
    )
    assert len(await repo.find_all(from_=utc_ms(2026, 2, 26, 9, 0), to=utc_ms(2026, 2, 26, 10, 59))) == 2
    by_user = await repo.find_all(user_id="user-a")
    assert len(by_user) == 2 and all(row.user_id == "user-a" for row in by_user)
    by_agent = await repo.find_all(agent_id="agent-b")
    assert [row.agent_id for row in by_agent] == ["agent-b"]
    by_model = await repo.find_all(model="openai/gpt-5")
    assert len(by_model) == 2 and all(row.model == "openai/gpt-5" for row in by_model)


async def hundred_increments_check(db: Database) -> None:
    """A hundred concurrent increments of one row add up exactly."""
    await seed(db, ("user-a", "agent-a"))
    repo = Storage.from_database(db).token_stats
    ctx = Context("user-a", "agent-a")
    at = utc_ms(2026, 2, 26, 9, 0)

    async def one(index: int) -> None:
        await repo.increment(
            ctx,
            at=at + index,
            model="m",
            input=index,
            output=1,
            cache_read=2 * index,
            cache_write=3,
            cost=0.001 * index,
        )

    await asyncio.gather(*(one(index) for index in range(100)))
    [row] = await repo.find_all()
    assert (row.input, row.output, row.cache_read, row.cache_write) == (4950, 100, 9900, 300)
    assert math.isclose(row.cost, 4.95, rel_tol=1e-12)


async def test_hundred_concurrent_increments_add_up_exactly(db: Database) -> None:
    """The sums are added by the database in one statement, so no increment is lost (on PostgreSQL
    the increments run in concurrent transactions)."""
    await hundred_increments_check(db)


@pytest.mark.sqlite_only  # the yielding test backend is a SQLite backend
async def test_hundred_concurrent_increments_add_up_exactly_on_a_yielding_driver(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even on a backend that yields to the event loop around every statement."""
    monkeypatch.setattr(database_module, "BACKEND", YIELDING_BACKEND)
    db = await database_open(sqlite_url)
    try:
        assert type(db.connection()).__module__ == YIELDING_BACKEND
        await database_migrate(db)
        await hundred_increments_check(db)
    finally:
        await database_close(db)


async def test_increment_normalises_and_skips_empty_work(storage: Storage, db: Database) -> None:
    await seed(db, ("user-a", "agent-a"))
    repo = storage.token_stats
    ctx = Context("user-a", "agent-a")
    user_only = Context("user-a")
    # Blank model or nothing to add: no write, and no agent needed.
    await repo.increment(user_only, at=0, model="  ", input=5, output=0, cache_read=0, cache_write=0, cost=1)
    await repo.increment(
        user_only, at=0, model="m", input=-5, output=float("nan"), cache_read=0, cache_write=0, cost=-1
    )
    assert await repo.find_all() == []
    with pytest.raises(ValueError, match=r"^Context has no agentId$"):
        await repo.increment(user_only, at=0, model="m", input=1, output=0, cache_read=0, cache_write=0, cost=0)
    await repo.increment(ctx, at=0, model=" m ", input=2.9, output=-3, cache_read=float("inf"), cache_write=0, cost=0)
    await repo.increment(ctx, at=0, model="m", input=0, output=0, cache_read=0, cache_write=0, cost=0.5)
    rows = await stored_rows(db, "token_stats_hourly", "hour_start")
    assert rows == [
        {
            "hour_start": 0,
            "user_id": "user-a",
            "agent_id": "agent-a",
            "model": "m",
            "input_tokens": 2,
            "output_tokens": 0,
            "cache_read_tokens": 0,
            "cache_write_tokens": 0,
            "cost": 0.5,
        }
    ]
    assert isinstance(rows[0]["cost"], float)


async def test_find_many_uses_the_context(storage: Storage, db: Database) -> None:
    await seed(db, ("user-a", "agent-a"), ("user-a", "agent-b"))
    for agent in ("agent-a", "agent-b"):
        await storage.token_stats.increment(
            Context("user-a", agent), at=0, model="m", input=1, output=0, cache_read=0, cache_write=0, cost=0
        )
    assert [row.agent_id for row in await storage.token_stats.find_many(Context("user-a", "agent-b"))] == ["agent-b"]
    assert [row.agent_id for row in await storage.token_stats.find_many(Context("user-a"), agent_id="agent-a")] == [
        "agent-a"
    ]
    assert len(await storage.token_stats.find_many(Context("user-a"), agent_id=" ")) == 2
    with pytest.raises(ValueError, match=r"^Context has no agentId$"):
        await storage.token_stats.find_many(Context("user-a"))
    assert len(await storage.token_stats.find_all(limit=1)) == 1


async def test_rows_need_their_user_and_agent(storage: Storage, db: Database) -> None:
    with violated("foreign key"):
        await storage.token_stats.increment(
            Context("ghost", "agent"), at=0, model="m", input=1, output=0, cache_read=0, cache_write=0, cost=0
        )
    await seed(db, ("user-a", "agent-a"))
    await storage.token_stats.increment(
        Context("user-a", "agent-a"), at=0, model="m", input=1, output=0, cache_read=0, cache_write=0, cost=0
    )
    await sql_run(db, "DELETE FROM agents WHERE id = 'agent-a'")
    assert await storage.token_stats.find_all() == []


async def test_reads_floor_negative_values(storage: Storage, db: Database) -> None:
    await seed(db, ("user-a", "agent-a"))
    await sql_run(db, "INSERT INTO token_stats_hourly VALUES (0, 'user-a', 'agent-a', 'm', -4, 2, 0, -1, -0.5)")
    [row] = await storage.token_stats.find_all()
    assert (row.input, row.output, row.cache_read, row.cache_write, row.cost) == (0, 2, 0, 0, 0.0)


@pytest.mark.sqlite_only  # only SQLite stores a REAL, text or infinity in an INTEGER column
async def test_reads_floor_broken_values(storage: Storage, db: Database) -> None:
    await seed(db, ("user-a", "agent-a"))
    await sql_run(db, "INSERT INTO token_stats_hourly VALUES (0, 'user-a', 'agent-a', 'm', -4, 2.7, 'x', 9e999, -0.5)")
    [row] = await storage.token_stats.find_all()
    assert (row.input, row.output, row.cache_read, row.cache_write, row.cost) == (0, 2, 0, 0, 0.0)
