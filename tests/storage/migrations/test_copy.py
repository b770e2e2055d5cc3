"""`database_copy`: every row from one Daycare database into a new one, SQLite and PostgreSQL either way.

Real SQLite files in tmp folders and real PostgreSQL schemas (the `postgres_url` fixture); the
rows are compared with what Python's sqlite3 and plain asyncpg read, independently of the copy.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from daycare.storage.db import sqlite as sqlite_dialect
from daycare.storage.db.database import database_close, database_open
from daycare.storage.errors import DatabaseRefused, StorageError
from daycare.storage.migrations.copy import BATCH, CopyFailed, copy_tables, database_copy
from daycare.storage.migrations.migrate import CheckOutcome, database_check
from tests.postgres_server import PostgresServer, postgres_connection, postgres_schema
from tests.sqlite_files import file_query, file_sha256
from tests.storage.helpers import file_migrate

# Text that a careless conversion would change: quotes, line ends, non-BMP characters, separators.
TEXTS = (
    "",
    "plain",
    "quote ' and \" double",
    "line\nbreak\r\nand\rreturn",
    "tab\there",
    "accents é ü ß, 中文, עברית",
    "emoji 🎉👍🏽 and ZWJ 👩‍💻",
    "\u2028\u2029 separators",
    "back\\slash \\x00 not a NUL",
    "%s {} ? $1 :name",
    "trailing space ",
    "NULL",
    "0",
)
INTEGERS = (0, 1, -1, 2**31, -(2**31) - 1, 2**53 + 1, 2**62, -(2**62), 9_223_372_036_854_775_807)
REALS = (0.0, 0.1 + 0.2, 1e-300, 1.7976931348623157e308, -1.5, 3.0, 123456.789)


def insert(connection: sqlite3.Connection, table: str, rows: Sequence[dict[str, Any]]) -> None:
    """Inserts `rows` (dicts of column -> value) into `table` with plain sqlite3."""
    columns = list(rows[0])
    marks = ", ".join("?" for _ in columns)
    names = ", ".join(f'"{name}"' for name in columns)
    connection.executemany(
        f'INSERT INTO "{table}" ({names}) VALUES ({marks})', [[row[name] for name in columns] for row in rows]
    )


def file_fill(path: Path, *, history: int, users: int = 60, seed: int = 7) -> None:
    """Fills a migrated file with rows in every table, through plain sqlite3, foreign keys on.

    Values at the edges of each type; users whose parent sorts after them; signal events of one
    millisecond inserted in an order their ids do not follow; AUTOINCREMENT counters above the
    largest id left (rows deleted at the end); more history rows than one batch of the copy.
    """
    rng = random.Random(seed)
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA foreign_keys = ON")
        connection.execute("BEGIN")
        connection.execute("PRAGMA defer_foreign_keys = ON")  # checked at the commit: children may come first
        (owner,) = connection.execute("SELECT id FROM users WHERE is_owner = 1").fetchone()
        # u0001's parent is u0002, which sorts after it: children come before parents in key order.
        user_ids = [f"u{number:04d}" for number in range(1, users)]
        insert(
            connection,
            "users",
            [
                {
                    "id": user_id,
                    "is_owner": 0,
                    "created_at": INTEGERS[number % len(INTEGERS)],
                    "updated_at": 1_770_000_000_000 + number,
                    "parent_user_id": user_ids[number + 1] if number % 5 == 0 and number + 1 < len(user_ids) else None,
                    "name": None if number % 4 == 0 else TEXTS[number % len(TEXTS)],
                    "nametag": f"tag-{number}-{TEXTS[number % len(TEXTS)][:8].strip() or 'x'}",
                }
                for number, user_id in enumerate(user_ids)
            ],
        )
        everyone = [owner, *user_ids]
        insert(
            connection,
            "user_connector_keys",
            [{"user_id": user_id, "connector_key": f"telegram:{number}"} for number, user_id in enumerate(everyone)],
        )
        agents = [f"a{number:04d}" for number in range(len(everyone))]
        insert(
            connection,
            "agents",
            [
                {
                    "id": agent_id,
                    "type": "user",
                    "descriptor": '{"type":"user","name":' + repr(TEXTS[number % len(TEXTS)]) + "}",
                    "active_session_id": None,
                    "permissions": '{"workingDir":"/w"}',
                    "tokens": None if number % 2 else '{"size":{"input":12}}',
                    "stats": "{}",
                    "lifecycle": "active" if number % 7 else "dead",
                    "created_at": number,
                    "updated_at": 5,  # many ties
                    "user_id": everyone[number],
                }
                for number, agent_id in enumerate(agents)
            ],
        )
        sessions = [f"s{number:05d}" for number in range(len(agents) * 2)]
        insert(
            connection,
            "sessions",
            [
                {
                    "id": session_id,
                    "agent_id": agents[number % len(agents)],
                    "inference_session_id": None if number % 3 else f"inf-{number}",
                    "created_at": number,
                    "reset_message": TEXTS[number % len(TEXTS)] if number % 2 else None,
                    "invalidated_at": INTEGERS[number % len(INTEGERS)] if number % 5 == 0 else None,
                    "processed_until": number if number % 2 else None,
                    "ended_at": None,
                }
                for number, session_id in enumerate(sessions)
            ],
        )
        big = "x" * 200_000
        insert(
            connection,
            "session_history",
            [
                {
                    "session_id": sessions[rng.randrange(len(sessions))],
                    "type": ("user_message", "assistant_message", "note")[number % 3],
                    "at": 1_770_000_000_000 + number // 3,
                    "data": big if number == 17 else '{"text":' + repr(TEXTS[number % len(TEXTS)]) + f',"n":{number}}}',
                }
                for number in range(history)
            ],
        )
        insert(
            connection,
            "inbox",
            [
                {
                    "id": f"i{rng.getrandbits(40):x}",
                    "agent_id": agents[number % len(agents)],
                    "posted_at": 100 + number // 4,
                    "type": "message",
                    "data": '{"text":' + repr(TEXTS[number % len(TEXTS)]) + "}",
                }
                for number in range(80)
            ],
        )
        insert(
            connection,
            "connections",
            [
                {
                    "user_a_id": user_ids[number],
                    "user_b_id": user_ids[number + 1],
                    "requested_a": number % 2,
                    "requested_b": (number // 2) % 2,
                    "requested_a_at": number if number % 2 else None,
                    "requested_b_at": None,
                }
                for number in range(0, 20, 2)
            ],
        )
        insert(
            connection,
            "tasks",
            [
                {
                    "id": f"t{number}",
                    "user_id": everyone[number % 3],
                    "title": TEXTS[number % len(TEXTS)],
                    "description": None,
                    "code": "print('hi')",
                    "created_at": number,
                    "updated_at": 1,
                    "deleted_at": None if number % 4 else 9,
                }
                for number in range(12)
            ],
        )
        insert(
            connection,
            "tasks_cron",
            [
                {
                    "id": f"c{number}",
                    "task_id": f"t{number}",
                    "user_id": everyone[number % 3],
                    "name": "nightly",
                    "description": TEXTS[number],
                    "schedule": "0 3 * * *",
                    "agent_id": None,
                    "enabled": number % 2,
                    "delete_after_run": (number + 1) % 2,
                    "last_run_at": None,
                    "created_at": 1,
                    "updated_at": 2,
                }
                for number in range(6)
            ],
        )
        insert(
            connection,
            "tasks_heartbeat",
            [
                {
                    "id": f"h{number}",
                    "task_id": f"t{number}",
                    "user_id": everyone[number % 3],
                    "title": "beat",
                    "last_run_at": number,
                    "created_at": 1,
                    "updated_at": 2,
                }
                for number in range(6, 12)
            ],
        )
        events = [f"e{rng.getrandbits(48):012x}" for _ in range(60)]  # random ids: insertion order is not id order
        insert(
            connection,
            "signals_events",
            [
                {
                    "id": event_id,
                    "user_id": owner,
                    "type": "build:done",
                    "source": '{"type":"system"}',
                    "data": None if number % 3 == 0 else ("null" if number % 3 == 1 else '{"n":1}'),
                    "created_at": 1_000 + number // 20,  # 20 events per millisecond
                }
                for number, event_id in enumerate(events)
            ],
        )
        insert(
            connection,
            "signals_subscriptions",
            [
                {
                    "id": f"sub{number}",
                    "user_id": owner,
                    "agent_id": agents[number],
                    "pattern": "a:*",
                    "silent": number % 2,
                    "created_at": 1,
                    "updated_at": 1,
                }
                for number in range(10)
            ],
        )
        insert(
            connection,
            "signals_delayed",
            [
                {
                    "id": f"d{number}",
                    "user_id": owner,
                    "type": "reminder",
                    "deliver_at": INTEGERS[number % len(INTEGERS)],
                    "source": "{}",
                    "data": None,
                    "repeat_key": None if number % 2 else f"rk{number}",
                    "created_at": 1,
                    "updated_at": 1,
                }
                for number in range(10)
            ],
        )
        insert(
            connection,
            "channels",
            [
                {
                    "id": f"ch{n}",
                    "user_id": owner,
                    "name": f"room {n}",
                    "leader": agents[0],
                    "created_at": 1,
                    "updated_at": 1,
                }
                for n in range(3)
            ],
        )
        insert(
            connection,
            "channel_members",
            [
                {
                    "channel_id": f"ch{number % 3}",
                    "user_id": owner,
                    "agent_id": agents[number],
                    "username": TEXTS[number % len(TEXTS)] or "anon",
                    "joined_at": number,
                }
                for number in range(12)
            ],
        )
        insert(
            connection,
            "channel_messages",
            [
                {
                    "id": f"m{number}",
                    "channel_id": f"ch{number % 3}",
                    "user_id": owner,
                    "sender_username": "anon",
                    "text": TEXTS[number % len(TEXTS)],
                    "mentions": "[]",
                    "created_at": 7,
                }
                for number in range(15)
            ],
        )
        insert(
            connection,
            "expose_endpoints",
            [
                {
                    "id": f"x{number}",
                    "user_id": owner,
                    "target": '{"port":8080}',
                    "provider": "tunnel",
                    "domain": f"d{number}.example",
                    "mode": "public",
                    "auth": None if number else '{"password":"p"}',
                    "created_at": 1,
                    "updated_at": 1,
                }
                for number in range(3)
            ],
        )
        insert(
            connection,
            "processes",
            [
                {
                    "id": f"p{number}",
                    "user_id": owner,
                    "name": "server",
                    "command": "python -m http.server",
                    "cwd": "/w",
                    "home": None,
                    "env": '{"A":"1"}',
                    "package_managers": "[]",
                    "allowed_domains": "[]",
                    "allow_local_binding": number % 2,
                    "permissions": "{}",
                    "owner": None if number else '{"type":"agent","id":"a0000"}',
                    "keep_alive": (number + 1) % 2,
                    "desired_state": "running",
                    "status": "running",
                    "pid": INTEGERS[number + 3],
                    "boot_time_ms": None,
                    "restart_count": number,
                    "restart_failure_count": 0,
                    "next_restart_at": None,
                    "settings_path": "/s",
                    "log_path": "/l",
                    "created_at": 1,
                    "updated_at": 1,
                    "last_started_at": None,
                    "last_exited_at": None,
                }
                for number in range(4)
            ],
        )
        insert(
            connection,
            "system_prompts",
            [
                {
                    "id": f"sp{number}",
                    "scope": "global" if number % 2 else "user",
                    "user_id": None if number % 2 else owner,
                    "kind": "system",
                    "condition": None,
                    "prompt": TEXTS[number % len(TEXTS)],
                    "enabled": number % 2,
                    "created_at": 1,
                    "updated_at": 1,
                }
                for number in range(4)
            ],
        )
        insert(
            connection,
            "token_stats_hourly",
            [
                {
                    "hour_start": 3_600_000 * (number // 3),
                    "user_id": owner,
                    "agent_id": agents[number % 3],
                    "model": "claude",
                    "input_tokens": INTEGERS[number % len(INTEGERS)] if number % 2 else 0,
                    "output_tokens": 7,
                    "cache_read_tokens": 0,
                    "cache_write_tokens": 0,
                    "cost": REALS[number % len(REALS)],
                }
                for number in range(9)
            ],
        )
        # Counters above the largest id left: AUTOINCREMENT never hands those ids out again.
        connection.execute("DELETE FROM user_connector_keys WHERE id = (SELECT max(id) FROM user_connector_keys)")
        connection.execute("DELETE FROM channel_members WHERE id > 10")
        connection.execute("COMMIT")
    finally:
        connection.close()


async def source_build(path: Path, *, history: int = 0, users: int = 60) -> Path:
    """A migrated file at `path`, filled by file_fill when `history` is given."""
    await file_migrate(path)
    if history:
        file_fill(path, history=history, users=users)
    return path


# What each side holds, read without the code under test.

COPIED_TABLES = [table.name for table in copy_tables()]


def typed(row: Sequence[Any]) -> tuple[tuple[str, Any], ...]:
    """A row whose values compare with their types: 1, 1.0 and True differ."""
    return tuple((type(value).__name__, value) for value in row)


def file_rows(path: Path) -> dict[str, list[tuple[tuple[str, Any], ...]]]:
    """Every row of every copied table of a file: signals_events in rowid order, the others sorted."""
    rows = {}
    for table in COPIED_TABLES:
        columns = [name for (_, name, *_) in file_query(path, f'PRAGMA table_info("{table}")')]
        listed = ", ".join(f'"{name}"' for name in columns)
        found = [typed(row) for row in file_query(path, f'SELECT {listed} FROM "{table}" ORDER BY rowid')]
        rows[table] = found if table == "signals_events" else sorted(found, key=repr)
    return rows


def file_sequences(path: Path) -> dict[str, int]:
    return dict(file_query(path, "SELECT name, seq FROM sqlite_sequence"))


async def postgres_rows(url: str, path: Path) -> dict[str, list[tuple[tuple[str, Any], ...]]]:
    """Every row of every copied table of a PostgreSQL schema, in the columns of the file at `path`,
    flags as SQLite's 0/1: signals_events in insertion_order, the others sorted."""
    rows = {}
    async with postgres_connection(url) as connection:
        for table in COPIED_TABLES:
            columns = [name for (_, name, *_) in file_query(path, f'PRAGMA table_info("{table}")')]
            listed = ", ".join(f'"{name}"' for name in columns)
            order = " ORDER BY insertion_order" if table == "signals_events" else ""
            records = await connection.fetch(f'SELECT {listed} FROM "{table}"{order}')
            found = [typed(int(v) if isinstance(v, bool) else v for v in record) for record in records]
            rows[table] = found if table == "signals_events" else sorted(found, key=repr)
    return rows


async def postgres_counts(url: str) -> dict[str, int]:
    async with postgres_connection(url) as connection:
        return {table: await connection.fetchval(f'SELECT count(*) FROM "{table}"') for table in COPIED_TABLES}


def file_counts(path: Path) -> dict[str, int]:
    return {table: file_query(path, f'SELECT count(*) FROM "{table}"')[0][0] for table in COPIED_TABLES}


def baseline_only(counts: dict[str, int]) -> bool:
    """Whether a database holds nothing but what its baseline wrote: the owner (and legacy step names)."""
    return counts["users"] == 1 and all(n == 0 for t, n in counts.items() if t not in ("users", "_migrations"))


# Round trips.


async def test_populated_round_trips_from_sqlite_through_postgres_and_back(
    legacy_copy: Callable[[str], Path], tmp_path: Path, postgres_url: str
) -> None:
    source = legacy_copy("populated.db")
    await file_migrate(source)
    with sqlite3.connect(source) as connection:  # the legacy fixture has no claims of scheduled runs
        connection.execute("INSERT INTO trigger_runs VALUES ('cron:nightly', 1772323200000, 1772323200012, 'box:1')")
    connection.close()
    expected = file_rows(source)
    assert all(expected[table] for table in COPIED_TABLES)  # every table has rows

    there = await database_copy(str(source), postgres_url)
    assert there.tables == {table: len(rows) for table, rows in expected.items()}
    assert await postgres_rows(postgres_url, source) == expected
    assert await check_outcome(postgres_url) is CheckOutcome.MATCHES  # every key and index made again

    back = tmp_path / "back.db"
    again = await database_copy(postgres_url, str(back))
    assert again.tables == there.tables
    assert file_rows(back) == expected
    assert file_sequences(back) == file_sequences(source)
    assert await check_outcome(str(back)) is CheckOutcome.MATCHES


async def check_outcome(location: str) -> CheckOutcome:
    """What `daycare db check` finds of the database at `location`."""
    db = await database_open(location, read_only=True)
    try:
        return (await database_check(db)).outcome
    finally:
        await database_close(db)


async def test_a_generated_file_round_trips_in_many_batches(tmp_path: Path, postgres_url: str) -> None:
    source = await source_build(tmp_path / "source.db", history=3 * 1_000 + 7)
    expected = file_rows(source)
    progress: list[tuple[str, int, int]] = []

    there = await database_copy(str(source), postgres_url, batch=1_000, progress=lambda *call: progress.append(call))
    assert there.rows == sum(len(rows) for rows in expected.values())
    assert await postgres_rows(postgres_url, source) == expected
    # Progress starts at 0 and ends at the total, for the copy and for the check.
    copying = [call for call in progress if call[0] == "Copying rows"]
    checking = [call for call in progress if call[0] == "Checking the copy"]
    assert copying[0] == ("Copying rows", 0, there.rows) and copying[-1] == ("Copying rows", there.rows, there.rows)
    assert checking[-1] == ("Checking the copy", there.rows, there.rows)

    back = tmp_path / "back.db"
    await database_copy(postgres_url, str(back), batch=1_000)
    assert file_rows(back) == expected
    assert file_sequences(back) == file_sequences(source)


async def test_identity_counters_continue_after_the_largest_id_ever_handed_out(
    tmp_path: Path, postgres_url: str
) -> None:
    source = await source_build(tmp_path / "source.db", history=50)
    sequences = file_sequences(source)
    assert sequences["user_connector_keys"] > file_query(source, "SELECT max(id) FROM user_connector_keys")[0][0]
    await database_copy(str(source), postgres_url)
    async with postgres_connection(postgres_url) as connection:
        for table, last in sequences.items():
            next_id = await connection.fetchval("SELECT nextval(pg_get_serial_sequence($1, 'id'))", table)
            assert next_id == last + 1, table


async def test_sqlite_to_sqlite_and_postgres_to_postgres(tmp_path: Path, postgres_server: PostgresServer) -> None:
    source = await source_build(tmp_path / "source.db", history=2_500)
    expected = file_rows(source)
    copy = tmp_path / "copy.db"
    await database_copy(str(source), str(copy), batch=1_000)
    assert file_rows(copy) == expected
    assert file_sequences(copy) == file_sequences(source)
    assert await check_outcome(str(copy)) is CheckOutcome.MATCHES
    async with postgres_schema(postgres_server) as first, postgres_schema(postgres_server) as second:
        await database_copy(str(source), first)
        await database_copy(first, second, batch=1_000)
        assert await postgres_rows(second, source) == expected


async def test_a_target_with_only_its_bootstrap_owner_takes_the_copy(tmp_path: Path) -> None:
    source = await source_build(tmp_path / "source.db", history=10)
    target = tmp_path / "target.db"
    await file_migrate(target)  # `daycare upgrade` on a new file: the schema and a bootstrap owner
    await database_copy(str(source), str(target))
    assert file_rows(target) == file_rows(source)  # the target's owner was replaced by the source's users


# Refusals change nothing.


async def test_a_sqlite_target_that_holds_rows_is_refused_and_left_byte_identical(tmp_path: Path) -> None:
    source = await source_build(tmp_path / "source.db", history=10)
    target = await source_build(tmp_path / "target.db")
    with sqlite3.connect(target) as connection:
        connection.execute(
            "INSERT INTO users (id, is_owner, created_at, updated_at, nametag) VALUES ('someone', 0, 1, 1, 'tag')"
        )
    before = file_sha256(target)
    with pytest.raises(DatabaseRefused, match=r"already holds data: users \(2 rows\)") as refused:
        await database_copy(str(source), str(target))
    assert "Nothing was changed" in str(refused.value)
    assert file_sha256(target) == before


async def test_a_postgres_target_that_holds_rows_is_refused_and_left_unchanged(
    tmp_path: Path, postgres_url: str
) -> None:
    source = await source_build(tmp_path / "source.db", history=10)
    other = await source_build(tmp_path / "other.db", history=5)
    await database_copy(str(other), postgres_url)
    before = await postgres_rows(postgres_url, other)
    with pytest.raises(DatabaseRefused, match="already holds data"):
        await database_copy(str(source), postgres_url)
    assert await postgres_rows(postgres_url, other) == before


async def test_a_source_that_needs_an_upgrade_is_refused(legacy_copy: Callable[[str], Path], tmp_path: Path) -> None:
    source = legacy_copy("populated.db")  # a legacy file: not yet under Aerich
    before = file_sha256(source)
    target = tmp_path / "target.db"
    with pytest.raises(DatabaseRefused, match="needs an upgrade before it can be copied") as refused:
        await database_copy(str(source), str(target))
    assert f"Run daycare upgrade --db {source} first" in str(refused.value)
    assert file_sha256(source) == before
    assert not target.exists()


async def test_a_source_that_is_not_daycare_s_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "other.db"
    with sqlite3.connect(source) as connection:
        connection.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    with pytest.raises(DatabaseRefused, match="not a Daycare file"):
        await database_copy(str(source), str(tmp_path / "target.db"))
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    with pytest.raises(DatabaseRefused, match="holds no Daycare tables"):
        await database_copy(str(empty), str(tmp_path / "target.db"))


async def test_a_missing_source_or_the_same_database_twice_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="Database file not found"):
        await database_copy(str(tmp_path / "missing.db"), str(tmp_path / "target.db"))
    source = await source_build(tmp_path / "source.db", history=3)
    with pytest.raises(DatabaseRefused, match="name the same database"):
        await database_copy(str(source), str(source))


# Failures roll the copy back: the target holds none of the source's rows.


async def test_a_nul_character_is_named_by_table_and_key_and_nothing_is_written(
    tmp_path: Path, postgres_url: str
) -> None:
    source = await source_build(tmp_path / "source.db", history=2_500)
    with sqlite3.connect(source) as connection:
        connection.execute("UPDATE session_history SET data = ? WHERE id = 2222", ["a\x00b"])  # in the third batch
    with pytest.raises(CopyFailed) as failed:
        await database_copy(str(source), postgres_url, batch=1_000)
    message = str(failed.value)
    assert "session_history row id=2222" in message and "NUL character" in message, message
    assert "Nothing was copied" in message
    assert baseline_only(await postgres_counts(postgres_url))


@pytest.mark.parametrize(
    ("change", "found"),
    [
        (
            "UPDATE processes SET keep_alive = 2 WHERE id = 'p1'",
            "processes row id='p1': its column keep_alive holds 2,",
        ),
        (
            "UPDATE inbox SET data = CAST(x'7bff7d' AS TEXT) WHERE id = (SELECT min(id) FROM inbox)",
            "its column data holds text that is not UTF-8 (b'{\\xff}')",
        ),
        (
            "UPDATE session_history SET at = 'soon' WHERE id = 3",
            "session_history row id=3: its column at holds 'soon',",
        ),
        ("UPDATE signals_events SET id = NULL WHERE rowid = 5", "its column id holds NULL, and a key column needs"),
    ],
    ids=["flag", "not-utf8", "text-in-integer", "null-key"],
)
async def test_a_value_that_does_not_fit_its_field_is_named_and_nothing_is_written(
    tmp_path: Path, change: str, found: str
) -> None:
    source = await source_build(tmp_path / "source.db", history=20)
    with sqlite3.connect(source) as connection:
        connection.execute(change)
    target = tmp_path / "target.db"
    with pytest.raises(CopyFailed) as failed:
        await database_copy(str(source), str(target))
    assert found in str(failed.value) and "Nothing was copied" in str(failed.value), str(failed.value)
    assert baseline_only(file_counts(target))


async def test_a_legacy_user_without_a_nametag_is_refused_by_postgres_with_the_row_shown(
    tmp_path: Path, postgres_url: str
) -> None:
    source = await source_build(tmp_path / "source.db", history=5)
    with sqlite3.connect(source) as connection:  # as written before the nametag triggers existed
        triggers = connection.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").fetchall()
        for name, _ in triggers:
            connection.execute(f'DROP TRIGGER "{name}"')
        connection.execute(
            "INSERT INTO users (id, is_owner, created_at, updated_at, nametag) VALUES ('old-user', 0, 1, 1, NULL)"
        )
        for _, sql in triggers:
            connection.execute(sql)
    with pytest.raises(CopyFailed, match=r"(?s)Cannot copy users into .*users_nametag_required.*old-user") as failed:
        await database_copy(str(source), postgres_url)
    assert "Nothing was copied" in str(failed.value)
    assert baseline_only(await postgres_counts(postgres_url))


async def test_a_row_without_its_parent_is_named_and_nothing_is_written(tmp_path: Path, postgres_url: str) -> None:
    source = await source_build(tmp_path / "source.db", history=20)
    connection = sqlite3.connect(source, isolation_level=None)
    connection.execute("PRAGMA foreign_keys = OFF")  # as a file written without foreign keys might hold
    connection.execute("UPDATE session_history SET session_id = 'gone' WHERE id = 7")
    connection.close()
    target = tmp_path / "target.db"
    with pytest.raises(CopyFailed, match=r"session_history row id=7: it refers to a row of sessions that does not"):
        await database_copy(str(source), str(target))
    assert baseline_only(file_counts(target))
    with pytest.raises(CopyFailed, match=r"Key \(session_id\)=\(gone\) is not present"):
        await database_copy(str(source), postgres_url)
    assert baseline_only(await postgres_counts(postgres_url))


@pytest.fixture(params=["sqlite", "postgres"])
async def copy_target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Where a copy goes: a new file, or a fresh PostgreSQL schema (skipped without a server)."""
    if request.param == "sqlite":
        yield str(tmp_path / "target.db")
        return
    async with postgres_schema(request.getfixturevalue("postgres_server")) as url:
        yield url


async def test_an_interrupted_copy_leaves_the_target_without_its_rows(tmp_path: Path, copy_target: str) -> None:
    source = await source_build(tmp_path / "source.db", history=5_000)
    target = copy_target
    to_postgres = "://" in target
    seen: list[int] = []

    def progress(label: str, done: int, total: int) -> None:
        seen.append(done)
        if label == "Copying rows" and done >= 2_000:
            copying.cancel()  # what Ctrl-C does to the command's task

    copying = asyncio.ensure_future(database_copy(str(source), target, batch=1_000, progress=progress))
    with pytest.raises(asyncio.CancelledError):
        await copying
    assert max(seen) >= 2_000  # rows had been written when it stopped
    counts = await postgres_counts(target) if to_postgres else file_counts(Path(target))
    assert baseline_only(counts)
    await database_copy(str(source), target)  # and a rerun copies all
    rows = await postgres_rows(target, source) if to_postgres else file_rows(Path(target))
    assert rows == file_rows(source)


async def test_a_checksum_mismatch_rolls_the_copy_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = await source_build(tmp_path / "source.db", history=30)
    target = tmp_path / "target.db"
    read = sqlite_dialect.copy_rows_read

    async def altered(conn: Any, table: str, *args: Any, **options: Any) -> Any:
        """The target's rows as read back, one value changed: what a target that altered a value would give."""
        async for page in read(conn, table, *args, **options):
            on_target = "target.db" in str(getattr(conn, "filename", ""))
            if table == "inbox" and on_target:
                page = [tuple(row) for row in page]
                page[0] = (*page[0][:-1], page[0][-1] + " ")
            yield page

    monkeypatch.setattr(sqlite_dialect, "copy_rows_read", altered)
    with pytest.raises(CopyFailed, match=r"The copy of inbox does not match the source: its 80 rows read back differ"):
        await database_copy(str(source), str(target))
    assert baseline_only(file_counts(target))


def test_tables_come_parents_first_from_the_models() -> None:
    order = [table.name for table in copy_tables()]
    assert order.index("users") < order.index("user_connector_keys") < order.index("agents")
    assert order.index("agents") < order.index("sessions") < order.index("session_history")
    assert order.index("channels") < order.index("channel_members")
    # Keys only the SQL declares come from the target's catalog: tasks_cron -> tasks.
    extra = [t.name for t in copy_tables({"tasks": ["tasks_cron"], "tasks_cron": []})]
    assert extra.index("tasks_cron") < extra.index("tasks")
    assert BATCH > 1_000


async def test_a_table_no_model_describes_is_left_out_and_named(tmp_path: Path) -> None:
    source = await source_build(tmp_path / "source.db", history=3)
    with sqlite3.connect(source) as connection:  # what a legacy step that no release uses left behind
        connection.execute("INSERT INTO _migrations VALUES ('20260221_add_permission_requests', 1)")
        connection.execute("CREATE TABLE permission_requests (id TEXT PRIMARY KEY)")
        connection.execute("INSERT INTO permission_requests VALUES ('r1')")
    target = tmp_path / "target.db"
    copied = await database_copy(str(source), str(target))
    assert copied.left_out == ("permission_requests",)
    assert "Not copied (no Daycare model describes them): permission_requests." in copied.lines()
    assert file_rows(target) == file_rows(source)
    assert not file_query(target, "SELECT name FROM sqlite_master WHERE name = 'permission_requests'")


async def test_a_database_made_on_postgres_copies_to_a_file_daycare_accepts(tmp_path: Path, postgres_url: str) -> None:
    await file_migrate(postgres_url)  # a new schema: its own owner, no legacy steps
    target = tmp_path / "target.db"
    copied = await database_copy(postgres_url, str(target))
    assert copied.tables["users"] == 1 and copied.tables["_migrations"] == 0
    async with postgres_connection(postgres_url) as connection:
        owner = await connection.fetchval("SELECT id FROM users WHERE is_owner")
    assert file_query(target, "SELECT id, is_owner FROM users") == [(owner, 1)]
    assert await check_outcome(str(target)) is CheckOutcome.MATCHES
