#!/usr/bin/env python3
"""How late the event loop runs while a writer waits for another process's write lock.

    python bench/lock_wait.py           # the three cases below, as a table
    python bench/lock_wait.py --before  # the same, waiting inside SQLite as the code before the lock wait did
    python bench/lock_wait.py --json    # one JSON object instead of the table

Another process (plain sqlite3: BEGIN IMMEDIATE; sleep; COMMIT) holds the write lock of a WAL
database. Meanwhile, on one event loop, a task that ticks every 10 ms runs beside a writer
that needs the lock: an autocommit INSERT, or a transaction doing the same. The ticks'
lateness is measured from the writer's start to its end; the target is that no tick is ever
more than 50 ms late. The writer should succeed once the lock is released (3 s), and give up
with the lock-timeout error after its limit (5 s by default) when the lock is held for 7 s.
`--before` sets SQLite's own busy timeout (5 s, Python's default, which the backend used to
keep) on the connection, so the wait happens inside the driver and blocks the loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daycare.storage.db.backend import DaycareSqliteClient
from daycare.storage.db.database import Database, database_close, database_open

TICK = 0.010  # seconds between ticks
TARGET = 0.050  # the longest lateness allowed for a tick
CASES = (("statement", 3.0), ("transaction", 3.0), ("transaction", 7.0))
HOLDER = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
connection.execute("COMMIT")
"""


@dataclass
class Case:
    """One writer against one lock held by another process."""

    writer: str
    held: float  # seconds the other process holds the lock
    outcome: str = ""  # "ok", or the exception's class and first line
    finished: float = 0.0  # seconds from the writer's start to its end
    ticks: int = 0
    late_max: float = 0.0  # seconds
    met: bool = False


async def ticks_measure(stop: asyncio.Event, lateness: list[float]) -> None:
    """Sleeps TICK at a time until `stop`, recording how late each wake-up came."""
    while not stop.is_set():
        due = time.monotonic() + TICK
        await asyncio.sleep(TICK)
        lateness.append(time.monotonic() - due)


async def statement_write(db: Database) -> None:
    await db.connection().execute_query("INSERT INTO lock_bench VALUES (?)", [1])


async def transaction_write(db: Database) -> None:
    async with db.in_transaction() as tx:
        await tx.execute_query("INSERT INTO lock_bench VALUES (?)", [2])


WRITERS: dict[str, Callable[[Database], Awaitable[None]]] = {
    "statement": statement_write,
    "transaction": transaction_write,
}


async def case_run(db: Database, path: Path, case: Case) -> None:
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, str(path), str(case.held), stdout=asyncio.subprocess.PIPE
    )
    assert holder.stdout is not None
    if (await holder.stdout.readline()).strip() != b"locked":
        raise RuntimeError("the lock-holding process did not start")
    stop = asyncio.Event()
    lateness: list[float] = []
    ticker = asyncio.create_task(ticks_measure(stop, lateness))
    await asyncio.sleep(0)  # the ticker's first tick is due before the writer starts
    started = time.monotonic()
    try:
        await WRITERS[case.writer](db)
        case.outcome = "ok"
    except Exception as exc:  # what the writer got is the measurement
        case.outcome = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    case.finished = time.monotonic() - started
    stop.set()
    await ticker
    await holder.wait()
    case.ticks = len(lateness)
    case.late_max = max(lateness, default=0.0)
    case.met = case.late_max <= TARGET


def driver_wait(db: Database) -> None:
    """Makes the client wait for a lock inside SQLite, as it did before waiting on the loop."""
    client = db.connection()
    assert isinstance(client, DaycareSqliteClient) and client._connection is not None
    client._connection.execute("PRAGMA busy_timeout=5000")
    client.lock_timeout = 0.0  # what SQLite's wait did not settle fails at once


async def bench(before: bool) -> list[Case]:
    cases = [Case(writer, held) for writer, held in CASES]
    with tempfile.TemporaryDirectory(prefix="daycare-lock-") as folder:
        path = Path(folder) / "lock.db"
        db = await database_open(path)
        try:
            if before:
                driver_wait(db)
            await db.connection().execute_script("CREATE TABLE lock_bench (n INTEGER);")
            for case in cases:
                await case_run(db, path, case)
        finally:
            await database_close(db)
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", action="store_true", help="wait inside SQLite (busy_timeout=5000), as before")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    cases = asyncio.run(bench(args.before))
    if args.json:
        cases_json = [asdict(c) for c in cases]
        print(
            json.dumps({"tick_ms": TICK * 1000, "target_ms": TARGET * 1000, "before": args.before, "cases": cases_json})
        )
        return
    wait = "inside SQLite (busy_timeout=5000), as before" if args.before else "on the event loop"
    print(f"lock wait {wait}: a tick every {TICK * 1000:.0f} ms beside a writer")
    print(f"target: no tick more than {TARGET * 1000:.0f} ms late")
    print(f"machine: Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}")
    print(f"{'writer':<12} {'lock held':>9} {'ticks':>6} {'max late':>9} {'writer ended':>13}  outcome")
    for case in cases:
        print(
            f"{case.writer:<12} {case.held:>8.1f}s {case.ticks:>6} {case.late_max * 1000:>7.1f}ms"
            f" {case.finished:>12.2f}s  {'met' if case.met else 'MISSED'}; {case.outcome}"
        )


if __name__ == "__main__":
    main()
