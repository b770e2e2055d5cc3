"""Requests served by several engines on one shared PostgreSQL database at once, each engine a real process.

Each worker (tests/shared_worker.py) runs an in-process `Engine` on the test's schema with `shared=true` and
does what the test writes to its stdin; a command written to every worker back to back starts them together.
The database is read back with the test's own asyncpg connection, never through Daycare.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import sys
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qsl, urlsplit

import pytest

from daycare.config import Config
from daycare.engine.engine import Engine
from daycare.storage.facade import storage_open
from daycare.storage.identifiers import cuid_create
from daycare.storage.repositories.agents import AgentRecord, AgentsRepository
from tests.postgres_server import postgres_connection

ROOT = Path(__file__).resolve().parents[2]
WAIT = 120.0  # seconds a worker may take to answer before the test gives up on it (a hang guard, not a measure)
POLL = 0.001  # seconds between two reads of the engine that waits for another engine's change
CREATED_AT = 1_772_000_000_000
HOUR = 1_772_002_800_000  # an hour start: every token increment of a test lands in this hour's rows


class Worker:
    """A worker process: one engine on the shared schema, commands on stdin, one JSON answer a line on stdout."""

    def __init__(self, process: asyncio.subprocess.Process, log: TextIO, log_path: Path) -> None:
        self.process = process
        self._log = log
        self.log_path = log_path

    @classmethod
    async def start(cls, url: str, folder: Path) -> Worker:
        folder.mkdir(parents=True)
        log_path = folder / "stderr.log"
        log = log_path.open("w")
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "tests.shared_worker", url, str(folder)),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
        return cls(process, log, log_path)

    def send(self, command: Mapping[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(command) + "\n").encode())

    async def reply(self) -> dict[str, Any]:
        """The worker's next answer; fails the test, with the worker's log, on an error or an early exit."""
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), WAIT)
        if not line:
            await asyncio.wait_for(self.process.wait(), WAIT)
            pytest.fail(f"worker {self.process.pid} exited ({self.process.returncode}):\n{self.log_text()}")
        message: dict[str, Any] = json.loads(line)
        if message["event"] == "error":
            pytest.fail(f"worker {self.process.pid} failed:\n{message['error']}\n{self.log_text()}")
        return message

    async def stop(self) -> None:
        """Stops the engine and checks that the process ends cleanly."""
        self.send({"do": "stop"})
        assert await asyncio.wait_for(self.process.wait(), WAIT) == 0, self.log_text()
        self._log.close()

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        self._log.close()

    def log_text(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")


@contextlib.asynccontextmanager
async def workers_running(url: str, folder: Path, count: int) -> AsyncIterator[list[Worker]]:
    """`count` workers on `url`, each with its engine started; stopped (or, after a failure, killed) on exit."""
    workers: list[Worker] = []
    try:
        for number in range(count):
            workers.append(await Worker.start(url, folder / f"engine{number}"))
        for worker in workers:
            assert (await worker.reply())["event"] == "ready"
        yield workers
    except BaseException:
        for worker in workers:
            worker.kill()
        for worker in workers:
            await worker.process.wait()
        raise
    for worker in workers:
        await worker.stop()


async def together(workers: list[Worker], commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Writes each worker its command, back to back so that they start at once, and returns their answers."""
    for worker, command in zip(workers, commands, strict=True):
        worker.send(command)
    for worker in workers:
        assert worker.process.stdin is not None
        await worker.process.stdin.drain()
    return [await worker.reply() for worker in workers]


def shared(url: str) -> str:
    """The test schema's URL with shared=true: engines on it share the schema."""
    return f"{url}&shared=true"


def schema_of(url: str) -> str:
    return dict(parse_qsl(urlsplit(url).query))["schema"]


async def agents_prepare(url: str, count: int) -> list[AgentRecord]:
    """Migrates the schema and stores `count` agents of the owner without a session (before any engine runs)."""
    async with storage_open(url, backup=False) as storage:
        owner = await storage.users.find_owner()
        assert owner is not None
        agents = [
            AgentRecord(
                id=cuid_create(),
                user_id=owner.id,
                type="cron",
                descriptor={"type": "cron", "name": f"job {number}"},
                active_session_id=None,
                permissions={"workingDir": "/tmp"},
                tokens=None,
                stats={},
                lifecycle="active",
                created_at=CREATED_AT,
                updated_at=CREATED_AT,
            )
            for number in range(count)
        ]
        for agent in agents:
            await storage.agents.create(agent)
    return agents


async def test_one_connector_key_resolved_on_three_engines_at_once_gives_one_user_and_no_orphan_rows(
    postgres_url: str, tmp_path: Path
) -> None:
    resolved: dict[str, str] = {}
    # Three engines starting at once on an empty schema also race to migrate it and to create its owner.
    async with workers_running(shared(postgres_url), tmp_path, 3) as workers:
        for key in ("telegram:1001", "telegram:1002", "slack:U-ÄÖ"):  # a fresh race for each key
            replies = await together(workers, [{"do": "resolve", "key": key, "count": 200}] * 3)
            assert [len(reply["user_ids"]) for reply in replies] == [200, 200, 200]
            user_ids = {user_id for reply in replies for user_id in reply["user_ids"]}
            assert len(user_ids) == 1, f"{key} resolved to {len(user_ids)} users"
            resolved[key] = user_ids.pop()
    async with postgres_connection(postgres_url) as connection:
        keys = await connection.fetch("SELECT connector_key, user_id FROM user_connector_keys ORDER BY id")
        users = await connection.fetch("SELECT id, is_owner FROM users")
    assert sorted((row["connector_key"], row["user_id"]) for row in keys) == sorted(resolved.items())
    assert len([row for row in users if row["is_owner"]]) == 1
    # No orphans: besides the owner, exactly the users the keys resolved to, each with its one key.
    assert sorted(row["id"] for row in users if not row["is_owner"]) == sorted(resolved.values())


async def test_token_increments_from_three_engines_at_once_add_up_exactly(postgres_url: str, tmp_path: Path) -> None:
    (agent,) = await agents_prepare(postgres_url, 1)
    amounts = {"input": 1, "output": 2, "cache_read": 3, "cache_write": 5, "cost": 0.25}  # 0.25 adds up exactly
    command = {
        "do": "tokens",
        "user_id": agent.user_id,
        "agent_id": agent.id,
        "models": ["model-a", "model-b"],
        "count": 400,
        "concurrency": 50,
        "at": HOUR + 1234,
        "amounts": amounts,
    }
    async with workers_running(shared(postgres_url), tmp_path, 3) as workers:
        replies = await together(workers, [command] * 3)
    assert [reply["increments"] for reply in replies] == [400, 400, 400]
    async with postgres_connection(postgres_url) as connection:
        rows = await connection.fetch(
            "SELECT hour_start, user_id, agent_id, model, input_tokens, output_tokens, cache_read_tokens,"
            " cache_write_tokens, cost FROM token_stats_hourly ORDER BY model"
        )
    per_model = 3 * 400 // 2
    assert [dict(row) for row in rows] == [
        {
            "hour_start": HOUR,
            "user_id": agent.user_id,
            "agent_id": agent.id,
            "model": model,
            "input_tokens": per_model * 1,
            "output_tokens": per_model * 2,
            "cache_read_tokens": per_model * 3,
            "cache_write_tokens": per_model * 5,
            "cost": per_model * 0.25,
        }
        for model in ("model-a", "model-b")
    ]


async def stats_seen(agents: AgentsRepository, agent_id: str, stats: Mapping[str, Any]) -> float:
    """Reads the agent (through the cache) every POLL seconds until its stats are `stats`; when that was."""
    while True:
        record = await agents.find_by_id(agent_id)
        if record is not None and record.stats == stats:
            return time.monotonic()
        await asyncio.sleep(POLL)


async def stats_watched(agents: AgentsRepository, agent_id: str, seconds: float) -> list[Any]:
    """Every stats value the agent shows for `seconds`, read through the cache and from its row, every POLL."""
    seen = []
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        for record in (await agents.find_by_id(agent_id), await agents.row_load(agent_id)):
            seen.append(None if record is None else record.stats)
        await asyncio.sleep(POLL)
    return seen


async def test_an_update_on_one_engine_reaches_another_engines_cache_and_a_rolled_back_one_never_does(
    postgres_url: str, tmp_path: Path
) -> None:
    (agent,) = await agents_prepare(postgres_url, 1)
    schema = schema_of(postgres_url)
    announced = f"{schema} agents {agent.id}"
    notices: list[str] = []  # the changes announced in this test's schema (other tests announce theirs too)
    config = Config(shared(postgres_url), tmp_path / "engine_b", "test", sandbox="none")
    async with (
        postgres_connection(postgres_url) as listener,
        Engine(config) as engine_b,
        workers_running(shared(postgres_url), tmp_path, 1) as (engine_a,),
    ):
        await listener.add_listener(
            "daycare_changes",
            lambda *notice: notices.append(notice[3]) if notice[3].startswith(f"{schema} ") else None,
        )
        agents_b = engine_b.storage.agents
        await agents_b.find_by_id(agent.id)
        latencies = []
        for round_number in range(20):
            assert agents_b.cached(agent.id) is not None  # engine B reads the agent from its cache
            stats = {"round": round_number}
            seen = asyncio.create_task(stats_seen(agents_b, agent.id, stats))
            (reply,) = await together([engine_a], [{"do": "update", "agent_id": agent.id, "changes": {"stats": stats}}])
            seen_at = await asyncio.wait_for(seen, WAIT)
            latencies.append((seen_at - reply["committed"]) * 1000)
            while agents_b.cached(agent.id) is None:  # B's read after the notice cached the new record again
                await asyncio.sleep(POLL)
            assert await agents_b.find_by_id(agent.id) == await agents_b.row_load(agent.id)
        print(
            f"engine A's update seen by engine B after (ms): median {statistics.median(latencies):.1f},"
            f" max {max(latencies):.1f}; all: {', '.join(f'{latency:.1f}' for latency in latencies)}"
        )
        # The stated bound: "a change committed on one engine must be visible ... within 100 ms".
        assert max(latencies) < 100, latencies
        assert announced in notices  # the listener hears the committed updates, so its silence below means something

        committed = agents_b.cached(agent.id)
        assert committed is not None and committed.stats == {"round": 19}
        notices.clear()
        async with postgres_connection(postgres_url) as writer:
            transaction = writer.transaction()
            await transaction.start()
            await writer.execute(
                "UPDATE agents SET stats = $1, updated_at = updated_at + 1 WHERE id = $2", '{"rolled":"back"}', agent.id
            )
            seen_values = await stats_watched(agents_b, agent.id, 0.3)
            await transaction.rollback()
        seen_values += await stats_watched(agents_b, agent.id, 0.5)
        assert all(stats == {"round": 19} for stats in seen_values), [s for s in seen_values if s != {"round": 19}]
        assert notices == []  # the rolled-back change announced nothing
        assert agents_b.cached(agent.id) is committed  # so engine B kept its cached record, which is right


async def test_appends_on_three_engines_to_agents_without_a_session_create_one_session_each(
    postgres_url: str, tmp_path: Path
) -> None:
    agents = await agents_prepare(postgres_url, 10)
    ids = [agent.id for agent in agents]
    async with workers_running(shared(postgres_url), tmp_path, 3) as workers:
        commands = [{"do": "append", "agent_ids": ids, "per_agent": 10, "tag": f"engine{n}"} for n in range(3)]
        replies = await together(workers, commands)
    assert [reply["appended"] for reply in replies] == [100, 100, 100]
    async with postgres_connection(postgres_url) as connection:
        sessions = await connection.fetch("SELECT id, agent_id FROM sessions")
        active = dict(await connection.fetch("SELECT id, active_session_id FROM agents WHERE id = any($1)", ids))
        history = await connection.fetch("SELECT session_id, data FROM session_history")
    sessions_of: dict[str, list[str]] = {agent_id: [] for agent_id in ids}
    for row in sessions:
        sessions_of[row["agent_id"]].append(row["id"])
    assert {agent_id: len(found) for agent_id, found in sessions_of.items()} == dict.fromkeys(ids, 1)
    assert active == {agent_id: found[0] for agent_id, found in sessions_of.items()}
    texts_of: dict[str, list[str]] = {}
    for row in history:
        texts_of.setdefault(row["session_id"], []).append(json.loads(row["data"])["text"])
    expected = sorted(f"engine{engine} {number}" for engine in range(3) for number in range(10))
    assert {session: sorted(texts) for session, texts in texts_of.items()} == dict.fromkeys(active.values(), expected)


async def test_two_engines_updating_different_fields_of_one_agent_at_once_lose_neither_update(
    postgres_url: str, tmp_path: Path
) -> None:
    (agent,) = await agents_prepare(postgres_url, 1)
    lost = []
    async with (
        workers_running(shared(postgres_url), tmp_path, 2) as workers,
        postgres_connection(postgres_url) as connection,
    ):
        for round_number in range(100):
            await together(
                workers,
                [
                    {"do": "update", "agent_id": agent.id, "changes": {"stats": {"round": round_number}}},
                    {"do": "update", "agent_id": agent.id, "changes": {"permissions": {"round": round_number}}},
                ],
            )
            row = await connection.fetchrow("SELECT stats, permissions FROM agents WHERE id = $1", agent.id)
            stored = (json.loads(row["stats"]), json.loads(row["permissions"]))
            if stored != ({"round": round_number}, {"round": round_number}):
                lost.append((round_number, stored))
    assert lost == []


async def test_two_engines_updating_different_fields_of_one_user_at_once_lose_neither_update(
    postgres_url: str, tmp_path: Path
) -> None:
    await agents_prepare(postgres_url, 0)
    async with postgres_connection(postgres_url) as connection:
        owner_id = await connection.fetchval("SELECT id FROM users WHERE is_owner")
    lost = []
    async with (
        workers_running(shared(postgres_url), tmp_path, 2) as workers,
        postgres_connection(postgres_url) as connection,
    ):
        for round_number in range(100):
            await together(
                workers,
                [
                    {"do": "update", "user_id": owner_id, "changes": {"created_at": round_number}},
                    {"do": "update", "user_id": owner_id, "changes": {"updated_at": round_number}},
                ],
            )
            row = await connection.fetchrow("SELECT created_at, updated_at FROM users WHERE id = $1", owner_id)
            if (row["created_at"], row["updated_at"]) != (round_number, round_number):
                lost.append((round_number, tuple(row)))
    assert lost == []
