"""Why the backend runs statements on the loop: durable single-row inserts, four ways, one run.

    python bench/driver.py [--rows 3000] [--json]

Compares plain sqlite3, Tortoise's stock SQLite client (aiosqlite, a thread hop per call),
this package's backend, and a Tortoise `Model.create` through it, under synchronous=FULL
(the default) and NORMAL. Ratios are against plain sqlite3 in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import tempfile
import time
from pathlib import Path

from tortoise.backends.sqlite.client import SqliteClient

from daycare.schema import InboxItem
from daycare.storage.db.database import database_close, database_open

TABLE = (
    "CREATE TABLE inbox (id TEXT PRIMARY KEY, agent_id TEXT NOT NULL, posted_at INTEGER NOT NULL,"
    " type TEXT NOT NULL, data TEXT NOT NULL)"
)
COLUMNS = ("id", "agent_id", "posted_at", "type", "data")
INSERT = "INSERT INTO inbox (id, agent_id, posted_at, type, data) VALUES (?, ?, ?, ?, ?)"


def row(i: int) -> list[object]:
    return [f"item-{i}", "agent-1", i, "message", '{"type":"message","message":{"text":"hello"}}']


def plain(path: Path, sync: str, rows: int) -> float:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"PRAGMA synchronous={sync}")
    connection.execute(TABLE)
    start = time.perf_counter()
    for i in range(rows):
        connection.execute(INSERT, row(i))
    elapsed = time.perf_counter() - start
    connection.close()
    return rows / elapsed


async def stock_client(path: Path, sync: str, rows: int) -> float:
    client = SqliteClient(str(path), connection_name="bench", synchronous=sync)
    await client.create_connection(with_db=True)
    await client.execute_script(TABLE)
    start = time.perf_counter()
    for i in range(rows):
        await client.execute_insert(INSERT, row(i))
    elapsed = time.perf_counter() - start
    await client.close()
    return rows / elapsed


async def daycare_backend(path: Path, sync: str, rows: int, model: bool) -> float:
    db = await database_open(f"sqlite://{path}?synchronous={sync}")
    conn = db.connection()
    await conn.execute_script(TABLE)

    async def insert(i: int) -> object:
        if model:
            return await InboxItem.create(**dict(zip(COLUMNS, row(i), strict=True)), using_db=conn)
        return await conn.execute_insert(INSERT, row(i))

    start = time.perf_counter()
    for i in range(rows):
        await insert(i)
    elapsed = time.perf_counter() - start
    await database_close(db)
    return rows / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for sync in ("FULL", "NORMAL"):
            base = Path(folder) / sync
            reference = plain(base.with_suffix(".plain.db"), sync, args.rows)
            ways = {
                "plain sqlite3": reference,
                "tortoise stock client (aiosqlite)": asyncio.run(
                    stock_client(base.with_suffix(".stock.db"), sync, args.rows)
                ),
                "daycare backend, execute_insert": asyncio.run(
                    daycare_backend(base.with_suffix(".raw.db"), sync, args.rows, False)
                ),
                "daycare backend, Model.create": asyncio.run(
                    daycare_backend(base.with_suffix(".model.db"), sync, args.rows, True)
                ),
            }
            results[sync] = {name: {"ops_per_s": rate, "ratio": rate / reference} for name, rate in ways.items()}
    if args.json:
        print(json.dumps(results))
        return
    for sync, ways_ in results.items():
        print(f"synchronous={sync}, {args.rows} durable single-row inserts")
        for name, figures in ways_.items():
            print(f"  {name:<36} {figures['ops_per_s']:>9,.0f}/s  {figures['ratio']:5.2f}x")


if __name__ == "__main__":
    main()
