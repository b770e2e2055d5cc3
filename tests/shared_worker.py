"""One engine of a shared PostgreSQL database in a process of its own, driven by the test that started it.

    python -m tests.shared_worker URL DATA_DIR

It starts an in-process `Engine` on URL (a `?shared=true` schema URL), prints {"event": "ready", ...} on stdout,
then runs the commands it reads from stdin, one JSON object a line, and answers each with one JSON line:
{"event": "done", ...what the command returned} or {"event": "error", "error": <traceback>}. A command is run
as soon as its line arrives, so a test that writes one command to several workers back to back starts them
together (stdin is the barrier). {"do": "stop"} stops the engine and ends the process with exit status 0.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from daycare.config import Config
from daycare.engine.engine import Engine
from daycare.storage.facade import Storage
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.history import HistoryRecord

Command = dict[str, Any]


async def resolve(storage: Storage, command: Command) -> dict[str, Any]:
    """`count` concurrent resolve_user_by_connector_key calls for `key`: the user id each returned."""
    users = await asyncio.gather(
        *(storage.resolve_user_by_connector_key(command["key"]) for _ in range(command["count"]))
    )
    return {"user_ids": [user.id for user in users]}


async def tokens(storage: Storage, command: Command) -> dict[str, Any]:
    """`count` token increments (round-robin over `models`), `concurrency` at a time, for one agent and hour."""
    ctx = Context(command["user_id"], command["agent_id"])
    models: list[str] = command["models"]
    numbers = iter(range(command["count"]))
    done = 0

    async def increments() -> None:
        nonlocal done
        for number in numbers:  # one shared iterator: the tasks take turns on it
            await storage.token_stats.increment(
                ctx, model=models[number % len(models)], at=command["at"], **command["amounts"]
            )
            done += 1

    await asyncio.gather(*(increments() for _ in range(command["concurrency"])))
    return {"increments": done}


async def append(storage: Storage, command: Command) -> dict[str, Any]:
    """`per_agent` concurrent history appends to each of `agent_ids`, all at once; records are tagged `tag`."""
    records = [
        (agent_id, HistoryRecord("note", number, {"text": f"{command['tag']} {number}"}))
        for number in range(command["per_agent"])
        for agent_id in command["agent_ids"]
    ]
    await asyncio.gather(*(storage.append_history(agent_id, record) for agent_id, record in records))
    return {"appended": len(records)}


async def update(storage: Storage, command: Command) -> dict[str, Any]:
    """agents.update(`agent_id`, **`changes`) (or users.update with `user_id`); `committed` is time.monotonic()
    right after it returned."""
    if "user_id" in command:
        await storage.users.update(command["user_id"], **command["changes"])
    else:
        await storage.agents.update(command["agent_id"], **command["changes"])
    return {"committed": time.monotonic()}


COMMANDS: dict[str, Callable[[Storage, Command], Awaitable[dict[str, Any]]]] = {
    "resolve": resolve,
    "tokens": tokens,
    "append": append,
    "update": update,
}


def answer(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def commands_read() -> asyncio.StreamReader:
    """stdin as a stream the event loop reads without a thread."""
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def main(url: str, data_dir: Path) -> None:
    engine = Engine(Config(url, data_dir, "test worker", sandbox="none"))
    await engine.start()
    try:
        answer({"event": "ready", "pid": os.getpid(), "leads": engine.leads})
        reader = await commands_read()
        while line := await reader.readline():
            command = json.loads(line)
            if command["do"] == "stop":
                break
            try:
                result = await COMMANDS[command["do"]](engine.storage, command)
            except Exception:
                answer({"event": "error", "error": traceback.format_exc()})
            else:
                answer({"event": "done", **result})
    finally:
        await engine.stop()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    asyncio.run(main(sys.argv[1], Path(sys.argv[2])))
