"""DelayedSignalsRepository: the legacy delayedSignalsRepository.spec test, plus the repeat-key transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest
from tortoise.exceptions import IntegrityError

from daycare.storage.db.database import Database
from daycare.storage.facade import Storage
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.delayed_signals import DelayedSignalRecord, DelayedSignalsRepository
from daycare.storage.repositories.signal_events import ABSENT
from tests.storage.raw_rows import sql_rows, sql_run, stored_rows, trigger_refusing

CTX = Context("user-a", "test-agent")


def delayed(
    id: str, type: str, deliver_at: int, repeat_key: str | None = None, at: int = 1, **fields: object
) -> DelayedSignalRecord:
    values: dict[str, object] = {
        "user_id": "user-a",
        "source": {"type": "system", "userId": "user-a"},
        "created_at": at,
        "updated_at": at,
    }
    values.update(fields)
    return DelayedSignalRecord(id=id, type=type, deliver_at=deliver_at, repeat_key=repeat_key, **values)  # type: ignore[arg-type]


async def test_creates_reads_due_records_deletes_and_cancels_by_repeat_key(storage: Storage) -> None:
    """Legacy: "creates, reads due records, deletes, and cancels by repeat key"."""
    repo = storage.delayed_signals
    await repo.create(delayed("delay-1", "notify:a", 10, data={"a": True}, at=1))
    await repo.create(delayed("delay-2", "notify:repeat", 30, "r1", data={"b": True}, at=2))
    await repo.create(delayed("delay-3", "notify:repeat", 40, "r1", data={"c": True}, at=3))
    assert [item.id for item in await repo.find_many(CTX)] == ["delay-1", "delay-3"]
    assert [item.id for item in await repo.find_due(20)] == ["delay-1"]
    assert await repo.delete("delay-1") is True
    assert await repo.delete_by_repeat_key(CTX, "notify:repeat", "r1") == 1
    assert await repo.find_many(CTX) == []


async def test_repeat_key_replacement_is_scoped_to_user_and_type(storage: Storage, db: Database) -> None:
    repo = storage.delayed_signals
    await repo.create(delayed("mine", "t", 1, "k"))
    await repo.create(delayed("other-type", "t2", 1, "k"))
    await repo.create(delayed("other-user", "t", 1, "k", user_id="user-b"))
    await repo.create(delayed("no-key", "t", 1))
    await repo.create(delayed("mine-2", "t", 2, "k"))
    ids = [row["id"] for row in await stored_rows(db, "signals_delayed", "id")]
    assert ids == ["mine-2", "no-key", "other-type", "other-user"]
    assert await repo.find_by_id("mine") is None
    # Re-creating the same id with its repeat key keeps it (the delete skips its own id).
    await repo.create(delayed("mine-2", "t", 3, "k"))
    assert [row["deliver_at"] for row in await stored_rows(db, "signals_delayed", "id") if row["id"] == "mine-2"] == [3]


async def test_a_failed_replacement_rolls_back_the_delete(storage: Storage, db: Database) -> None:
    repo = storage.delayed_signals
    await repo.create(delayed("first", "t", 10, "k", data={"v": 1}))
    # A record the table cannot hold is refused before anything is written.
    with pytest.raises(ValueError, match=r"^Delayed signal created_at cannot be None$"):
        await repo.create(delayed("second", "t", 20, "k", created_at=None))
    # A database error inside the transaction (here a trigger refusing the row) rolls the delete back.
    await trigger_refusing(db, "signals_delayed", "refused by the test", when="NEW.id = 'second'")
    with pytest.raises(IntegrityError, match=r"refused by the test"):
        await repo.create(delayed("second", "t", 20, "k"))
    assert [row["id"] for row in await stored_rows(db, "signals_delayed", "id")] == ["first"]
    first = await repo.find_by_id("first")
    assert first is not None and first.data == {"v": 1}
    assert await repo.find_by_id("second") is None


async def test_other_tasks_never_see_the_replacement_half_done(storage: Storage, db: Database) -> None:
    """While the delete-then-upsert transaction runs, a concurrent reader waits and sees both writes or neither."""
    repo = storage.delayed_signals
    await repo.create(delayed("first", "t", 10, "k"))
    seen: list[list[str]] = []

    async def reader() -> None:
        for _ in range(20):
            rows = await sql_rows(db, "SELECT id FROM signals_delayed ORDER BY id")
            seen.append([row["id"] for row in rows])

    await asyncio.gather(reader(), *(repo.create(delayed(f"n{index}", "t", index, "k")) for index in range(10)))
    assert all(len(ids) == 1 for ids in seen), seen
    # Which create commits last is up to the scheduler; exactly one of them survives.
    assert [row["id"] for row in await stored_rows(db, "signals_delayed", "id")] in [
        [f"n{index}"] for index in range(10)
    ]


async def test_data_and_source_round_trip_as_legacy_json(storage: Storage, db: Database) -> None:
    await storage.delayed_signals.create(delayed("absent", "t", 1))
    await storage.delayed_signals.create(delayed("text", "t", 2, data={"text": "Call mom ☎️"}))
    rows = {row["id"]: row for row in await stored_rows(db, "signals_delayed", "id")}
    assert rows["absent"]["data"] is None
    assert rows["text"]["data"] == '{"text":"Call mom ☎️"}'
    assert rows["text"]["source"] == '{"type":"system","userId":"user-a"}'
    fresh = Storage.from_database(db).delayed_signals
    absent = await fresh.find_by_id("absent")
    assert absent is not None and absent.data is ABSENT and absent.repeat_key is None


async def test_find_all_and_caches(storage: Storage, db: Database) -> None:
    repo = storage.delayed_signals
    await repo.create(delayed("b", "t", 5))
    await repo.create(delayed("a", "t", 5))
    await repo.create(delayed("c", "t", 1, user_id="user-b"))
    fresh = Storage.from_database(db).delayed_signals
    assert [item.id for item in await fresh.find_all()] == ["c", "a", "b"]
    await sql_run(db, "DELETE FROM signals_delayed WHERE id = 'a'")
    assert [item.id for item in await fresh.find_all()] == ["c", "a", "b"]
    assert await fresh.find_by_id("zzz") is None
    assert await fresh.delete_by_repeat_key(CTX, "t", "none") == 0


async def test_a_replacement_drops_the_replaced_signals_from_the_cache(db: Database) -> None:
    repo = DelayedSignalsRepository(db)
    await repo.create(delayed("first", "t", 10, "k"))
    await repo.create(delayed("kept", "t", 10, "other"))
    assert [item.id for item in await repo.find_all()] == ["first", "kept"]
    await repo.create(delayed("second", "t", 20, "k"))
    assert [item.id for item in await repo.find_all()] == ["kept", "second"]
    assert await repo.find_by_id("first") is None
    assert await repo.delete_by_repeat_key(CTX, "t", "k") == 1
    assert [item.id for item in await repo.find_all()] == ["kept"]
    assert [row["id"] for row in await stored_rows(db, "signals_delayed", "id")] == ["kept"]


async def test_concurrent_replacements_of_one_repeat_key_leave_one_signal(db: Database) -> None:
    """Creates and a cancel of one repeat key lock every row they delete, in key order: none waits forever,
    and at most one signal survives (none when the cancel commits last)."""
    repo = DelayedSignalsRepository(db)
    await repo.create(delayed("n00", "t", 1, "k"))
    for round in range(10):
        creates = [repo.create(delayed(f"n{round}{index}", "t", index, "k")) for index in range(1, 5)]
        cancel = repo.delete_by_repeat_key(CTX, "t", "k")
        await asyncio.wait_for(asyncio.gather(*creates[:2], cancel, *creates[2:]), timeout=10)
        rows = await stored_rows(db, "signals_delayed", "id")
        assert len(rows) <= 1, rows
        cached = await repo.find_all()
        assert [item.id for item in cached] == [row["id"] for row in rows]
        assert [item.id for item in await DelayedSignalsRepository(db).find_all()] == [row["id"] for row in rows]


def _load(repo: DelayedSignalsRepository, kind: int) -> Coroutine[Any, Any, object]:
    """One of the repository's loads from the database, by number."""
    if kind == 0:
        return repo.find_all()
    if kind == 1:
        return repo.find_by_id("s")
    return repo.find_due(10**6) if kind == 2 else repo.find_many(CTX)


async def test_loads_racing_writes_leave_the_cache_equal_to_the_file(db: Database) -> None:
    """A cold load and a write of the same signal, run together in both orders: the cache ends as the file."""
    await DelayedSignalsRepository(db).create(delayed("s", "t", 0, "k"))
    for round in range(20):
        repo = DelayedSignalsRepository(db)  # a cold cache: loads must read the file
        load = _load(repo, round % 4)
        write: Coroutine[Any, Any, object]
        if round % 5 == 4:
            write = repo.delete_by_repeat_key(CTX, "t", "k")
        elif round % 5 == 3:
            write = repo.create(delayed(f"r{round}", "t", round + 1, "k"))  # replaces "s"
        else:
            write = repo.create(delayed("s", "t", round + 1, "k"))
        await asyncio.gather(*((load, write) if round % 2 else (write, load)))
        stored = {record.id: record for record in await DelayedSignalsRepository(db).find_all()}
        for key, record in repo._cache.records.items():
            assert stored.get(key) == record, (round, key)
        if repo._cache.all_loaded:
            assert repo._cache.records == stored
        assert await repo.find_by_id("s") == stored.get("s")
        await repo.create(delayed("s", "t", 0, "k"))


@pytest.mark.parametrize("replace", ["create", "delete_by_repeat_key"])
async def test_a_slow_load_never_caches_a_signal_a_replacement_deleted(
    db: Database, monkeypatch: pytest.MonkeyPatch, replace: str
) -> None:
    """The driver suspends after a read; a replacement deletes the row meanwhile; the old row must not come back."""
    await DelayedSignalsRepository(db).create(delayed("old", "t", 1, "k"))
    repo = DelayedSignalsRepository(db)
    read_done, release = asyncio.Event(), asyncio.Event()
    original = repo._read

    async def slow(*args: Any) -> Any:
        result = await original(*args)
        read_done.set()
        await release.wait()
        return result

    monkeypatch.setattr(repo, "_read", slow)
    load = asyncio.create_task(repo.find_all())
    await read_done.wait()
    monkeypatch.setattr(repo, "_read", original)
    if replace == "create":
        await repo.create(delayed("new", "t", 2, "k"))
    else:
        assert await repo.delete_by_repeat_key(CTX, "t", "k") == 1
    release.set()
    assert [item.id for item in await load] == ["old"]  # what the load read, before the replacement
    expected = ["new"] if replace == "create" else []
    assert await repo.find_by_id("old") is None
    assert [item.id for item in await repo.find_all()] == expected
    assert [item.id for item in await DelayedSignalsRepository(db).find_all()] == expected
