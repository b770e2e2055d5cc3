"""DelayedSignalsRepository: the legacy delayedSignalsRepository.spec test, plus the repeat-key transaction."""

from __future__ import annotations

import asyncio

import pytest
from tortoise.exceptions import IntegrityError

from daycare.storage.db.database import Database
from daycare.storage.facade import Storage
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.delayed_signals import DelayedSignalRecord
from daycare.storage.repositories.signal_events import ABSENT
from tests.storage.seeds import file_rows

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
    ids = [row["id"] for row in file_rows(db, "signals_delayed", "id")]
    assert ids == ["mine-2", "no-key", "other-type", "other-user"]
    assert await repo.find_by_id("mine") is None
    # Re-creating the same id with its repeat key keeps it (the delete skips its own id).
    await repo.create(delayed("mine-2", "t", 3, "k"))
    assert [row["deliver_at"] for row in file_rows(db, "signals_delayed", "id") if row["id"] == "mine-2"] == [3]


async def test_a_failed_replacement_rolls_back_the_delete(storage: Storage, db: Database) -> None:
    repo = storage.delayed_signals
    await repo.create(delayed("first", "t", 10, "k", data={"v": 1}))
    broken = delayed("second", "t", 20, "k", created_at=None)
    with pytest.raises(IntegrityError, match=r"NOT NULL constraint failed: signals_delayed.created_at"):
        await repo.create(broken)
    assert [row["id"] for row in file_rows(db, "signals_delayed", "id")] == ["first"]
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
            rows = await db.connection().execute_query_dict("SELECT id FROM signals_delayed ORDER BY id")
            seen.append([row["id"] for row in rows])

    await asyncio.gather(reader(), *(repo.create(delayed(f"n{index}", "t", index, "k")) for index in range(10)))
    assert all(len(ids) == 1 for ids in seen), seen
    assert [row["id"] for row in file_rows(db, "signals_delayed", "id")] == ["n9"]


async def test_data_and_source_round_trip_as_legacy_json(storage: Storage, db: Database) -> None:
    await storage.delayed_signals.create(delayed("absent", "t", 1))
    await storage.delayed_signals.create(delayed("text", "t", 2, data={"text": "Call mom ☎️"}))
    rows = {row["id"]: row for row in file_rows(db, "signals_delayed", "id")}
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
    await db.connection().execute_query("DELETE FROM signals_delayed WHERE id = 'a'")
    assert [item.id for item in await fresh.find_all()] == ["c", "a", "b"]
    assert await fresh.find_by_id("zzz") is None
    assert await fresh.delete_by_repeat_key(CTX, "t", "none") == 0
