"""ExposeEndpointsRepository: the legacy exposeEndpointsRepository.spec test and the exposeTypes parsers it uses."""

from __future__ import annotations

import asyncio

import pytest

from daycare.storage.db.database import Database
from daycare.storage.facade import Storage
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.expose_endpoints import (
    ExposeEndpointRecord,
    ExposeEndpointsRepository,
    expose_domain_normalize,
    expose_target_parse,
)
from tests.storage.cache_checks import assert_cache_matches
from tests.storage.raw_rows import sql_run, stored_rows


def endpoint(id: str, user_id: str, domain: str, at: int = 1, **fields: object) -> ExposeEndpointRecord:
    values: dict[str, object] = {
        "target": {"type": "port", "port": 8080},
        "provider": "provider-a",
        "mode": "public",
        "auth": None,
        "created_at": at,
        "updated_at": at,
    }
    values.update(fields)
    return ExposeEndpointRecord(id=id, user_id=user_id, domain=domain, **values)  # type: ignore[arg-type]


async def raw_insert(db: Database, id: str, target: str, domain: str, auth: str | None) -> None:
    await sql_run(
        db, "INSERT INTO expose_endpoints VALUES (?, 'u', ?, 'p', ?, 'public', ?, 1, 1)", [id, target, domain, auth]
    )


async def test_supports_crud_and_user_scoping(storage: Storage) -> None:
    """Legacy: "supports CRUD and user scoping"."""
    repo = storage.expose_endpoints
    await repo.create(endpoint("ep-1", "user-a", "app.example.com", 1))
    await repo.create(
        endpoint(
            "ep-2",
            "user-b",
            "ops.example.com",
            2,
            target={"type": "unix", "path": "/tmp/server.sock"},
            provider="provider-b",
            mode="local-network",
            auth={"enabled": True, "passwordHash": "hash"},
        )
    )
    assert [item.id for item in await repo.find_all()] == ["ep-1", "ep-2"]
    assert [item.id for item in await repo.find_many(Context("user-a", "test-agent"))] == ["ep-1"]
    await repo.update("ep-1", auth={"enabled": True, "passwordHash": "next-hash"}, updated_at=10)
    updated = await repo.find_by_id("ep-1")
    assert updated is not None and updated.auth is not None and updated.auth["passwordHash"] == "next-hash"
    assert await repo.delete("ep-2") is True
    assert [item.id for item in await repo.find_all()] == ["ep-1"]


def test_parses_valid_port_and_unix_targets() -> None:
    """Legacy exposeTypes: "parses valid port and unix targets"."""
    assert expose_target_parse({"type": "port", "port": 3000}) == {"type": "port", "port": 3000}
    assert expose_target_parse({"type": "unix", "path": "/tmp/app.sock"}) == {"type": "unix", "path": "/tmp/app.sock"}
    assert expose_target_parse({"type": "unix", "path": " /tmp/a.sock "}) == {"type": "unix", "path": "/tmp/a.sock"}
    assert expose_target_parse({"type": "port", "port": 80.0}) == {"type": "port", "port": 80}


@pytest.mark.parametrize(
    "target",
    [
        {"type": "port", "port": 0},
        {"type": "unix", "path": ""},
        {"type": "port", "port": 65536},
        {"type": "port", "port": 1.5},
        {"type": "port", "port": True},
        {"type": "port", "port": 80, "extra": 1},
        {"type": "tcp", "port": 80},
        [],
        None,
    ],
)
def test_rejects_invalid_targets(target: object) -> None:
    """Legacy exposeTypes: "rejects invalid targets"."""
    with pytest.raises(ValueError, match=r"Invalid expose target"):
        expose_target_parse(target)


def test_normalizes_valid_domains() -> None:
    """Legacy exposeTypes: "normalizes valid domains"."""
    assert expose_domain_normalize("APP.Example.COM") == "app.example.com"
    assert expose_domain_normalize("  a-b.c0 ") == "a-b.c0"
    for bad in ("invalid_domain", "nodot", "-a.com", "a.com\nb", "a..com", f"{'a' * 64}.com"):
        with pytest.raises(ValueError, match=r"Invalid expose domain"):
            expose_domain_normalize(bad)


async def test_domains_are_normalised_on_write_and_checked_on_read(storage: Storage, db: Database) -> None:
    await storage.expose_endpoints.create(endpoint("ep", "u", "  App.Example.COM "))
    [row] = await stored_rows(db, "expose_endpoints", "id")
    assert row["domain"] == "app.example.com"
    # The cache holds the normalised domain too (the legacy cache kept the caller's text).
    cached = await storage.expose_endpoints.find_by_id("ep")
    assert cached is not None and cached.domain == "app.example.com"
    with pytest.raises(ValueError, match=r"^Invalid expose domain: bad_domain$"):
        await storage.expose_endpoints.create(endpoint("ep2", "u", "bad_domain"))
    with pytest.raises(ValueError, match=r"^Invalid expose domain: bad_domain$"):
        await storage.expose_endpoints.update("ep", domain="bad_domain")
    await storage.expose_endpoints.update("ep", domain="", provider=None, updated_at=3)
    await storage.expose_endpoints.update("ep", domain="NEW.example.com")
    [row] = await stored_rows(db, "expose_endpoints", "id")
    assert (row["domain"], row["provider"], row["updated_at"]) == ("new.example.com", "provider-a", 3)
    # A stored domain that is not a hostname: the row cannot be read, and reads leave it out.
    await raw_insert(db, "broken", '{"type":"port","port":1}', "not a domain", None)
    fresh = Storage.from_database(db).expose_endpoints
    assert [record.id for record in await fresh.find_all()] == ["ep"]
    assert await fresh.find_by_id("broken") is None


async def test_broken_target_and_auth_fall_back(storage: Storage, db: Database) -> None:
    cases = [
        ("bad-json", "{", "{"),
        ("bad-shape", '{"type":"port","port":0}', '{"enabled":false,"passwordHash":"h"}'),
        ("blank-hash", '{"type":"unix","path":" /s "}', '{"enabled":true,"passwordHash":"  "}'),
        ("empty-auth", '{"type":"port","port":443}', ""),
    ]
    for id, target, auth in cases:
        await raw_insert(db, id, target, "a.example.com", auth)
    read = {item.id: item for item in await storage.expose_endpoints.find_all()}
    assert read["bad-json"].target == {"type": "port", "port": 80} and read["bad-json"].auth is None
    assert read["bad-shape"].target == {"type": "port", "port": 80} and read["bad-shape"].auth is None
    assert read["blank-hash"].target == {"type": "unix", "path": "/s"} and read["blank-hash"].auth is None
    assert read["empty-auth"].target == {"type": "port", "port": 443} and read["empty-auth"].auth is None


async def test_rows_are_stored_as_the_legacy_code_stored_them(storage: Storage, db: Database) -> None:
    auth = {"enabled": True, "passwordHash": "$2a$10$abc"}
    await storage.expose_endpoints.create(endpoint("ep", "u", "dev-box.example.com", 5, auth=auth))
    await storage.expose_endpoints.create(
        endpoint("sock", "u", "x.ts.net", 6, target={"type": "unix", "path": "/run/app.sock"}, mode="local-network")
    )
    rows = await stored_rows(db, "expose_endpoints", "id")
    assert [(row["target"], row["auth"]) for row in rows] == [
        ('{"type":"port","port":8080}', '{"enabled":true,"passwordHash":"$2a$10$abc"}'),
        ('{"type":"unix","path":"/run/app.sock"}', None),
    ]
    await storage.expose_endpoints.update("ep", auth=None)
    assert (await stored_rows(db, "expose_endpoints", "id"))[0]["auth"] is None
    with pytest.raises(LookupError, match=r"^Expose endpoint not found: nope$"):
        await storage.expose_endpoints.update("nope", auth=None)


async def test_update_refuses_an_unknown_field(storage: Storage) -> None:
    await storage.expose_endpoints.create(endpoint("ep", "u", "a.example.com"))
    with pytest.raises(TypeError, match=r"^Expose endpoint has no field 'colour'$"):
        await storage.expose_endpoints.update("ep", colour="red")  # type: ignore[call-arg]
    assert await storage.expose_endpoints.find_by_id("ep") == endpoint("ep", "u", "a.example.com")


async def write(repo: ExposeEndpointsRepository, index: int) -> None:
    """An update, an overwrite or a delete of "ep", by turn."""
    if index % 3 == 0:
        await repo.update("ep", provider=f"provider-{index}", updated_at=index)
    elif index % 3 == 1:
        await repo.create(endpoint("ep", "u", f"x{index}.example.com", index))
    else:
        await repo.delete("ep")


@pytest.mark.parametrize("load", ["find_all", "find_by_id"])
async def test_a_load_racing_a_write_leaves_the_cache_equal_to_the_file(db: Database, load: str) -> None:
    await ExposeEndpointsRepository(db).create(endpoint("other", "u", "b.example.com", 0))
    await ExposeEndpointsRepository(db).create(endpoint("ep", "u", "a.example.com"))
    for index in range(24):
        repo = ExposeEndpointsRepository(db)  # a fresh cache: the load misses and reads the file
        reading = repo.find_all() if load == "find_all" else repo.find_by_id("ep")
        if index % 2:
            await asyncio.gather(reading, write(repo, index))
        else:
            await asyncio.gather(write(repo, index), reading)
        assert_cache_matches(repo, {record.id: record for record in await ExposeEndpointsRepository(db).find_all()})
        if index % 3 == 2:
            await ExposeEndpointsRepository(db).create(endpoint("ep", "u", "a.example.com"))
