#!/usr/bin/env python3
"""Workload W1: the core repositories against plain sqlite3 doing the same work.

    python bench/w1.py                        # synchronous=FULL, SQLite's default and Daycare's
    python bench/w1.py --synchronous NORMAL   # WAL's cheaper setting: commits are not fsynced
    python bench/w1.py --json                 # one JSON object instead of the table
    python bench/w1.py --repeat 5             # medians of 5 runs (default 3: one run's 200 fsyncs are noisy)
    python bench/w1.py --db postgres://postgres@127.0.0.1:5432/daycare_bench
                                              # on PostgreSQL, against plain asyncpg (bench/w1_postgres.py)

On a new file database (WAL): 200 x create_agent_with_session; 5,000 x append_history of a
`note` round-robin over the 200 agents; 5,000 x inbox.insert; 20,000 x agents.find_by_id
(cached); reading the history of all 200 sessions; 500 x resolve_user_by_connector_key
with new keys. The reference runs the same statements through Python's sqlite3 on a second
file with the same schema and durability, one commit per operation, as the repositories do.

Port and reference are interleaved: each operation is cut into chunks that alternate between
them (port first on even chunks, reference first on odd ones), so a change in the disk's speed
during a run lands on both sides alike. A run's ratio is port over reference; the table shows
the medians over the runs of each side's rate and of the ratio.

With --db postgres://..., the same workload runs on fresh schemas of that database, and the
reference is plain asyncpg sending the statements the port sends, in the port's transactions
(bench/w1_postgres.py says how; it checks the two sides send the same SQL before timing them).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import inspect
import itertools
import json
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daycare.storage.db.database import database_close, database_open
from daycare.storage.facade import Storage
from daycare.storage.identifiers import cuid_create, nametag_generate
from daycare.storage.migrations.migrate import database_migrate
from daycare.storage.repositories.agents import AgentRecord
from daycare.storage.repositories.history import HistoryRecord

AGENTS = 200
APPENDS = 5_000
INBOX_ITEMS = 5_000
FINDS = 20_000
RESOLVES = 500
CHUNKS = 50  # slices of each operation, alternating between port and reference
PERMISSIONS = {"workingDir": "/home/daycare/agent", "writeDirs": ["/home/daycare/agent", "/home/daycare/agent/tmp"]}


@dataclass
class Result:
    """One operation of the workload, timed for the port and for the reference."""

    name: str
    count: int
    unit: str
    units: int = 0  # what the operation is cut into chunks by (agents, appends, sessions, ...)
    port: float = 0.0
    reference: float = 0.0
    ratio: float = 0.0
    target: str = ""
    met: bool | None = None


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def chunks(units: int) -> list[tuple[int, int]]:
    """`units` cut into CHUNKS consecutive (start, stop) slices."""
    bounds = [units * number // CHUNKS for number in range(CHUNKS + 1)]
    return [(start, stop) for start, stop in itertools.pairwise(bounds) if stop > start]


def machine_describe(folder: Path) -> dict[str, Any]:
    """Cores, CPU model, the disk holding the databases, and the Python and SQLite versions."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    device, fstype, best = "?", "?", ""
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            source, mount, kind, *_ = line.split()
            if str(folder).startswith(mount) and len(mount) > len(best):
                device, fstype, best = source, kind, mount
    except OSError:
        pass
    rotational = "?"
    name = Path(device).name
    queue = Path(f"/sys/block/{name}/queue/rotational")
    if queue.exists():
        rotational = "rotational" if queue.read_text().strip() == "1" else "non-rotational"
    return {
        "nproc": os.cpu_count(),
        "cpu": model or platform.processor(),
        "disk": f"{device} ({fstype}, {rotational}) mounted on {best or '?'}",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
    }


def agent_build(number: int, user_id: str, now: int) -> AgentRecord:
    agent_id = cuid_create()
    return AgentRecord(
        id=agent_id,
        user_id=user_id,
        type="cron",
        descriptor={"type": "cron", "id": agent_id, "name": f"job {number}"},
        active_session_id=None,
        permissions=PERMISSIONS,
        tokens=None,
        stats={},
        lifecycle="active",
        created_at=now,
        updated_at=now,
    )


async def database_prepare(path: Path, synchronous: str) -> Storage:
    db = await database_open(f"sqlite:///{path}?synchronous={synchronous}")
    await database_migrate(db, backup=False)
    return Storage.from_database(db)


class PortRun:
    """The workload through the repositories and the Storage facade."""

    def __init__(self, storage: Storage, agents: list[AgentRecord]) -> None:
        self.storage = storage
        self.agents = agents
        self.ids = [agent.id for agent in agents]
        self.inbox_ids = [cuid_create() for _ in range(INBOX_ITEMS)]
        self.sessions: list[str] = []

    async def create(self, start: int, stop: int) -> int:
        for agent in self.agents[start:stop]:
            self.sessions.append((await self.storage.create_agent_with_session(agent)).session_id)
        return stop - start

    async def append(self, start: int, stop: int) -> int:
        for number in range(start, stop):
            note = HistoryRecord("note", number, {"text": f"note {number}"})
            await self.storage.append_history(self.ids[number % AGENTS], note)
        return stop - start

    async def inbox(self, start: int, stop: int) -> int:
        for number in range(start, stop):
            data = json.dumps({"type": "message", "message": {"text": f"hi {number}"}}, separators=(",", ":"))
            await self.storage.inbox.insert(self.inbox_ids[number], self.ids[number % AGENTS], number, "message", data)
        return stop - start

    async def find(self, start: int, stop: int) -> int:
        for number in range(start, stop):
            await self.storage.agents.find_by_id(self.ids[number % AGENTS])
        return stop - start

    async def history(self, start: int, stop: int) -> int:
        records = 0
        for session_id in self.sessions[start:stop]:
            records += len(await self.storage.history.find_by_session_id(session_id))
        return records

    async def resolve(self, start: int, stop: int) -> int:
        for number in range(start, stop):
            await self.storage.resolve_user_by_connector_key(f"telegram:{number}")
        return stop - start


_COLUMNS = (
    "id, user_id, type, descriptor, active_session_id, permissions, tokens, stats, lifecycle, created_at, updated_at"
)
_UPSERT = (
    f"INSERT INTO agents ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
    "user_id = excluded.user_id, type = excluded.type, descriptor = excluded.descriptor, "
    "active_session_id = excluded.active_session_id, permissions = excluded.permissions, "
    "tokens = excluded.tokens, stats = excluded.stats, lifecycle = excluded.lifecycle, "
    "created_at = excluded.created_at, updated_at = excluded.updated_at"
)
_UPDATE = (
    "UPDATE agents SET user_id = ?, type = ?, descriptor = ?, active_session_id = ?, permissions = ?, tokens = ?, "
    "stats = ?, lifecycle = ?, created_at = ?, updated_at = ? WHERE id = ?"
)


class ReferenceRun:
    """The same work as plain parameterised SQL through sqlite3, one commit per operation,
    statement for statement what the legacy code ran."""

    def __init__(self, path: Path, synchronous: str, agents: list[AgentRecord]) -> None:
        self.connection = sqlite3.connect(path, isolation_level=None)
        self.connection.execute("PRAGMA foreign_keys=ON")
        self.connection.execute(f"PRAGMA synchronous={synchronous}")
        self.execute = self.connection.execute
        self.dumps: Callable[[Any], str] = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
        self.agents = agents
        self.ids = [cuid_create() for _ in agents]
        self.inbox_ids = [cuid_create() for _ in range(INBOX_ITEMS)]
        self.sessions: list[str] = []
        (self.owner_id,) = self.execute("SELECT id FROM users WHERE is_owner = 1").fetchone()

    def create(self, start: int, stop: int) -> int:
        execute, dumps = self.execute, self.dumps
        for agent_id, agent in zip(self.ids[start:stop], self.agents[start:stop], strict=True):
            values = [
                self.owner_id,
                agent.type,
                dumps(agent.descriptor),
                None,
                dumps(agent.permissions),
                None,
                dumps(agent.stats),
                agent.lifecycle,
                agent.created_at,
                agent.updated_at,
            ]
            session_id = cuid_create()
            execute("BEGIN")
            execute(_UPSERT, [agent_id, *values])
            execute(
                "INSERT INTO sessions (id, agent_id, inference_session_id, created_at, reset_message, "
                "invalidated_at, processed_until) VALUES (?, ?, NULL, ?, NULL, NULL, NULL)",
                [session_id, agent_id, agent.created_at],
            )
            values[3] = session_id
            execute(_UPDATE, [*values, agent_id])
            execute("COMMIT")
            self.sessions.append(session_id)
        return stop - start

    def append(self, start: int, stop: int) -> int:
        execute, dumps = self.execute, self.dumps
        for number in range(start, stop):
            agent_id = self.ids[number % AGENTS]
            (session_id,) = execute("SELECT active_session_id FROM agents WHERE id = ?", [agent_id]).fetchone()
            execute(
                "INSERT INTO session_history (session_id, type, at, data) VALUES (?, ?, ?, ?)",
                [session_id, "note", number, dumps({"text": f"note {number}"})],
            )
        return stop - start

    def inbox(self, start: int, stop: int) -> int:
        for number in range(start, stop):
            data = json.dumps({"type": "message", "message": {"text": f"hi {number}"}}, separators=(",", ":"))
            self.execute(
                "INSERT INTO inbox (id, agent_id, posted_at, type, data) VALUES (?, ?, ?, ?, ?) ON CONFLICT(id) "
                "DO UPDATE SET agent_id = excluded.agent_id, posted_at = excluded.posted_at, type = excluded.type, "
                "data = excluded.data",
                [self.inbox_ids[number], self.ids[number % AGENTS], number, "message", data],
            )
        return stop - start

    def find(self, start: int, stop: int) -> int:
        loads = json.loads
        for number in range(start, stop):
            row = self.execute(f"SELECT {_COLUMNS} FROM agents WHERE id = ?", [self.ids[number % AGENTS]]).fetchone()
            agent = {
                "id": row[0],
                "userId": row[1],
                "type": row[2],
                "descriptor": loads(row[3]),
                "activeSessionId": row[4],
                "permissions": loads(row[5]),
                "tokens": loads(row[6]) if row[6] else None,
                "stats": loads(row[7]),
                "lifecycle": row[8],
                "createdAt": row[9],
                "updatedAt": row[10],
            }
            assert agent["id"]
        return stop - start

    def history(self, start: int, stop: int) -> int:
        records = 0
        for session_id in self.sessions[start:stop]:
            rows = self.execute(
                "SELECT type, at, data FROM session_history WHERE session_id = ? ORDER BY id ASC", [session_id]
            ).fetchall()
            records += len([{"type": kind, "at": at, **json.loads(data)} for kind, at, data in rows])
        return records

    def resolve(self, start: int, stop: int) -> int:
        execute = self.execute
        for number in range(start, stop):
            key = f"telegram:{number}"
            assert execute("SELECT user_id FROM user_connector_keys WHERE connector_key = ?", [key]).fetchone() is None
            execute("SELECT 1 FROM users LIMIT 1").fetchone()
            user_id = cuid_create()
            execute("BEGIN")
            execute(
                "INSERT INTO users (id, is_owner, parent_user_id, name, nametag, created_at, updated_at) "
                "VALUES (?, 0, NULL, NULL, ?, ?, ?)",
                [user_id, nametag_generate(), number, number],
            )
            execute("INSERT INTO user_connector_keys (user_id, connector_key) VALUES (?, ?)", [user_id, key])
            execute("COMMIT")
        return stop - start


def owner_id_read(path: Path) -> str:
    """The bootstrap owner's id, read with plain sqlite3 (the setup depends on no repository method)."""
    connection = sqlite3.connect(path)
    try:
        (owner_id,) = connection.execute("SELECT id FROM users WHERE is_owner = 1").fetchone()
    finally:
        connection.close()
    return str(owner_id)


async def operations_interleave(port: Any, reference: Any, results: dict[str, Result]) -> None:
    """Runs each operation in chunks that alternate between port and reference (port first on even
    chunks), so that drift lands on both sides; fills in each result's rates and ratio.

    A reference method may be plain (sqlite3) or a coroutine function (asyncpg)."""
    for key, result in results.items():
        port_seconds = reference_seconds = 0.0
        done = checked = 0
        for number, (start, stop) in enumerate(chunks(result.units)):
            for side in ("port", "reference") if number % 2 == 0 else ("reference", "port"):
                began = time.perf_counter()
                if side == "port":
                    done += await getattr(port, key)(start, stop)
                    port_seconds += time.perf_counter() - began
                else:
                    outcome = getattr(reference, key)(start, stop)
                    checked += await outcome if inspect.isawaitable(outcome) else outcome
                    reference_seconds += time.perf_counter() - began
        assert done == checked == result.count, (key, done, checked)
        result.port = rate(done, port_seconds)
        result.reference = rate(checked, reference_seconds)
        result.ratio = result.port / result.reference


async def workload_run(folder: Path, synchronous: str, results: dict[str, Result]) -> None:
    """Runs each operation in chunks that alternate between port and reference, so both see the disk alike."""
    storage = await database_prepare(folder / "port.db", synchronous)
    reference_storage = await database_prepare(folder / "reference.db", synchronous)
    await database_close(reference_storage.db)  # same schema and bootstrap owner, then plain sqlite3 only
    owner_id = owner_id_read(folder / "port.db")
    agents = [agent_build(number, owner_id, 1_772_000_000_000) for number in range(AGENTS)]
    port = PortRun(storage, agents)
    reference = ReferenceRun(folder / "reference.db", synchronous, agents)
    try:
        await operations_interleave(port, reference, results)
    finally:
        reference.connection.close()
        await database_close(storage.db)


def targets_apply(results: dict[str, Result], postgres: bool = False) -> None:
    for key in ("create", "append", "inbox"):
        result = results[key]
        result.target, result.met = ">= 0.75x reference", result.ratio >= 0.75
    # On SQLite the reference reads and resolves as the legacy code did, so those rows have rates
    # to reach; on PostgreSQL it sends the port's own statements, so the ratio is the target.
    checks = {"find": 200_000} if postgres else {"find": 200_000, "history": 150_000, "resolve": 1_000}
    for key, floor in checks.items():
        result = results[key]
        result.target, result.met = f">= {floor:,}/s", result.port >= floor
    if postgres:
        for key in ("history", "resolve"):
            result = results[key]
            result.target, result.met = ">= 0.75x reference", result.ratio >= 0.75


def sqlite_runs(
    template: dict[str, Result], synchronous: str, repeat: int, folder: Path | None
) -> tuple[list[dict[str, Result]], dict[str, Any]]:
    """`repeat` runs of W1 on new SQLite files, and the machine that ran them."""
    runs: list[dict[str, Result]] = []
    machine: dict[str, Any] = {}
    for _ in range(repeat):
        run_folder = Path(tempfile.mkdtemp(prefix="daycare-w1-", dir=folder))
        try:
            run = {key: dataclasses.replace(result) for key, result in template.items()}
            asyncio.run(workload_run(run_folder, synchronous, run))
            runs.append(run)
            machine = machine_describe(run_folder)
        finally:
            shutil.rmtree(run_folder, ignore_errors=True)
    return runs, machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", help="a postgres:// URL: run on fresh schemas of that database (default: SQLite files)")
    parser.add_argument("--synchronous", choices=["FULL", "NORMAL"], type=str.upper, help="SQLite only (default FULL)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--dir", type=Path, help="SQLite only: folder for the two database files (default: a temp one)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the whole workload; figures are medians")
    options = parser.parse_args()
    if options.repeat < 1:
        parser.error("--repeat must be at least 1")
    postgres = options.db is not None
    if postgres:
        if options.db.split("://", 1)[0] not in ("postgres", "postgresql"):
            parser.error("--db takes a postgres:// URL (SQLite runs on temp files, or in --dir)")
        if options.synchronous or options.dir:
            parser.error("--synchronous and --dir are for SQLite; PostgreSQL's durability is the server's")
    synchronous = options.synchronous or "FULL"

    results = {
        "create": Result("create_agent_with_session", AGENTS, "ops/s", AGENTS),
        "append": Result("append_history (note)", APPENDS, "ops/s", APPENDS),
        "inbox": Result("inbox.insert", INBOX_ITEMS, "ops/s", INBOX_ITEMS),
        "find": Result("agents.find_by_id (cached)", FINDS, "ops/s", FINDS),
        "history": Result("history of 200 sessions", APPENDS, "records/s", AGENTS),
        "resolve": Result("resolve_user_by_connector_key (new)", RESOLVES, "ops/s", RESOLVES),
    }
    started = time.perf_counter()
    trips: dict[str, Any] = {}
    if postgres:
        sys.modules.setdefault("w1", sys.modules[__name__])  # w1_postgres imports this module as `w1`
        from w1_postgres import postgres_runs

        try:
            runs, trips, machine = asyncio.run(postgres_runs(options.db, results, options.repeat))
        except ValueError as error:
            parser.error(str(error))
    else:
        runs, machine = sqlite_runs(results, synchronous, options.repeat, options.dir)
    for key, result in results.items():
        result.port = statistics.median(run[key].port for run in runs)
        result.reference = statistics.median(run[key].reference for run in runs)
        result.ratio = statistics.median(run[key].ratio for run in runs)
    targets_apply(results, postgres)
    elapsed = time.perf_counter() - started

    if options.json:
        report: dict[str, Any] = {"workload": "W1"}
        if postgres:
            report.update(
                database="postgres",
                reference="plain asyncpg, one connection, the port's statements and transactions",
                durability=machine["durability"],
            )
        else:
            report.update(database="sqlite", synchronous=synchronous, journal_mode="WAL")
        report.update(
            {
                "seconds": round(elapsed, 2),
                "runs": options.repeat,
                "figures": "medians over the runs",
                "interleave": f"each operation in {CHUNKS} chunks alternating port and reference",
                "ratio": "median over the runs of port / reference",
                "machine": machine,
                "operations": {
                    result.name: {
                        "count": result.count,
                        "unit": result.unit,
                        "port": round(result.port, 1),
                        "reference": round(result.reference, 1),
                        "ratio": round(result.ratio, 3),
                        "target": result.target,
                        "met": result.met,
                        **({"statements_per_unit": dataclasses.asdict(trips[key])} if key in trips else {}),
                    }
                    for key, result in results.items()
                },
            }
        )
        print(json.dumps(report, indent=2))
        return
    if postgres:
        print(f"W1 on PostgreSQL {machine['postgres']}: medians of {options.repeat} runs, {elapsed:.1f} s")
        print(f"server: {machine['server']}, {machine['durability']}")
        print(f"machine: {machine['nproc']} x {machine['cpu']}; data on {machine['disk']}")
        print(f"         Python {machine['python']}, asyncpg {machine['asyncpg']}")
    else:
        print(f"W1, journal_mode=WAL, synchronous={synchronous}: medians of {options.repeat} runs, {elapsed:.1f} s")
        print(f"machine: {machine['nproc']} x {machine['cpu']}; {machine['disk']}")
        print(f"         Python {machine['python']}, SQLite {machine['sqlite']}")
    trips_column = f"{'statements':>20}" if trips else ""
    header = f"{'operation':<38}{'count':>7}{'port':>12}{'reference':>12}{'ratio':>8}  {'target':<20}{trips_column}"
    print(header)
    print("-" * (len(header) + 7))
    for key, result in results.items():
        status = "" if result.met is None else ("met" if result.met else "MISSED")
        statements = f"{trips[key].text():>20}" if key in trips else ""
        print(
            f"{result.name:<38}{result.count:>7}{result.port:>12,.0f}{result.reference:>12,.0f}"
            f"{result.ratio:>8.2f}  {result.target:<20}{statements}  {status}"
        )
    print("(port and reference in ops/s; the history row in records/s)")
    print(f"(interleaved: {CHUNKS} chunks per operation, alternating port and reference; ratio: median of run ratios)")
    if postgres:
        print("(reference: plain asyncpg on one connection, the port's statements in the port's transactions;")
        print(" statements: per unit, port (+ its pool's reset query on each release) / reference, as traced)")


if __name__ == "__main__":
    main()
