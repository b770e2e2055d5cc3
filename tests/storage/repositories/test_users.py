"""UsersRepository: the legacy usersRepository.spec, userConnectorKeyCreate.spec and
nametagGenerate.spec, plus the cache, atomic-create and error cases of issue 3."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Iterator
from typing import Any

import pytest
from tortoise.exceptions import IntegrityError

from daycare.storage.db.database import Database
from daycare.storage.facade import Storage
from daycare.storage.identifiers import nametag_generate
from daycare.storage.repositories import users as users_module
from daycare.storage.repositories.users import UserRecord, UsersRepository, connector_key_create
from tests.storage.helpers import violated
from tests.storage.raw_rows import sql_rows, sql_run, stored_query


async def user_count(db: Database) -> int:
    rows = await sql_rows(db, "SELECT COUNT(*) AS n FROM users")
    return int(rows[0]["n"])


async def test_supports_crud_and_connector_key_operations(db: Database) -> None:
    """usersRepository.spec: supports CRUD and connector key operations."""
    users = UsersRepository(db)
    created = await users.create(
        is_owner=False, created_at=1, updated_at=2, nametag="swift-fox-42", connector_key="telegram:1"
    )
    assert created.is_owner is False
    assert [key.connector_key for key in created.connector_keys] == ["telegram:1"]
    assert created.nametag == "swift-fox-42"

    assert (await users.find_by_id(created.id)).id == created.id  # type: ignore[union-attr]
    assert (await users.find_by_connector_key("telegram:1")).id == created.id  # type: ignore[union-attr]
    assert (await users.find_by_nametag("swift-fox-42")).id == created.id  # type: ignore[union-attr]

    await users.add_connector_key(created.id, "slack:1")
    updated = await users.find_by_id(created.id)
    assert updated is not None
    assert [key.connector_key for key in updated.connector_keys] == ["telegram:1", "slack:1"]

    await users.update(created.id, is_owner=False, updated_at=3)
    updated_owner = await users.find_by_id(created.id)
    assert updated_owner is not None
    assert updated_owner.is_owner is False
    assert updated_owner.updated_at == 3

    owner = await users.find_owner()
    assert owner is not None
    assert owner.id != created.id

    await users.delete(created.id)
    assert await users.find_by_id(created.id) is None
    assert await users.find_by_connector_key("telegram:1") is None
    assert await users.find_by_nametag("swift-fox-42") is None


async def test_returns_cached_user_on_repeated_read(db: Database) -> None:
    """usersRepository.spec: returns cached user on repeated read."""
    users = UsersRepository(db)
    created = await users.create(created_at=1, updated_at=1)
    first = await users.find_by_id(created.id)
    assert first is not None and first.id == created.id

    await sql_run(db, "DELETE FROM users WHERE id = ?", [created.id])
    second = await users.find_by_id(created.id)
    assert second is not None and second.id == created.id


async def test_loads_from_db_on_cache_miss_and_invalidates_after_delete(db: Database) -> None:
    """usersRepository.spec: loads from db on cache miss and invalidates after delete."""
    users = UsersRepository(db)
    await sql_run(
        db,
        "INSERT INTO users (id, is_owner, nametag, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
        ["user-1", False, "brave-wolf-99", 10, 11],
    )
    await sql_run(
        db, "INSERT INTO user_connector_keys (user_id, connector_key) VALUES (?, ?)", ["user-1", "telegram:1"]
    )
    loaded = await users.find_by_id("user-1")
    assert loaded is not None and loaded.id == "user-1"
    assert [key.connector_key for key in loaded.connector_keys] == ["telegram:1"]
    assert (await users.find_by_nametag("brave-wolf-99")).id == "user-1"  # type: ignore[union-attr]

    await users.delete("user-1")
    assert await users.find_by_id("user-1") is None
    assert await users.find_by_connector_key("telegram:1") is None
    assert await users.find_by_nametag("brave-wolf-99") is None


def test_connector_key_create_builds_keys() -> None:
    """userConnectorKeyCreate.spec: builds connector keys from connector and userId."""
    assert connector_key_create("telegram", "123") == "telegram:123"


def test_connector_key_create_trims_inputs() -> None:
    """userConnectorKeyCreate.spec: trims inputs."""
    assert connector_key_create(" telegram ", " 123 ") == "telegram:123"


def test_connector_key_create_throws_for_empty_connector() -> None:
    """userConnectorKeyCreate.spec: throws for empty connector."""
    with pytest.raises(ValueError, match=r"^Connector is required$"):
        connector_key_create("", "123")


def test_connector_key_create_throws_for_empty_user_id() -> None:
    """userConnectorKeyCreate.spec: throws for empty userId."""
    with pytest.raises(ValueError, match=r"^Connector userId is required$"):
        connector_key_create("telegram", "   ")


def test_nametag_generate_joins_adjective_noun_and_three_digits() -> None:
    """nametagGenerate.spec: delegates with no separator and 3 digits (here: checks the shape)."""
    tags = {nametag_generate() for _ in range(200)}
    assert len(tags) > 150
    for tag in tags:
        match = re.fullmatch(r"([a-z]+)(\d{3})", tag)
        assert match, tag
        assert 100 <= int(match.group(2)) <= 999


async def test_create_defaults(db: Database) -> None:
    users = UsersRepository(db)
    created = await users.create(created_at=5)
    assert re.fullmatch(r"[a-z0-9]{24}", created.id)
    assert (created.is_owner, created.parent_user_id, created.name) == (False, None, None)
    assert (created.created_at, created.updated_at) == (5, 5)
    assert re.fullmatch(r"[a-z]+\d{3}", created.nametag)
    assert created.connector_keys == ()
    assert await users.find_by_id(created.id) is created


async def test_create_trims_connector_key_and_nametag(db: Database) -> None:
    users = UsersRepository(db)
    created = await users.create(nametag="  tagged123 ", connector_key="  telegram:9  ")
    assert created.nametag == "tagged123"
    assert [key.connector_key for key in created.connector_keys] == ["telegram:9"]
    blank = await users.create(connector_key="   ")
    assert blank.connector_keys == ()


async def test_create_key_race_leaves_no_orphan_user(db: Database) -> None:
    """The legacy create committed the user before its key; here both roll back together."""
    users = UsersRepository(db)
    await users.create(connector_key="telegram:taken")
    before = await user_count(db)
    with violated("unique", "user_connector_keys.connector_key"):
        await users.create(id="loser", connector_key="telegram:taken")
    assert await user_count(db) == before
    assert await UsersRepository(db).find_by_id("loser") is None
    assert await users.find_by_id("loser") is None


async def test_create_with_explicit_nametag_raises_raw_unique_error(db: Database) -> None:
    users = UsersRepository(db)
    await users.create(nametag="same123")
    with violated("unique", "users.nametag"):
        await users.create(nametag="same123")


async def test_create_retries_generated_nametags(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    users = UsersRepository(db)
    await users.create(nametag="taken100")
    tags: Iterator[str] = iter(["taken100", "taken100", "free200"])
    monkeypatch.setattr(users_module, "nametag_generate", lambda: next(tags))
    created = await users.create()
    assert created.nametag == "free200"


async def test_create_gives_up_after_100_taken_nametags(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    users = UsersRepository(db)
    await users.create(nametag="taken100")
    calls: list[int] = []

    def taken() -> str:
        calls.append(1)
        return "taken100"

    monkeypatch.setattr(users_module, "nametag_generate", taken)
    before = await user_count(db)
    with pytest.raises(RuntimeError, match=r"^Failed to generate unique nametag after 100 attempts\.$"):
        await users.create(connector_key="telegram:x")
    assert len(calls) == 100
    assert await user_count(db) == before


async def test_create_raw_errors_for_second_owner_duplicate_id_and_unknown_parent(db: Database) -> None:
    users = UsersRepository(db)
    with violated("unique", "users.is_owner"):
        await users.create(is_owner=True)
    created = await users.create()
    with violated("unique", "users.id"):
        await users.create(id=created.id)
    with violated("foreign key"):
        await users.create(parent_user_id="nobody")


async def test_find_many_orders_and_short_circuits_once_loaded(db: Database) -> None:
    users = UsersRepository(db)
    late = await users.create(id="b-late", created_at=3)
    early_b = await users.create(id="b-early", created_at=2)
    early_a = await users.create(id="a-early", created_at=2)
    listed = await users.find_all()
    assert [user.id for user in listed[:3]] == [early_a.id, early_b.id, late.id]
    assert listed[3].is_owner  # the bootstrap owner was created now

    # All loaded: a row added behind the cache's back is not seen, and a miss is final.
    await sql_run(
        db, "INSERT INTO users (id, is_owner, nametag, created_at, updated_at) VALUES ('raw', FALSE, 'raw123', 9, 9)"
    )
    assert await users.find_by_id("raw") is None
    assert await users.find_by_nametag("raw123") is None
    assert [user.id for user in await users.find_all()] == [user.id for user in listed]
    # find_by_connector_key still asks the database (legacy did not short-circuit it).
    await sql_run(db, "INSERT INTO user_connector_keys (user_id, connector_key) VALUES ('raw', 'telegram:raw')")
    assert await users.find_by_connector_key("telegram:raw") is None


async def test_find_owner_and_find_by_parent_user_id(db: Database) -> None:
    users = UsersRepository(db)
    owner = await users.find_owner()
    assert owner is not None and owner.is_owner
    parent = await users.create(created_at=1)
    second = await users.create(parent_user_id=parent.id, created_at=7, id="z-child")
    first = await users.create(parent_user_id=parent.id, created_at=7, id="a-child")
    await users.create(created_at=8)
    assert [user.id for user in await users.find_by_parent_user_id(parent.id)] == [first.id, second.id]
    assert await users.find_by_parent_user_id(owner.id) == []
    # Once every user is loaded the owner comes from the cache.
    assert await users.find_owner() == owner


async def test_update_writes_only_owner_flag_and_times(db: Database) -> None:
    users = UsersRepository(db)
    created = await users.create(name="Ann", created_at=1, updated_at=1)
    await users.update(created.id, created_at=4, updated_at=5)
    rows = await sql_rows(db, "SELECT is_owner, name, created_at, updated_at FROM users WHERE id = ?", [created.id])
    assert dict(rows[0]) == {"is_owner": 0, "name": "Ann", "created_at": 4, "updated_at": 5}
    with pytest.raises(LookupError, match=r"^User not found: missing$"):
        await users.update("missing", updated_at=1)


async def test_delete_of_missing_user_is_a_no_op_and_parent_with_children_fails(db: Database) -> None:
    users = UsersRepository(db)
    await users.delete("missing")
    parent = await users.create(connector_key="telegram:parent")
    await users.create(parent_user_id=parent.id)
    with violated("foreign key"):
        await users.delete(parent.id)
    assert await users.find_by_connector_key("telegram:parent") == parent


async def test_add_connector_key_requires_the_user_and_a_free_key(db: Database) -> None:
    users = UsersRepository(db)
    with pytest.raises(LookupError, match=r"^User not found: missing$"):
        await users.add_connector_key("missing", "telegram:1")
    created = await users.create(connector_key="telegram:1")
    with violated("unique", "user_connector_keys.connector_key"):
        await users.add_connector_key(created.id, "telegram:1")
    await users.add_connector_key(created.id, " untrimmed ")
    assert await users.find_by_connector_key(" untrimmed ") is not None
    cached = await users.find_by_id(created.id)
    assert cached is not None and [key.id for key in cached.connector_keys] == sorted(
        key.id for key in cached.connector_keys
    )


async def test_records_are_frozen(db: Database) -> None:
    users = UsersRepository(db)
    created = await users.create(connector_key="telegram:1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        created.name = "changed"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        created.connector_keys.append(created.connector_keys[0])  # type: ignore[attr-defined]
    record = UserRecord("x", False, None, None, "t123", 1, 1, [])  # type: ignore[arg-type]
    assert record.connector_keys == ()


async def test_is_empty_reads_one_row_at_most(db: Database) -> None:
    users = UsersRepository(db)
    assert await users.is_empty() is False
    await sql_run(db, "DELETE FROM users")
    assert await UsersRepository(db).is_empty() is True


async def test_rows_are_stored_as_legacy_wrote_them(storage: Storage) -> None:
    created = await storage.users.create(
        id="u1", name="Carol O'Brien ☕", nametag="carol123", created_at=10, connector_key="telegram:5"
    )
    await storage.users.add_connector_key(created.id, "whatsapp:+1")
    [user] = await stored_query(storage.db, "SELECT * FROM users WHERE id = 'u1'")
    keys = await stored_query(storage.db, "SELECT user_id, connector_key FROM user_connector_keys ORDER BY id")
    assert tuple(user.values()) == ("u1", 0, 10, 10, None, "Carol O'Brien ☕", "carol123")
    assert type(user["is_owner"]) is (bool if storage.db.dialect == "postgres" else int)  # BOOLEAN, or INTEGER 0/1
    assert [tuple(key.values()) for key in keys] == [("u1", "telegram:5"), ("u1", "whatsapp:+1")]


@pytest.mark.parametrize("reader", ["_row_load", "_read_with_keys"])
async def test_a_slow_load_never_caches_the_user_a_write_replaced(
    db: Database, monkeypatch: pytest.MonkeyPatch, reader: str
) -> None:
    """The driver suspends after a read (as asyncpg does); a write commits meanwhile; the old row must not win."""
    await UsersRepository(db).create(id="u1", nametag="first", created_at=1)
    repo = UsersRepository(db)
    read_done, release = asyncio.Event(), asyncio.Event()
    original = getattr(repo, reader)

    async def slow(*args: Any, **kwargs: Any) -> Any:
        result = await original(*args, **kwargs)
        read_done.set()
        await release.wait()
        return result

    monkeypatch.setattr(repo, reader, slow)
    load = asyncio.create_task(repo.find_by_id("u1") if reader == "_row_load" else repo.find_all())
    await read_done.wait()
    monkeypatch.setattr(repo, reader, original)
    await repo.add_connector_key("u1", "telegram:1")
    await repo.update("u1", updated_at=99)
    release.set()
    await load
    fresh = await UsersRepository(db).find_by_id("u1")
    assert fresh is not None and fresh.updated_at == 99 and len(fresh.connector_keys) == 1
    assert await repo.find_by_id("u1") == fresh
    assert await repo.find_by_connector_key("telegram:1") == fresh


NFC_KEY = "telegram:José"
NFD_KEY = "telegram:Jose\u0301"


def test_connector_keys_are_built_in_nfc() -> None:
    assert NFC_KEY != NFD_KEY
    assert connector_key_create("telegram", "Jose\u0301") == NFC_KEY
    assert connector_key_create(" telegram ", "José ") == NFC_KEY


async def test_nfc_and_nfd_spellings_of_a_key_are_one_user(storage: Storage, db: Database) -> None:
    first = await storage.resolve_user_by_connector_key(NFD_KEY)
    second = await storage.resolve_user_by_connector_key(NFC_KEY)
    third = await Storage.from_database(db).resolve_user_by_connector_key(f" {NFD_KEY} ")
    assert first.id == second.id == third.id
    rows = await sql_rows(db, "SELECT connector_key FROM user_connector_keys")
    assert [row["connector_key"] for row in rows] == [NFC_KEY]
    fresh = UsersRepository(db)
    for spelling in (NFC_KEY, NFD_KEY):
        found = await fresh.find_by_connector_key(spelling)
        assert found is not None and found.id == first.id
    # add_connector_key stores NFC too: the NFD spelling of a taken key is taken.
    with pytest.raises(IntegrityError):
        await fresh.add_connector_key(first.id, NFD_KEY)


async def test_a_key_an_older_version_stored_in_nfd_is_found_by_either_spelling(storage: Storage, db: Database) -> None:
    user = await storage.create_user()
    await sql_run(db, "INSERT INTO user_connector_keys (user_id, connector_key) VALUES (?, ?)", [user.id, NFD_KEY])
    for spelling in (NFC_KEY, NFD_KEY):
        found = await UsersRepository(db).find_by_connector_key(spelling)
        assert found is not None and found.id == user.id
    before = await user_count(db)
    resolved = await Storage.from_database(db).resolve_user_by_connector_key(NFC_KEY)
    assert resolved.id == user.id and await user_count(db) == before


async def test_nametags_are_stored_and_found_in_nfc(storage: Storage, db: Database) -> None:
    user = await storage.create_user(nametag="Zoe\u0308")
    assert user.nametag == "Zoë"
    rows = await sql_rows(db, "SELECT nametag FROM users WHERE id = ?", [user.id])
    assert rows[0]["nametag"] == "Zoë"
    for spelling in ("Zoë", "Zoe\u0308", " Zoë "):
        found = await UsersRepository(db).find_by_nametag(spelling)
        assert found is not None and found.id == user.id
    with pytest.raises(IntegrityError):
        await storage.create_user(nametag="Zoë")
