"""A bad row never stops a read: on a copy of a legacy file with bad rows of each kind in every table
(a BLOB or text that is not UTF-8 where text belongs, JSON nested 1,000 deep, `NaN` written by an old
version, text in a timestamp, a NULL key), every repository serves the other rows, a single read finds
nothing, each bad row is logged once per repository, and the data pass of `db check` lists them all.

Most of these rows only a SQLite file can hold: PostgreSQL's column types refuse a BLOB, text that is
not UTF-8, text in a number column and a NULL key. The bad rows both can hold (JSON that cannot be
read, a domain that is no hostname) are checked on both databases by the last test."""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from daycare.storage.db.database import Database, database_close, database_open
from daycare.storage.facade import Storage
from daycare.storage.migrations.migrate import database_migrate
from daycare.storage.repositories.base import Repository
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.data_check import database_data_check
from tests.storage.raw_rows import sql_run

BLOB = "x'7b7d'"  # the bytes of `{}`, stored as a BLOB
NOT_UTF8 = "CAST(x'ff' AS TEXT)"
DEEP = "'" + "[" * 1000 + "]" * 1000 + "'"
NAN = """'{"x":NaN}'"""  # what an older Python version wrote for float("nan")
ABC = "'abc'"
NULL = "NULL"
# The tests on a copy of populated.db: they are about what a SQLite file can hold.
sqlite_file = pytest.mark.sqlite_only


@dataclass(frozen=True)
class Bad:
    """A copy of the table's first row with a new key (`key`: column -> SQL) and one bad column."""

    table: str
    key: dict[str, str]
    column: str
    value: str
    number: int = 0

    @property
    def id(self) -> str:
        """The id the copy gets, in tables with an `id` column the test does not set itself."""
        return f"bad-{self.table}-{self.number}"


def bad_rows() -> list[Bad]:
    cases: list[tuple[str, dict[str, str], list[tuple[str, str]]]] = [
        ("users", {"nametag": "'bad-tag-{n}'", "is_owner": "0"}, [("name", BLOB), ("created_at", ABC)]),
        ("user_connector_keys", {"id": NULL}, [("connector_key", NOT_UTF8)]),
        (
            "agents",
            {},
            [
                ("descriptor", BLOB),
                ("descriptor", NOT_UTF8),
                ("descriptor", DEEP),
                ("permissions", NAN),
                ("updated_at", ABC),
                ("id", NULL),
            ],
        ),
        ("sessions", {}, [("created_at", ABC), ("reset_message", BLOB)]),
        (
            "session_history",
            {"id": NULL},
            [("data", BLOB), ("data", NOT_UTF8), ("data", DEEP), ("data", NAN), ("at", ABC)],
        ),
        ("inbox", {}, [("data", NOT_UTF8), ("posted_at", ABC), ("id", NULL)]),
        ("tasks", {"deleted_at": NULL}, [("code", NOT_UTF8), ("updated_at", ABC)]),
        ("tasks_cron", {}, [("schedule", NOT_UTF8), ("created_at", ABC)]),
        ("tasks_heartbeat", {}, [("title", BLOB)]),
        ("signals_events", {}, [("type", NOT_UTF8), ("created_at", ABC)]),
        ("signals_subscriptions", {"pattern": "'bad:{n}'"}, [("updated_at", ABC), ("created_at", BLOB)]),
        ("signals_delayed", {"repeat_key": NULL}, [("deliver_at", ABC), ("user_id", BLOB)]),
        ("channels", {"name": "'bad-{n}'"}, [("leader", NOT_UTF8), ("created_at", ABC)]),
        ("channel_members", {"id": NULL, "agent_id": "'bad-{n}'"}, [("username", NOT_UTF8)]),
        ("channel_messages", {}, [("text", NOT_UTF8), ("created_at", ABC)]),
        ("connections", {"user_a_id": "'!bad-{n}'"}, [("requested_a_at", ABC)]),
        ("expose_endpoints", {"domain": "'bad{n}.example.com'"}, [("provider", NOT_UTF8), ("domain", "'not a host'")]),
        ("processes", {}, [("name", NOT_UTF8), ("updated_at", ABC)]),
        ("system_prompts", {}, [("prompt", NOT_UTF8), ("created_at", ABC)]),
        ("token_stats_hourly", {"model": "'bad-{n}'"}, [("agent_id", BLOB)]),
        ("token_stats_hourly", {"model": NOT_UTF8}, [("input_tokens", "input_tokens")]),  # a key that is not UTF-8
    ]
    found = []
    for table, key, columns in cases:
        for column, value in columns:
            found.append(Bad(table, key, column, value, len(found)))
    return found


def bad_of(table: str, column: str, value: str | None = None) -> Bad:
    [bad] = [bad for bad in bad_rows() if (bad.table, bad.column) == (table, column) and value in (None, bad.value)]
    return bad


# The fields that name a row in logs and in `db check --data`, per table (the repositories' key_fields).
KEY_FIELDS = {
    "tasks": ("user_id", "id"),
    "signals_subscriptions": ("user_id", "agent_id", "pattern"),
    "connections": ("user_a_id", "user_b_id"),
    "token_stats_hourly": ("hour_start", "user_id", "agent_id", "model"),
}


def key_text(connection: sqlite3.Connection, table: str, rowid: int) -> str:
    """The key of a row as the repositories name it (`id='x'`), read with plain sqlite3."""
    fields = KEY_FIELDS.get(table, ("id",))
    columns = ", ".join(f"{field}, typeof({field})" for field in fields)
    connection.text_factory = bytes
    try:
        values = connection.execute(f"SELECT {columns} FROM {table} WHERE rowid = ?", (rowid,)).fetchone()
    finally:
        connection.text_factory = str
    shown = []
    for index, field in enumerate(fields):
        value, kind = values[2 * index], values[2 * index + 1]
        if kind == b"text":
            try:
                value = repr(value.decode())
            except UnicodeDecodeError:
                value = f"UndecodableText({value!r})"
        else:
            value = repr(value)
        shown.append(f"{field}={value}")
    return ", ".join(shown)


def bad_rows_insert(path: Path) -> dict[tuple[str, str], Bad]:
    """Inserts every bad row with plain sqlite3; returns them by (table, key text)."""
    connection = sqlite3.connect(path)
    inserted: dict[tuple[str, str], Bad] = {}
    try:
        for bad in bad_rows():
            columns = [row[1] for row in connection.execute(f"PRAGMA table_info({bad.table})")]
            values = {column: column for column in columns}
            if "id" in columns:
                values["id"] = f"'{bad.id}'"
            values.update({column: sql.format(n=bad.number) for column, sql in bad.key.items()})
            values[bad.column] = bad.value
            cursor = connection.execute(
                f"INSERT INTO {bad.table} ({', '.join(columns)}) "
                f"SELECT {', '.join(values[column] for column in columns)} FROM {bad.table} ORDER BY rowid LIMIT 1"
            )
            assert cursor.rowcount == 1, bad
            inserted[(bad.table, key_text(connection, bad.table, int(cursor.lastrowid or 0)))] = bad
        connection.commit()
    finally:
        connection.close()
    return inserted


def table_keys(path: Path, table: str) -> list[tuple[Any, ...]]:
    """The keys of a table's rows (of live tasks only: a list read serves no deleted task)."""
    connection = sqlite3.connect(path)
    try:
        fields = KEY_FIELDS.get(table, ("id",))
        live = " WHERE deleted_at IS NULL" if table == "tasks" else ""
        return connection.execute(f"SELECT {', '.join(fields)} FROM {table}{live}").fetchall()
    finally:
        connection.close()


@dataclass
class BrokenFile:
    path: Path
    good: dict[str, list[tuple[Any, ...]]]  # the keys of every good row, per table
    bad: dict[tuple[str, str], Bad]


@pytest.fixture
async def broken(legacy_copy: Callable[[str], Path]) -> BrokenFile:
    path = legacy_copy("populated.db")
    db = await database_open(path)
    await database_migrate(db, backup=False)
    await database_close(db)
    tables = {bad.table for bad in bad_rows()}
    good = {table: table_keys(path, table) for table in tables}
    return BrokenFile(path, good, bad_rows_insert(path))


@pytest.fixture
async def broken_db(broken: BrokenFile) -> AsyncIterator[Database]:
    db = await database_open(broken.path)
    yield db
    await database_close(db)


@sqlite_file
def test_every_kind_of_bad_row_is_in_the_file(broken: BrokenFile) -> None:
    connection = sqlite3.connect(broken.path)
    try:
        kinds = connection.execute(
            "SELECT typeof(descriptor), length(descriptor) FROM agents WHERE id LIKE 'bad-%' OR id IS NULL"
        ).fetchall()
    finally:
        connection.close()
    assert ("blob", 2) in kinds and ("text", 2000) in kinds
    assert len(broken.bad) == len(bad_rows())


def _ids(records: Iterable[Any], *fields: str) -> set[tuple[Any, ...]]:
    return {tuple(getattr(record, field) for field in fields) for record in records}


async def _gather(keys: Iterable[str], read: Callable[[str], Awaitable[list[Any]]]) -> list[Any]:
    found: list[Any] = []
    for key in sorted(set(keys)):
        found.extend(await read(key))
    return found


async def served(storage: Storage, broken: BrokenFile) -> dict[str, set[tuple[Any, ...]]]:
    """The keys of every row the repositories serve, per table, through their list reads."""
    agents = [key[0] for key in broken.good["agents"]]
    sessions = [key[0] for key in broken.good["sessions"]]
    channels = await storage.channels.find_all()
    users = await storage.users.find_all()
    history = await _gather(sessions, storage.history.find_by_session_id)
    by_agent = await _gather(agents, lambda agent_id: storage.history.find_by_agent_id(agent_id))
    assert len(by_agent) == len(history)
    members = await _gather([channel.id for channel in channels], storage.channels.find_members)
    messages = [
        message
        for channel in channels
        for message in await storage.channel_messages.find_recent(Context(channel.user_id), channel.id, 500)
    ]
    connections = [
        await storage.connections.find(user_a_id, user_b_id) for user_a_id, user_b_id in broken.good["connections"]
    ]
    signal_events = await storage.signal_events.find_all()
    assert _ids(await storage.signal_events.find_recent_all(1000), "id") == _ids(signal_events, "id")
    return {
        "users": _ids(users, "id"),
        "user_connector_keys": {(key.id,) for user in users for key in user.connector_keys},
        "agents": _ids(await storage.agents.find_all(), "id"),
        "sessions": _ids(await _gather(agents, storage.sessions.find_by_agent_id), "id"),
        "session_history": {(len(history),)},
        "inbox": _ids(await _gather(agents, storage.inbox.find_by_agent_id), "id"),
        "tasks": _ids(await storage.tasks.find_all(), "user_id", "id"),
        "tasks_cron": _ids(await storage.cron_tasks.find_all(include_disabled=True), "id"),
        "tasks_heartbeat": _ids(await storage.heartbeat_tasks.find_all(), "id"),
        "signals_events": _ids(signal_events, "id"),
        "signals_subscriptions": _ids(await storage.signal_subscriptions.find_all(), "user_id", "agent_id", "pattern"),
        "signals_delayed": _ids(await storage.delayed_signals.find_all(), "id"),
        "channels": _ids(channels, "id"),
        "channel_members": _ids(members, "id"),
        "channel_messages": _ids(messages, "id"),
        "connections": _ids([record for record in connections if record is not None], "user_a_id", "user_b_id"),
        "expose_endpoints": _ids(await storage.expose_endpoints.find_all(), "id"),
        "processes": _ids(await storage.processes.find_all(), "id"),
        "system_prompts": _ids(await storage.system_prompts.find_all(), "id"),
        "token_stats_hourly": _ids(await storage.token_stats.find_all(), "hour_start", "user_id", "agent_id", "model"),
    }


@sqlite_file
async def test_every_repository_serves_the_good_rows_and_leaves_the_bad_ones_out(
    broken: BrokenFile, broken_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="daycare.storage")
    storage = Storage.from_database(broken_db)
    wanted = {table: set(keys) for table, keys in broken.good.items()}
    wanted["session_history"] = {(len(broken.good["session_history"]),)}
    assert all(wanted.values())
    assert await served(storage, broken) == wanted
    # Every bad row was logged exactly once, with its table and key, though it was read twice or more.
    assert await served(storage, broken) == wanted
    messages = [record.getMessage() for record in caplog.records if "unreadable row" in record.getMessage()]
    for table, key in broken.bad:
        if table == "connections":
            continue  # read by pair only: see the single-read test
        logged = [message for message in messages if f"unreadable row of {table} ({key}):" in message]
        assert len(logged) == 1, (table, key, messages)
    assert len(messages) == len(set(messages)) == len(broken.bad) - 1


@sqlite_file
async def test_a_single_read_of_a_bad_row_finds_nothing(broken: BrokenFile, broken_db: Database) -> None:
    storage = Storage.from_database(broken_db)
    singles: dict[str, Callable[[str], Awaitable[Any]]] = {
        "agents": storage.agents.find_by_id,
        "users": storage.users.find_by_id,
        "sessions": storage.sessions.find_by_id,
        "channels": storage.channels.find_by_id,
        "expose_endpoints": storage.expose_endpoints.find_by_id,
        "processes": storage.processes.find_by_id,
        "system_prompts": storage.system_prompts.find_by_id,
        "signals_events": storage.signal_events.find_by_id,
        "signals_delayed": storage.delayed_signals.find_by_id,
        "tasks_cron": storage.cron_tasks.find_by_id,
        "tasks_heartbeat": storage.heartbeat_tasks.find_by_id,
    }
    for bad in bad_rows():
        if bad.table in singles and bad.column != "id":
            assert await singles[bad.table](bad.id) is None, bad
    task = bad_of("tasks", "code")
    [(user_id, _)] = table_keys(broken.path, "tasks")[:1]
    assert await storage.tasks.find_by_id(Context(user_id), task.id) is None
    [(_, user_b_id)] = table_keys(broken.path, "connections")[:1]
    assert await storage.connections.find(f"!bad-{bad_of('connections', 'requested_a_at').number}", user_b_id) is None
    # An update of a row that cannot be read finds no row, as for a missing one.
    broken_agent = bad_of("agents", "descriptor", BLOB).id
    with pytest.raises(LookupError, match=rf"^Agent not found: {broken_agent}$"):
        await storage.agents.update(broken_agent, lifecycle="sleeping")
    # A create with the key of a bad row overwrites it: the row reads again.
    good = await storage.agents.find_all()
    await storage.agents.create(dataclasses.replace(good[0], id=broken_agent))
    assert await Storage.from_database(broken_db).agents.find_by_id(broken_agent) is not None


@sqlite_file
@pytest.mark.parametrize("page", [1000, 2])
async def test_the_data_check_lists_every_bad_row_by_table_and_key(
    broken: BrokenFile, broken_db: Database, page: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Repository, "_PAGE", page)  # 2: every table is read in many statements
    found = await database_data_check(broken_db)
    assert sorted((row.table, row.key) for row in found) == sorted(broken.bad)  # each row once
    reasons = {(row.table, row.key): row.reason for row in found}
    by_kind = {(bad.table, bad.column, bad.value): reasons[key] for key, bad in broken.bad.items()}
    assert by_kind[("agents", "descriptor", BLOB)] == "descriptor is a BLOB, not text"
    assert by_kind[("agents", "descriptor", NOT_UTF8)] == "descriptor is not valid UTF-8 text"
    assert by_kind[("agents", "descriptor", DEEP)] == "descriptor holds JSON nested too deeply to read"
    assert by_kind[("agents", "permissions", NAN)].startswith("permissions is not JSON")
    assert by_kind[("agents", "updated_at", ABC)] == "Agent updated_at must be an integer, got str 'abc'"
    assert by_kind[("agents", "id", NULL)] == "Agent id is required, got None"
    assert by_kind[("session_history", "data", DEEP)] == "data holds JSON nested too deeply to read"
    assert by_kind[("session_history", "at", ABC)] == "at must be integer milliseconds, got str 'abc'"
    assert by_kind[("user_connector_keys", "connector_key", NOT_UTF8)] == "connector_key is not valid UTF-8 text"


@sqlite_file
async def test_the_data_check_of_a_sound_file_lists_nothing(legacy_copy: Callable[[str], Path]) -> None:
    db = await database_open(legacy_copy("populated.db"))
    try:
        await database_migrate(db, backup=False)
        assert await database_data_check(db) == []
    finally:
        await database_close(db)


async def test_bad_rows_any_database_holds_are_left_out_and_listed(db: Database) -> None:
    """JSON nested too deeply, JSON with NaN and a domain that is no hostname, on SQLite and PostgreSQL alike."""
    storage = Storage.from_database(db)
    owner = await storage.users.find_owner()
    assert owner is not None
    insert = "INSERT INTO agents (id, user_id, type, descriptor, permissions, created_at, updated_at) VALUES "
    await sql_run(db, insert + "('good', ?, 'cron', '{}', '{}', 1, 1)", [owner.id])
    await sql_run(db, insert + "('deep', ?, 'cron', ?, '{}', 1, 2)", [owner.id, "[" * 1000 + "]" * 1000])
    await sql_run(db, insert + """('nan', ?, 'cron', '{}', '{"x":NaN}', 1, 3)""", [owner.id])
    await sql_run(
        db, "INSERT INTO expose_endpoints VALUES ('host', 'u', '{}', 'p', 'not a host', 'public', NULL, 1, 1)"
    )
    assert [agent.id for agent in await storage.agents.find_all()] == ["good"]
    assert await storage.agents.find_by_id("deep") is None
    assert await storage.expose_endpoints.find_all() == []
    found = sorted((row.table, row.key, row.reason) for row in await database_data_check(db))
    assert found[:2] == [
        ("agents", "id='deep'", "descriptor holds JSON nested too deeply to read"),
        ("agents", "id='nan'", found[1][2]),
    ]
    assert found[1][2].startswith("permissions is not JSON")
    assert found[2:] == [("expose_endpoints", "id='host'", "Invalid expose domain: not a host")]
