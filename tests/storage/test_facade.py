"""The Storage facade: the legacy storage.spec, plus the transactional flows of issue 3:
rollbacks, the orphan-free key race, per-key locks and transaction isolation under asyncio."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from tortoise.exceptions import IntegrityError, OperationalError

from daycare.storage import facade as storage_module
from daycare.storage.db import backend
from daycare.storage.db.database import Database, database_close, database_open
from daycare.storage.facade import Storage
from daycare.storage.migrations.migrate import database_migrate
from daycare.storage.repositories.history import HistoryRecord
from tests.conftest import legacy_path
from tests.storage.helpers import agent_record, owner_id, violated
from tests.storage.raw_rows import sql_rows, sql_run, table_names, trigger_refusing

FAILURES = (IntegrityError, OperationalError)


async def count(db: Database, sql: str) -> int:
    rows = await sql_rows(db, sql)
    return int(next(iter(rows[0].values())))


async def orphan_count(db: Database) -> int:
    """Users that are neither the owner nor hold a connector key: what a lost key race left behind."""
    return await count(
        db,
        "SELECT COUNT(*) FROM users WHERE is_owner = FALSE AND id NOT IN (SELECT user_id FROM user_connector_keys)",
    )


async def test_opens_with_migrations_and_closes_connection(database_url: str) -> None:
    """storage.spec: opens with migrations and closes connection."""
    db = await database_open(database_url)
    await database_migrate(db)
    storage = Storage.from_database(db)
    assert {"agents", "users"} <= await table_names(db)
    await database_close(db)
    with pytest.raises(Exception):  # noqa: B017 - any failure will do: the handle is closed
        await storage.users.find_all()


async def test_resolves_user_by_connector_key_under_concurrent_requests(storage: Storage) -> None:
    """storage.spec: resolves user by connector key under concurrent requests."""
    results = await asyncio.gather(*(storage.resolve_user_by_connector_key("telegram:alice") for _ in range(12)))
    first_id = results[0].id
    assert first_id
    assert {user.id for user in results} == {first_id}
    users = await storage.users.find_all()
    assert len(users) == 2
    resolved = next(user for user in users if user.id == first_id)
    assert [key.connector_key for key in resolved.connector_keys] == ["telegram:alice"]
    assert resolved.nametag


async def test_resolve_200_concurrent_calls_with_one_key(storage: Storage) -> None:
    results = await asyncio.gather(*(storage.resolve_user_by_connector_key(" telegram:bob ") for _ in range(200)))
    assert len({user.id for user in results}) == 1
    assert await count(storage.db, "SELECT COUNT(*) FROM users WHERE is_owner = FALSE") == 1
    assert await count(storage.db, "SELECT COUNT(*) FROM user_connector_keys") == 1
    assert await orphan_count(storage.db) == 0
    assert [key.connector_key for key in results[0].connector_keys] == ["telegram:bob"]
    assert results[0].is_owner is False
    assert len(storage.connector_key_locks) == 0


async def test_resolve_200_concurrent_calls_with_distinct_keys(storage: Storage) -> None:
    keys = [f"telegram:{number}" for number in range(200)]
    results = await asyncio.gather(*(storage.resolve_user_by_connector_key(key) for key in keys))
    assert len({user.id for user in results}) == 200
    assert len({user.nametag for user in results}) == 200
    assert [user.connector_keys[0].connector_key for user in results] == keys
    assert await count(storage.db, "SELECT COUNT(*) FROM users") == 201
    assert await count(storage.db, "SELECT COUNT(DISTINCT nametag) FROM users") == 201
    assert await orphan_count(storage.db) == 0
    assert len(storage.connector_key_locks) == 0
    again = await asyncio.gather(*(storage.resolve_user_by_connector_key(key) for key in keys))
    assert [user.id for user in again] == [user.id for user in results]


async def test_resolve_requires_a_key(storage: Storage) -> None:
    for key in ("", "   "):
        with pytest.raises(ValueError, match=r"^connectorKey is required$"):
            await storage.resolve_user_by_connector_key(key)
    assert len(storage.connector_key_locks) == 0


async def test_resolve_makes_the_first_user_the_owner(storage: Storage) -> None:
    await sql_run(storage.db, "DELETE FROM users")
    fresh = Storage.from_database(storage.db)
    first = await fresh.resolve_user_by_connector_key("telegram:first")
    second = await fresh.resolve_user_by_connector_key("telegram:second")
    assert (first.is_owner, second.is_owner) == (True, False)


async def test_resolve_does_not_load_every_user(storage: Storage) -> None:
    """Legacy loaded all users (and then treated cache misses as final); this port does neither."""
    await storage.resolve_user_by_connector_key("telegram:1")
    await sql_run(
        storage.db,
        "INSERT INTO users (id, is_owner, nametag, created_at, updated_at) VALUES ('raw', FALSE, 'raw123', 1, 1)",
    )
    found = await storage.users.find_by_id("raw")
    assert found is not None and found.nametag == "raw123"


async def test_resolve_race_between_storages_leaves_one_user_and_no_orphan(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each Storage has its own locks and caches, as a second process would: the key's UNIQUE
    constraint decides the race and the losers' user rows roll back with their key."""
    monkeypatch.setattr(backend, "YIELD_INTERVAL", 0.0)  # yield at every statement, so the resolves interleave
    storages = [Storage.from_database(storage.db) for _ in range(6)]
    lookups = [0]
    for other in storages:
        find = other.users.find_by_connector_key

        async def counted(key: str, find=find) -> object:  # type: ignore[no-untyped-def]
            lookups[0] += 1
            return await find(key)

        other.users.find_by_connector_key = counted  # type: ignore[method-assign]
    results = await asyncio.gather(*(other.resolve_user_by_connector_key("telegram:race") for other in storages))
    assert len({user.id for user in results}) == 1
    assert lookups[0] > len(storages)  # at least one loser looked the key up again
    assert await count(storage.db, "SELECT COUNT(*) FROM users WHERE is_owner = FALSE") == 1
    assert await orphan_count(storage.db) == 0


async def test_create_user_trims_a_given_nametag_and_does_not_retry_it(storage: Storage) -> None:
    created = await storage.create_user(nametag="  swift123 ", connector_key="telegram:1")
    assert created.nametag == "swift123"
    with violated("unique", "users.nametag"):
        await storage.create_user(nametag="swift123")


async def test_create_user_retries_generated_nametags(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    await storage.create_user(nametag="taken100")
    tags: Iterator[str] = iter(["taken100", "taken100", "free100"])
    monkeypatch.setattr(storage_module, "nametag_generate", lambda: next(tags))
    assert (await storage.create_user(name="Dee")).nametag == "free100"
    monkeypatch.setattr(storage_module, "nametag_generate", lambda: "taken100")
    with pytest.raises(RuntimeError, match=r"^Failed to generate unique nametag after 100 attempts\.$"):
        await storage.create_user()
    # A second owner is refused at once, not retried. (Under a taken nametag as well, which of the two
    # indexes reports first is up to the database: PostgreSQL checks the nametag's first.)
    monkeypatch.setattr(storage_module, "nametag_generate", lambda: "free200")
    with violated("unique", "users.is_owner"):
        await storage.create_user(is_owner=True)


async def test_creates_agent_and_session_atomically(storage: Storage) -> None:
    """storage.spec: creates agent and session atomically."""
    user = await storage.create_user()
    record = agent_record("agent-x", user.id, created_at=1000, updated_at=1000)
    result = await storage.create_agent_with_session(record, inference_session_id="infer-1", session_created_at=1000)
    assert result.session_id
    assert result.agent.active_session_id == result.session_id
    persisted = await storage.agents.find_by_id("agent-x")
    assert persisted is not None and persisted.active_session_id == result.session_id
    session = await storage.sessions.find_by_id(result.session_id)
    assert session is not None and session.inference_session_id == "infer-1"
    reloaded = await Storage.from_database(storage.db).agents.find_by_id("agent-x")
    assert reloaded == result.agent


async def test_create_agent_with_session_times(storage: Storage) -> None:
    owner = await owner_id(storage)
    result = await storage.create_agent_with_session(
        agent_record("a", owner, created_at=5, updated_at=9, active_session_id="stale"), reset_message="why"
    )
    session = await storage.sessions.find_by_id(result.session_id)
    assert session is not None and (session.created_at, session.reset_message) == (5, "why")
    assert result.agent.updated_at == 9
    later = await storage.create_agent_with_session(agent_record("b", owner, updated_at=9), session_created_at=20)
    assert later.agent.updated_at == 20


async def test_create_agent_with_session_rolls_back_and_invalidates_the_cache(storage: Storage) -> None:
    owner = await owner_id(storage)
    await storage.agents.create(agent_record("existing", owner, lifecycle="sleeping"))
    await storage.agents.find_all()  # all loaded: a cache miss would be final for find_many
    await trigger_refusing(storage.db, "sessions", "session refused")
    with pytest.raises(FAILURES, match="session refused"):
        await storage.create_agent_with_session(agent_record("new", owner))
    with pytest.raises(FAILURES, match="session refused"):
        await storage.create_agent_with_session(agent_record("existing", owner, lifecycle="active"))

    assert await count(storage.db, "SELECT COUNT(*) FROM sessions") == 0
    rows = await sql_rows(storage.db, "SELECT id, lifecycle, active_session_id FROM agents")
    assert [tuple(row.values()) for row in rows] == [("existing", "sleeping", None)]
    assert await storage.agents.find_by_id("new") is None
    existing = await storage.agents.find_by_id("existing")
    assert existing is not None and existing.lifecycle == "sleeping"
    # The all-loaded flag was reset: find_many asks the database again and sees a new row.
    await storage.agents.create(agent_record("later", owner))
    await sql_run(storage.db, "UPDATE agents SET lifecycle = 'dead' WHERE id = 'existing'")
    assert {(agent.id, agent.lifecycle) for agent in await storage.agents.find_all()} == {
        ("existing", "dead"),
        ("later", "active"),
    }


async def test_create_agent_with_session_failure_keeps_the_previous_session(storage: Storage) -> None:
    owner = await owner_id(storage)
    first = await storage.create_agent_with_session(agent_record("agent-1", owner))
    await trigger_refusing(storage.db, "sessions", "session refused", after=True)
    with pytest.raises(FAILURES, match="session refused"):
        await storage.create_agent_with_session(agent_record("agent-1", owner, lifecycle="dead", updated_at=50))
    rows = await sql_rows(storage.db, "SELECT active_session_id, lifecycle, updated_at FROM agents")
    assert [tuple(row.values()) for row in rows] == [(first.session_id, "active", 1)]
    assert await storage.agents.find_by_id("agent-1") == first.agent
    assert [session.id for session in await storage.sessions.find_by_agent_id("agent-1")] == [first.session_id]


async def test_append_history_creates_session_when_missing_and_throws_for_unknown_agent(storage: Storage) -> None:
    """storage.spec: appendHistory creates session when missing and throws for unknown agent."""
    user = await storage.create_user()
    await storage.agents.create(agent_record("agent-h", user.id))
    await storage.append_history("agent-h", HistoryRecord("note", 10, {"text": "hello"}))
    persisted = await storage.agents.find_by_id("agent-h")
    assert persisted is not None and persisted.active_session_id
    assert persisted.updated_at == 10
    records = await storage.history.find_by_session_id(persisted.active_session_id)
    assert records == [HistoryRecord("note", 10, {"text": "hello"})]
    session = await storage.sessions.find_by_id(persisted.active_session_id)
    assert session is not None and session.created_at == 10
    assert await Storage.from_database(storage.db).agents.find_by_id("agent-h") == persisted
    with pytest.raises(LookupError, match="Agent not found for history append: missing-agent"):
        await storage.append_history("missing-agent", HistoryRecord("note", 11, {"text": "x"}))


async def test_keeps_snapshot_id_in_history(storage: Storage) -> None:
    """storage.spec: stores rlm snapshots ... and keeps snapshot id in history (the snapshot
    file itself lives outside the database, so only the history side is ported)."""
    user = await storage.create_user()
    await storage.agents.create(agent_record("agent-r", user.id))
    session_id = await storage.sessions.create("agent-r", created_at=10)
    await storage.agents.update("agent-r", active_session_id=session_id, updated_at=10)
    snapshot_id = "drj1fj9sirgfrqays61d0h12"
    call = {
        "toolCallId": "tool-call-1",
        "snapshotId": snapshot_id,
        "printOutput": [],
        "toolCallCount": 0,
        "toolName": "echo",
        "toolArgs": {"text": "x"},
    }
    await storage.append_history("agent-r", HistoryRecord("rlm_tool_call", 10, call))
    (record,) = await storage.history.find_by_session_id(session_id)
    assert record.type == "rlm_tool_call"
    assert re.fullmatch(r"[a-z][a-z0-9]{23}", record.data["snapshotId"])
    assert record.data == call


async def test_append_history_is_all_or_nothing(storage: Storage) -> None:
    owner = await owner_id(storage)
    await storage.agents.create(agent_record("agent-1", owner))
    await trigger_refusing(storage.db, "session_history", "history refused")
    with pytest.raises(FAILURES, match="history refused"):
        await storage.append_history("agent-1", HistoryRecord("note", 10, {"text": "lost"}))
    assert await count(storage.db, "SELECT COUNT(*) FROM sessions") == 0
    cached = await storage.agents.find_by_id("agent-1")
    assert cached is not None and cached.active_session_id is None
    with pytest.raises(ValueError, match="Unknown history record type"):
        await storage.append_history("agent-1", HistoryRecord("bogus", 10, {}))
    assert await count(storage.db, "SELECT COUNT(*) FROM sessions") == 0


async def test_concurrent_appends_share_one_new_session(storage: Storage) -> None:
    await storage.agents.create(agent_record("agent-1", await owner_id(storage)))
    await asyncio.gather(
        *(storage.append_history("agent-1", HistoryRecord("note", at, {"text": str(at)})) for at in range(1, 21))
    )
    sessions = await storage.sessions.find_by_agent_id("agent-1")
    assert len(sessions) == 1
    records = await storage.history.find_by_session_id(sessions[0].id)
    assert sorted(record.at for record in records) == list(range(1, 21))


async def test_no_other_task_statement_joins_an_open_transaction(storage: Storage) -> None:
    """Another task's statement never joins an open transaction, so it survives its rollback. The SQLite
    backend holds its one connection for the whole transaction: the statement waits until it ends.
    PostgreSQL's pool runs it on another connection beside the transaction, which it does not see."""
    db = storage.db
    entered = asyncio.Event()
    release = asyncio.Event()
    order: list[str] = []

    async def transaction() -> None:
        with pytest.raises(RuntimeError, match="roll back"):
            async with db.in_transaction():
                await sql_run(
                    db, "INSERT INTO inbox (id, agent_id, posted_at, type, data) VALUES ('inside', 'a', 1, 't', '{}')"
                )
                entered.set()
                await release.wait()
                order.append("transaction ends")
                raise RuntimeError("roll back")

    async def other_task() -> None:
        await entered.wait()
        write = asyncio.create_task(storage.inbox.insert("outside", "a", 2, "t", "{}"))
        read = asyncio.create_task(storage.inbox.find_by_agent_id("a"))
        if db.dialect == "postgres":
            await asyncio.wait_for(asyncio.gather(write, read), timeout=5)  # they do not wait for it
            order.append("others ran beside it")
        else:
            await asyncio.sleep(0.05)
            order.append("others waiting" if not (write.done() or read.done()) else "others ran inside")
        release.set()
        await write
        seen = await read
        order.append("others done")
        # The read ran before or after the write: it never saw "inside".
        assert [item.id for item in seen] in ([], ["outside"])
        assert [item.id for item in await storage.inbox.find_by_agent_id("a")] == ["outside"]

    await asyncio.gather(transaction(), other_task())
    if db.dialect == "postgres":
        assert order == ["others ran beside it", "others done", "transaction ends"]
    else:
        assert order == ["others waiting", "transaction ends", "others done"]
    assert [item.id for item in await storage.inbox.find_by_agent_id("a")] == ["outside"]


async def test_failed_flow_does_not_take_concurrent_writes_with_it(storage: Storage) -> None:
    owner = await owner_id(storage)
    await storage.create_agent_with_session(agent_record("busy", owner))
    await trigger_refusing(storage.db, "sessions", "doomed", when="NEW.agent_id = 'doomed'")

    async def doomed() -> None:
        with pytest.raises(FAILURES, match="doomed"):
            await storage.create_agent_with_session(agent_record("doomed", owner))

    writes = [storage.inbox.insert(f"item-{n}", "busy", n, "message", "{}") for n in range(30)]
    appends = [storage.append_history("busy", HistoryRecord("note", n, {"text": str(n)})) for n in range(30)]
    await asyncio.gather(doomed(), *writes, *appends, doomed())
    assert len(await storage.inbox.find_by_agent_id("busy")) == 30
    busy = await storage.agents.find_by_id("busy")
    assert busy is not None and busy.active_session_id
    assert len(await storage.history.find_by_session_id(busy.active_session_id)) == 30
    assert await count(storage.db, "SELECT COUNT(*) FROM agents WHERE id = 'doomed'") == 0


async def test_flows_wait_for_repository_locks_without_deadlock(storage: Storage) -> None:
    """A flow takes the agent's lock before its transaction; updates of the same agent that
    hold the lock while waiting for the connection must not deadlock with it."""
    owner = await owner_id(storage)
    record = agent_record("agent-1", owner)
    await storage.agents.create(record)
    updates = [storage.agents.update("agent-1", updated_at=n) for n in range(2, 40)]
    flows = [storage.create_agent_with_session(dataclasses.replace(record, updated_at=1)) for _ in range(5)]
    await asyncio.wait_for(asyncio.gather(*updates, *flows), timeout=10)
    assert await count(storage.db, "SELECT COUNT(*) FROM sessions") == 5


async def test_storage_open_holds_the_lock_an_engine_holds(tmp_path: Path) -> None:
    from daycare.engine import Engine
    from daycare.storage import StorageError, storage_open
    from daycare.storage.db.lock import DatabaseInUse
    from tests.engine.helpers import engine_config

    path = tmp_path / "daycare.db"
    async with Engine(engine_config(path, tmp_path)):
        with pytest.raises(DatabaseInUse, match="engine"):
            async with storage_open(path):
                pass
        async with storage_open(path, read_only=True) as storage:  # reading needs no lock
            assert (await storage.users.find_owner()) is not None
    async with storage_open(path) as storage:  # the engine released it
        async with storage_open(path, read_only=True):
            pass
        with pytest.raises(DatabaseInUse, match="script"):
            async with storage_open(path):
                pass
    legacy = tmp_path / "legacy.db"
    shutil.copyfile(legacy_path("empty.db"), legacy)
    with pytest.raises(StorageError, match="needs an upgrade"):
        async with storage_open(legacy, read_only=True):
            pass


async def test_a_cached_write_refuses_a_callers_transaction(storage: Storage) -> None:
    """The cache would change before the COMMIT: a cached repository refuses to write inside a transaction."""
    owner = await owner_id(storage)
    with pytest.raises(RuntimeError, match="must not run inside a caller's transaction"):
        async with storage.db.in_transaction():
            await storage.agents.create(agent_record("inside", owner))
    assert await Storage.from_database(storage.db).agents.find_by_id("inside") is None
