"""The cache rule, step by step: loads never bring back a row a write replaced, failed writes evict."""

from __future__ import annotations

import asyncio

import pytest

from daycare.storage.repositories.cache import RecordCache


def test_a_load_that_began_before_a_write_keeps_the_written_record() -> None:
    cache: RecordCache[str, str] = RecordCache()

    async def scenario() -> None:
        with cache.loading() as load:  # the load read "old" from the database ...
            async with cache.writing("k"):  # ... then a write committed "new" ...
                cache.put("k", "new")
            load.store([("k", "old"), ("other", "o")])  # ... and only then the load stores its rows.
        assert cache.get("k") == "new"
        assert cache.get("other") == "o"

    asyncio.run(scenario())


def test_a_load_during_a_write_stores_nothing_for_that_key() -> None:
    cache: RecordCache[str, str] = RecordCache()

    async def scenario() -> None:
        async with cache.writing("k"):
            with cache.loading() as load:
                load.store([("k", "maybe-old")])
            assert cache.get("k") is None
            cache.put("k", "new")
        assert cache.get("k") == "new"

    asyncio.run(scenario())


def test_a_load_after_the_write_ended_is_stored() -> None:
    cache: RecordCache[str, str] = RecordCache()

    async def scenario() -> None:
        async with cache.writing("k"):
            cache.put("k", "v1")
        with cache.loading() as load:
            load.store([("k", "v2")])
        assert cache.get("k") == "v2"

    asyncio.run(scenario())


def test_a_complete_load_marks_all_loaded_only_when_no_write_ran_meanwhile() -> None:
    cache: RecordCache[str, str] = RecordCache()

    async def scenario() -> None:
        with cache.loading() as load:
            async with cache.writing("x"):
                cache.put("x", "x")
            load.store([("a", "a")], complete=True)
        assert not cache.all_loaded
        assert cache.records == {"a": "a", "x": "x"}  # the write's record survives the complete load
        with cache.loading() as load:
            load.store([("a", "a"), ("x", "x")], complete=True)
        assert cache.all_loaded

    asyncio.run(scenario())


def test_a_complete_load_drops_rows_that_are_gone_but_keeps_fresh_writes() -> None:
    cache: RecordCache[str, str] = RecordCache()
    cache.records.update({"gone": "g", "kept": "k"})
    with cache.loading() as load:
        load.store([("kept", "k2")], complete=True)
    assert cache.records == {"kept": "k2"}


def test_a_failed_or_cancelled_write_evicts_its_key_and_forgets_all_loaded() -> None:
    cache: RecordCache[str, str] = RecordCache()
    cache.records["k"] = "old"
    cache.all_loaded = True

    async def failing() -> None:
        async with cache.writing("k"):
            raise ValueError("the statement failed")

    with pytest.raises(ValueError):
        asyncio.run(failing())
    assert cache.get("k") is None
    assert not cache.all_loaded

    async def cancelled() -> None:
        cache.records["k"] = "old"
        task = asyncio.create_task(hold())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert cache.get("k") is None

    async def hold() -> None:
        async with cache.writing("k"):
            await asyncio.sleep(10)

    asyncio.run(cancelled())


def test_writes_to_one_key_take_turns_and_idle_bookkeeping_is_dropped() -> None:
    cache: RecordCache[str, int] = RecordCache()
    order: list[str] = []

    async def write(name: str) -> None:
        async with cache.writing("k"):
            order.append(f"{name} in")
            await asyncio.sleep(0)
            order.append(f"{name} out")

    async def scenario() -> None:
        with cache.loading():
            await asyncio.gather(write("a"), write("b"))
        assert order == ["a in", "a out", "b in", "b out"]
        assert len(cache.locks) == 0
        assert cache._writing == {} and cache._ended_at == {}

    asyncio.run(scenario())


def test_a_change_of_another_engine_during_a_load_keeps_the_load_from_storing_that_key() -> None:
    """Rule 4: the load read the row before the other engine's commit, the notice came before the load stored."""
    cache: RecordCache[str, str] = RecordCache()
    with cache.loading() as load:
        cache.invalidate("k")
        load.store([("k", "old"), ("other", "o")], complete=True)
    assert cache.get("k") is None
    assert cache.get("other") == "o"
    assert not cache.all_loaded  # a key was changed meanwhile: misses must ask the database


def test_a_change_of_another_engine_during_a_local_write_evicts_the_key_at_its_end() -> None:
    """The local write's result may be older than the other engine's commit: the next read asks the database."""
    cache: RecordCache[str, str] = RecordCache()

    async def scenario() -> None:
        async with cache.writing("k"):
            cache.put("k", "local")
            cache.invalidate("k")
            cache.put("k", "local")  # the write puts its result after the notice came
        assert cache.get("k") is None
        async with cache.writing("k"):  # the next write is not affected by the earlier notice
            cache.put("k", "again")
        assert cache.get("k") == "again"

    asyncio.run(scenario())


def test_changes_missed_forget_everything_and_stop_every_load_in_flight_from_storing() -> None:
    cache: RecordCache[str, str] = RecordCache()
    cache.put("a", "a")
    with cache.loading() as load:
        cache.invalidate_all()
        load.store([("b", "old")])
    assert cache.get("a") is None and cache.get("b") is None
    with cache.loading() as load:  # a load that begins afterwards stores again
        load.store([("b", "new")])
    assert cache.get("b") == "new"
