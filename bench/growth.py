#!/usr/bin/env python3
"""Growth: per-operation cost as the database grows, the port next to plain sqlite3 on the same file.

    python bench/growth.py                   # 10k and 1M history rows, 1k and 100k users
    python bench/growth.py --sizes small     # 10k and 100k history rows, 1k and 10k users
    python bench/growth.py --sizes 10000:1000,300000:30000
    python bench/growth.py --json            # one JSON object instead of the table
    python bench/growth.py --trace           # also print the SQL the port ran for one call of each operation

For each size a migrated file is filled with plain sqlite3 bulk inserts: the bootstrap owner and
`users - 1` more users (10 of them sub-users of one parent, every 25th a sub-user of another),
a connector key and an agent per user, 2,000 agents of the owner (one of them its `cron` system
agent), an active session per agent plus `history / 50` ended ones (20% of all sessions
invalidated), the history rows spread over the sessions in blocks of 64 interleaved sessions,
20,000 signal subscriptions (20 of the owner's, 8 of which match `a:b`) and 50,000 delayed
signals. Then each operation runs through the port (a `Storage` on the file: a fresh one per
call where the first call is the point, the same one where the path is warm in real use) and
through plain sqlite3 on the same file, running the statements the port runs. Where the port
runs something else (an O(n) read being replaced, several statements for one), the reference
runs the one indexed statement that does the work (marked `*`), so the ratio shows the distance.

All sizes are built first and measured together: in every round each operation runs on every
size, port and reference alternating, the order of sides and sizes changing from round to round,
so a slower disk or a busy machine for a while lands on all of them alike. Figures are medians
of the microseconds of every call of all rounds (robust to a burst of load from elsewhere); an
operation's calls per round are sized from a probe call (about 0.08 s per side). The growth
factor is the last size over the first (flat is ~1x); the ratio is port over reference. The plan
column flags statements SQLite answers with a full scan (EXPLAIN QUERY PLAN of the statements
the port actually ran, captured from the driver's debug log, and of the reference's). Memory:
the RSS the port's `signal_events.create` calls add over 50,000 signals, next to the reference's.
Commits use synchronous=NORMAL by default (no fsync per commit in WAL), so the figures show
the database work rather than the disk's flush latency; `--synchronous FULL` measures that too.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import gc
import json
import logging
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from w1 import machine_describe  # noqa: E402

from daycare.storage.db.database import Database, database_close, database_open  # noqa: E402
from daycare.storage.facade import Storage  # noqa: E402
from daycare.storage.migrations.migrate import database_migrate  # noqa: E402
from daycare.storage.repositories.context import Context  # noqa: E402
from daycare.storage.repositories.history import HistoryRecord  # noqa: E402

SIZES = {
    "small": [(10_000, 1_000), (100_000, 10_000)],
    "default": [(10_000, 1_000), (1_000_000, 100_000)],
}
SUB_USERS = 10  # sub-users of the parent whose list is read
OWNER_AGENTS = 2_000  # agents of the user that posts to its system agent
SESSIONS_PER_HISTORY = 50  # one ended session per this many history rows
INVALIDATED = 0.2
BLOCK = 64  # sessions whose history rows are interleaved, as concurrent conversations write them
READ_ROWS = 50  # rows of the session whose history is read
SUBSCRIPTIONS = 20_000
DELAYED = 50_000
SIGNALS = 50_000
DELETE_CALLS = 20  # most delete_by_repeat_key calls per round and side (one pending key each)
ROUND_BUDGET = 0.08  # seconds an operation aims at per round and side (calls are sized from a probe call)
BASE_MS = 1_770_000_000_000

ADJECTIVES = ("swift", "quiet", "brave", "lucky", "amber", "misty", "noble", "rapid", "sunny", "witty")
ANIMALS = ("falcon", "otter", "badger", "heron", "lynx", "marten", "panda", "raven", "tapir", "wombat")
HISTORY_TEMPLATES = (
    ("user_message", '{{"text":"Can you check why build {n} of the api failed this morning?","files":[]}}'),
    (
        "assistant_message",
        '{{"content":[{{"type":"text","text":"Run {n} timed out in the integration step; retrying with a longer '
        'limit."}}],"tokens":{{"provider":"anthropic","model":"claude-sonnet-4","size":{{"input":{n},"output":412}}}}}}',
    ),
    ("rlm_tool_call", '{{"toolCallId":"call_{n}","name":"shell","arguments":{{"command":"ls -la /srv/p{n}"}}}}'),
    ("rlm_tool_result", '{{"toolCallId":"call_{n}","output":"total 48\\ndrwxr-xr-x 5 daycare","isError":false}}'),
    ("note", '{{"text":"note {n}: the user prefers short answers"}}'),
)
OWNER_PATTERNS_MATCHING = ("a:b", "a:*", "*:b", "*:*")
OWNER_PATTERNS_OTHER = ("a:c", "b:a", "a:b:c", "build:*", "c:*", "*:c")
SYSTEM_CRON = {"type": "system", "tag": "cron"}
CRON_ITEM = {
    "type": "system_message",
    "text": "[cron] nightly report: summarise yesterday's failed builds",
    "code": ["report = builds.failed(since='1d')\nprint(report)"],
    "origin": "cron",
    "execute": True,
    "context": {"taskId": "nightly-report", "triggerId": "t1"},
}

dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class Ids:
    """cuid2-shaped ids (24 lowercase alphanumerics, a letter first), fast and reproducible."""

    LETTERS = "abcdefghijklmnopqrstuvwxyz"
    ALPHABET = LETTERS + "0123456789"

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def __call__(self) -> str:
        return self._rng.choice(self.LETTERS) + "".join(self._rng.choices(self.ALPHABET, k=23))


def count_text(number: int) -> str:
    """10_000 -> 10k, 1_000_000 -> 1M."""
    for unit, suffix in ((1_000_000, "M"), (1_000, "k")):
        if number >= unit and number % (unit // 10) == 0:
            value = number / unit
            return f"{value:g}{suffix}"
    return str(number)


def rss_bytes() -> int:
    """The process's resident set size now (not its peak)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------------------------------------
# Building a file


@dataclass
class Shape:
    """One size of the database and the rows the operations aim at."""

    history: int
    users: int
    path: Path
    owner_id: str = ""
    parent_id: str = ""
    bench_agent_id: str = ""  # an owner agent whose active session takes the appends
    read_session_id: str = ""  # an ended session of READ_ROWS rows spread through the file
    rows: dict[str, int] = field(default_factory=dict)
    build_seconds: float = 0.0
    megabytes: float = 0.0

    @property
    def label(self) -> str:
        return f"{count_text(self.history)}/{count_text(self.users)}"


async def file_migrate(path: Path) -> None:
    db = await database_open(path)
    try:
        await database_migrate(db, backup=False)
    finally:
        await database_close(db)


def permissions_of(user_id: str) -> str:
    home = f"/home/daycare/users/{user_id}/home"
    return dumps({"workingDir": f"{home}/desktop", "writeDirs": [home], "readDirs": [home]})


def history_rows(sessions: list[str], total: int, read_session: str, at: Iterator[int]) -> Iterator[tuple[Any, ...]]:
    """`total` rows: READ_ROWS for `read_session`, evenly through the file, the rest over `sessions`
    in blocks of BLOCK sessions whose rows interleave."""
    spread = total - READ_ROWS
    per, extra = divmod(spread, len(sessions))
    stride = max(1, total // READ_ROWS)
    written = read_written = 0
    templates = HISTORY_TEMPLATES
    for first in range(0, len(sessions), BLOCK):
        block = sessions[first : first + BLOCK]
        counts = [per + (1 if first + offset < extra else 0) for offset in range(len(block))]
        for step in range(max(counts, default=0)):
            for offset, session_id in enumerate(block):
                if step >= counts[offset]:
                    continue
                if written % stride == 0 and read_written < READ_ROWS:
                    kind, template = templates[read_written % len(templates)]
                    yield (read_session, kind, next(at), template.format(n=read_written))
                    read_written += 1
                    written += 1
                kind, template = templates[written % len(templates)]
                yield (session_id, kind, next(at), template.format(n=written))
                written += 1
    for number in range(read_written, READ_ROWS):
        kind, template = templates[number % len(templates)]
        yield (read_session, kind, next(at), template.format(n=number))


def shape_fill(shape: Shape, rounds: int, rng: random.Random) -> None:
    """Fills a migrated file with plain sqlite3 bulk inserts in one transaction."""
    ids = Ids(rng)
    connection = sqlite3.connect(shape.path, isolation_level=None)
    execute, many = connection.execute, connection.executemany
    # A rollback journal writes only pages that existed before: the fastest way to grow a file.
    execute("PRAGMA journal_mode=DELETE")
    execute("PRAGMA synchronous=OFF")
    execute("PRAGMA cache_size=-262144")
    owner_id, owner_tag = execute("SELECT id, nametag FROM users WHERE is_owner = 1").fetchone()
    shape.owner_id = owner_id
    execute("BEGIN")

    # Users, their connector keys and one agent each.
    user_ids = [ids() for _ in range(shape.users - 1)]
    shape.parent_id = user_ids[0]
    users = []
    for number, user_id in enumerate(user_ids):
        if 1 <= number <= SUB_USERS:
            parent = shape.parent_id
        elif number > SUB_USERS + 1 and number % 25 == 0:
            parent = user_ids[rng.randrange(SUB_USERS + 1, number)]
        else:
            parent = None
        tag = f"{ADJECTIVES[number % 10]}{ANIMALS[number // 10 % 10]}{100 + number}"
        tag = tag + "0" if tag == owner_tag else tag
        name = f"User {number}" if number % 3 else None
        users.append((user_id, 0, BASE_MS + number, BASE_MS + number, parent, name, tag))
    many(
        "INSERT INTO users (id, is_owner, created_at, updated_at, parent_user_id, name, nametag)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        users,
    )
    many(
        "INSERT INTO user_connector_keys (user_id, connector_key) VALUES (?, ?)",
        ((user_id, f"telegram:{1_000_000_000 + number}") for number, user_id in enumerate(user_ids)),
    )
    agents: list[list[Any]] = []
    agent_of: dict[str, str] = {}
    for number, user_id in enumerate(user_ids):
        agent_id = ids()
        agent_of[user_id] = agent_id
        chat = str(1_000_000_000 + number)
        descriptor = dumps({"type": "user", "connector": "telegram", "userId": chat, "channelId": chat})
        tokens = None
        if number % 2:
            size = {"input": 1200 + number % 900, "output": 300, "cacheHit": 0, "cacheWrite": 0}
            tokens = dumps({"provider": "anthropic", "model": "claude-sonnet-4", "size": size})
        at = BASE_MS + number
        permissions = permissions_of(user_id)
        agents.append([agent_id, "user", descriptor, None, permissions, tokens, "{}", "active", at, at, user_id])
    owner_agents = [ids() for _ in range(OWNER_AGENTS)]
    shape.bench_agent_id = owner_agents[1]
    owner_permissions = permissions_of(owner_id)
    for number, agent_id in enumerate(owner_agents):
        at = BASE_MS + number
        if number == 0:
            kind, descriptor, lifecycle = "system", dumps(SYSTEM_CRON), "active"
        elif number == 1:
            kind, lifecycle = "user", "active"
            descriptor = dumps({"type": "user", "connector": "telegram", "userId": "1", "channelId": "1"})
        else:
            kind, lifecycle = "subagent", "dead" if number % 10 == 0 else "active"
            descriptor = dumps(
                {"type": "subagent", "id": agent_id, "parentAgentId": owner_agents[1], "name": f"helper {number}"}
            )
        agents.append([agent_id, kind, descriptor, None, owner_permissions, None, "{}", lifecycle, at, at, owner_id])

    # Sessions: an active one per agent, ended ones for history, one more to read; 20% invalidated.
    sessions: list[list[Any]] = []
    for agent in agents:
        agent[3] = session_id = ids()
        sessions.append([session_id, agent[0], ids(), agent[8], None, None, None, None])
    for number in range(shape.history // SESSIONS_PER_HISTORY):
        agent = agents[rng.randrange(len(agents))]
        at = BASE_MS - 1_000_000 + number
        sessions.append([ids(), agent[0], ids(), at, None, None, None, at + 600_000])
    for session in sessions:
        if rng.random() < INVALIDATED:
            session[5] = rng.randint(1, shape.history)
        elif rng.random() < 0.5:
            session[6] = rng.randint(1, shape.history)
    spread = [session[0] for session in sessions]
    rng.shuffle(spread)
    shape.read_session_id = ids()
    sessions.append([shape.read_session_id, shape.bench_agent_id, None, BASE_MS - 2_000_000, None, None, None, BASE_MS])
    many("INSERT INTO agents (id, type, descriptor, active_session_id, permissions, tokens, stats, lifecycle,"
         " created_at, updated_at, user_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", agents)  # fmt: skip
    many("INSERT INTO sessions (id, agent_id, inference_session_id, created_at, reset_message, invalidated_at,"
         " processed_until, ended_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", sessions)  # fmt: skip
    clock = iter(range(BASE_MS, BASE_MS + 10 * shape.history + 10, 10))
    many(
        "INSERT INTO session_history (session_id, type, at, data) VALUES (?, ?, ?, ?)",
        history_rows(spread, shape.history, shape.read_session_id, clock),
    )

    # Signal subscriptions: 20 of the owner's agents' (8 match `a:b`), the rest spread over the users.
    subscriptions: dict[tuple[str, str, str], tuple[Any, ...]] = {}
    patterns = OWNER_PATTERNS
    for number in range(OWNER_SUBSCRIPTIONS):
        key = (owner_id, owner_agents[2 + number // len(patterns)], patterns[number % len(patterns)])
        subscriptions[key] = (ids(), *key, number % 2, BASE_MS, BASE_MS)
    number = 0
    while len(subscriptions) < SUBSCRIPTIONS:
        user_id = user_ids[rng.randrange(len(user_ids))]
        roll = rng.random()
        pattern = "a:b" if roll < 0.1 else "a:*" if roll < 0.15 else f"topic{number % 500}:event{number}"
        key = (user_id, agent_of[user_id], pattern)
        subscriptions.setdefault(key, (ids(), *key, number % 2, BASE_MS + number, BASE_MS + number))
        number += 1
    many("INSERT INTO signals_subscriptions (id, user_id, agent_id, pattern, silent, created_at, updated_at)"
         " VALUES (?, ?, ?, ?, ?, ?, ?)", subscriptions.values())  # fmt: skip

    # Delayed signals: the owner's keys to cancel (port, reference, probe), the rest spread over the users.
    delayed: list[tuple[Any, ...]] = []
    source = dumps({"type": "agent", "id": shape.bench_agent_id, "userId": owner_id})
    for side in ("port", "reference", "probe"):
        for number in range(rounds * DELETE_CALLS + 2):
            at = BASE_MS + 3_600_000 + number
            delayed.append((ids(), owner_id, "reminder", at, source, None, f"cancel-{side}-{number}", at, at))
    types = ("reminder", "followup", "cron:tick", "deadline")
    for number in range(DELAYED - len(delayed)):
        user_id = user_ids[rng.randrange(len(user_ids))]
        at = BASE_MS + rng.randrange(86_400_000)
        user_source = dumps({"type": "agent", "id": agent_of[user_id], "userId": user_id})
        data = dumps({"text": f"remember item {number}"}) if number % 2 else None
        repeat_key = f"rk-{number}" if number % 3 else None
        delayed.append((ids(), user_id, types[number % 4], at, user_source, data, repeat_key, at, at))
    many("INSERT INTO signals_delayed (id, user_id, type, deliver_at, source, data, repeat_key, created_at,"
         " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", delayed)  # fmt: skip
    execute("COMMIT")
    execute("PRAGMA journal_mode=WAL")
    for table in ("users", "agents", "sessions", "session_history", "signals_subscriptions", "signals_delayed"):
        shape.rows[table] = execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    connection.close()


def shape_build(shape: Shape, rounds: int, seed: int) -> None:
    started = time.perf_counter()
    asyncio.run(file_migrate(shape.path))
    shape_fill(shape, rounds, random.Random(seed))
    shape.build_seconds = time.perf_counter() - started
    shape.megabytes = shape.path.stat().st_size / 1e6


# ---------------------------------------------------------------------------------------------
# The operations


class NotAvailable(Exception):
    """The port has no such method (yet): the operation is reported as n/a."""


class SqlCapture(logging.Handler):
    """Collects the statements the port's driver logs (its debug log names each statement and values)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.statements: list[tuple[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.args, tuple) and len(record.args) == 2:
            self.statements.append((str(record.args[0]), record.args[1]))
        else:
            self.statements.append((record.getMessage(), None))


class Env:
    """One size's file, opened for the port and for the reference."""

    def __init__(self, shape: Shape, db: Database, reference: sqlite3.Connection, users_dir: Path) -> None:
        self.shape = shape
        self.db = db
        self.storage = Storage.from_database(db)
        self.ref = reference
        self.users_dir = users_dir
        self.owner = Context(shape.owner_id)
        self.ids = Ids(random.Random(7))
        self.system: Any = None  # the warm agent system, made on first use
        self.system_agent_id = ""  # the reference's, found on first use
        self.bench_session_id = ""  # the reference's append target, found on first use
        self.next: dict[str, int] = {}  # counters of the writes each side made
        self.rss: dict[str, int] = {"port": 0, "reference": 0}

    def counter(self, name: str) -> int:
        value = self.next.get(name, 0)
        self.next[name] = value + 1
        return value

    def fresh(self) -> Storage:
        return Storage.from_database(self.db)


def method(owner: object, name: str) -> Callable[..., Awaitable[Any]]:
    found = getattr(owner, name, None)
    if found is None:
        raise NotAvailable(f"{type(owner).__name__}.{name} does not exist")
    return found  # type: ignore[no-any-return]


def segments_match(signal_type: str, pattern: str) -> bool:
    wanted, actual = pattern.strip().split(":"), signal_type.strip().split(":")
    return len(wanted) == len(actual) and all(w in ("*", a) for w, a in zip(wanted, actual, strict=True))


SESSION_COLUMNS = (
    "id",
    "agent_id",
    "inference_session_id",
    "created_at",
    "reset_message",
    "invalidated_at",
    "processed_until",
    "ended_at",
)
USER_COLUMNS = ("id", "is_owner", "parent_user_id", "name", "nametag", "created_at", "updated_at")
SUBSCRIPTION_COLUMNS = ("id", "user_id", "agent_id", "pattern", "silent", "created_at", "updated_at")


def quoted(columns: tuple[str, ...]) -> str:
    return ",".join(f'"{column}"' for column in columns)


SQL = {
    "invalidated": f'SELECT {quoted(SESSION_COLUMNS)} FROM "sessions" WHERE "invalidated_at" IS NOT NULL'
    ' ORDER BY "invalidated_at" LIMIT ?',
    "children": f'SELECT {quoted(USER_COLUMNS)} FROM "users" WHERE "parent_user_id"=? ORDER BY "created_at","id"',
    "keys_of": 'SELECT "id","user_id","connector_key" FROM "user_connector_keys" WHERE "user_id" IN ({marks})'
    ' ORDER BY "id"',
    "owner_id": 'SELECT "id" FROM "users" WHERE "is_owner"=? LIMIT ?',
    "user": f'SELECT {quoted(USER_COLUMNS)} FROM "users" WHERE "id"=? LIMIT ?',
    "keys": 'SELECT "id","user_id","connector_key" FROM "user_connector_keys" WHERE "user_id"=? ORDER BY "id"',
    # the user's subscriptions through the (user_id, agent_id, pattern) index, matched in Python
    "subscriptions": f'SELECT {quoted(SUBSCRIPTION_COLUMNS)} FROM "signals_subscriptions" WHERE "user_id"=?'
    ' ORDER BY "agent_id","pattern"',
    # target: the user's live agent with this descriptor, one indexed statement
    "system_agent": 'SELECT "id" FROM "agents" WHERE "user_id"=? AND "descriptor"=? AND "lifecycle"<>?'
    ' ORDER BY "created_at","id" LIMIT ?',
    "inbox": 'INSERT INTO "inbox" ("id","agent_id","posted_at","type","data") VALUES (?,?,?,?,?) ON CONFLICT ("id")'
    ' DO UPDATE SET "agent_id"=EXCLUDED."agent_id","posted_at"=EXCLUDED."posted_at","type"=EXCLUDED."type",'
    '"data"=EXCLUDED."data"',
    "append": 'INSERT INTO "session_history" ("session_id","type","at","data") VALUES (?,?,?,?) RETURNING "id"',
    "history": 'SELECT "type","at","data" FROM "session_history" WHERE "session_id"=? ORDER BY "id"',
    "signal": 'INSERT INTO "signals_events" ("id","user_id","type","source","data","created_at") VALUES (?,?,?,?,?,?)'
    ' ON CONFLICT ("id") DO UPDATE SET "user_id"=EXCLUDED."user_id","type"=EXCLUDED."type",'
    '"source"=EXCLUDED."source","data"=EXCLUDED."data","created_at"=EXCLUDED."created_at"',
    "delete_repeat": 'DELETE FROM "signals_delayed" WHERE "user_id"=? AND "type"=? AND "repeat_key"=?',
}


Times: TypeAlias = "array.array[float]"  # seconds of each call, preallocated: recording them allocates nothing


@dataclass
class Operation:
    """One measured operation: the port's call and the reference's, `calls` of each per round."""

    key: str
    name: str
    port: Callable[[Env, int], Awaitable[Times]]  # runs n calls, returns the seconds of each
    reference: Callable[[Env, int], Times]
    reference_sql: tuple[str, ...]
    max_calls: int
    target: bool = False  # the reference runs the indexed statement that does the work, not the port's statements
    warm: bool = False  # the probe runs twice and the second call is the one described
    fixed_calls: int = 0  # calls in all, spread over the rounds, regardless of the probe (signals)


def times_new(calls: int) -> Times:
    return array.array("d", bytes(8 * calls))


# Each port function runs `calls` calls and returns the seconds of each; fresh-Storage ones build the
# Storage (and agent system) before the clock starts.


async def port_invalidated(env: Env, calls: int) -> Times:
    find, times, clock = method(env.storage.sessions, "find_invalidated"), times_new(calls), time.perf_counter
    for number in range(calls):
        started = clock()
        found = await find(10)
        times[number] = clock() - started
        assert len(found) == 10, len(found)
    return times


def ref_invalidated(env: Env, calls: int) -> Times:
    times, clock, execute = times_new(calls), time.perf_counter, env.ref.execute
    for number in range(calls):
        started = clock()
        records = [dict(zip(SESSION_COLUMNS, row, strict=True)) for row in execute(SQL["invalidated"], [10])]
        times[number] = clock() - started
        assert len(records) == 10
    return times


async def port_children(env: Env, calls: int) -> Times:
    times, clock = times_new(calls), time.perf_counter
    for number in range(calls):
        find = method(env.fresh().users, "find_by_parent_user_id")
        started = clock()
        found = await find(env.shape.parent_id)
        times[number] = clock() - started
        assert len(found) == SUB_USERS, len(found)
    return times


def ref_children(env: Env, calls: int) -> Times:
    times, clock, execute = times_new(calls), time.perf_counter, env.ref.execute
    for number in range(calls):
        started = clock()
        rows = execute(SQL["children"], [env.shape.parent_id]).fetchall()
        ids = [row[0] for row in rows]
        keys: dict[str, list[tuple[Any, ...]]] = {}
        for key in execute(SQL["keys_of"].format(marks=",".join("?" * len(ids))), ids):
            keys.setdefault(key[1], []).append(key)
        users = [{**dict(zip(USER_COLUMNS, row, strict=True)), "keys": keys.get(row[0], [])} for row in rows]
        times[number] = clock() - started
        assert len(users) == SUB_USERS
    return times


async def port_owner(env: Env, calls: int) -> Times:
    times, clock = times_new(calls), time.perf_counter
    for number in range(calls):
        find = method(env.fresh().users, "find_owner")
        started = clock()
        owner = await find()
        times[number] = clock() - started
        assert owner is not None and owner.id == env.shape.owner_id
    return times


def ref_owner(env: Env, calls: int) -> Times:
    times, clock, execute = times_new(calls), time.perf_counter, env.ref.execute
    for number in range(calls):
        started = clock()
        (owner_id,) = execute(SQL["owner_id"], [1, 1]).fetchone()
        row = execute(SQL["user"], [owner_id, 1]).fetchone()
        owner = {**dict(zip(USER_COLUMNS, row, strict=True)), "keys": execute(SQL["keys"], [owner_id]).fetchall()}
        times[number] = clock() - started
        assert owner["id"] == env.shape.owner_id
    return times


OWNER_SUBSCRIPTIONS = 20  # cycling through the owner patterns, so each pattern twice
OWNER_PATTERNS = (*OWNER_PATTERNS_MATCHING, *OWNER_PATTERNS_OTHER)
MATCHING = OWNER_SUBSCRIPTIONS // len(OWNER_PATTERNS) * len(OWNER_PATTERNS_MATCHING)  # of the owner's, match `a:b`


async def port_matching_cold(env: Env, calls: int) -> Times:
    times, clock = times_new(calls), time.perf_counter
    for number in range(calls):
        find = method(env.fresh().signal_subscriptions, "find_matching")
        started = clock()
        found = await find(env.owner, "a:b")
        times[number] = clock() - started
        assert len(found) == MATCHING, len(found)
    return times


async def port_matching_warm(env: Env, calls: int) -> Times:
    find, times, clock = method(env.storage.signal_subscriptions, "find_matching"), times_new(calls), time.perf_counter
    for number in range(calls):
        started = clock()
        found = await find(env.owner, "a:b")
        times[number] = clock() - started
        assert len(found) == MATCHING, len(found)
    return times


def ref_matching(env: Env, calls: int) -> Times:
    times, clock, execute = times_new(calls), time.perf_counter, env.ref.execute
    for number in range(calls):
        started = clock()
        found = [
            {**dict(zip(SUBSCRIPTION_COLUMNS, row, strict=True)), "silent": row[4] == 1}
            for row in execute(SQL["subscriptions"], [env.shape.owner_id])
            if segments_match("a:b", row[3])
        ]
        times[number] = clock() - started
        assert len(found) == MATCHING, len(found)
    return times


def agent_system(storage: Storage, users_dir: Path) -> Any:
    try:
        from daycare.engine.durable_inbox import DurableInboxAgentSystem
    except ImportError as error:
        raise NotAvailable(f"DurableInboxAgentSystem: {error}") from None
    return DurableInboxAgentSystem(storage=storage, users_dir=users_dir)


def cron_target() -> Any:
    try:
        from daycare.engine.agent_system import DescriptorTarget
    except ImportError as error:
        raise NotAvailable(f"DescriptorTarget: {error}") from None
    return DescriptorTarget(SYSTEM_CRON)


async def port_post_cold(env: Env, calls: int) -> Times:
    target, times, clock = cron_target(), times_new(calls), time.perf_counter
    for number in range(calls):
        system = agent_system(env.fresh(), env.users_dir)
        started = clock()
        await system.post(env.owner, target, CRON_ITEM)
        times[number] = clock() - started
    return times


async def port_post_warm(env: Env, calls: int) -> Times:
    if env.system is None:
        env.system = agent_system(env.storage, env.users_dir)
    target, post, times, clock = cron_target(), env.system.post, times_new(calls), time.perf_counter
    for number in range(calls):
        started = clock()
        await post(env.owner, target, CRON_ITEM)
        times[number] = clock() - started
    return times


def ref_inbox_post(env: Env, agent_id: str) -> None:
    env.ref.execute(SQL["inbox"], [env.ids(), agent_id, int(time.time() * 1000), "system_message", dumps(CRON_ITEM)])


def ref_system_agent(env: Env) -> str:
    values = [env.shape.owner_id, dumps(SYSTEM_CRON), "dead", 1]
    (agent_id,) = env.ref.execute(SQL["system_agent"], values).fetchone()
    return str(agent_id)


def ref_post_cold(env: Env, calls: int) -> Times:
    times, clock = times_new(calls), time.perf_counter
    for number in range(calls):
        started = clock()
        ref_inbox_post(env, ref_system_agent(env))
        times[number] = clock() - started
    return times


def ref_post_warm(env: Env, calls: int) -> Times:
    if not env.system_agent_id:
        env.system_agent_id = ref_system_agent(env)
    times, clock = times_new(calls), time.perf_counter
    for number in range(calls):
        started = clock()
        ref_inbox_post(env, env.system_agent_id)
        times[number] = clock() - started
    return times


async def port_append(env: Env, calls: int) -> Times:
    append, agent_id = method(env.storage, "append_history"), env.shape.bench_agent_id
    times, clock = times_new(calls), time.perf_counter
    for number in range(calls):
        at = env.counter("append")
        started = clock()
        await append(agent_id, HistoryRecord("note", BASE_MS + at, {"text": f"port note {at}"}))
        times[number] = clock() - started
    return times


def ref_append(env: Env, calls: int) -> Times:
    if not env.bench_session_id:
        row = env.ref.execute('SELECT "active_session_id" FROM "agents" WHERE "id"=?', [env.shape.bench_agent_id])
        env.bench_session_id = row.fetchone()[0]
    times, clock, execute = times_new(calls), time.perf_counter, env.ref.execute
    for number in range(calls):
        at = env.counter("ref_append")
        started = clock()
        values = [env.bench_session_id, "note", BASE_MS + at, dumps({"text": f"reference note {at}"})]
        (history_id,) = execute(SQL["append"], values).fetchone()
        times[number] = clock() - started
        assert history_id > 0
    return times


async def port_history(env: Env, calls: int) -> Times:
    find, session_id = method(env.storage.history, "find_by_session_id"), env.shape.read_session_id
    times, clock = times_new(calls), time.perf_counter
    for number in range(calls):
        started = clock()
        records = await find(session_id)
        times[number] = clock() - started
        assert len(records) == READ_ROWS, len(records)
    return times


def ref_history(env: Env, calls: int) -> Times:
    loads, session_id, execute = json.loads, env.shape.read_session_id, env.ref.execute
    times, clock = times_new(calls), time.perf_counter
    for number in range(calls):
        started = clock()
        records = [(kind, at, loads(data)) for kind, at, data in execute(SQL["history"], [session_id])]
        times[number] = clock() - started
        assert len(records) == READ_ROWS
    return times


def signal_record_class() -> Any:
    try:
        from daycare.storage.repositories.signal_events import SignalEventRecord
    except ImportError as error:
        raise NotAvailable(f"SignalEventRecord: {error}") from None
    return SignalEventRecord


async def port_signals(env: Env, calls: int) -> Times:
    record_class, create = signal_record_class(), method(env.storage.signal_events, "create")
    owner, agent_id = env.shape.owner_id, env.shape.bench_agent_id
    source = {"type": "agent", "id": agent_id, "userId": owner}
    times, clock = times_new(calls), time.perf_counter
    gc.collect()
    before = rss_bytes()
    for number in range(calls):
        at = env.counter("signal")
        started = clock()
        # Built inside the loop, as the engine does: a cache that keeps the records shows in the RSS.
        data = {"taskId": f"task-{at}", "status": "done", "output": f"built artifact {at} in 41 s"}
        await create(
            record_class(
                id=env.ids(), user_id=owner, type="task:done", source=source, created_at=BASE_MS + at, data=data
            )
        )
        times[number] = clock() - started
    gc.collect()
    env.rss["port"] += rss_bytes() - before
    return times


def ref_signals(env: Env, calls: int) -> Times:
    owner, agent_id, execute = env.shape.owner_id, env.shape.bench_agent_id, env.ref.execute
    times, clock = times_new(calls), time.perf_counter
    gc.collect()
    before = rss_bytes()
    for number in range(calls):
        at = env.counter("ref_signal")
        started = clock()
        source = dumps({"type": "agent", "id": agent_id, "userId": owner})
        data = dumps({"taskId": f"task-{at}", "status": "done", "output": f"built artifact {at} in 41 s"})
        execute(SQL["signal"], [env.ids(), owner, "task:done", source, data, BASE_MS + at])
        times[number] = clock() - started
    gc.collect()
    env.rss["reference"] += rss_bytes() - before
    return times


async def port_delete_repeat(env: Env, calls: int) -> Times:
    delete, times, clock = (
        method(env.storage.delayed_signals, "delete_by_repeat_key"),
        times_new(calls),
        time.perf_counter,
    )
    for number in range(calls):
        key = f"cancel-port-{env.counter('delete')}"
        started = clock()
        removed = await delete(env.owner, "reminder", key)
        times[number] = clock() - started
        assert removed == 1, removed
    return times


def ref_delete_repeat(env: Env, calls: int) -> Times:
    times, clock, execute = times_new(calls), time.perf_counter, env.ref.execute
    for number in range(calls):
        key = f"cancel-reference-{env.counter('ref_delete')}"
        started = clock()
        removed = execute(SQL["delete_repeat"], [env.shape.owner_id, "reminder", key]).rowcount
        times[number] = clock() - started
        assert removed == 1, removed
    return times


OPERATIONS = [
    Operation("invalidated", "sessions.find_invalidated(10)", port_invalidated, ref_invalidated,
              (SQL["invalidated"],), 400, warm=True),
    Operation("children", "users.find_by_parent_user_id (fresh)", port_children, ref_children,
              (SQL["children"], SQL["keys_of"].format(marks=",".join("?" * SUB_USERS))), 100),
    Operation("owner", "users.find_owner (fresh)", port_owner, ref_owner,
              (SQL["owner_id"], SQL["user"], SQL["keys"]), 100),
    Operation("matching_cold", "subscriptions.find_matching (fresh)", port_matching_cold, ref_matching,
              (SQL["subscriptions"],), 100),
    Operation("matching_warm", "subscriptions.find_matching (warm)", port_matching_warm, ref_matching,
              (SQL["subscriptions"],), 400, warm=True),
    Operation("post_cold", "post to system agent (fresh)", port_post_cold, ref_post_cold,
              (SQL["system_agent"], SQL["inbox"]), 100, target=True),
    Operation("post_warm", "post to system agent (warm)", port_post_warm, ref_post_warm,
              (SQL["inbox"],), 400, warm=True),
    Operation("append", "storage.append_history (warm)", port_append, ref_append, (SQL["append"],), 400, warm=True),
    Operation("history", f"history.find_by_session_id ({READ_ROWS} rows)", port_history, ref_history,
              (SQL["history"],), 400, warm=True),
    Operation("signals", "signal_events.create", port_signals, ref_signals, (SQL["signal"],), 0, warm=True,
              fixed_calls=SIGNALS),
    Operation("delete_repeat", "delayed_signals.delete_by_repeat_key", port_delete_repeat, ref_delete_repeat,
              (SQL["delete_repeat"],), DELETE_CALLS, target=True),
]  # fmt: skip

# ---------------------------------------------------------------------------------------------
# Measuring


@dataclass
class Figures:
    """One operation at one size."""

    port_us: float | None = None
    reference_us: float | None = None
    calls: int = 0  # port calls per round
    reference_calls: int = 0
    statements: int | None = None  # statements the port ran for the probe call
    port_plan: str = ""
    reference_plan: str = ""
    unavailable: str = ""  # why the port side is n/a
    port_sql: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        if self.port_us is None or not self.reference_us:
            return None
        return self.port_us / self.reference_us


@dataclass
class SizeResult:
    """Every operation at one size, and the RSS the signals added per side (MB)."""

    figures: dict[str, Figures]
    rss_port_mb: float
    rss_reference_mb: float


def plan_summary(connection: sqlite3.Connection, statements: list[tuple[str, Any]]) -> str:
    """'index', or the tables SQLite scans whole for these statements."""
    scans: list[str] = []
    for sql, values in statements:
        if not sql.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE", "INSERT", "WITH")):
            continue
        try:
            plan = connection.execute(f"EXPLAIN QUERY PLAN {sql}", values or ()).fetchall()
        except sqlite3.Error:
            continue
        for row in plan:
            detail = str(row[-1])
            if detail.startswith("SCAN ") and "CONSTANT ROW" not in detail:
                scans.append(detail.split(" USING ")[0])
    return ", ".join(dict.fromkeys(scans)) if scans else "index"


def reference_arguments(env: Env) -> dict[str, list[Any]]:
    shape = env.shape
    return {
        SQL["invalidated"]: [10],
        SQL["children"]: [shape.parent_id],
        SQL["keys_of"].format(marks=",".join("?" * SUB_USERS)): [shape.parent_id] * SUB_USERS,
        SQL["owner_id"]: [1, 1],
        SQL["user"]: [shape.owner_id, 1],
        SQL["keys"]: [shape.owner_id],
        SQL["subscriptions"]: [shape.owner_id],
        SQL["system_agent"]: [shape.owner_id, dumps(SYSTEM_CRON), "dead", 1],
        SQL["inbox"]: ["x", "y", 1, "message", "{}"],
        SQL["append"]: [shape.read_session_id, "note", 1, "{}"],
        SQL["history"]: [shape.read_session_id],
        SQL["signal"]: ["x", shape.owner_id, "t", "{}", None, 1],
        SQL["delete_repeat"]: [shape.owner_id, "reminder", "k"],
    }


async def probe(env: Env, operation: Operation, figures: Figures, trace: bool) -> float:
    """One untimed-for-the-table call (two for warm paths) that captures the port's statements;
    returns the seconds of the described call, which sizes the rounds."""
    if operation.warm:
        await operation.port(env, 1)
    logger = env.db.connection().log
    capture = SqlCapture()
    level, propagate = logger.level, logger.propagate
    logger.addHandler(capture)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        seconds = sum(await operation.port(env, 1))
    finally:
        logger.removeHandler(capture)
        logger.setLevel(level)
        logger.propagate = propagate
    figures.statements = len(capture.statements)
    figures.port_plan = plan_summary(env.ref, capture.statements)
    if trace:
        figures.port_sql = [f"{sql}  {values!r}" for sql, values in capture.statements]
    return seconds


def calls_per_round(operation: Operation, rounds: int, seconds: float) -> int:
    if operation.fixed_calls:
        return max(1, operation.fixed_calls // rounds)
    return max(1, min(operation.max_calls, int(ROUND_BUDGET / max(seconds, 1e-6))))


async def operation_prepare(env: Env, operation: Operation, rounds: int, trace: bool) -> tuple[Figures, int, int]:
    """The operation's figures with its plans and the port's statements, and its port and reference
    calls per round (the reference makes at least as many calls as the port)."""
    figures = Figures()
    arguments = reference_arguments(env)
    figures.reference_plan = plan_summary(env.ref, [(sql, arguments[sql]) for sql in operation.reference_sql])
    port_calls = 1
    try:
        port_calls = calls_per_round(operation, rounds, await probe(env, operation, figures, trace))
    except (NotAvailable, AttributeError) as error:
        figures.unavailable = str(error)
    except Exception as error:  # a broken operation must not stop the others
        figures.unavailable = f"error: {type(error).__name__}: {error}"
    reference_calls = max(port_calls, calls_per_round(operation, rounds, sum(operation.reference(env, 1))))
    figures.calls, figures.reference_calls = port_calls, reference_calls
    return figures, port_calls, reference_calls


async def sizes_measure(envs: list[Env], rounds: int, trace: bool) -> list[dict[str, Figures]]:
    """Probes each operation on each size, then runs the rounds. Within a round each operation runs on
    every size (in turn forwards and backwards), port and reference alternating, so neither the side nor
    the size is always first and a slower machine for a while lands on all of them alike."""
    results: list[dict[str, Figures]] = [{} for _ in envs]
    calls: list[dict[str, tuple[int, int]]] = [{} for _ in envs]
    for operation in OPERATIONS:
        for index, env in enumerate(envs):
            figures, port_calls, reference_calls = await operation_prepare(env, operation, rounds, trace)
            results[index][operation.key], calls[index][operation.key] = figures, (port_calls, reference_calls)
    samples: list[dict[str, dict[str, list[float]]]] = [
        {key: {"port": [], "reference": []} for key in result} for result in results
    ]
    for number in range(rounds):
        for operation in OPERATIONS:
            order = list(enumerate(envs)) if number % 2 == 0 else list(reversed(list(enumerate(envs))))
            for position, (index, env) in enumerate(order):
                figures, (port_calls, reference_calls) = results[index][operation.key], calls[index][operation.key]
                sides = ("port", "reference") if (number + position) % 2 == 0 else ("reference", "port")
                for side in sides:
                    if side == "reference":
                        times = operation.reference(env, reference_calls)
                    elif figures.unavailable:
                        continue
                    else:
                        try:
                            times = await operation.port(env, port_calls)
                        except (NotAvailable, AttributeError) as error:
                            figures.unavailable = str(error)
                            continue
                        except Exception as error:  # a broken operation must not stop the others
                            figures.unavailable = f"error: {type(error).__name__}: {error}"
                            continue
                    samples[index][operation.key][side].extend(times)
    for result, sample in zip(results, samples, strict=True):
        for key, figures in result.items():
            if sample[key]["port"] and not figures.unavailable:
                figures.port_us = statistics.median(sample[key]["port"]) * 1e6
            if sample[key]["reference"]:
                figures.reference_us = statistics.median(sample[key]["reference"]) * 1e6
    return results


async def envs_run(shapes: list[Shape], synchronous: str, rounds: int, trace: bool, folder: Path) -> list[SizeResult]:
    """Opens every size's file for the port (a Database with the given synchronous) and for the reference,
    and measures them together."""
    users_dir = folder / "users"
    users_dir.mkdir(exist_ok=True)
    envs: list[Env] = []
    try:
        for shape in shapes:
            db = await database_open(f"sqlite:///{shape.path}?synchronous={synchronous}")
            reference = sqlite3.connect(shape.path, isolation_level=None)
            reference.execute("PRAGMA foreign_keys=ON")
            reference.execute(f"PRAGMA synchronous={synchronous}")
            envs.append(Env(shape, db, reference, users_dir))
        figures = await sizes_measure(envs, rounds, trace)
    finally:
        for env in envs:
            env.ref.close()
            await database_close(env.db)
    return [
        SizeResult(result, env.rss["port"] / 1e6, env.rss["reference"] / 1e6)
        for result, env in zip(figures, envs, strict=True)
    ]


# ---------------------------------------------------------------------------------------------
# Reporting


def growth_of(first: float | None, last: float | None) -> float | None:
    return None if first is None or last is None or not first else last / first


def number_text(value: float | None, width: int, suffix: str = "") -> str:
    if value is None:
        return f"{'n/a':>{width}}"
    text = f"{value:,.0f}" if value >= 100 else f"{value:,.1f}" if value >= 10 else f"{value:,.2f}"
    return f"{text + suffix:>{width}}"


def report_json(
    shapes: list[Shape],
    results: list[SizeResult],
    args: argparse.Namespace,
    seconds: tuple[float, float],
    machine: Any,
) -> dict[str, Any]:
    """The report as one JSON object; `seconds` is the whole run's and the measuring's."""
    operations: dict[str, Any] = {}
    for operation in OPERATIONS:
        per_size = [result.figures[operation.key] for result in results]
        first, last = per_size[0], per_size[-1]
        operations[operation.name] = {
            "reference": "target statement" if operation.target else "same statements as the port",
            "reference_sql": list(operation.reference_sql),
            "sizes": {
                shape.label: {
                    "calls_per_round": {"port": figures.calls, "reference": figures.reference_calls},
                    "port_us": None if figures.port_us is None else round(figures.port_us, 2),
                    "reference_us": None if figures.reference_us is None else round(figures.reference_us, 2),
                    "ratio": None if figures.ratio is None else round(figures.ratio, 3),
                    "port_statements": figures.statements,
                    "port_plan": figures.port_plan,
                    "reference_plan": figures.reference_plan,
                    "n/a": figures.unavailable or None,
                    **({"port_sql": figures.port_sql} if args.trace else {}),
                }
                for shape, figures in zip(shapes, per_size, strict=True)
            },
            "growth_port": _rounded(growth_of(first.port_us, last.port_us)),
            "growth_reference": _rounded(growth_of(first.reference_us, last.reference_us)),
        }
    return {
        "workload": "growth",
        "synchronous": args.synchronous,
        "journal_mode": "WAL",
        "rounds": args.rounds,
        "figures": "microseconds per call, medians of all calls of all rounds; sides and sizes interleaved",
        "seconds": round(seconds[0], 1),
        "measure_seconds": round(seconds[1], 1),
        "machine": machine,
        "sizes": [
            {
                "label": shape.label,
                "history_rows": shape.history,
                "users": shape.users,
                "rows": shape.rows,
                "megabytes": round(shape.megabytes, 1),
                "build_seconds": round(shape.build_seconds, 1),
            }
            for shape in shapes
        ],
        "operations": operations,
        "signal_memory_mb": {
            "signals_per_side": SIGNALS,
            "sizes": {
                shape.label: {"port": round(result.rss_port_mb, 1), "reference": round(result.rss_reference_mb, 1)}
                for shape, result in zip(shapes, results, strict=True)
            },
        },
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def report_print(
    shapes: list[Shape],
    results: list[SizeResult],
    args: argparse.Namespace,
    seconds: tuple[float, float],
    machine: Any,
) -> None:
    first, last = shapes[0], shapes[-1]
    print(
        f"Growth, journal_mode=WAL, synchronous={args.synchronous}: us per call, medians of all calls of "
        f"{args.rounds} rounds; {seconds[0]:.0f} s in all, {seconds[1]:.0f} s of them measuring"
    )
    print(f"machine: {machine['nproc']} x {machine['cpu']}; {machine['disk']}")
    print(f"         Python {machine['python']}, SQLite {machine['sqlite']}")
    for shape in shapes:
        print(
            f"size {shape.label} (history rows/users): {shape.rows.get('session_history', 0):,} history rows, "
            f"{shape.rows.get('users', 0):,} users, {shape.rows.get('agents', 0):,} agents, "
            f"{shape.rows.get('sessions', 0):,} sessions, {shape.rows.get('signals_subscriptions', 0):,} "
            f"subscriptions, {shape.rows.get('signals_delayed', 0):,} delayed; {shape.megabytes:,.0f} MB, built in "
            f"{shape.build_seconds:.1f} s"
        )
    print(f"A = {first.label}, B = {last.label} (history rows/users); us per call; growth = B / A; ratio = port / ref")
    header = (
        f"{'operation':<38}{'port A':>10}{'port B':>10}{'growth':>8}{'ref A':>10}{'ref B':>10}{'growth':>8}"
        f"{'ratio A':>9}{'ratio B':>9}{'stmts':>6}  plan at B (port | reference)"
    )
    print(header)
    print("-" * len(header))
    notes: list[str] = []
    for operation in OPERATIONS:
        low, high = results[0].figures[operation.key], results[-1].figures[operation.key]
        name = operation.name + (" *" if operation.target else "")
        plans = f"{high.port_plan or '-'} | {high.reference_plan}"
        statements = "-" if high.statements is None else str(high.statements)
        print(
            f"{name:<38}{number_text(low.port_us, 10)}{number_text(high.port_us, 10)}"
            f"{number_text(growth_of(low.port_us, high.port_us), 8, 'x')}"
            f"{number_text(low.reference_us, 10)}{number_text(high.reference_us, 10)}"
            f"{number_text(growth_of(low.reference_us, high.reference_us), 8, 'x')}"
            f"{number_text(low.ratio, 9, 'x')}{number_text(high.ratio, 9, 'x')}{statements:>6}  {plans}"
        )
        for shape, figures in ((first, low), (last, high)):
            if figures.unavailable:
                notes.append(f"  {operation.name} at {shape.label}: n/a, {figures.unavailable}")
    print("(* the reference runs the one indexed statement that does the work, not the port's statements; stmts:")
    print("   statements the port ran for one call at B; plan: tables SQLite scans whole for them, 'index' when none)")
    memory = ", ".join(
        f"{shape.label}: port {result.rss_port_mb:+,.1f} MB, reference {result.rss_reference_mb:+,.1f} MB"
        for shape, result in zip(shapes, results, strict=True)
    )
    print(f"RSS added by {SIGNALS:,} signal_events.create calls per side: {memory}")
    for note in notes:
        print(note)
    if args.trace:
        for operation in OPERATIONS:
            figures = results[-1].figures[operation.key]
            print(f"\n{operation.name}: the port's statements for one call at {last.label}")
            for line in figures.port_sql:
                print(f"    {line}")


def sizes_parse(text: str) -> list[tuple[int, int]]:
    if text in SIZES:
        return SIZES[text]
    sizes = []
    for part in text.split(","):
        history, _, users = part.partition(":")
        sizes.append((int(history), int(users)))
    if not sizes or any(h < 1_000 or u < SUB_USERS + 30 for h, u in sizes):
        raise ValueError("sizes: history rows >= 1000 and users >= 40")
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="default", help="small, default, or history:users pairs (10000:1000,...)")
    parser.add_argument("--synchronous", default="NORMAL", choices=["FULL", "NORMAL"], type=str.upper)
    parser.add_argument("--rounds", type=int, default=5, help="rounds per size; figures are medians")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--trace", action="store_true", help="also print the port's SQL for one call of each operation")
    parser.add_argument("--dir", type=Path, help="folder for the database files (default: a new temp folder)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    try:
        sizes = sizes_parse(args.sizes)
    except ValueError as error:
        parser.error(str(error))
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    started = time.perf_counter()
    shapes: list[Shape] = []
    folder = Path(tempfile.mkdtemp(prefix="daycare-growth-", dir=args.dir))
    try:
        machine = machine_describe(folder)
        for history, users in sizes:
            shape = Shape(history, users, folder / f"growth-{history}-{users}.db")
            shape_build(shape, args.rounds, args.seed)
            shapes.append(shape)
        measured = time.perf_counter()
        results = asyncio.run(envs_run(shapes, args.synchronous, args.rounds, args.trace, folder))
        measure_seconds = time.perf_counter() - measured
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    seconds = time.perf_counter() - started
    if args.json:
        print(json.dumps(report_json(shapes, results, args, (seconds, measure_seconds), machine), indent=2))
    else:
        report_print(shapes, results, args, (seconds, measure_seconds), machine)


if __name__ == "__main__":
    main()
