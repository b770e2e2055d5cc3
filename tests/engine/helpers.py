"""Builders for the engine tests: a clock the test moves, agents and tasks, inbox reads."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from daycare.config import Config
from daycare.storage.facade import Storage
from daycare.storage.repositories.agents import AgentRecord
from daycare.storage.repositories.tasks import TaskRecord

# 2024-01-15 10:30:00 local time, the moment the legacy cron specs froze the clock at (as UTC).
LOCAL_START_MS = int(datetime(2024, 1, 15, 10, 30, 0).timestamp() * 1000)


class FakeTime:
    """A clock that only moves when the test says so, and a sleep that waits for it."""

    def __init__(self, start_ms: int = LOCAL_START_MS) -> None:
        self.now_ms = start_ms
        self._sleepers: list[tuple[int, asyncio.Future[None]]] = []
        self.sleeps: list[int] = []

    def now(self) -> int:
        return self.now_ms

    async def sleep(self, ms: int) -> None:
        self.sleeps.append(ms)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (self.now_ms + ms, future)
        self._sleepers.append(entry)
        try:
            await future
        finally:
            self._sleepers.remove(entry)

    @property
    def sleeping(self) -> int:
        return len(self._sleepers)

    async def advance(self, ms: int) -> None:
        """Lets pending tasks reach their sleeps, moves the clock, wakes every sleep that is now over,
        then lets the woken tasks run.

        A sleep takes its deadline when its coroutine first runs, a few loop turns after it was
        started; moving the clock before that would push the deadline past the new time.
        """
        await settle()
        self.now_ms += ms
        for deadline, future in list(self._sleepers):
            if deadline <= self.now_ms and not future.done():
                future.set_result(None)
        await settle()


async def settle(turns: int = 200) -> None:
    """Gives the other tasks of the loop `turns` chances to run (no real time passes)."""
    for _ in range(turns):
        await asyncio.sleep(0)


async def eventually(check: Callable[[], bool | Awaitable[bool]], turns: int = 5000) -> None:
    """Waits (in loop turns, not time) until `check()` (sync or async) is true; fails the test otherwise."""
    for _ in range(turns):
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never became true")


def engine_config(path: Path) -> Config:
    return Config(str(path), path.parent, "test")


async def agent_create(storage: Storage, agent_id: str, user_id: str = "user-1", lifecycle: str = "active") -> str:
    """A stored agent of `user_id` with its first session."""
    record = AgentRecord(
        id=agent_id,
        user_id=user_id,
        type="permanent",
        descriptor={"type": "permanent", "id": agent_id, "name": agent_id, "description": "", "systemPrompt": ""},
        active_session_id=None,
        permissions={"workingDir": "/", "writeDirs": []},
        tokens=None,
        stats={},
        lifecycle=lifecycle,
        created_at=1,
        updated_at=1,
    )
    await storage.create_agent_with_session(record)
    return agent_id


async def task_create(
    storage: Storage, task_id: str, user_id: str = "user-1", *, title: str = "", code: str = ""
) -> None:
    await storage.tasks.create(TaskRecord(task_id, user_id, title or task_id, None, code or f"run {task_id}", 1, 1))


async def inbox_items(storage: Storage, agent_id: str) -> list[dict[str, Any]]:
    """The agent's inbox items, parsed, oldest first."""
    return [json.loads(row.data) for row in await storage.inbox.find_by_agent_id(agent_id)]


async def system_agent_id(storage: Storage, user_id: str, tag: str) -> str | None:
    """The user's system agent with this tag, if any."""
    for record in await storage.agents.find_by_user_id(user_id):
        if record.descriptor == {"type": "system", "tag": tag}:
            return record.id
    return None
