#!/usr/bin/env python3
"""Several engines on one PostgreSQL database: append_history and create_agent_with_session throughput with 1, 2
and 4 engines, each a process with 50 concurrent tasks, against plain asyncpg in as many processes.

    python bench/engines.py                       # 1, 2 and 4 engines; 4 slices of 2.5 s per side and operation
    python bench/engines.py --engines 1,2,4,8 --seconds 5 --slices 6
    python bench/engines.py --server postgres://me@db.internal/postgres --json

Each run creates two fresh databases on the server of `--server` (which names the database to connect to for
that, `postgres` by default) and drops them at the end: the port's, where the engines run with `shared=true`,
and the reference's. Two databases, not two schemas of one: LISTEN/NOTIFY is per database, and the port's idle
engines would otherwise hear (and pay for) every change the reference makes. Each engine count gets a fresh
schema in both, migrated and given the same 200 agents with a session each (untimed).

The port: N processes, each an in-process `Engine` (daycare.engine.engine) on the shared schema, with its
coordination connection, its LISTEN and its caches, and Tortoise's pool of 5 connections. The reference: N
processes of plain asyncpg, each with 5 connections of its own (a queue, no pool reset between uses), sending
the statements the port sends, in the port's transactions: agent upsert and session insert in one transaction
for create_agent_with_session; the history insert alone for append_history (the port's agent is cached). Before
timing, one unit of each operation runs on both sides with asyncpg's statements traced (bench/w1_postgres.py),
and the bench stops unless they sent the same SQL.

Every process of a side runs 50 tasks that repeat the operation until the slice's time is up (appends go
round-robin over the 200 agents). Port and reference are interleaved: per engine count, each operation runs
in slices that alternate between the sides (port first on even slices), so drift lands on both. Figures:
ops/s summed over the processes (each process's ops over its own time), per process, scaling against 1
engine of the same side, and port/reference as the median of the slices' ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
from w1 import agent_build
from w1_postgres import (
    HISTORY_INSERT,
    Server,
    agent_with_session_insert,
    schema_migrated,
    schemas_drop,
    server_describe,
    server_parse,
    statements_traced,
)

from daycare.config import Config
from daycare.engine.engine import Engine
from daycare.storage.db.database import database_close, database_open, postgres_connect_arguments
from daycare.storage.db.location import database_location
from daycare.storage.facade import Storage
from daycare.storage.identifiers import cuid_create
from daycare.storage.repositories.history import HistoryRecord

DEFAULT_SERVER = "postgres://postgres@127.0.0.1:5432/postgres"
OPERATIONS = {"create": "create_agent_with_session", "append": "append_history (note)"}
AGENTS = 200  # agents with a session, made before timing; appends go round-robin over them
TASKS = 50  # concurrent tasks per process
CONNECTIONS = 5  # the reference's connections per process: the size of Tortoise's pool on the port side
CREATED_AT = 1_772_000_000_000
WAIT = 300.0  # seconds a worker may take to answer before the bench gives up on it
STARTED = time.perf_counter()


def progress(text: str) -> None:
    """A line on stderr saying where the bench is (stdout holds the result)."""
    print(f"[{time.perf_counter() - STARTED:6.1f} s] {text}", file=sys.stderr, flush=True)


# Both sides' work, one unit at a time: the workers time it, the statement check traces it.


class PortSide:
    """One engine's storage: the operations through the Storage facade."""

    def __init__(self, storage: Storage, owner_id: str, agent_ids: list[str]) -> None:
        self.storage = storage
        self.owner_id = owner_id
        self.agent_ids = agent_ids

    async def create(self, number: int) -> None:
        await self.storage.create_agent_with_session(agent_build(number, self.owner_id, CREATED_AT))

    async def append(self, number: int) -> None:
        note = HistoryRecord("note", number, {"text": f"note {number}"})
        await self.storage.append_history(self.agent_ids[number % len(self.agent_ids)], note)


class ReferenceSide:
    """Plain asyncpg: the port's statements, in its transactions, on connections taken from a queue."""

    def __init__(self, connections: list[Any], owner_id: str, sessions: list[tuple[str, str]]) -> None:
        self.free: asyncio.Queue[Any] = asyncio.Queue()
        for connection in connections:
            self.free.put_nowait(connection)
        self.connections = connections
        self.owner_id = owner_id
        self.sessions = sessions  # (agent id, active session id), in the port's agent order
        self.dumps: Callable[[Any], str] = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        connection = await self.free.get()
        try:
            yield connection
        finally:
            self.free.put_nowait(connection)

    async def create(self, number: int) -> None:
        agent, dumps = agent_build(number, self.owner_id, CREATED_AT), self.dumps
        session_id = cuid_create()
        async with self.connection() as connection, connection.transaction():
            await agent_with_session_insert(connection, agent, session_id, dumps)

    async def append(self, number: int) -> None:
        _, session_id = self.sessions[number % len(self.sessions)]
        async with self.connection() as connection:
            rows = await connection.fetch(
                HISTORY_INSERT, session_id, "note", number, self.dumps({"text": f"note {number}"})
            )
        assert rows[0]["id"]


async def ops_run(operation: Callable[[int], Awaitable[None]], first: int, seconds: float) -> dict[str, Any]:
    """TASKS tasks repeating `operation` (numbered from `first`) until `seconds` are up: ops done, time taken."""
    numbers = iter(range(first, first + 100_000_000))
    done = 0
    began = time.perf_counter()
    until = began + seconds

    async def repeat() -> None:
        nonlocal done
        while time.perf_counter() < until:
            await operation(next(numbers))
            done += 1

    await asyncio.gather(*(repeat() for _ in range(TASKS)))
    return {"ops": done, "seconds": time.perf_counter() - began}


# The worker processes (this script with --worker).


async def port_side_open(url: str, data_dir: Path) -> tuple[PortSide, Engine]:
    engine = Engine(Config(f"{url}&shared=true", data_dir, "bench", sandbox="none"), backup=False)
    await engine.start()
    storage = engine.storage
    owner = await storage.users.find_owner()
    assert owner is not None
    agents = sorted(await storage.agents.find_all(), key=lambda agent: agent.id)  # cached from now on
    return PortSide(storage, owner.id, [agent.id for agent in agents]), engine


async def reference_side_open(url: str) -> ReferenceSide:
    location = database_location(url)
    settings = {"search_path": location.schema or "public"}
    arguments = postgres_connect_arguments(location)
    connections = [await asyncpg.connect(**arguments, server_settings=settings) for _ in range(CONNECTIONS)]
    owner_id = await connections[0].fetchval('SELECT "id" FROM "users" WHERE "is_owner" LIMIT 1')
    rows = await connections[0].fetch('SELECT "id", "active_session_id" FROM "agents" ORDER BY "id"')
    return ReferenceSide(connections, owner_id, [(row["id"], row["active_session_id"]) for row in rows])


async def worker_main(side: str, url: str, index: int) -> None:
    """Opens its side, says ready, then runs each {"do": operation, "seconds": s} read on stdin until EOF."""
    engine: Engine | None = None
    with tempfile.TemporaryDirectory(prefix="daycare-engines-") as data_dir:
        runner: PortSide | ReferenceSide
        if side == "port":
            runner, engine = await port_side_open(url, Path(data_dir))
        else:
            runner = await reference_side_open(url)
        try:
            print(json.dumps({"event": "ready", "leads": engine.leads if engine else None}), flush=True)
            reader = asyncio.StreamReader()
            loop = asyncio.get_running_loop()
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
            first = index * 10_000_000
            while line := await reader.readline():
                command = json.loads(line)
                result = await ops_run(getattr(runner, command["do"]), first, command["seconds"])
                first += result["ops"] + TASKS
                print(json.dumps({"event": "done", **result}), flush=True)
        finally:
            if engine is not None:
                await engine.stop()
            if isinstance(runner, ReferenceSide):
                for connection in runner.connections:
                    await connection.close()


# The driver.


class Worker:
    """A worker process of one side, answering one JSON line per command."""

    def __init__(self, process: asyncio.subprocess.Process, log: TextIO) -> None:
        self.process = process
        self.log = log

    @classmethod
    async def start(cls, side: str, url: str, index: int, log_folder: Path) -> Worker:
        log = (log_folder / f"{side}{index}.log").open("w+")
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, str(Path(__file__).resolve()), "--worker", side, "--url", url, "--index", str(index)),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
        return cls(process, log)

    async def reply(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), WAIT)
        if not line:
            await self.process.wait()
            self.log.seek(0)
            raise SystemExit(f"a bench worker exited ({self.process.returncode}):\n{self.log.read()}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        if await asyncio.wait_for(self.process.wait(), WAIT):
            self.log.seek(0)
            raise SystemExit(f"a bench worker failed ({self.process.returncode}):\n{self.log.read()}")
        self.log.close()

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        self.log.close()


async def workers_command(workers: list[Worker], command: dict[str, Any]) -> list[dict[str, Any]]:
    """Writes `command` to every worker back to back, so they start together, and returns their answers."""
    for worker in workers:
        assert worker.process.stdin is not None
        worker.process.stdin.write((json.dumps(command) + "\n").encode())
    for worker in workers:
        assert worker.process.stdin is not None
        await worker.process.stdin.drain()
    return [await worker.reply() for worker in workers]


@dataclass
class Cell:
    """One side, one operation, one engine count: each process's ops and seconds, summed over the slices."""

    ops: list[int]
    seconds: list[float]
    slice_rates: list[float] = field(default_factory=list)  # the total ops/s of each slice

    @property
    def total(self) -> float:
        return sum(ops / seconds for ops, seconds in zip(self.ops, self.seconds, strict=True) if seconds)


@dataclass
class Row:
    engines: int
    operation: str
    port: Cell
    reference: Cell

    @property
    def ratio(self) -> float:
        return statistics.median(
            port / reference for port, reference in zip(self.port.slice_rates, self.reference.slice_rates, strict=True)
        )


def database_url(server_url: str, database: str) -> str:
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{database}", query=""))


@contextlib.asynccontextmanager
async def databases_made(server_url: str) -> AsyncIterator[tuple[Server, Server]]:
    """Two fresh databases, the port's and the reference's, dropped on exit."""
    arguments = postgres_connect_arguments(database_location(server_url))
    names = [f"daycare_engines_{secrets.token_hex(4)}", ""]
    names[1] = f"{names[0]}_ref"
    try:
        admin = await asyncpg.connect(**arguments)
    except (OSError, asyncpg.PostgresError) as error:
        raise SystemExit(f"Cannot connect to {server_url}: {error}") from None
    try:
        for name in names:
            await admin.execute(f'CREATE DATABASE "{name}"')
        yield server_parse(database_url(server_url, names[0])), server_parse(database_url(server_url, names[1]))
    finally:
        progress("dropping the databases")
        for name in names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        progress("done")
        await admin.close()


async def schemas_prepared(port_server: Server, reference_server: Server) -> tuple[str, str]:
    """A fresh schema in each database, migrated, with AGENTS agents with a session each: their URLs."""
    urls = []
    for server in (port_server, reference_server):
        db = await schema_migrated(server, "bench")
        try:
            storage = Storage.from_database(db)
            owner = await storage.users.find_owner()
            assert owner is not None
            for number in range(AGENTS):
                await storage.create_agent_with_session(agent_build(number, owner.id, CREATED_AT))
        finally:
            await database_close(db)
        urls.append(server.schema_url(server.schemas[-1]))
    return urls[0], urls[1]


async def statements_check(port_server: Server, reference_server: Server) -> None:
    """One unit of each operation on each side, traced; SystemExit unless both sent the same statements."""
    port_url, reference_url = await schemas_prepared(port_server, reference_server)
    db = await database_open(port_url)
    db.shared = True  # as the engines run it: writes that read lock what they read
    reference = await reference_side_open(reference_url)
    try:
        storage = Storage.from_database(db)
        owner = await storage.users.find_owner()
        assert owner is not None
        agents = sorted(await storage.agents.find_all(), key=lambda agent: agent.id)
        port = PortSide(storage, owner.id, [agent.id for agent in agents])
        reset = reference.connections[0].get_reset_query()
        mismatches = []
        for operation in OPERATIONS:
            port_sent: list[tuple[str, str]] = []
            reference_sent: list[tuple[str, str]] = []
            with statements_traced(port_sent):
                await getattr(port, operation)(1)
            with statements_traced(reference_sent):
                await getattr(reference, operation)(1)
            port_sent = [sent for sent in port_sent if sent[1] != reset]
            if port_sent != reference_sent:
                mismatches.append(f"{operation}:\n  port      {port_sent}\n  reference {reference_sent}")
    finally:
        for connection in reference.connections:
            await connection.close()
        await database_close(db)
        await schemas_drop(port_server)
        await schemas_drop(reference_server)
    if mismatches:
        raise SystemExit("The port and the reference sent different statements:\n" + "\n".join(mismatches))


async def count_run(
    engines: int, port_server: Server, reference_server: Server, seconds: float, slices: int, log_folder: Path
) -> list[Row]:
    """The operations with `engines` processes per side, on fresh schemas, in interleaved slices."""
    progress(f"{engines} engine(s): preparing the schemas")
    port_url, reference_url = await schemas_prepared(port_server, reference_server)
    progress(f"{engines} engine(s): starting the processes")
    workers: dict[str, list[Worker]] = {"port": [], "reference": []}
    try:
        for side, url in (("port", port_url), ("reference", reference_url)):
            for index in range(engines):
                workers[side].append(await Worker.start(side, url, index, log_folder))
        for side_workers in workers.values():
            for worker in side_workers:
                await worker.reply()  # ready
        rows = {
            operation: Row(
                engines,
                operation,
                Cell([0] * engines, [0.0] * engines),
                Cell([0] * engines, [0.0] * engines),
            )
            for operation in OPERATIONS
        }
        progress(f"{engines} engine(s): timing")
        for number in range(slices):
            for operation, row in rows.items():
                for side in ("port", "reference") if number % 2 == 0 else ("reference", "port"):
                    cell = row.port if side == "port" else row.reference
                    answers = await workers_command(workers[side], {"do": operation, "seconds": seconds})
                    for index, answer in enumerate(answers):
                        cell.ops[index] += answer["ops"]
                        cell.seconds[index] += answer["seconds"]
                    cell.slice_rates.append(sum(answer["ops"] / answer["seconds"] for answer in answers))
        progress(f"{engines} engine(s): stopping the processes")
        for side_workers in workers.values():
            for worker in side_workers:
                await worker.stop()
        progress(f"{engines} engine(s): dropping the schemas")
        return list(rows.values())
    except BaseException:
        for side_workers in workers.values():
            for worker in side_workers:
                worker.kill()
        raise
    finally:
        await schemas_drop(port_server)
        await schemas_drop(reference_server)


async def bench(options: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    rows: list[Row] = []
    async with databases_made(options.server) as (port_server, reference_server):
        machine = await server_describe(port_server)
        progress("checking that both sides send the same statements")
        await statements_check(port_server, reference_server)
        with tempfile.TemporaryDirectory(prefix="daycare-engines-logs-") as log_folder:
            for engines in options.engines:
                rows += await count_run(
                    engines, port_server, reference_server, options.seconds, options.slices, Path(log_folder)
                )
    single = {
        (row.operation, side): getattr(row, side).total
        for row in rows
        if row.engines == 1
        for side in ("port", "reference")
    }
    return {
        "benchmark": "engines",
        "seconds": round(time.perf_counter() - started, 1),
        "machine": machine,
        "method": {
            "tasks_per_process": TASKS,
            "connections_per_process": CONNECTIONS,
            "slices": options.slices,
            "seconds_per_slice": options.seconds,
            "interleave": "per engine count and operation, slices alternate port and reference (port first on even)",
            "reference": "plain asyncpg, the port's statements and transactions, one process per engine",
            "ratio": "median over the slices of port ops/s / reference ops/s",
        },
        "rows": [
            {
                "engines": row.engines,
                "operation": OPERATIONS[row.operation],
                **{
                    side: {
                        "ops_per_s": round(getattr(row, side).total, 1),
                        "per_engine": round(getattr(row, side).total / row.engines, 1),
                        "scaling": round(getattr(row, side).total / single[(row.operation, side)], 2)
                        if (row.operation, side) in single
                        else None,
                    }
                    for side in ("port", "reference")
                },
                "ratio": round(row.ratio, 3),
            }
            for row in rows
        ],
    }


def report_text(result: dict[str, Any]) -> str:
    machine, method = result["machine"], result["method"]
    lines = [
        f"Engines on one PostgreSQL {machine['postgres']} database: {result['seconds']} s,"
        f" {method['slices']} slices of {method['seconds_per_slice']} s per side and operation",
        f"server: {machine['server']}, {machine['durability']}",
        f"machine: {machine['nproc']} x {machine['cpu']}; data on {machine['disk']}",
        f"         Python {machine['python']}, asyncpg {machine['asyncpg']};"
        f" {method['tasks_per_process']} tasks per process",
    ]
    header = (
        f"{'engines':>7}  {'operation':<26}{'port ops/s':>11}{'/engine':>9}{'scaling':>8}"
        f"{'ref ops/s':>11}{'/engine':>9}{'scaling':>8}{'port/ref':>9}"
    )
    lines += [header, "-" * len(header)]
    for row in result["rows"]:
        port, reference = row["port"], row["reference"]
        lines.append(
            f"{row['engines']:>7}  {row['operation']:<26}{port['ops_per_s']:>11,.0f}{port['per_engine']:>9,.0f}"
            f"{port['scaling']:>8.2f}{reference['ops_per_s']:>11,.0f}{reference['per_engine']:>9,.0f}"
            f"{reference['scaling']:>8.2f}{row['ratio']:>9.2f}"
        )
    lines += [
        "(ops/s: summed over the processes; scaling: against 1 process of the same side;",
        " port/ref: median of the slices' ratios; reference: plain asyncpg, 5 connections per process)",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default=DEFAULT_SERVER, help=f"a database to connect to (default {DEFAULT_SERVER})")
    parser.add_argument("--engines", default="1,2,4", help="engine counts, comma-separated (default 1,2,4)")
    parser.add_argument("--seconds", type=float, default=2.5, help="seconds per slice (default 2.5)")
    parser.add_argument("--slices", type=int, default=4, help="slices per side and operation (default 4)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--worker", choices=["port", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker is not None:
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        asyncio.run(worker_main(options.worker, options.url, options.index))
        return
    try:
        options.engines = [int(count) for count in options.engines.split(",")]
    except ValueError:
        parser.error(f"--engines takes whole numbers separated by commas, got {options.engines!r}")
    if not options.engines or min(options.engines) < 1 or 1 not in options.engines:
        parser.error("--engines needs 1 (the baseline of the scaling) and counts of at least 1")
    if options.seconds <= 0 or options.slices < 2:
        parser.error("--seconds must be positive and --slices at least 2 (slices alternate port and reference)")
    location = database_location(options.server)
    if location.server is None:
        parser.error("--server takes a postgres:// URL")
    result = asyncio.run(bench(options))
    print(json.dumps(result, indent=2) if options.json else report_text(result))


if __name__ == "__main__":
    main()
