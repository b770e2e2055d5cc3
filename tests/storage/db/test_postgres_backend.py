"""The PostgreSQL client: transactions seen by their own Database, and connections reused only when clean."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from daycare.storage.db.database import Database, database_close, database_open
from daycare.storage.facade import Storage
from daycare.storage.migrations.migrate import database_migrate
from daycare.storage.repositories.agents import AgentRecord
from tests.postgres_server import postgres_connect


@pytest.fixture
async def pg(postgres_url: str) -> AsyncIterator[Database]:
    """A migrated PostgreSQL database on a fresh schema."""
    database = await database_open(postgres_url)
    await database_migrate(database)
    yield database
    await database_close(database)


async def backend_pid(db: Database) -> int:
    _, rows = await db.connection().execute_query("SELECT pg_backend_pid() AS pid")
    return int(rows[0]["pid"])


def agent(user_id: str, agent_id: str = "agent-1") -> AgentRecord:
    return AgentRecord(agent_id, user_id, "cron", {}, None, {}, None, {}, "active", 1, 1)


async def owner_id(storage: Storage) -> str:
    users = await storage.users.find_all()
    return next(user.id for user in users if user.is_owner)


async def test_statements_inside_in_transaction_run_on_its_connection(pg: Database) -> None:
    async with pg.in_transaction() as transaction:
        assert pg.connection() is transaction
        _, rows = await transaction.execute_query("SELECT pg_backend_pid() AS pid")
        assert await backend_pid(pg) == rows[0]["pid"]
    assert pg.connection() is not transaction


async def test_a_repository_write_inside_a_failed_transaction_is_rolled_back(pg: Database) -> None:
    storage = Storage.from_database(pg)
    await storage.create_agent_with_session(agent(await owner_id(storage)))
    with pytest.raises(RuntimeError, match="abandoned"):
        async with pg.in_transaction():
            await storage.inbox.insert("item-1", "agent-1", 1, "message", "{}")
            raise RuntimeError("abandoned")
    assert await storage.inbox.find_by_agent_id("agent-1") == []
    await storage.inbox.insert("item-2", "agent-1", 2, "message", "{}")
    assert [item.id for item in await storage.inbox.find_by_agent_id("agent-1")] == ["item-2"]


async def test_a_connection_the_server_ended_while_free_is_replaced(pg: Database, postgres_url: str) -> None:
    pid = await backend_pid(pg)
    admin = await postgres_connect(postgres_url)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()
    await asyncio.sleep(0.5)  # the client sees the connection close
    assert await backend_pid(pg) != pid


async def test_tasks_waiting_for_the_pool_get_the_connections_given_back(pg: Database) -> None:
    # More tasks than the pool has connections, each holding one a while: the last ones wait for the pool
    # and must get the connections the first ones give back, not find them parked on the free list.
    async def hold() -> None:
        async with pg.in_transaction() as transaction:
            await transaction.execute_query("SELECT pg_sleep(0.05)")

    await asyncio.wait_for(asyncio.gather(*(hold() for _ in range(20))), timeout=20)


async def test_close_is_prompt_after_reused_connections(postgres_url: str) -> None:
    db = await database_open(postgres_url)
    await asyncio.gather(*(db.connection().execute_query("SELECT pg_sleep(0.05)") for _ in range(5)))
    async with db.in_transaction() as transaction:
        await transaction.execute_query("SELECT 1")
    started = time.monotonic()
    await database_close(db)
    assert time.monotonic() - started < 2  # the pool's close would wait 10 s for connections never given back


async def test_a_failed_transaction_leaves_a_usable_connection(pg: Database) -> None:
    with pytest.raises(Exception, match="division by zero"):
        async with pg.in_transaction() as transaction:
            await transaction.execute_query("SELECT 1 / 0")
    async with pg.in_transaction() as transaction:
        _, rows = await transaction.execute_query("SELECT 2 AS two")
    assert rows[0]["two"] == 2
