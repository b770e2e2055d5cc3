"""Exposes: publish a local port or unix socket under a domain, through a tunnel provider and the expose proxy.

Each endpoint belongs to a user, goes through one registered provider, in a mode the provider
supports (`public` or `local-network`), and may require a password. The password is 32 random
bytes in base64url; only its bcrypt hash (cost 10) is stored, and the password itself is handed
back once, by `create` or `update`, and never stored or logged.

`start()` starts the proxy and activates every stored endpoint: a tunnel from its provider and a
route in the proxy. An endpoint whose provider is not registered, or no longer supports its mode,
stays dormant until its provider is registered. When a provider hands back another domain than
the stored one, the new domain is stored. `stop()` closes every tunnel and the proxy.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import dataclasses
import enum
import logging
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import bcrypt

from daycare.engine.expose_providers import (
    EXPOSE_MODES,
    ExposeCapabilities,
    ExposeProviderInfo,
    ExposeTunnelProvider,
)
from daycare.engine.expose_proxy import AUTH_CACHE_MS, ExposeProxy
from daycare.engine.timing import Clock, now_ms
from daycare.storage.identifiers import cuid_create
from daycare.storage.json_values import FrozenDict
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.expose_endpoints import (
    ExposeEndpointRecord,
    ExposeEndpointsRepository,
    expose_domain_normalize,
    expose_target_parse,
)

log = logging.getLogger("daycare.engine.exposes")

EXPOSE_PASSWORD_BYTES = 32
EXPOSE_BCRYPT_COST = 10
# The proxy listens on the loopback address, on a free port unless one is configured; providers
# are told the port when they open a tunnel.
EXPOSE_PROXY_HOST = "127.0.0.1"
EXPOSE_PROXY_PORT = 0


@dataclass(frozen=True, slots=True)
class ExposeResult:
    """An endpoint after `create` or `update`, with its new password when one was made (shown once)."""

    endpoint: ExposeEndpointRecord
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class _Provider:
    instance_id: str
    domain: str
    plugin: ExposeTunnelProvider

    @property
    def capabilities(self) -> ExposeCapabilities:
        return self.plugin.capabilities


def _password_create() -> tuple[str, str]:
    """A new password (32 random bytes, base64url without padding) and its bcrypt hash."""
    password = base64.urlsafe_b64encode(secrets.token_bytes(EXPOSE_PASSWORD_BYTES)).rstrip(b"=").decode()
    password_hash = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=EXPOSE_BCRYPT_COST)).decode()
    return password, password_hash


async def _auth_create() -> tuple[str, FrozenDict]:
    # bcrypt at cost 10 takes tens of milliseconds: keep it off the event loop.
    password, password_hash = await asyncio.to_thread(_password_create)
    return password, FrozenDict(enabled=True, passwordHash=password_hash)


def _password_hash(auth: Mapping[str, Any] | None) -> str | None:
    return None if auth is None else str(auth["passwordHash"])


class _Keep(enum.Enum):
    # Activation keeps the stored password hash unless given another one (None included).
    HASH = 0


def _mode_parse(mode: str) -> str:
    if mode not in EXPOSE_MODES:
        raise ValueError(f"Invalid expose mode: {mode!r} (expected public or local-network)")
    return mode


class Exposes:
    """Every endpoint in memory after `start()`, written through to `expose_endpoints`; one lock for all changes."""

    def __init__(
        self,
        *,
        expose_endpoints: ExposeEndpointsRepository,
        providers: Iterable[ExposeTunnelProvider] = (),
        clock: Clock = now_ms,
        proxy_host: str = EXPOSE_PROXY_HOST,
        proxy_port: int = EXPOSE_PROXY_PORT,
        auth_cache_ms: int = AUTH_CACHE_MS,
    ) -> None:
        """Registers `providers` now (as `register_provider` does); the proxy will listen on `proxy_host:proxy_port`."""
        self._repository = expose_endpoints
        self._clock = clock
        self._proxy = ExposeProxy(host=proxy_host, port=proxy_port, clock=clock, auth_cache_ms=auth_cache_ms)
        self._providers: dict[str, _Provider] = {}
        self._endpoints: dict[str, ExposeEndpointRecord] = {}
        # Endpoint id -> the domain its live tunnel and route use; an endpoint not here is dormant.
        self._active: dict[str, str] = {}
        self._lock = asyncio.Lock()
        self._started = False
        for provider in providers:
            self._provider_add(provider)

    @property
    def proxy(self) -> ExposeProxy:
        return self._proxy

    @property
    def proxy_port(self) -> int | None:
        """The port the proxy listens on; None until started."""
        return self._proxy.port

    async def start(self) -> None:
        """Starts the proxy, loads every stored endpoint and activates each (a second call does nothing).

        An activation that fails (a provider error, an invalid domain) fails the start; `stop()` then
        closes what was opened.
        """
        async with self._lock:
            if self._started:
                return
            await self._proxy.start()
            self._started = True
            self._endpoints = {record.id: record for record in await self._repository.find_all()}
            for endpoint_id in list(self._endpoints):
                await self._endpoint_activate(endpoint_id)

    async def stop(self) -> None:
        """Closes every tunnel and route, then the proxy; endpoints stay stored."""
        async with self._lock:
            if not self._started:
                return
            try:
                for endpoint_id in list(self._active):
                    await self._endpoint_deactivate(endpoint_id)
            finally:
                await self._proxy.stop()
                self._started = False

    async def register_provider(self, provider: ExposeTunnelProvider) -> None:
        """Adds a provider, then activates its dormant endpoints when started.

        Raises ValueError for a blank instance id, a second provider with the same id, or an invalid domain.
        """
        async with self._lock:
            instance_id = self._provider_add(provider)
            if not self._started:
                return
            for endpoint in builtins.list(self._endpoints.values()):
                if endpoint.provider == instance_id and endpoint.id not in self._active:
                    await self._endpoint_activate(endpoint.id)

    async def unregister_provider(self, instance_id: str) -> None:
        """Closes the tunnels of the provider's endpoints (which stay stored, dormant) and drops the provider."""
        async with self._lock:
            provider_id = instance_id.strip()
            if not provider_id:
                return
            for endpoint in builtins.list(self._endpoints.values()):
                if endpoint.provider == provider_id:
                    await self._endpoint_deactivate(endpoint.id)
            self._providers.pop(provider_id, None)

    def list_providers(self) -> builtins.list[ExposeProviderInfo]:
        """The registered providers by instance id."""
        return [
            ExposeProviderInfo(provider.instance_id, provider.domain, provider.capabilities)
            for provider in sorted(self._providers.values(), key=lambda provider: provider.instance_id)
        ]

    async def create(
        self,
        ctx: Context,
        *,
        target: Mapping[str, Any],
        mode: str,
        authenticated: bool,
        provider: str | None = None,
    ) -> ExposeResult:
        """Opens a tunnel, routes its domain to `target` and stores the endpoint for the context's user.

        `target` is `{type: "port", port}` or `{type: "unix", path}`. Without `provider`, the only
        registered one is used. Any failure closes the route and the tunnel again and stores nothing.
        """
        parsed_target = expose_target_parse(dict(target))
        parsed_mode = _mode_parse(mode)
        async with self._lock:
            proxy_port = self._proxy.port
            if not self._started or proxy_port is None:
                raise RuntimeError("Expose module is not started.")
            selected = self._provider_select(provider)
            if not selected.capabilities.supports(parsed_mode):
                raise ValueError(f"Expose provider {selected.instance_id} does not support {parsed_mode} mode.")
            password, auth = await _auth_create() if authenticated else (None, None)
            now = self._clock()
            endpoint_id = cuid_create()
            tunnel_domain: str | None = None
            domain: str | None = None
            try:
                tunnel_domain = await selected.plugin.tunnel_create(proxy_port, parsed_mode, ctx.user_id)
                domain = expose_domain_normalize(tunnel_domain)
                record = ExposeEndpointRecord(
                    id=endpoint_id,
                    user_id=ctx.user_id,
                    target=parsed_target,
                    provider=selected.instance_id,
                    domain=domain,
                    mode=parsed_mode,
                    auth=auth,
                    created_at=now,
                    updated_at=now,
                )
                self._proxy.route_add(domain, parsed_target, _password_hash(auth))
                self._active[endpoint_id] = domain
                await self._repository.create(record)
            except BaseException:
                await self._rollback(endpoint_id, selected, tunnel_domain, domain, "create")
                raise
            self._endpoints[endpoint_id] = record
            log.info("expose %s created: %s via %s (%s)", endpoint_id, domain, selected.instance_id, parsed_mode)
            return ExposeResult(record, password)

    async def update(self, ctx: Context, endpoint_id: str, *, authenticated: bool) -> ExposeResult:
        """Turns the password on (a new one) or off.

        Works while the provider is unavailable (the endpoint stays dormant); a dormant endpoint whose
        provider is back is activated first, with the new password. Raises LookupError
        ("Expose endpoint not found: <id>") for an unknown endpoint or one of another user.
        """
        async with self._lock:
            self._owned(ctx, endpoint_id)
            password, auth = await _auth_create() if authenticated else (None, None)
            domain = self._active.get(endpoint_id)
            if domain is None and self._started:
                await self._endpoint_activate(endpoint_id, password_hash=_password_hash(auth))
                domain = self._active.get(endpoint_id)
            current = self._owned(ctx, endpoint_id)
            updated = dataclasses.replace(current, auth=auth, updated_at=self._clock())
            if domain is not None:
                self._proxy.route_update(domain, _password_hash(auth))
            try:
                await self._repository.update(
                    endpoint_id,
                    user_id=updated.user_id,
                    target=updated.target,
                    provider=updated.provider,
                    domain=updated.domain,
                    mode=updated.mode,
                    auth=updated.auth,
                    created_at=updated.created_at,
                    updated_at=updated.updated_at,
                )
            except BaseException:
                # The stored auth is still the old one: so is the route.
                if domain is not None:
                    self._proxy.route_update(domain, _password_hash(current.auth))
                raise
            self._endpoints[endpoint_id] = updated
            log.info("expose %s updated: authenticated=%s", endpoint_id, authenticated)
            return ExposeResult(updated, password)

    async def remove(self, ctx: Context, endpoint_id: str) -> None:
        """Closes the endpoint's tunnel and route and deletes it; LookupError as in `update`."""
        async with self._lock:
            endpoint = self._owned(ctx, endpoint_id)
            await self._endpoint_deactivate(endpoint.id)
            await self._repository.delete(endpoint.id)
            del self._endpoints[endpoint.id]
            log.info("expose %s removed: %s", endpoint.id, endpoint.domain)

    def list(self, ctx: Context) -> builtins.list[ExposeEndpointRecord]:
        """The context's user's endpoints, oldest first."""
        return [endpoint for endpoint in self.list_all() if endpoint.user_id == ctx.user_id]

    def list_all(self) -> builtins.list[ExposeEndpointRecord]:
        """Every endpoint, oldest first."""
        return sorted(self._endpoints.values(), key=lambda endpoint: (endpoint.created_at, endpoint.id))

    def active_domain(self, endpoint_id: str) -> str | None:
        """The domain the endpoint is served under now; None while it is dormant."""
        return self._active.get(endpoint_id)

    def _provider_add(self, provider: ExposeTunnelProvider) -> str:
        instance_id = provider.instance_id.strip()
        if not instance_id:
            raise ValueError("Expose provider instanceId is required.")
        if instance_id in self._providers:
            raise ValueError(f"Expose provider already registered: {instance_id}")
        self._providers[instance_id] = _Provider(instance_id, expose_domain_normalize(provider.domain), provider)
        return instance_id

    def _provider_select(self, requested: str | None) -> _Provider:
        requested_id = (requested or "").strip()
        if requested_id:
            selected = self._providers.get(requested_id)
            if selected is None:
                raise LookupError(f"Expose provider not found: {requested_id}")
            return selected
        if not self._providers:
            raise ValueError("No expose tunnel providers are configured.")
        if len(self._providers) > 1:
            raise ValueError("Multiple expose providers are configured. Specify provider.")
        return next(iter(self._providers.values()))

    def _owned(self, ctx: Context, endpoint_id: str) -> ExposeEndpointRecord:
        endpoint = self._endpoints.get(endpoint_id)
        if endpoint is None or endpoint.user_id != ctx.user_id:
            raise LookupError(f"Expose endpoint not found: {endpoint_id}")
        return endpoint

    async def _endpoint_activate(
        self, endpoint_id: str, password_hash: str | Literal[_Keep.HASH] | None = _Keep.HASH
    ) -> None:
        """Opens the tunnel and route of a dormant endpoint; stores the domain when the provider changed it.

        A given `password_hash` (None: no auth) is routed instead of the stored one. Skips (with a warning) an
        endpoint whose provider is not registered or does not support its mode; raises when the
        provider or the domain fails, after closing what it opened.
        """
        proxy_port = self._proxy.port
        endpoint = self._endpoints.get(endpoint_id)
        if not self._started or proxy_port is None or endpoint is None or endpoint_id in self._active:
            return
        provider = self._providers.get(endpoint.provider)
        if provider is None:
            log.warning("expose %s stays dormant: provider %s unavailable", endpoint_id, endpoint.provider)
            return
        if not provider.capabilities.supports(endpoint.mode):
            log.warning("expose %s stays dormant: %s lacks mode %s", endpoint_id, provider.instance_id, endpoint.mode)
            return
        if password_hash is _Keep.HASH:
            password_hash = _password_hash(endpoint.auth)
        tunnel_domain: str | None = None
        domain: str | None = None
        try:
            tunnel_domain = await provider.plugin.tunnel_create(proxy_port, endpoint.mode, endpoint.user_id)
            domain = expose_domain_normalize(tunnel_domain)
            self._proxy.route_add(domain, endpoint.target, password_hash)
            self._active[endpoint_id] = domain
            if endpoint.domain != domain:
                updated_at = self._clock()
                await self._repository.update(endpoint_id, domain=domain, updated_at=updated_at)
                self._endpoints[endpoint_id] = dataclasses.replace(endpoint, domain=domain, updated_at=updated_at)
        except BaseException:
            await self._rollback(endpoint_id, provider, tunnel_domain, domain, "activation")
            raise

    async def _endpoint_deactivate(self, endpoint_id: str) -> None:
        """Closes the endpoint's tunnel (a provider error is logged, not raised) and removes its route."""
        domain = self._active.get(endpoint_id)
        endpoint = self._endpoints.get(endpoint_id)
        if domain is None:
            return
        provider = None if endpoint is None else self._providers.get(endpoint.provider)
        if provider is not None:
            try:
                await provider.plugin.tunnel_destroy(domain)
            except Exception:
                log.exception("expose %s: closing the tunnel %s failed", endpoint_id, domain)
        self._proxy.route_remove(domain)
        del self._active[endpoint_id]

    async def _rollback(
        self, endpoint_id: str, provider: _Provider, tunnel_domain: str | None, domain: str | None, step: str
    ) -> None:
        """Undoes a half-done activation or create: the route, then the tunnel (as the provider named it)."""
        if domain is not None:
            self._proxy.route_remove(domain)
            self._active.pop(endpoint_id, None)
        destroy_domain = tunnel_domain if tunnel_domain is not None else domain
        if destroy_domain is None:
            return
        try:
            await provider.plugin.tunnel_destroy(destroy_domain)
        except Exception:
            log.exception("expose %s: %s rollback failed to close the tunnel %s", endpoint_id, step, destroy_domain)
