#!/usr/bin/env python3
"""Concurrent writers: group commit against one commit per write, and against plain sqlite3.

    python bench/concurrency.py                    # FULL and NORMAL; 1, 8, 50 and 500 tasks; 3 rounds
    python bench/concurrency.py --synchronous FULL --tasks 1 50 --rounds 5
    python bench/concurrency.py --json

N tasks on one event loop each run the same operation in a loop, through one `Storage`:
`append_history` (a note, to one of 200 agents with a session), `inbox.insert` (a new item) or
`create_agent_with_session` (a new agent). Three sides do the same work on files of their own
(WAL, the same `synchronous`):

- `on`: the port with group commit on (`?group_commit=on`): concurrent writes share COMMITs;
- `off`: the port with group commit off (`?group_commit=off`): one COMMIT per write, as before;
- `ref`: the reference, plain `sqlite3` committing once per operation, as a careful application
  does: the port's statements with values bound directly (an append knows its session id, an
  agent and its session are one transaction), each run synchronously on the loop.

Every side's task yields to the loop before each operation (so the N tasks take turns on both
sides) and measures its latency from there to the operation's return. Sides are interleaved:
each round runs a chunk of every side in turn, the order rotating between rounds, so a change
in the disk's speed lands on all three. Throughput is operations over the chunks' wall time;
p50 and p99 latencies pool every operation of the rounds. Ratios: on/ref (the targets) and
on/off (what group commit changes in the port).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from w1 import _UPSERT, agent_build, machine_describe, owner_id_read  # the W1 bench's builders, one copy

from daycare.storage.db.database import database_close, database_open
from daycare.storage.facade import Storage
from daycare.storage.identifiers import cuid_create
from daycare.storage.migrations.migrate import database_migrate
from daycare.storage.repositories.agents import AgentRecord
from daycare.storage.repositories.history import HistoryRecord

AGENTS = 200  # agents with a session, the targets of the appends
OPERATIONS = ("append", "inbox", "create")
NAMES = {"append": "append_history", "inbox": "inbox.insert", "create": "create_agent_with_session"}
SIDES = ("on", "off", "ref")
TARGETS = {"append": 4.0, "inbox": 4.0, "create": 2.0}  # on/ref under FULL with 50 tasks
SINGLE_WRITER_FLOOR = 0.9  # on/off with one task
NOW = 1_772_000_000_000
_SESSION_INSERT = (
    "INSERT INTO sessions (id, agent_id, inference_session_id, created_at, reset_message) VALUES (?, ?, ?, ?, ?)"
)
_HISTORY_INSERT = "INSERT INTO session_history (session_id, type, at, data) VALUES (?, ?, ?, ?) RETURNING id"
_INBOX_UPSERT = (
    "INSERT INTO inbox (id, agent_id, posted_at, type, data) VALUES (?, ?, ?, ?, ?) ON CONFLICT(id) "
    "DO UPDATE SET agent_id = excluded.agent_id, posted_at = excluded.posted_at, type = excluded.type, "
    "data = excluded.data"
)


def operations_per_chunk(tasks: int) -> int:
    """Operations of one side in one round: enough for every task to run several, a multiple of `tasks`."""
    return max(400, 4 * tasks) // tasks * tasks


@dataclass
class Cell:
    """One operation at one concurrency: per side, the seconds, operations and latencies of every chunk."""

    operation: str
    tasks: int
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(SIDES, 0.0))
    done: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIDES, 0))
    latencies: dict[str, list[float]] = field(default_factory=lambda: {side: [] for side in SIDES})

    def rate(self, side: str) -> float:
        return self.done[side] / self.seconds[side]

    def percentile(self, side: str, fraction: float) -> float:
        """Latency in milliseconds."""
        ordered = sorted(self.latencies[side])
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000


class PortSide:
    """The operations through Storage, on a file with group commit on or off."""

    def __init__(self, storage: Storage, agents: list[AgentRecord]) -> None:
        self.storage = storage
        self.agents = agents  # with sessions, for the appends

    async def append(self, number: int) -> None:
        note = HistoryRecord("note", number, {"text": f"note {number}"})
        await self.storage.append_history(self.agents[number % AGENTS].id, note)

    async def inbox(self, number: int, item_id: str) -> None:
        data = json.dumps({"type": "message", "message": {"text": f"hi {number}"}}, separators=(",", ":"))
        await self.storage.inbox.insert(item_id, self.agents[number % AGENTS].id, number, "message", data)

    async def create(self, number: int, record: AgentRecord) -> None:
        await self.storage.create_agent_with_session(record)


class ReferenceSide:
    """The same operations with plain sqlite3, one COMMIT each, synchronously on the loop."""

    def __init__(self, path: Path, synchronous: str) -> None:
        self.connection = sqlite3.connect(path, isolation_level=None)
        self.connection.execute("PRAGMA foreign_keys=ON")
        self.connection.execute(f"PRAGMA synchronous={synchronous}")
        self.execute = self.connection.execute
        self.dumps: Callable[[Any], str] = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
        self.sessions: list[tuple[str, str]] = []  # (agent id, session id) of the appends' agents

    def agent_create(self, record: AgentRecord) -> str:
        dumps, session_id = self.dumps, cuid_create()
        self.execute("BEGIN IMMEDIATE")
        self.execute(
            _UPSERT,
            [
                record.id,
                record.user_id,
                record.type,
                dumps(record.descriptor),
                session_id,
                dumps(record.permissions),
                None,
                dumps(record.stats),
                record.lifecycle,
                record.created_at,
                record.updated_at,
            ],
        )
        self.execute(_SESSION_INSERT, [session_id, record.id, None, record.created_at, None])
        self.execute("COMMIT")
        return session_id

    def append(self, number: int) -> None:
        session_id = self.sessions[number % AGENTS][1]
        self.execute(_HISTORY_INSERT, [session_id, "note", number, self.dumps({"text": f"note {number}"})]).fetchall()

    def inbox(self, number: int, item_id: str) -> None:
        data = json.dumps({"type": "message", "message": {"text": f"hi {number}"}}, separators=(",", ":"))
        self.execute(_INBOX_UPSERT, [item_id, self.sessions[number % AGENTS][0], number, "message", data])

    def create(self, number: int, record: AgentRecord) -> None:
        self.agent_create(record)


async def storage_prepare(path: Path, synchronous: str, group_commit: str) -> Storage:
    db = await database_open(f"sqlite:///{path}?synchronous={synchronous}&group_commit={group_commit}")
    await database_migrate(db, backup=False)
    return Storage.from_database(db)


async def chunk_run(
    operation: Callable[..., Awaitable[None] | None], tasks: int, numbers: range, inputs: list[Any] | None
) -> tuple[float, list[float]]:
    """Runs `operation` once per number (and its input, made beforehand: an agent record or an inbox id),
    spread over `tasks` tasks; wall time and each operation's latency."""
    latencies: list[float] = []
    per_task = len(numbers) // tasks

    async def worker(offset: int) -> None:
        for index in range(offset, offset + per_task):
            number = numbers[index]
            began = time.perf_counter()
            await asyncio.sleep(0)  # take turns with the other tasks, on every side alike
            arguments = (number,) if inputs is None else (number, inputs[index])
            outcome = operation(*arguments)
            if outcome is not None:
                await outcome
            latencies.append(time.perf_counter() - began)

    started = time.perf_counter()
    await asyncio.gather(*(worker(task * per_task) for task in range(tasks)))
    return time.perf_counter() - started, latencies


def chunk_inputs(operation: str, chunk: range, owner: str) -> list[Any] | None:
    """What the caller brings to each operation, made before the clock starts (as W1 does): a new agent's
    record, or a new inbox item's id."""
    if operation == "create":
        return [agent_build(number, owner, NOW) for number in chunk]
    if operation == "inbox":
        return [cuid_create() for _ in chunk]
    return None


async def mode_run(folder: Path, synchronous: str, task_counts: list[int], rounds: int) -> list[Cell]:
    """Every operation at every concurrency under one `synchronous`, the three sides interleaved."""
    ports = {
        "on": await storage_prepare(folder / "on.db", synchronous, "on"),
        "off": await storage_prepare(folder / "off.db", synchronous, "off"),
    }
    reference_storage = await storage_prepare(folder / "ref.db", synchronous, "off")
    await database_close(reference_storage.db)  # same schema and owner; from here on plain sqlite3 only
    reference = ReferenceSide(folder / "ref.db", synchronous)
    sides: dict[str, Any] = {"ref": reference}
    try:
        for side, storage in ports.items():
            owner = owner_id_read(folder / f"{side}.db")
            agents = [agent_build(number, owner, NOW) for number in range(AGENTS)]
            sides[side] = PortSide(storage, [(await storage.create_agent_with_session(a)).agent for a in agents])
        owner = owner_id_read(folder / "ref.db")
        for number in range(AGENTS):
            record = agent_build(number, owner, NOW)
            reference.sessions.append((record.id, reference.agent_create(record)))
        owners = {side: owner_id_read(folder / f"{side}.db") for side in SIDES}
        cells = []
        numbers = itertools.count()
        for operation in OPERATIONS:
            for tasks in task_counts:
                cell = Cell(operation, tasks)
                size = operations_per_chunk(tasks)
                for round_number in range(rounds):
                    shift = round_number % len(SIDES)
                    for side in SIDES[shift:] + SIDES[:shift]:
                        start = next(numbers) * size
                        chunk = range(start, start + size)
                        inputs = chunk_inputs(operation, chunk, owners[side])
                        seconds, latencies = await chunk_run(getattr(sides[side], operation), tasks, chunk, inputs)
                        cell.seconds[side] += seconds
                        cell.done[side] += len(latencies)
                        cell.latencies[side].extend(latencies)
                cells.append(cell)
                print(f"  {synchronous} {NAMES[operation]} x{tasks}: " + cell_text(cell), file=sys.stderr)
        return cells
    finally:
        reference.connection.close()
        for storage in ports.values():
            await database_close(storage.db)


def cell_text(cell: Cell) -> str:
    rates = "  ".join(f"{side} {cell.rate(side):>8,.0f}/s" for side in SIDES)
    return f"{rates}  on/ref {cell.rate('on') / cell.rate('ref'):.2f}  on/off {cell.rate('on') / cell.rate('off'):.2f}"


def verdicts(synchronous: str, cell: Cell) -> list[str]:
    """The targets this cell is held to, each with met or MISSED."""
    found = []
    if synchronous == "FULL" and cell.tasks == 50:
        ratio, target = cell.rate("on") / cell.rate("ref"), TARGETS[cell.operation]
        found.append(f"on/ref >= {target:g}: {'met' if ratio >= target else 'MISSED'}")
    if cell.tasks == 1:
        ratio = cell.rate("on") / cell.rate("off")
        found.append(f"on/off >= {SINGLE_WRITER_FLOOR}: {'met' if ratio >= SINGLE_WRITER_FLOOR else 'MISSED'}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--synchronous", nargs="+", choices=["FULL", "NORMAL"], type=str.upper, default=["FULL", "NORMAL"]
    )
    parser.add_argument("--tasks", nargs="+", type=int, default=[1, 8, 50, 500], help="concurrent tasks per cell")
    parser.add_argument("--rounds", type=int, default=3, help="chunks of each side per cell, interleaved")
    parser.add_argument("--dir", type=Path, help="folder for the database files (default: a temp one)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    options = parser.parse_args()
    if options.rounds < 1 or min(options.tasks) < 1:
        parser.error("--rounds and --tasks must be at least 1")
    started = time.perf_counter()
    results: dict[str, list[Cell]] = {}
    machine: dict[str, Any] = {}
    for synchronous in options.synchronous:
        folder = Path(tempfile.mkdtemp(prefix="daycare-concurrency-", dir=options.dir))
        try:
            results[synchronous] = asyncio.run(mode_run(folder, synchronous, options.tasks, options.rounds))
            machine = machine_describe(folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    elapsed = time.perf_counter() - started

    if options.json:
        report = {
            "bench": "concurrency",
            "seconds": round(elapsed, 1),
            "rounds": options.rounds,
            "machine": machine,
            "cells": [
                {
                    "synchronous": synchronous,
                    "operation": NAMES[cell.operation],
                    "tasks": cell.tasks,
                    **{
                        side: {
                            "ops_per_s": round(cell.rate(side), 1),
                            "p50_ms": round(cell.percentile(side, 0.5), 3),
                            "p99_ms": round(cell.percentile(side, 0.99), 3),
                        }
                        for side in SIDES
                    },
                    "on_ref": round(cell.rate("on") / cell.rate("ref"), 3),
                    "on_off": round(cell.rate("on") / cell.rate("off"), 3),
                    "targets": verdicts(synchronous, cell),
                }
                for synchronous, cells in results.items()
                for cell in cells
            ],
        }
        print(json.dumps(report, indent=2))
        return
    print(f"Concurrent writers, WAL: {options.rounds} interleaved rounds per cell, {elapsed:.0f} s")
    print(f"machine: {machine['nproc']} x {machine['cpu']}; {machine['disk']}")
    print(f"         Python {machine['python']}, SQLite {machine['sqlite']}")
    for synchronous, cells in results.items():
        print(f"\nsynchronous={synchronous}: ops/s, then p50 / p99 latency in ms")
        header = (
            f"{'operation':<27}{'tasks':>6}{'on':>9}{'off':>9}{'ref':>9}{'on/ref':>8}{'on/off':>8}"
            f"{'on p50/p99':>15}{'off p50/p99':>15}{'ref p50/p99':>15}"
        )
        print(header)
        print("-" * len(header))
        for cell in cells:
            latencies = "".join(
                f"{f'{cell.percentile(side, 0.5):.2f}/{cell.percentile(side, 0.99):.2f}':>15}" for side in SIDES
            )
            marks = "; ".join(verdicts(synchronous, cell))
            print(
                f"{NAMES[cell.operation]:<27}{cell.tasks:>6}{cell.rate('on'):>9,.0f}{cell.rate('off'):>9,.0f}"
                f"{cell.rate('ref'):>9,.0f}{cell.rate('on') / cell.rate('ref'):>8.2f}"
                f"{cell.rate('on') / cell.rate('off'):>8.2f}{latencies}  {marks}"
            )
    print("\n(on: group commit on; off: one COMMIT per write; ref: plain sqlite3, one COMMIT per operation)")


if __name__ == "__main__":
    main()
