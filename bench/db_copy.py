#!/usr/bin/env python3
# ruff: noqa: E402  (the standard library's `copy` must be imported before the rest: see below)
"""`daycare db copy` from SQLite to PostgreSQL on a file with 1M history rows, next to pgloader on the same file.

    python bench/db_copy.py                         # 1M history rows and 100k users, 1 round
    python bench/db_copy.py --rounds 3              # medians of 3 rounds, the two tools alternating
    python bench/db_copy.py --history 100000 --users 10000
    python bench/db_copy.py --file /tmp/big.db      # keep the generated file there (reused when it exists)
    python bench/db_copy.py --back                  # also time the copy back, PostgreSQL to a new SQLite file
    python bench/db_copy.py --db postgres://postgres@127.0.0.1:5432/daycare_bench --json

The file is made by bench/growth.py's generator (users, connector keys, agents, sessions, the
history rows spread over them, signal subscriptions and delayed signals), migrated by Daycare.
Each round copies it into a fresh schema of the --db database with `database_copy` (what `daycare
db copy` runs: the target migrated first, one transaction, COPY, keys and indexes built after the
rows, every table read back and compared by row count and sha256 before the commit), then loads it
with pgloader into another fresh schema (pgloader's defaults for SQLite: create tables, indexes,
foreign keys, reset sequences; it maps the types itself and checks nothing afterwards). The rate is
rows copied over wall time, start to commit, for both. Schemas are dropped at the end. pgloader
comes from Debian (`apt-get install pgloader`); without it only Daycare's side is measured.
"""

from __future__ import annotations

import os
import sys

# This file is named like the standard library's `copy`, which argparse and dataclasses import: take
# its folder off the path and load the real one first (growth.py puts the folder back for w1.py).
_HERE = os.path.dirname(os.path.realpath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.realpath(entry or os.curdir) != _HERE]
import copy  # noqa: F401

# isort: split
import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

import asyncpg
from growth import Shape, count_text, shape_build
from w1 import machine_describe

from daycare.storage.db.location import database_location
from daycare.storage.migrations.copy import database_copy

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/daycare_bench"


def server_dsn(url: str) -> str:
    """The asyncpg / pgloader DSN of the database named by a Daycare postgres:// URL (its schema left out)."""
    server = database_location(url).server
    assert server is not None, f"{url} is not a PostgreSQL URL"
    password = f":{server.password}" if server.password else ""
    user = f"{server.user}{password}@" if server.user else ""
    return f"postgresql://{user}{server.host or ''}:{server.port or 5432}/{server.database}"


def schema_url(url: str, schema: str) -> str:
    base = url.split("?", 1)[0]
    return f"{base}?schema={schema}"


async def schemas_drop(dsn: str, schemas: list[str]) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        for schema in schemas:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()


async def schema_rows(dsn: str, schema: str) -> int:
    """The rows of every table of `schema` but aerich, counted."""
    connection = await asyncpg.connect(dsn)
    try:
        tables = await connection.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 AND table_name <> 'aerich'",
            schema,
        )
        return sum(
            [await connection.fetchval(f'SELECT count(*) FROM "{schema}"."{row[0]}"') for row in tables], start=0
        )
    finally:
        await connection.close()


class Phases:
    """A Progress that notes when each labelled piece of work starts and ends."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.seconds: dict[str, float] = {}

    def __call__(self, label: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if done == 0:
            self.started[label] = now
        if done >= total and label in self.started:
            self.seconds[label] = now - self.started[label]


async def daycare_copy(source: str, target: str) -> dict[str, Any]:
    phases = Phases()
    started = time.perf_counter()
    result = await database_copy(source, target, progress=phases, notify=lambda line: None)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": result.rows, "phases": phases.seconds}


def pgloader_load(pgloader: str, source: Path, dsn: str, schema: str, folder: Path) -> dict[str, Any]:
    command = folder / f"{schema}.load"
    command.write_text(
        f"LOAD DATABASE\n  FROM sqlite://{source}\n  INTO {dsn}\n"
        "  WITH include drop, create tables, create indexes, reset sequences, foreign keys\n"
        f"  SET PostgreSQL PARAMETERS search_path to '{schema}'\n"
        f'  BEFORE LOAD DO $$ CREATE SCHEMA IF NOT EXISTS "{schema}"; $$\n'
        "  EXCLUDING TABLE NAMES LIKE 'aerich'\n;\n",
        encoding="utf-8",
    )
    started = time.perf_counter()
    run = subprocess.run(
        [pgloader, "--root-dir", str(folder / "pgloader"), str(command)], capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if run.returncode != 0:
        raise RuntimeError(f"pgloader failed ({run.returncode}):\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
    version = subprocess.run([pgloader, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    return {"seconds": seconds, "version": version, "summary": run.stdout.strip().splitlines()[-1]}


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="daycare-copy-bench-"))
    source = Path(args.file) if args.file else folder / "source.db"
    shape = Shape(args.history, args.users, source)
    built = 0.0
    if not source.exists():
        print(f"building {source}: {count_text(args.history)} history rows, {count_text(args.users)} users ...")
        await asyncio.to_thread(shape_build, shape, 1, args.seed)  # it runs an event loop of its own
        built = shape.build_seconds
    megabytes = round(source.stat().st_size / 1e6, 1)
    dsn = server_dsn(args.db)
    pgloader = shutil.which("pgloader")
    tag = f"copy_bench_{os.getpid()}"
    schemas: list[str] = []
    runs: dict[str, list[dict[str, Any]]] = {"daycare": [], "pgloader": [], "back": []}
    try:
        for number in range(args.rounds):
            order = ["daycare", "pgloader"] if number % 2 == 0 else ["pgloader", "daycare"]
            for side in order:
                schema = f"{tag}_{number}_{side}"
                schemas.append(schema)
                if side == "daycare":
                    run = await daycare_copy(str(source), schema_url(args.db, schema))
                    runs["daycare"].append(run)
                    print(f"round {number + 1}: daycare db copy {run['seconds']:.1f} s ({run['rows']:,} rows)")
                    if args.back:
                        back = folder / f"back_{number}.db"
                        again = await daycare_copy(schema_url(args.db, schema), str(back))
                        runs["back"].append(again)
                        print(f"round {number + 1}: daycare db copy back to SQLite {again['seconds']:.1f} s")
                        back.unlink()
                elif pgloader:
                    run = await asyncio.to_thread(pgloader_load, pgloader, source, dsn, schema, folder)
                    run["rows"] = await schema_rows(dsn, schema)
                    runs["pgloader"].append(run)
                    print(f"round {number + 1}: pgloader {run['seconds']:.1f} s ({run['rows']:,} rows)")
                if not args.keep:
                    await schemas_drop(dsn, [schema])
    finally:
        if not args.keep:
            await schemas_drop(dsn, schemas)
            if not args.file:
                shutil.rmtree(folder, ignore_errors=True)
    result: dict[str, Any] = {
        "machine": machine_describe(source.parent),
        "history": args.history,
        "users": args.users,
        "file_megabytes": megabytes,
        "build_seconds": round(built, 1),
        "rounds": args.rounds,
        "load_average": os.getloadavg(),
    }
    for side, measured in runs.items():
        if not measured:
            continue
        seconds = statistics.median(run["seconds"] for run in measured)
        rows = measured[0]["rows"]
        entry: dict[str, Any] = {"seconds": round(seconds, 2), "rows": rows, "rows_per_second": round(rows / seconds)}
        if side != "pgloader":
            labels = {label for run in measured for label in run["phases"]}
            entry["phases"] = {
                label: round(statistics.median(run["phases"].get(label, 0.0) for run in measured), 2)
                for label in sorted(labels)
            }
        else:
            entry["version"] = measured[0]["version"]
        result[side] = entry
    if "pgloader" in result:
        result["pgloader_over_daycare_seconds"] = round(result["pgloader"]["seconds"] / result["daycare"]["seconds"], 2)
    return result


def report(result: dict[str, Any]) -> str:
    lines = [
        f"{count_text(result['history'])} history rows, {count_text(result['users'])} users"
        f" ({result['file_megabytes']} MB file), {result['rounds']} round(s), medians;"
        f" load average at the end {', '.join(f'{value:.1f}' for value in result['load_average'])}",
        f"{'':34} {'seconds':>8} {'rows/s':>9}",
    ]
    names = {"daycare": "daycare db copy (SQLite -> PG)", "pgloader": "pgloader (SQLite -> PG)"}
    names["back"] = "daycare db copy (PG -> SQLite)"
    for side, name in names.items():
        if side in result:
            entry = result[side]
            lines.append(f"{name:34} {entry['seconds']:8.1f} {entry['rows_per_second']:9,}")
            if "phases" in entry:
                lines.append(
                    "    " + ", ".join(f"{label} {seconds:.1f} s" for label, seconds in entry["phases"].items())
                )
    if "pgloader_over_daycare_seconds" in result:
        lines.append(f"pgloader takes {result['pgloader_over_daycare_seconds']}x daycare's time")
    else:
        lines.append("pgloader: not installed (apt-get install pgloader), not compared")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default=DEFAULT_DB, help="PostgreSQL database the schemas are made in")
    parser.add_argument("--history", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--file", help="where the generated SQLite file goes (reused when it exists)")
    parser.add_argument("--back", action="store_true", help="also copy each PostgreSQL copy back to SQLite")
    parser.add_argument("--keep", action="store_true", help="keep the schemas (and the folder) afterwards")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(bench(args))
    print(json.dumps(result, indent=2) if args.json else report(result))


if __name__ == "__main__":
    main()
