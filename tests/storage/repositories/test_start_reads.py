"""The reads of an engine start that are statements rather than querysets read what those querysets read."""

from __future__ import annotations

import pytest

from daycare.schema import CronTrigger
from daycare.storage.db.database import Database
from daycare.storage.db.statements import rows_statement
from daycare.storage.facade import Storage
from daycare.storage.repositories import channels, delayed_signals, expose_endpoints, trigger_runs
from tests.storage.raw_rows import sql_run

# Ties in the order, NULLs and JSON text: rows the statements must read exactly as the querysets do.
START_ROWS = {
    "channels": [
        ("c2", "u", "beta", "lead", 5, 5),
        ("c1", "u", "alpha", "lead", 5, 6),
        ("c0", "u", "gamma", "x", 1, 1),
    ],
    "trigger_runs": [("heartbeat", 10, 11, "host:1"), ("cron:b", 3, 4, "host:2"), ("cron:a", 3, 4, "host:2")],
    "signals_delayed": [
        ("s2", "u", "t", 7, '{"type":"system"}', None, None, 1, 1),
        ("s1", "u", "t", 7, "{}", '{"a":1}', "k", 2, 2),
        ("s0", "u", "t", 3, "{}", "null", None, 3, 3),
    ],
    "expose_endpoints": [
        ("e2", "u", '{"type":"port","port":8080}', "local", "a.example.com", "public", None, 4, 4),
        ("e1", "u", "{}", "local", "b.example.com", "public", '{"enabled":false}', 4, 5),
    ],
}


async def test_the_start_reads_read_what_their_querysets_read(db: Database) -> None:
    for table, rows in START_ROWS.items():
        for row in rows:
            await sql_run(db, f"INSERT INTO {table} VALUES ({', '.join('?' * len(row))})", list(row))
    storage = Storage.from_database(db)
    pairs = [
        (channels._EVERY_CHANNEL, {}, storage.channels._query().order_by("created_at", "id"), channels.CHANNEL_FIELDS),
        (trigger_runs._EVERY_RUN, {}, storage.trigger_runs._query().order_by("id"), trigger_runs.RUN_FIELDS),
        (trigger_runs._RUN_BY_ID, {"id": "cron:b"}, storage.trigger_runs._query(id="cron:b"), trigger_runs.RUN_FIELDS),
        (
            delayed_signals._EVERY_SIGNAL,
            {},
            storage.delayed_signals._query().order_by("deliver_at", "id"),
            delayed_signals.DELAYED_FIELDS,
        ),
        (
            expose_endpoints._EVERY_ENDPOINT,
            {},
            storage.expose_endpoints._query().order_by("created_at", "id"),
            expose_endpoints.EXPOSE_FIELDS,
        ),
    ]
    for statement, bound, queryset, fields in pairs:
        read = [dict(row) for row in await statement.rows(db.connection(), **bound)]
        assert read  # each read finds rows
        assert read == await queryset.values(*fields)
    assert [run.id for run in await storage.trigger_runs.find_all()] == ["cron:a", "cron:b", "heartbeat"]
    assert await storage.trigger_runs.find_by_id("heartbeat") == trigger_runs.TriggerRunRecord(
        "heartbeat", 10, 11, "host:1"
    )
    assert await storage.trigger_runs.find_by_id("missing") is None


def test_a_rows_statement_refuses_fields_that_querysets_convert() -> None:
    with pytest.raises(TypeError, match="text and integer fields only"):
        rows_statement(CronTrigger, ("id", "enabled"))
