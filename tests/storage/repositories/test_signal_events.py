"""SignalEventsRepository: the legacy signalEventsRepository.spec tests on the real schema, and bounded memory."""

from __future__ import annotations

import gc

import pytest

from daycare.storage.db.database import Database
from daycare.storage.facade import Storage
from daycare.storage.json_values import FrozenDict
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.signal_events import ABSENT, SignalEventRecord
from tests.storage.raw_rows import sql_run, stored_rows


def event(
    id: str, user_id: str = "user-a", type: str = "build:test", created_at: int = 1, **fields: object
) -> SignalEventRecord:
    source = fields.pop("source", {"type": "system", "userId": user_id})
    return SignalEventRecord(id=id, user_id=user_id, type=type, source=source, created_at=created_at, **fields)  # type: ignore[arg-type]


async def test_creates_records_and_filters_by_user_and_type(storage: Storage) -> None:
    """Legacy: "creates records and filters by user/type"."""
    repo = storage.signal_events
    await repo.create(event("ev-1", "user-a", "build:ok", 10, data={"ok": True}))
    await repo.create(event("ev-2", "user-b", "build:ok", 20, data={"ok": False}))
    await repo.create(
        event("ev-3", "user-a", "build:fail", 30, source={"type": "agent", "id": "agent-1", "userId": "user-a"})
    )

    all_events = await repo.find_all()
    by_user = await repo.find_many(Context("user-a", "test-agent"))
    by_type = await repo.find_all(type="build:ok")
    by_both = await repo.find_many(Context("user-a", "test-agent"), type="build:ok")

    assert [item.id for item in all_events] == ["ev-1", "ev-2", "ev-3"]
    assert [item.id for item in by_user] == ["ev-1", "ev-3"]
    assert [item.id for item in by_type] == ["ev-1", "ev-2"]
    assert [item.id for item in by_both] == ["ev-1"]
    assert all(item.user_id == "user-a" for item in by_user)
    assert by_user[1].data is ABSENT


async def test_returns_recent_records_with_limit_normalization(storage: Storage) -> None:
    """Legacy: "returns recent records with limit normalization"."""
    for index in range(1, 6):
        await storage.signal_events.create(event(f"ev-{index}", created_at=index, data={"index": index}))
    recent_two = await storage.signal_events.find_recent(Context("user-a", "test-agent"), 2)
    recent_huge = await storage.signal_events.find_recent_all(99_999)
    assert [item.id for item in recent_two] == ["ev-4", "ev-5"]
    assert len(recent_huge) == 5


async def test_absent_data_is_null_and_json_null_is_text(storage: Storage, db: Database) -> None:
    await storage.signal_events.create(event("absent"))
    await storage.signal_events.create(event("null", data=None))
    await storage.signal_events.create(event("nested", data={"msg": "日本語", "list": [1, "✓"], "n": 1.5}))
    rows = {row["id"]: row for row in await stored_rows(db, "signals_events", "id")}
    assert rows["absent"]["data"] is None
    assert rows["null"]["data"] == "null"
    assert rows["nested"]["data"] == '{"msg":"日本語","list":[1,"✓"],"n":1.5}'
    assert rows["nested"]["source"] == '{"type":"system","userId":"user-a"}'
    fresh = Storage.from_database(db).signal_events
    absent, null, nested = [await fresh.find_by_id(id) for id in ("absent", "null", "nested")]
    assert absent is not None and absent.data is ABSENT
    assert null is not None and null.data is None
    assert nested is not None and nested.data == {"msg": "日本語", "list": [1, "✓"], "n": 1.5}
    assert isinstance(nested.data, FrozenDict)


async def test_broken_json_falls_back(storage: Storage, db: Database) -> None:
    await sql_run(
        db,
        "INSERT INTO signals_events (id, user_id, type, source, data, created_at) "
        "VALUES ('bad', 'u', 't', '{no', '[', 1)",
    )
    record = await storage.signal_events.find_by_id("bad")
    assert record is not None
    assert record.source == {"type": "system", "userId": "unknown"}
    assert record.data is ABSENT
    # JS JSON.parse rejects NaN, so a stored NaN is not a payload either.
    await sql_run(db, "UPDATE signals_events SET data = 'NaN'")
    fresh = await Storage.from_database(db).signal_events.find_by_id("bad")
    assert fresh is not None and fresh.data is ABSENT and repr(fresh.data) == "ABSENT"


async def test_ties_on_created_at_keep_insertion_order(storage: Storage) -> None:
    for id in ("zz", "aa", "mm"):
        await storage.signal_events.create(event(id, created_at=5))
    await storage.signal_events.create(event("first", created_at=1))
    expected = ["first", "zz", "aa", "mm"]
    assert [item.id for item in await storage.signal_events.find_all(user_id="user-a")] == expected
    assert [item.id for item in await storage.signal_events.find_recent(Context("user-a"), 3)] == expected[1:]
    assert [item.id for item in await storage.signal_events.find_recent_all(3)] == expected[1:]
    # Paged and repeated reads keep the same order.
    assert [item.id for item in await storage.signal_events.find_all()] == expected
    assert [item.id for item in await storage.signal_events.find_all(limit=2, offset=1)] == expected[1:3]
    assert [item.id for item in await storage.signal_events.find_all(offset=2)] == expected[2:]
    assert [item.id for item in await storage.signal_events.find_recent_all(2)] == expected[2:]


async def test_limit_and_offset(storage: Storage) -> None:
    for index in range(1, 6):
        await storage.signal_events.create(event(f"ev-{index}", created_at=index))
    repo = storage.signal_events
    assert [item.id for item in await repo.find_all(limit=2, offset=1)] == ["ev-2", "ev-3"]
    assert [item.id for item in await repo.find_all(limit=0.5)] == ["ev-1"]
    assert len(await repo.find_all(limit=float("inf"))) == 5
    # An offset without a limit was an SQL syntax error in the legacy code.
    assert [item.id for item in await repo.find_all(offset=3)] == ["ev-4", "ev-5"]
    assert len(await repo.find_recent(Context("user-a"), 0)) == 1
    with pytest.raises(ValueError, match=r"limit must be a number"):
        await repo.find_recent(Context("user-a"), float("nan"))


async def test_every_read_asks_the_database(storage: Storage, db: Database) -> None:
    """Nothing is cached: rows written behind the repository's back are seen by every read."""
    await storage.signal_events.create(event("one"))
    repo = Storage.from_database(db).signal_events
    assert await repo.find_by_id("missing") is None
    assert [item.id for item in await repo.find_all()] == ["one"]
    await sql_run(
        db, "INSERT INTO signals_events (id, user_id, type, source, created_at) VALUES ('late', 'u', 't', '{}', 3)"
    )
    late = await repo.find_by_id("late")
    assert late is not None and late.source == {}
    assert [item.id for item in await repo.find_all()] == ["one", "late"]
    assert [item.id for item in await repo.find_recent_all(1)] == ["late"]
    await sql_run(db, "DELETE FROM signals_events WHERE id = 'one'")
    assert await repo.find_by_id("one") is None
    assert [item.id for item in await repo.find_all()] == ["late"]


def _records_alive() -> int:
    gc.collect()
    return sum(1 for item in gc.get_objects() if isinstance(item, SignalEventRecord))


async def test_memory_stays_bounded_however_many_events_are_written(storage: Storage) -> None:
    """The repository keeps no event: after 5,000 creates and full reads it holds none of them."""
    repo = storage.signal_events
    before = _records_alive()
    for index in range(5_000):
        await repo.create(event(f"ev-{index}", user_id=f"user-{index % 7}", created_at=index))
    assert len(await repo.find_all()) == 5_000
    assert len(await repo.find_all(offset=4_990)) == 10
    assert await repo.find_by_id("ev-42") is not None
    assert len(await repo.find_recent_all(1000)) == 1000
    assert _records_alive() - before == 0
    assert not any(isinstance(value, dict | list) and value for value in vars(repo).values())


async def test_offset_without_limit_skips_and_returns_the_rest(storage: Storage) -> None:
    for index in range(1, 6):
        await storage.signal_events.create(event(f"ev-{index}", user_id="u" if index % 2 else "v", created_at=index))
    repo = storage.signal_events
    assert [item.id for item in await repo.find_all(user_id="u", offset=1)] == ["ev-3", "ev-5"]
    assert [item.id for item in await repo.find_all(offset=float("inf"))] == [f"ev-{i}" for i in range(1, 6)]
    assert [item.id for item in await repo.find_all(offset=4.7, limit=float("nan"))] == ["ev-5"]
    assert await repo.find_all(offset=10) == []
    assert [item.id for item in await repo.find_many(Context("v"), type="build:test", offset=1)] == ["ev-4"]


async def test_create_overwrites_by_id(storage: Storage, db: Database) -> None:
    await storage.signal_events.create(event("e", data={"v": 1}))
    await storage.signal_events.create(event("e", type="other", data=ABSENT, created_at=9))
    [row] = await stored_rows(db, "signals_events", "id")
    assert (row["type"], row["data"], row["created_at"]) == ("other", None, 9)
