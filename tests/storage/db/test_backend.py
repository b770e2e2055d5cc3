"""The SQLite backend: atomic scripts, transactions that hold the connection, savepoints."""

from __future__ import annotations

import asyncio

import pytest
from tortoise.exceptions import IntegrityError, OperationalError

from daycare.storage.db.backend import script_statements
from daycare.storage.db.database import Database

# The SQLite backend's own guarantees (PostgreSQL's client is Tortoise's asyncpg client; its
# atomic migrations are tested with the migration suite).
pytestmark = pytest.mark.sqlite_only


async def table_count(db: Database, name: str) -> int:
    rows = await db.connection().execute_query_dict(
        "SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = ?", [name]
    )
    return int(rows[0]["n"])


def test_scripts_split_into_statements_with_trigger_bodies_whole() -> None:
    script = """CREATE TABLE a (x TEXT DEFAULT ';');
    CREATE TRIGGER t BEFORE INSERT ON a BEGIN SELECT RAISE(ABORT, 'no; never'); END;
    -- a comment; with a semicolon
    INSERT INTO a VALUES ('1');"""
    statements = list(script_statements(script))
    assert len(statements) == 3
    assert statements[1].endswith("END;")


async def test_a_script_failing_halfway_applies_nothing(db: Database) -> None:
    with pytest.raises(OperationalError):
        await db.connection().execute_script(
            "CREATE TABLE one (x); CREATE TABLE two (x); INSERT INTO nowhere VALUES (1);"
        )
    assert await table_count(db, "one") == 0
    assert await table_count(db, "two") == 0


async def test_a_script_joins_the_open_transaction_and_rolls_back_with_it(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.in_transaction() as conn:
            await conn.execute_script("CREATE TABLE inside (x);")
            assert await table_count(db, "inside") == 1
            raise RuntimeError("abort")
    assert await table_count(db, "inside") == 0


async def test_scripts_may_not_manage_transactions(db: Database) -> None:
    with pytest.raises(OperationalError, match="must not manage transactions"):
        await db.connection().execute_script("BEGIN; CREATE TABLE x (y); COMMIT;")
    assert await table_count(db, "x") == 0


async def test_no_other_task_runs_a_statement_inside_an_open_transaction(db: Database) -> None:
    conn = db.connection()
    await conn.execute_script("CREATE TABLE log (n INTEGER);")
    seen: list[int] = []
    entered = asyncio.Event()

    async def reader() -> None:
        await entered.wait()
        rows = await db.connection().execute_query_dict("SELECT count(*) AS n FROM log")
        seen.append(rows[0]["n"])

    async def writer() -> None:
        with pytest.raises(RuntimeError):
            async with db.in_transaction() as tx:
                await tx.execute_query("INSERT INTO log VALUES (1)")
                entered.set()
                for _ in range(20):  # give the reader every chance to slip in
                    await asyncio.sleep(0)
                await tx.execute_query("INSERT INTO log VALUES (2)")
                raise RuntimeError("roll back")

    await asyncio.gather(writer(), reader())
    assert seen == [0]  # it waited for the rollback, and never saw the uncommitted rows


async def test_nested_transactions_are_savepoints(db: Database) -> None:
    await db.connection().execute_script("CREATE TABLE kept (n INTEGER);")
    async with db.in_transaction() as outer:
        await outer.execute_query("INSERT INTO kept VALUES (1)")
        with pytest.raises(RuntimeError):
            async with db.in_transaction() as inner:
                await inner.execute_query("INSERT INTO kept VALUES (2)")
                raise RuntimeError("inner fails")
    rows = await db.connection().execute_query_dict("SELECT n FROM kept")
    assert rows == [{"n": 1}]


async def test_a_failed_commit_rolls_back_and_frees_the_connection(db: Database) -> None:
    conn = db.connection()
    await conn.execute_script(
        "CREATE TABLE parent (id INTEGER PRIMARY KEY); "
        "CREATE TABLE child (p INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);"
    )
    with pytest.raises(IntegrityError, match="FOREIGN KEY"):
        async with db.in_transaction() as tx:
            await tx.execute_query("INSERT INTO child VALUES (42)")
    rows = await asyncio.wait_for(db.connection().execute_query_dict("SELECT count(*) AS n FROM child"), timeout=1)
    assert rows == [{"n": 0}]


async def test_a_burst_of_statements_still_lets_other_tasks_run(db: Database) -> None:
    await db.connection().execute_script("CREATE TABLE burst (n INTEGER);")
    ticks: list[int] = []
    done = False

    async def ticker() -> None:
        while not done:
            ticks.append(len(ticks))
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    ticks_before = len(ticks)
    for n in range(3000):  # tens of milliseconds of statements, with no await that must suspend
        await db.connection().execute_query("INSERT INTO burst VALUES (?)", [n])
    ticks_during = len(ticks) - ticks_before
    done = True
    await task
    assert ticks_during >= 3


async def test_execute_many_is_atomic_on_its_own_and_joins_an_open_transaction(db: Database) -> None:
    await db.connection().execute_script("CREATE TABLE many (n INTEGER UNIQUE);")
    with pytest.raises(IntegrityError):
        await db.connection().execute_many("INSERT INTO many VALUES (?)", [[1], [2], [1]])
    assert await db.connection().execute_query_dict("SELECT n FROM many") == []
    with pytest.raises(RuntimeError):
        async with db.in_transaction() as tx:
            await tx.execute_many("INSERT INTO many VALUES (?)", [[1], [2]])
            assert len(await tx.execute_query_dict("SELECT n FROM many")) == 2
            raise RuntimeError("roll back")
    await db.connection().execute_many("INSERT INTO many VALUES (?)", [[3], [4]])
    assert await db.connection().execute_query_dict("SELECT n FROM many ORDER BY n") == [{"n": 3}, {"n": 4}]
