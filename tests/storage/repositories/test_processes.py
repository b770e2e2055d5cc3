"""ProcessesRepository: the legacy processesRepository.spec test, run on the real schema, plus the parse fallbacks."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from daycare.storage.db.database import Database
from daycare.storage.facade import Storage
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.processes import ProcessesRepository, ProcessRecord
from tests.storage.cache_checks import assert_cache_matches
from tests.storage.raw_rows import sql_run, stored_rows


def process(id: str, user_id: str, owner: dict[str, str] | None, **fields: object) -> ProcessRecord:
    values: dict[str, object] = {
        "name": id,
        "command": 'node -e "1"',
        "cwd": "/tmp",
        "home": None,
        "env": {},
        "package_managers": [],
        "allowed_domains": [],
        "allow_local_binding": False,
        "permissions": {"workingDir": "/tmp", "writeDirs": ["/tmp"]},
        "keep_alive": False,
        "desired_state": "running",
        "status": "running",
        "pid": 100,
        "boot_time_ms": 10,
        "restart_count": 0,
        "restart_failure_count": 0,
        "next_restart_at": None,
        "settings_path": f"/tmp/{id}/sandbox.json",
        "log_path": f"/tmp/{id}/process.log",
        "created_at": 1,
        "updated_at": 1,
        "last_started_at": 1,
        "last_exited_at": None,
    }
    values.update(fields)
    return ProcessRecord(id=id, user_id=user_id, owner=owner, **values)  # type: ignore[arg-type]


PLUGIN_A = {"type": "plugin", "id": "plugin-a"}


async def test_supports_crud_and_filtering_by_user_and_owner(storage: Storage) -> None:
    """Legacy: "supports CRUD and filtering by user and owner"."""
    repo = storage.processes
    await repo.create(process("p-1", "user-a", PLUGIN_A))
    await repo.create(process("p-2", "user-b", {"type": "plugin", "id": "plugin-b"}))
    await repo.create(process("p-3", "user-a", None))
    ctx = Context("user-a", "test-agent")
    assert [item.id for item in await repo.find_all()] == ["p-1", "p-2", "p-3"]
    assert [item.id for item in await repo.find_many(ctx)] == ["p-1", "p-3"]
    by_owner = await repo.find_many(ctx, owner_type="plugin", owner_id="plugin-a")
    assert [item.id for item in by_owner] == ["p-1"]

    await repo.update("p-1", status="exited", pid=None, updated_at=20)
    updated = await repo.find_by_id("p-1")
    assert updated is not None and updated.status == "exited" and updated.pid is None

    assert await repo.delete_by_owner("plugin", "plugin-b") == 1
    assert await repo.delete("p-3") is True
    assert [item.id for item in await repo.find_all()] == ["p-1"]


async def test_rows_are_stored_as_the_legacy_code_stored_them(storage: Storage, db: Database) -> None:
    await storage.processes.create(
        process(
            "p",
            "u",
            PLUGIN_A,
            env={"LANG": "ru_RU.UTF-8", "B": "é"},
            package_managers=["npm", "pip"],
            allowed_domains=["*.github.com"],
            allow_local_binding=True,
            keep_alive=True,
        )
    )
    [row] = await stored_rows(db, "processes", "id")
    assert {name: row[name] for name in ("env", "package_managers", "allowed_domains", "permissions", "owner")} == {
        "env": '{"LANG":"ru_RU.UTF-8","B":"é"}',
        "package_managers": '["npm","pip"]',
        "allowed_domains": '["*.github.com"]',
        "permissions": '{"workingDir":"/tmp","writeDirs":["/tmp"]}',
        "owner": '{"type":"plugin","id":"plugin-a"}',
    }
    assert (row["allow_local_binding"], row["keep_alive"], row["pid"], row["home"]) == (1, 1, 100, None)
    # Reads (cached or not) always carry readDirs.
    cached = await storage.processes.find_by_id("p")
    fresh = await Storage.from_database(db).processes.find_by_id("p")
    assert cached == fresh
    assert fresh is not None and fresh.permissions == {"workingDir": "/tmp", "writeDirs": ["/tmp"], "readDirs": []}


async def test_broken_json_falls_back(storage: Storage, db: Database) -> None:
    await storage.processes.create(process("p", "u", None))
    await sql_run(
        db,
        "UPDATE processes SET env = ?, package_managers = ?, allowed_domains = ?, permissions = ?, owner = ?",
        [
            '{"A":"1","B":2,"C":null}',
            '["npm",3]',
            "nope",
            '{"workingDir":5,"writeDirs":[]}',
            '{"type":"plugin","id":" x "}',
        ],
    )
    record = await Storage.from_database(db).processes.find_by_id("p")
    assert record is not None
    assert record.env == {"A": "1"}
    assert record.package_managers == ["npm"]
    assert record.allowed_domains == []
    assert record.permissions == {"workingDir": "/", "writeDirs": [], "readDirs": []}
    assert record.owner == {"type": "plugin", "id": "x"}
    cases = [
        ("[1]", '{"workingDir":"/w","writeDirs":["/w",1],"readDirs":"x"}', '{"type":"user","id":"x"}'),
        ("{", "null", '{"type":"plugin","id":"  "}'),
    ]
    expected_permissions = [
        {"workingDir": "/w", "writeDirs": ["/w"], "readDirs": []},
        {"workingDir": "/", "writeDirs": [], "readDirs": []},
    ]
    for (env, permissions, owner), expected in zip(cases, expected_permissions, strict=True):
        await sql_run(db, "UPDATE processes SET env = ?, permissions = ?, owner = ?", [env, permissions, owner])
        record = await Storage.from_database(db).processes.find_by_id("p")
        assert record is not None
        assert (record.env, record.permissions, record.owner) == ({}, expected, None)


async def test_update_clears_nullable_fields_and_keeps_the_others(storage: Storage, db: Database) -> None:
    await storage.processes.create(process("p", "u", PLUGIN_A, home="/home/u", next_restart_at=5))
    with pytest.raises(LookupError, match=r"^Process not found: nope$"):
        await storage.processes.update("nope", status="stopped")
    await storage.processes.update(
        "p", home=None, owner=None, next_restart_at=None, name=None, status=None, restart_count=3
    )
    [row] = await stored_rows(db, "processes", "id")
    assert (row["home"], row["owner"], row["next_restart_at"]) == (None, None, None)
    assert (row["name"], row["status"], row["restart_count"]) == ("p", "running", 3)
    record = await storage.processes.find_by_id("p")
    assert record is not None and record.owner is None and record.restart_count == 3


async def test_find_all_caches_only_unfiltered_loads(storage: Storage, db: Database) -> None:
    await storage.processes.create(process("p-1", "a", None, created_at=2))
    await storage.processes.create(process("p-0", "b", None, created_at=2))
    fresh = Storage.from_database(db).processes
    assert [item.id for item in await fresh.find_all(user_id="a")] == ["p-1"]
    assert await fresh.find_by_id("p-0") is not None  # not authoritative yet
    assert [item.id for item in await fresh.find_all()] == ["p-0", "p-1"]
    await sql_run(db, "DELETE FROM processes WHERE id = 'p-0'")
    assert [item.id for item in await fresh.find_all()] == ["p-0", "p-1"]
    # A user filter always reads the file.
    assert [item.id for item in await fresh.find_all(user_id="b")] == []


async def test_delete_by_owner_removes_all_of_one_owner_at_once(storage: Storage, db: Database) -> None:
    for index in range(5):
        await storage.processes.create(process(f"a-{index}", "u", PLUGIN_A, created_at=index))
    await storage.processes.create(process("b", "u", {"type": "plugin", "id": "plugin-b"}))
    await storage.processes.create(process("none", "u", None))
    with pytest.raises(ValueError, match=r"owner type and id are required"):
        await storage.processes.delete_by_owner("plugin", " ")
    # An update in flight holds its key: the delete waits for it instead of deleting under it.
    async with storage.processes._cache.locks.hold("a-3"):
        deleting = asyncio.create_task(storage.processes.delete_by_owner("plugin", "plugin-a"))
        await asyncio.sleep(0.01)
        assert not deleting.done()
        assert len(await stored_rows(db, "processes", "id")) == 7
    assert await deleting == 5
    assert [row["id"] for row in await stored_rows(db, "processes", "id")] == ["b", "none"]
    assert await storage.processes.find_by_id("a-0") is None
    assert await storage.processes.delete_by_owner("plugin", "plugin-a") == 0


async def test_delete_by_owner_spares_a_process_whose_owner_changed_while_it_waited(
    storage: Storage, db: Database
) -> None:
    for index in range(5):
        await storage.processes.create(process(f"a-{index}", "u", PLUGIN_A, created_at=index))
    # The delete finds a-0..a-4, then waits for a-0's lock (its first, in sorted order) ...
    async with storage.processes._cache.locks.hold("a-0"):
        deleting = asyncio.create_task(storage.processes.delete_by_owner("plugin", "plugin-a"))
        await asyncio.sleep(0.01)
        assert not deleting.done()
        # ... while an update gives a-3 another owner.
        await storage.processes.update("a-3", owner={"type": "plugin", "id": "plugin-b"}, updated_at=9)
    assert await deleting == 4
    assert [row["id"] for row in await stored_rows(db, "processes", "id")] == ["a-3"]
    moved = await storage.processes.find_by_id("a-3")
    assert moved is not None and moved.owner == {"type": "plugin", "id": "plugin-b"}
    assert moved == await Storage.from_database(db).processes.find_by_id("a-3")


async def test_update_refuses_an_unknown_field(storage: Storage) -> None:
    await storage.processes.create(process("p", "u", None))
    with pytest.raises(TypeError, match=r"^Process has no field 'colour'$"):
        await storage.processes.update("p", colour="red")  # type: ignore[call-arg]
    assert await storage.processes.find_by_id("p") == await Storage.from_database(storage.db).processes.find_by_id("p")


async def write(repo: ProcessesRepository, index: int) -> None:
    """An update, an overwrite, a delete or a delete by owner of "p", by turn."""
    if index % 4 == 0:
        await repo.update("p", status="exited", pid=None, restart_count=index, updated_at=index)
    elif index % 4 == 1:
        await repo.create(process("p", "u", PLUGIN_A, pid=index, updated_at=index))
    elif index % 4 == 2:
        await repo.delete("p")
    else:
        await repo.delete_by_owner("plugin", "plugin-a")


@pytest.mark.parametrize("load", ["find_all", "find_all_of_user", "find_by_id"])
async def test_a_load_racing_a_write_leaves_the_cache_equal_to_the_file(db: Database, load: str) -> None:
    await ProcessesRepository(db).create(process("other", "u", None, created_at=0))
    await ProcessesRepository(db).create(process("p", "u", PLUGIN_A))
    for index in range(24):
        repo = ProcessesRepository(db)  # a fresh cache: the load misses and reads the file
        reading: Coroutine[Any, Any, object]
        if load == "find_all":
            reading = repo.find_all()
        elif load == "find_all_of_user":
            reading = repo.find_all(user_id="u")
        else:
            reading = repo.find_by_id("p")
        if index % 2:
            await asyncio.gather(reading, write(repo, index))
        else:
            await asyncio.gather(write(repo, index), reading)
        assert_cache_matches(repo, {record.id: record for record in await ProcessesRepository(db).find_all()})
        if index % 4 >= 2:
            await ProcessesRepository(db).create(process("p", "u", PLUGIN_A))
