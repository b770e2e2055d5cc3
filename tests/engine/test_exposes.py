"""Exposes: the legacy exposes.spec, exposeProxy.spec and exposeTypes.spec tests, and real HTTP through the proxy.

Requests go from aiohttp's client through the real proxy (and the local provider's loopback
ports) to a real aiohttp server; rows are read back with the test's own client (sqlite3 or asyncpg).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest
from aiohttp import web

from daycare.engine import expose_proxy
from daycare.engine.expose_providers import ExposeCapabilities, LocalExposeProvider
from daycare.engine.expose_proxy import BasicAuthCheck, ExposeProxy, headers_forwardable, host_normalize
from daycare.engine.exposes import Exposes
from daycare.storage.db.database import database_close, database_open
from daycare.storage.facade import Storage
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.expose_endpoints import (
    ExposeEndpointRecord,
    ExposeEndpointsRepository,
    expose_domain_normalize,
    expose_target_parse,
)
from tests.engine.helpers import FakeTime, location_dicts

USER = Context("user-1")
OTHER = Context("user-2")


class ScriptedProvider:
    """A tunnel provider that hands out the given domains in order and records its calls."""

    def __init__(
        self,
        instance_id: str = "provider-a",
        domains: tuple[str, ...] = (),
        *,
        domain: str = "a.example.com",
        public: bool = True,
        local_network: bool = True,
    ) -> None:
        self.instance_id = instance_id
        self.domain = domain
        self.capabilities = ExposeCapabilities(public=public, local_network=local_network)
        self.pending = list(domains)
        self.created: list[tuple[int, str, str]] = []
        self.destroyed: list[str] = []

    async def tunnel_create(self, proxy_port: int, mode: str, user_id: str) -> str:
        self.created.append((proxy_port, mode, user_id))
        if not self.pending:
            raise RuntimeError("No pending domain configured for test provider")
        return self.pending.pop(0)

    async def tunnel_destroy(self, domain: str) -> None:
        self.destroyed.append(domain)


@dataclass
class Target:
    """A local HTTP server that records what reached it."""

    port: int
    seen: list[dict[str, Any]] = field(default_factory=list)


async def target_handle(target: Target, request: web.Request) -> web.StreamResponse:
    body = await request.read()
    target.seen.append(
        {"method": request.method, "path": request.raw_path, "headers": request.headers.copy(), "body": body}
    )
    if request.path == "/echo":
        return web.Response(body=body, content_type=request.content_type)
    if request.path == "/cookies":
        response = web.Response(status=418, reason="I'm a teapot", text="cookies")
        response.headers.add("Set-Cookie", "a=1")
        response.headers.add("Set-Cookie", "b=2")
        response.headers["X-Target"] = "yes"
        return response
    if request.path == "/redirect":
        return web.Response(status=302, headers={"Location": "/elsewhere"})
    if request.path == "/stream":
        response = web.StreamResponse()
        await response.prepare(request)
        for index in range(3):
            await response.write(f"part{index};".encode())
        await response.write_eof()
        return response
    return web.Response(text=f"{request.method}:{request.raw_path}")


@asynccontextmanager
async def target_serve(unix_path: str | None = None) -> AsyncIterator[Target]:
    target = Target(port=0)

    async def handle(request: web.Request) -> web.StreamResponse:
        return await target_handle(target, request)

    app = web.Application(client_max_size=64 * 2**20)
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        if unix_path is None:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            target.port = int(runner.addresses[0][1])
        else:
            await web.UnixSite(runner, unix_path).start()
        yield target
    finally:
        await runner.cleanup()


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    async with target_serve() as served:
        yield served


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A folder with a short path: a unix socket path must stay under about 100 bytes."""
    path = Path(tempfile.mkdtemp(prefix="dc-expose-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def services() -> AsyncIterator[list[Exposes]]:
    """Exposes built by a test, stopped at the end whatever happened."""
    built: list[Exposes] = []
    yield built
    for exposes in built:
        await exposes.stop()


def exposes_build(services: list[Exposes], storage: Storage, *providers: Any, **options: Any) -> Exposes:
    exposes = Exposes(expose_endpoints=storage.expose_endpoints, providers=providers, **options)
    services.append(exposes)
    return exposes


@asynccontextmanager
async def storage_reopen(database_url: str) -> AsyncIterator[Storage]:
    """The same database through a new connection and new repositories (as after a restart)."""
    db = await database_open(database_url)
    try:
        yield Storage.from_database(db)
    finally:
        await database_close(db)


def basic(user: str, password: str) -> str:
    """An HTTP Basic Authorization header value."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def rows(database_url: str) -> list[dict[str, Any]]:
    """The stored endpoints, read with the test's own client."""
    return await location_dicts(database_url, "SELECT * FROM expose_endpoints ORDER BY created_at, id")


async def via_proxy(
    http: aiohttp.ClientSession,
    exposes: Exposes,
    domain: str,
    path: str = "/",
    *,
    method: str = "GET",
    password: str | None = None,
    **options: Any,
) -> tuple[int, str, Any]:
    """One request to the proxy's port with `domain` as Host; (status, body, headers)."""
    headers = {"Host": domain, **options.pop("headers", {})}
    if password is not None:
        headers["Authorization"] = basic("daycare", password)
    url = f"http://127.0.0.1:{exposes.proxy_port}{path}"
    async with http.request(method, url, headers=headers, allow_redirects=False, **options) as response:
        return response.status, await response.text(), response.headers


# The legacy exposes.spec tests.


async def test_supports_create_update_remove_list_lifecycle(
    storage: Storage, database_url: str, services: list[Exposes]
) -> None:
    """Legacy: "supports create/update/remove/list lifecycle"."""
    provider = ScriptedProvider(domains=("ep1.a.example.com",))
    exposes = exposes_build(services, storage, provider)
    await exposes.start()

    created = await exposes.create(USER, target={"type": "port", "port": 3000}, mode="public", authenticated=True)
    assert created.endpoint.provider == "provider-a"
    assert created.endpoint.domain == "ep1.a.example.com"
    assert created.endpoint.user_id == "user-1"
    assert created.endpoint.auth is not None and created.password
    assert provider.created == [(exposes.proxy_port, "public", "user-1")]
    assert [endpoint.id for endpoint in exposes.list(USER)] == [created.endpoint.id]

    disabled = await exposes.update(USER, created.endpoint.id, authenticated=False)
    assert disabled.endpoint.auth is None and disabled.password is None
    assert (await rows(database_url))[0]["auth"] is None

    enabled = await exposes.update(USER, created.endpoint.id, authenticated=True)
    assert enabled.endpoint.auth is not None and enabled.password
    stored_auth = json.loads((await rows(database_url))[0]["auth"])
    assert stored_auth["enabled"] is True
    assert stored_auth["passwordHash"] != enabled.password
    assert stored_auth["passwordHash"] == enabled.endpoint.auth["passwordHash"]
    assert bcrypt.checkpw(enabled.password.encode(), stored_auth["passwordHash"].encode())

    await exposes.remove(USER, created.endpoint.id)
    assert exposes.list(USER) == []
    assert provider.destroyed == ["ep1.a.example.com"]
    assert await rows(database_url) == []
    await exposes.stop()


async def test_selects_providers_and_errors_when_ambiguous(storage: Storage, services: list[Exposes]) -> None:
    """Legacy: "selects providers and errors when ambiguous"."""
    exposes = exposes_build(services, storage)
    port_target = {"type": "port", "port": 3001}
    with pytest.raises(RuntimeError, match="^Expose module is not started.$"):
        await exposes.create(USER, target=port_target, mode="public", authenticated=False)
    await exposes.start()

    with pytest.raises(ValueError, match="^No expose tunnel providers are configured.$"):
        await exposes.create(USER, target=port_target, mode="public", authenticated=False)

    await exposes.register_provider(ScriptedProvider("provider-a", ("a-1.example.com",)))
    created = await exposes.create(USER, target=port_target, mode="public", authenticated=False)
    assert created.endpoint.provider == "provider-a"

    await exposes.register_provider(ScriptedProvider("provider-b", ("b-1.example.com",), domain="b.example.com"))
    with pytest.raises(ValueError, match="^Multiple expose providers are configured. Specify provider.$"):
        await exposes.create(USER, target=port_target, mode="public", authenticated=False)
    with pytest.raises(LookupError, match="^Expose provider not found: missing-provider$"):
        await exposes.create(USER, target=port_target, mode="public", authenticated=False, provider="missing-provider")

    # A named provider is trimmed, as the legacy input parser did.
    named = await exposes.create(USER, target=port_target, mode="public", authenticated=False, provider=" provider-b ")
    assert (named.endpoint.provider, named.endpoint.domain) == ("provider-b", "b-1.example.com")


async def test_provider_registration_and_mode_errors(storage: Storage, services: list[Exposes]) -> None:
    exposes = exposes_build(services, storage, ScriptedProvider("lan-only", ("x.example.com",), public=False))
    await exposes.start()
    with pytest.raises(ValueError, match="^Expose provider lan-only does not support public mode.$"):
        await exposes.create(USER, target={"type": "port", "port": 1}, mode="public", authenticated=False)
    with pytest.raises(ValueError, match="Invalid expose mode"):
        await exposes.create(USER, target={"type": "port", "port": 1}, mode="private", authenticated=False)
    with pytest.raises(ValueError, match="Invalid expose target"):
        await exposes.create(USER, target={"type": "port", "port": 0}, mode="local-network", authenticated=False)
    with pytest.raises(ValueError, match="^Expose provider instanceId is required.$"):
        await exposes.register_provider(ScriptedProvider("  "))
    with pytest.raises(ValueError, match="^Expose provider already registered: lan-only$"):
        await exposes.register_provider(ScriptedProvider(" lan-only "))
    with pytest.raises(ValueError, match="^Invalid expose domain: not a domain$"):
        await exposes.register_provider(ScriptedProvider("bad", domain="not a domain"))
    await exposes.register_provider(ScriptedProvider(" second ", domain="B.Example.COM"))
    assert [(p.instance_id, p.domain, p.capabilities.public) for p in exposes.list_providers()] == [
        ("lan-only", "a.example.com", False),
        ("second", "b.example.com", True),
    ]
    await exposes.unregister_provider(" second ")
    assert [p.instance_id for p in exposes.list_providers()] == ["lan-only"]


async def test_restores_endpoints_from_the_database_on_restart(
    storage: Storage, database_url: str, services: list[Exposes]
) -> None:
    """Legacy: "restores endpoints from disk on restart" (a new instance on the same database file)."""
    provider = ScriptedProvider(domains=("created.a.example.com", "restored.a.example.com"))
    first = exposes_build(services, storage, provider, clock=lambda: 1000)
    await first.start()
    created = await first.create(USER, target={"type": "port", "port": 3000}, mode="public", authenticated=False)
    await first.stop()
    assert provider.destroyed == ["created.a.example.com"]

    async with storage_reopen(database_url) as reopened:
        second = exposes_build(services, reopened, provider, clock=lambda: 2000)
        await second.start()
        listed = second.list_all()
        assert [(endpoint.id, endpoint.domain) for endpoint in listed] == [
            (created.endpoint.id, "restored.a.example.com")
        ]
        assert len(provider.created) == 2
        assert second.active_domain(created.endpoint.id) == "restored.a.example.com"
        assert [(row["domain"], row["updated_at"]) for row in await rows(database_url)] == [
            ("restored.a.example.com", 2000)
        ]
        await second.stop()


async def test_updates_endpoints_even_when_provider_is_unavailable(
    storage: Storage, database_url: str, services: list[Exposes], target: Target, http: aiohttp.ClientSession
) -> None:
    """Legacy: "updates endpoints even when provider is unavailable"; the new hash applies once the provider is back."""
    provider = ScriptedProvider(domains=("created.a.example.com", "back.a.example.com"))
    first = exposes_build(services, storage, provider)
    await first.start()
    created = await first.create(USER, target={"type": "port", "port": target.port}, mode="public", authenticated=False)
    await first.stop()

    async with storage_reopen(database_url) as reopened:
        second = exposes_build(services, reopened)
        await second.start()
        assert second.active_domain(created.endpoint.id) is None
        updated = await second.update(USER, created.endpoint.id, authenticated=True)
        assert updated.endpoint.auth is not None and updated.password
        assert (
            json.loads((await rows(database_url))[0]["auth"])["passwordHash"] == updated.endpoint.auth["passwordHash"]
        )

        await second.register_provider(provider)
        assert second.active_domain(created.endpoint.id) == "back.a.example.com"
        assert (await via_proxy(http, second, "back.a.example.com"))[0] == 401
        status, body, _ = await via_proxy(http, second, "back.a.example.com", "/x", password=updated.password)
        assert (status, body) == (200, "GET:/x")
        await second.stop()


async def test_rolls_back_tunnels_when_domain_normalization_fails(
    storage: Storage, database_url: str, services: list[Exposes]
) -> None:
    """Legacy: "rolls back tunnels when domain normalization fails" (on create, then on restore)."""
    create_fail = ScriptedProvider(domains=("https://broken.example.com",))
    exposes = exposes_build(services, storage, create_fail)
    await exposes.start()
    with pytest.raises(ValueError, match="Invalid expose domain"):
        await exposes.create(USER, target={"type": "port", "port": 3000}, mode="public", authenticated=False)
    assert create_fail.destroyed == ["https://broken.example.com"]
    assert exposes.list_all() == [] and await rows(database_url) == []
    await exposes.stop()

    first = exposes_build(services, storage, ScriptedProvider(domains=("created.a.example.com",)))
    await first.start()
    await first.create(USER, target={"type": "port", "port": 3001}, mode="public", authenticated=False)
    await first.stop()

    restore_fail = ScriptedProvider(domains=("https://broken-restore.example.com",))
    second = exposes_build(services, storage, restore_fail)
    with pytest.raises(ValueError, match="Invalid expose domain"):
        await second.start()
    assert restore_fail.destroyed == ["https://broken-restore.example.com"]
    await second.stop()
    assert [row["domain"] for row in await rows(database_url)] == ["created.a.example.com"]


async def test_keeps_the_reactivated_domain_when_update_triggers_tunnel_activation(
    storage: Storage, database_url: str, services: list[Exposes]
) -> None:
    """Legacy: "keeps the reactivated domain when update triggers tunnel activation"."""
    provider = ScriptedProvider(domains=("created.a.example.com", "reactivated.a.example.com"))
    exposes = exposes_build(services, storage, provider)
    await exposes.start()
    created = await exposes.create(USER, target={"type": "port", "port": 3000}, mode="public", authenticated=False)
    await exposes._endpoint_deactivate(created.endpoint.id)

    updated = await exposes.update(USER, created.endpoint.id, authenticated=True)
    assert updated.endpoint.domain == "reactivated.a.example.com"
    assert exposes.list(USER)[0].domain == "reactivated.a.example.com"
    assert (await rows(database_url))[0]["domain"] == "reactivated.a.example.com"


async def test_applies_new_auth_hash_when_update_reactivates_a_dormant_endpoint(
    storage: Storage,
    services: list[Exposes],
    target: Target,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Legacy: "applies new auth hash when update reactivates a dormant endpoint" (and through the proxy).

    The route must carry the new hash from the moment it exists, not only after the update's write.
    """
    provider = ScriptedProvider(domains=("created.a.example.com", "reactivated.a.example.com"))
    exposes = exposes_build(services, storage, provider)
    await exposes.start()
    port_target = {"type": "port", "port": target.port}
    created = await exposes.create(USER, target=port_target, mode="public", authenticated=False)
    assert (await via_proxy(http, exposes, "created.a.example.com"))[0] == 200
    await exposes._endpoint_deactivate(created.endpoint.id)
    assert (await via_proxy(http, exposes, "created.a.example.com"))[0] == 404
    added: list[tuple[str, str | None]] = []
    route_add = exposes.proxy.route_add

    def route_add_recorded(domain: str, target: Any, password_hash: str | None = None) -> None:
        added.append((domain, password_hash))
        route_add(domain, target, password_hash)

    monkeypatch.setattr(exposes.proxy, "route_add", route_add_recorded)

    updated = await exposes.update(USER, created.endpoint.id, authenticated=True)
    assert updated.endpoint.auth is not None and updated.password
    assert added == [("reactivated.a.example.com", updated.endpoint.auth["passwordHash"])]
    route = exposes.proxy.route_find("reactivated.a.example.com")
    assert route is not None and route.password_hash == updated.endpoint.auth["passwordHash"]
    assert (await via_proxy(http, exposes, "reactivated.a.example.com"))[0] == 401
    assert (await via_proxy(http, exposes, "reactivated.a.example.com", password=updated.password))[0] == 200


# Ownership, rollback and lifecycle beyond the legacy tests.


async def test_endpoints_of_another_user_read_as_not_found(storage: Storage, services: list[Exposes]) -> None:
    provider = ScriptedProvider(domains=("one.a.example.com", "two.a.example.com"))
    exposes = exposes_build(services, storage, provider)
    await exposes.start()
    mine = await exposes.create(USER, target={"type": "port", "port": 3000}, mode="public", authenticated=False)
    theirs = await exposes.create(OTHER, target={"type": "port", "port": 3001}, mode="public", authenticated=False)
    assert [endpoint.id for endpoint in exposes.list(USER)] == [mine.endpoint.id]
    # Both in the same millisecond is likely: list_all orders by (created_at, id), so compare as sets.
    assert {endpoint.id for endpoint in exposes.list_all()} == {mine.endpoint.id, theirs.endpoint.id}

    for operation in (
        exposes.update(USER, theirs.endpoint.id, authenticated=True),
        exposes.remove(USER, theirs.endpoint.id),
        exposes.remove(USER, "missing"),
    ):
        with pytest.raises(LookupError, match="^Expose endpoint not found: "):
            await operation
    assert exposes.list(OTHER)[0].auth is None
    assert provider.destroyed == []


async def test_a_failing_provider_leaves_nothing_behind(
    storage: Storage, database_url: str, services: list[Exposes], target: Target, http: aiohttp.ClientSession
) -> None:
    provider = ScriptedProvider(domains=())
    exposes = exposes_build(services, storage, provider)
    await exposes.start()
    with pytest.raises(RuntimeError, match="No pending domain"):
        await exposes.create(USER, target={"type": "port", "port": target.port}, mode="public", authenticated=True)
    assert provider.destroyed == [] and exposes.list_all() == [] and await rows(database_url) == []


class CreateFailingRepository(ExposeEndpointsRepository):
    """The real repository, except that storing a new endpoint fails (a full disk, a lost connection)."""

    async def create(self, record: ExposeEndpointRecord) -> None:
        raise OSError("disk full")


async def test_a_failed_write_rolls_back_the_route_and_the_tunnel(
    storage: Storage, database_url: str, services: list[Exposes], target: Target, http: aiohttp.ClientSession
) -> None:
    provider = ScriptedProvider(domains=("doomed.a.example.com",))
    exposes = Exposes(expose_endpoints=CreateFailingRepository(storage.db), providers=[provider])
    services.append(exposes)
    await exposes.start()
    with pytest.raises(OSError, match="disk full"):
        await exposes.create(USER, target={"type": "port", "port": target.port}, mode="public", authenticated=False)
    assert provider.destroyed == ["doomed.a.example.com"]
    assert exposes.list_all() == [] and await rows(database_url) == []
    assert (await via_proxy(http, exposes, "doomed.a.example.com"))[0] == 404
    assert target.seen == []


async def test_providers_registered_later_activate_and_unregistered_ones_deactivate(
    storage: Storage, database_url: str, services: list[Exposes], target: Target, http: aiohttp.ClientSession
) -> None:
    provider = ScriptedProvider(domains=("one.a.example.com", "two.a.example.com"))
    exposes = exposes_build(services, storage, provider)
    await exposes.start()
    created = await exposes.create(
        USER, target={"type": "port", "port": target.port}, mode="local-network", authenticated=False
    )
    await exposes.unregister_provider("provider-a")
    assert provider.destroyed == ["one.a.example.com"]
    assert exposes.active_domain(created.endpoint.id) is None
    assert (await via_proxy(http, exposes, "one.a.example.com"))[0] == 404
    assert len(await rows(database_url)) == 1

    await exposes.register_provider(provider)
    assert exposes.active_domain(created.endpoint.id) == "two.a.example.com"
    assert (await via_proxy(http, exposes, "two.a.example.com", "/back"))[1] == "GET:/back"


async def test_stop_closes_the_proxy_and_every_tunnel(
    storage: Storage, services: list[Exposes], target: Target, http: aiohttp.ClientSession
) -> None:
    local = LocalExposeProvider()
    exposes = exposes_build(services, storage, local)
    await exposes.start()
    proxy_port = exposes.proxy_port
    created = await exposes.create(
        USER, target={"type": "port", "port": target.port}, mode="local-network", authenticated=False
    )
    address = local.address(created.endpoint.domain)
    assert address is not None
    async with http.get(address) as response:
        assert response.status == 200
    await exposes.stop()
    assert exposes.proxy_port is None and local.address(created.endpoint.domain) is None
    for url in (address, f"http://127.0.0.1:{proxy_port}/"):
        with pytest.raises(aiohttp.ClientConnectionError):
            async with http.get(url):
                pass
    await exposes.stop()


# Passwords.


async def test_passwords_are_32_random_bytes_and_only_their_cost_10_hash_is_stored(
    storage: Storage, database_url: str, services: list[Exposes], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    exposes = exposes_build(services, storage, ScriptedProvider(domains=("p.a.example.com",)))
    await exposes.start()
    created = await exposes.create(USER, target={"type": "port", "port": 3000}, mode="public", authenticated=True)
    updated = await exposes.update(USER, created.endpoint.id, authenticated=True)
    for result in (created, updated):
        password = result.password
        assert password is not None and len(password) == 43
        assert set(password) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        assert password not in repr(result)
        assert password not in caplog.text
    assert created.password != updated.password
    row = (await rows(database_url))[0]
    assert created.password not in json.dumps(row) and updated.password not in json.dumps(row)
    password_hash = json.loads(row["auth"])["passwordHash"]
    assert password_hash.startswith("$2b$10$")
    assert updated.password is not None and bcrypt.checkpw(updated.password.encode(), password_hash.encode())


async def test_successful_checks_are_cached_briefly_and_failures_never(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    real = expose_proxy._password_matches

    def counted(password: bytes, password_hash: str) -> bool:
        calls.append(password)
        return real(password, password_hash)

    monkeypatch.setattr(expose_proxy, "_password_matches", counted)
    time = FakeTime()
    check = BasicAuthCheck(clock=time.now, ttl_ms=60_000)
    password_hash = bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=4)).decode()
    right = basic("daycare", "secret")
    wrong = basic("daycare", "guess")

    assert await check.check(right, password_hash) is True
    assert await check.check(right, password_hash) is True
    assert len(calls) == 1 and len(check) == 1
    assert await check.check(wrong, password_hash) is False
    assert await check.check(wrong, password_hash) is False
    assert len(calls) == 3 and len(check) == 1

    time.now_ms += 60_000
    assert await check.check(right, password_hash) is True
    assert len(calls) == 4

    # Another hash (a new password, even the same one) never matches an old entry.
    other_hash = bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=4)).decode()
    assert await check.check(right, other_hash) is True
    assert len(calls) == 5

    for header in (None, "", "Bearer x", "Basic", "Basic !!!", basic("admin", "secret")):
        assert await check.check(header, password_hash) is False
    assert await check.check(basic("daycare", "x" * 100), password_hash) is False
    assert await check.check(right, "not a bcrypt hash") is False


# End to end through the local provider: a loopback port, the proxy, a local target.


async def test_the_right_password_reaches_the_target_and_no_other_does(
    storage: Storage, services: list[Exposes], target: Target, http: aiohttp.ClientSession
) -> None:
    local = LocalExposeProvider()
    exposes = exposes_build(services, storage, local)
    await exposes.start()
    created = await exposes.create(
        USER, target={"type": "port", "port": target.port}, mode="local-network", authenticated=True
    )
    assert created.password is not None
    domain = created.endpoint.domain
    address = local.address(domain)
    assert address is not None and domain == f"{address.rsplit(':', 1)[1]}.daycare.localhost"

    async with http.get(
        f"{address}/page?q=1", headers={"Authorization": basic("daycare", created.password)}
    ) as response:
        assert (response.status, await response.text()) == (200, "GET:/page?q=1")
    assert target.seen[-1]["headers"]["Host"] == domain
    assert "Authorization" not in target.seen[-1]["headers"]

    async with http.get(address) as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == 'Basic realm="daycare"'
    for auth in (basic("daycare", "wrong"), basic("someone", created.password)):
        async with http.get(address, headers={"Authorization": auth}) as response:
            assert response.status == 401
    assert len(target.seen) == 1

    # The proxy's own port serves the same route by Host.
    status, body, _ = await via_proxy(http, exposes, domain, "/direct", password=created.password)
    assert (status, body) == (200, "GET:/direct")
    assert (await via_proxy(http, exposes, domain))[0] == 401

    # Turning auth off lets requests through, with their own Authorization header.
    await exposes.update(USER, created.endpoint.id, authenticated=False)
    async with http.get(address, headers={"Authorization": "Bearer local-token"}) as response:
        assert response.status == 200
    assert target.seen[-1]["headers"]["Authorization"] == "Bearer local-token"


async def test_a_restart_restores_the_endpoint_with_its_password(
    storage: Storage, database_url: str, services: list[Exposes], target: Target, http: aiohttp.ClientSession
) -> None:
    first = exposes_build(services, storage, LocalExposeProvider())
    await first.start()
    created = await first.create(
        USER, target={"type": "port", "port": target.port}, mode="local-network", authenticated=True
    )
    assert created.password is not None
    await first.stop()

    async with storage_reopen(database_url) as reopened:
        local = LocalExposeProvider()
        second = exposes_build(services, reopened, local)
        await second.start()
        [restored] = second.list(USER)
        assert (restored.id, restored.auth) == (created.endpoint.id, created.endpoint.auth)
        address = local.address(restored.domain)
        assert address is not None and (await rows(database_url))[0]["domain"] == restored.domain
        async with http.get(address, headers={"Authorization": basic("daycare", created.password)}) as response:
            assert (response.status, await response.text()) == (200, "GET:/")
        async with http.get(address) as response:
            assert response.status == 401
        await second.stop()


async def test_the_local_provider_offers_only_the_local_network_mode(storage: Storage, services: list[Exposes]) -> None:
    exposes = exposes_build(services, storage, LocalExposeProvider())
    await exposes.start()
    with pytest.raises(ValueError, match="^Expose provider local does not support public mode.$"):
        await exposes.create(USER, target={"type": "port", "port": 3000}, mode="public", authenticated=False)


# The legacy exposeProxy.spec tests, and what a reverse proxy must pass through.


@pytest.fixture
async def proxy() -> AsyncIterator[ExposeProxy]:
    started = ExposeProxy()
    await started.start()
    yield started
    await started.stop()


async def proxy_get(
    http: aiohttp.ClientSession, proxy: ExposeProxy, host: str, path: str = "/", **options: Any
) -> aiohttp.ClientResponse:
    headers = {"Host": host, **options.pop("headers", {})}
    method = options.pop("method", "GET")
    return await http.request(
        method, f"http://127.0.0.1:{proxy.port}{path}", headers=headers, allow_redirects=False, **options
    )


async def test_routes_by_host_header_to_local_tcp_targets(
    proxy: ExposeProxy, target: Target, http: aiohttp.ClientSession
) -> None:
    """Legacy: "routes by host header to local TCP targets"."""
    proxy.route_add("app.example.com", {"type": "port", "port": target.port})
    async with await proxy_get(http, proxy, "APP.example.com:8080", "/health?check=1", method="POST") as response:
        assert (response.status, await response.text()) == (200, "POST:/health?check=1")
    async with await proxy_get(http, proxy, "other.example.com") as response:
        assert (response.status, await response.text()) == (404, "Expose route not found.")


async def test_forwards_json_request_bodies(proxy: ExposeProxy, target: Target, http: aiohttp.ClientSession) -> None:
    """Legacy: "forwards JSON request bodies"."""
    proxy.route_add("json.example.com", {"type": "port", "port": target.port})
    payload = json.dumps({"hello": "world"})
    async with await proxy_get(
        http,
        proxy,
        "json.example.com",
        "/echo",
        method="POST",
        data=payload,
        headers={"Content-Type": "application/json"},
    ) as response:
        assert (response.status, await response.text()) == (200, payload)
    assert target.seen[-1]["headers"]["Content-Type"] == "application/json"
    assert target.seen[-1]["headers"]["Content-Length"] == str(len(payload))


async def test_routes_requests_to_unix_socket_targets(
    proxy: ExposeProxy, short_dir: Path, http: aiohttp.ClientSession
) -> None:
    """Legacy: "routes requests to unix socket targets"."""
    socket_path = str(short_dir / "server.sock")
    async with target_serve(unix_path=socket_path) as unix_target:
        proxy.route_add("unix.example.com", expose_target_parse({"type": "unix", "path": socket_path}))
        async with await proxy_get(http, proxy, "unix.example.com", "/u") as response:
            assert (response.status, await response.text()) == (200, "GET:/u")
        assert len(unix_target.seen) == 1


async def test_enforces_basic_auth_when_configured(
    proxy: ExposeProxy, target: Target, http: aiohttp.ClientSession
) -> None:
    """Legacy: "enforces basic auth when configured"."""
    password_hash = bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=10)).decode()
    proxy.route_add("auth.example.com", {"type": "port", "port": target.port}, password_hash)
    async with await proxy_get(http, proxy, "auth.example.com") as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == 'Basic realm="daycare"'
    async with await proxy_get(
        http, proxy, "auth.example.com", headers={"Authorization": basic("daycare", "wrong")}
    ) as response:
        assert response.status == 401
    async with await proxy_get(
        http, proxy, "auth.example.com", headers={"Authorization": basic("daycare", "secret")}
    ) as response:
        assert response.status == 200
    assert "Authorization" not in target.seen[-1]["headers"]

    proxy.route_update("auth.example.com", None)
    async with await proxy_get(
        http, proxy, "auth.example.com", headers={"Authorization": "Bearer local-service-token"}
    ) as response:
        assert response.status == 200
    assert target.seen[-1]["headers"]["Authorization"] == "Bearer local-service-token"
    with pytest.raises(LookupError, match="^Expose proxy route not found: gone.example.com$"):
        proxy.route_update("gone.example.com", None)


async def test_a_target_that_is_down_gives_502(proxy: ExposeProxy, http: aiohttp.ClientSession) -> None:
    async with target_serve() as short_lived:
        port = short_lived.port
    proxy.route_add("down.example.com", {"type": "port", "port": port})
    async with await proxy_get(http, proxy, "down.example.com") as response:
        assert (response.status, await response.text()) == (502, "Expose upstream unavailable.")
    proxy.route_add("nosocket.example.com", {"type": "unix", "path": "/nonexistent/daycare.sock"})
    async with await proxy_get(http, proxy, "nosocket.example.com") as response:
        assert response.status == 502


async def test_passes_status_headers_and_streamed_bodies_but_not_hop_by_hop_headers(
    proxy: ExposeProxy, target: Target, http: aiohttp.ClientSession
) -> None:
    proxy.route_add("pass.example.com", {"type": "port", "port": target.port})
    async with await proxy_get(
        http,
        proxy,
        "pass.example.com",
        "/cookies",
        headers={"Connection": "keep-alive, X-Hop", "X-Hop": "1", "X-End": "2", "Keep-Alive": "timeout=5"},
    ) as response:
        assert (response.status, response.reason, await response.text()) == (418, "I'm a teapot", "cookies")
        assert response.headers.getall("Set-Cookie") == ["a=1", "b=2"]
        assert response.headers["X-Target"] == "yes"
    seen = target.seen[-1]["headers"]
    assert seen["X-End"] == "2" and seen["Host"] == "pass.example.com"
    assert "X-Hop" not in seen and "Keep-Alive" not in seen

    async with await proxy_get(http, proxy, "pass.example.com", "/redirect") as response:
        assert (response.status, response.headers["Location"]) == (302, "/elsewhere")
    async with await proxy_get(http, proxy, "pass.example.com", "/stream") as response:
        assert await response.text() == "part0;part1;part2;"

    # A large upload of unknown length streams through (chunked) and comes back whole.
    chunk = bytes(range(256)) * 256

    async def upload() -> AsyncIterator[bytes]:
        for _ in range(64):
            yield chunk
            await asyncio.sleep(0)

    async with await proxy_get(http, proxy, "pass.example.com", "/echo", method="PUT", data=upload()) as response:
        assert await response.read() == chunk * 64
    assert target.seen[-1]["headers"].get("Transfer-Encoding") == "chunked"
    async with await proxy_get(http, proxy, "pass.example.com", "/any", method="HEAD") as response:
        assert response.status == 200


def test_hop_by_hop_headers_and_hosts_are_normalised() -> None:
    headers = headers_forwardable(
        {"Connection": "close, X-Secret", "X-Secret": "s", "Transfer-Encoding": "chunked", "TE": "trailers", "A": "1"}
    )
    assert dict(headers) == {"A": "1"}
    assert host_normalize(" App.Example.com:8443 ") == "app.example.com"
    assert host_normalize("[::1]:80") == "[::1]:80"


# The legacy exposeTypes.spec tests (the parsers live with the repository).


def test_parses_valid_port_and_unix_targets() -> None:
    """Legacy: "parses valid port and unix targets"."""
    assert expose_target_parse({"type": "port", "port": 3000}) == {"type": "port", "port": 3000}
    assert expose_target_parse({"type": "unix", "path": "/tmp/app.sock"}) == {"type": "unix", "path": "/tmp/app.sock"}


def test_rejects_invalid_targets() -> None:
    """Legacy: "rejects invalid targets"."""
    for value in ({"type": "port", "port": 0}, {"type": "unix", "path": ""}, {"type": "port", "port": 1, "x": 1}):
        with pytest.raises(ValueError, match="Invalid expose target"):
            expose_target_parse(value)


def test_normalizes_valid_domains() -> None:
    """Legacy: "normalizes valid domains"."""
    assert expose_domain_normalize("APP.Example.COM") == "app.example.com"
    with pytest.raises(ValueError, match="Invalid expose domain"):
        expose_domain_normalize("invalid_domain")


def test_checks_mode_capability_support() -> None:
    """Legacy: "checks mode capability support"."""
    capabilities = ExposeCapabilities(public=True, local_network=False)
    assert capabilities.supports("public") is True
    assert capabilities.supports("local-network") is False
    assert ExposeCapabilities(public=True, local_network=True).supports("private") is False


async def test_a_target_that_breaks_mid_response_breaks_the_client_response(
    proxy: ExposeProxy, http: aiohttp.ClientSession
) -> None:
    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        # Chunked: without a length, only a cut connection tells the client that the body is incomplete.
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b"0123456789")
        assert request.transport is not None
        request.transport.close()
        return response

    runner = web.ServerRunner(web.Server(handle))
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        proxy.route_add("cut.example.com", {"type": "port", "port": int(runner.addresses[0][1])})
        async with await proxy_get(http, proxy, "cut.example.com") as response:
            assert response.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()
    finally:
        await runner.cleanup()
