"""Tunnel providers for Exposes: the plugin protocol, and `LocalExposeProvider`, which needs no cloud account.

A provider makes a domain lead to the expose proxy's port (`tunnel_create`) and takes it down
again (`tunnel_destroy`). The proxy then routes the domain to the endpoint's target.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from aiohttp import web
from yarl import URL

from daycare.engine.expose_proxy import SHUTDOWN_TIMEOUT_S, client_session_create, headers_forwardable, http_forward

log = logging.getLogger("daycare.engine.expose_providers")

# The modes an endpoint can ask for: reachable from the internet, or only from the local network.
EXPOSE_MODES = ("public", "local-network")


@dataclass(frozen=True, slots=True)
class ExposeCapabilities:
    """The modes a provider can serve."""

    public: bool
    local_network: bool

    def supports(self, mode: str) -> bool:
        if mode == "public":
            return self.public
        return mode == "local-network" and self.local_network


class ExposeTunnelProvider(Protocol):
    """A tunnel plugin: its instance id, its base domain, its modes, and its tunnels."""

    @property
    def instance_id(self) -> str: ...

    @property
    def domain(self) -> str: ...

    @property
    def capabilities(self) -> ExposeCapabilities: ...

    async def tunnel_create(self, proxy_port: int, mode: str, user_id: str) -> str:
        """Opens a tunnel from a new domain to the proxy at 127.0.0.1:`proxy_port`; returns the domain."""
        ...

    async def tunnel_destroy(self, domain: str) -> None:
        """Closes the tunnel of `domain`."""
        ...


@dataclass(frozen=True, slots=True)
class ExposeProviderInfo:
    """A registered provider as `Exposes.list_providers` shows it."""

    instance_id: str
    domain: str
    capabilities: ExposeCapabilities


@dataclass(slots=True)
class _LocalTunnel:
    runner: web.ServerRunner
    session: aiohttp.ClientSession
    port: int


class LocalExposeProvider:
    """Serves each endpoint on its own loopback port: `http://127.0.0.1:<port>/` reaches the endpoint.

    The tunnel's domain names that port, `<port>.daycare.localhost` (browsers and curl resolve
    `*.localhost` to the loopback address), and the tunnel forwards every request to the proxy
    with that domain as Host, so authentication and routing are the proxy's, as with any provider.
    Loopback is narrower than the local network, so the provider offers the `local-network` mode
    only. Ports are free ones chosen by the system, so an endpoint gets a new domain after a restart.
    """

    def __init__(
        self, instance_id: str = "local", *, host: str = "127.0.0.1", domain: str = "daycare.localhost"
    ) -> None:
        self.instance_id = instance_id
        self.domain = domain
        self.capabilities = ExposeCapabilities(public=False, local_network=True)
        self._host = host
        self._tunnels: dict[str, _LocalTunnel] = {}

    def address(self, domain: str) -> str | None:
        """`http://<host>:<port>` of the tunnel of `domain`, or None when it has none."""
        tunnel = self._tunnels.get(domain.strip().lower())
        return None if tunnel is None else f"http://{self._host}:{tunnel.port}"

    async def tunnel_create(self, proxy_port: int, mode: str, user_id: str) -> str:
        if not self.capabilities.supports(mode):
            raise ValueError(f"Expose provider {self.instance_id} does not support {mode} mode.")
        session = client_session_create()
        holder: list[str] = []

        async def forward(request: web.BaseRequest) -> web.StreamResponse:
            headers = headers_forwardable(request.headers)
            headers["Host"] = holder[0]
            url = URL(f"http://127.0.0.1:{proxy_port}{request.raw_path}", encoded=True)
            return await http_forward(request, session, url, headers)

        runner = web.ServerRunner(
            web.Server(forward, handler_cancellation=True, auto_decompress=False), shutdown_timeout=SHUTDOWN_TIMEOUT_S
        )
        try:
            await runner.setup()
            await web.TCPSite(runner, self._host, 0).start()
            port = int(runner.addresses[0][1])
        except BaseException:
            await runner.cleanup()
            await session.close()
            raise
        domain = f"{port}.{self.domain}"
        holder.append(domain)
        self._tunnels[domain] = _LocalTunnel(runner, session, port)
        log.info("local expose tunnel %s listens on %s:%d for user %s", domain, self._host, port, user_id)
        return domain

    async def tunnel_destroy(self, domain: str) -> None:
        tunnel = self._tunnels.pop(domain.strip().lower(), None)
        if tunnel is None:
            return
        try:
            await tunnel.runner.cleanup()
        finally:
            await tunnel.session.close()

    async def close(self) -> None:
        """Closes every tunnel still open."""
        for domain in list(self._tunnels):
            await self.tunnel_destroy(domain)
