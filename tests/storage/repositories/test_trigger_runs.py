"""Claims of trigger occurrences: each occurrence is claimed once, and only with the writes of its delivery."""

from __future__ import annotations

import asyncio

import pytest

from daycare.storage.facade import Storage
from daycare.storage.repositories.trigger_runs import TriggerRunRecord, cron_run_id


async def test_an_occurrence_is_claimed_once_and_claims_only_move_forward(storage: Storage) -> None:
    runs = storage.trigger_runs
    run_id = cron_run_id("nightly")
    assert await runs.claim(run_id, 60_000, claimed_at=60_010, engine="a")
    assert not await runs.claim(run_id, 60_000, claimed_at=60_020, engine="b")  # the same occurrence
    assert not await runs.claim(run_id, 0, claimed_at=60_030, engine="b")  # an older one
    assert await runs.find_by_id(run_id) == TriggerRunRecord(run_id, 60_000, 60_010, "a")
    assert await runs.claim(run_id, 120_000, claimed_at=120_005, engine="b")
    assert await runs.find_by_id(run_id) == TriggerRunRecord(run_id, 120_000, 120_005, "b")
    assert await runs.delete(run_id)
    assert await runs.find_by_id(run_id) is None


async def test_a_claim_commits_with_the_writes_of_its_block_or_not_at_all(storage: Storage) -> None:
    runs = storage.trigger_runs
    with pytest.raises(RuntimeError, match="post failed"):
        async with runs.claiming("heartbeat", 1_000, claimed_at=1_001, engine="a") as claimed:
            assert claimed
            await storage.inbox.insert("item-1", "agent-1", 1_001, "message", "{}")
            raise RuntimeError("post failed")
    assert await runs.find_by_id("heartbeat") is None
    assert await storage.inbox.find_by_agent_id("agent-1") == []
    async with runs.claiming("heartbeat", 1_000, claimed_at=1_002, engine="b") as claimed:
        assert claimed
    assert await runs.find_by_id("heartbeat") == TriggerRunRecord("heartbeat", 1_000, 1_002, "b")


async def test_of_many_claims_of_one_occurrence_at_once_exactly_one_wins(storage: Storage) -> None:
    async def claim(engine: str) -> bool:
        async with storage.trigger_runs.claiming(cron_run_id("t"), 5_000, claimed_at=5_001, engine=engine) as claimed:
            await asyncio.sleep(0)  # others run while this transaction is open
            return claimed

    results = await asyncio.gather(*(claim(f"engine-{n}") for n in range(20)))
    assert sorted(results) == [False] * 19 + [True]
