"""ExposeProxy: the local HTTP reverse proxy in front of every exposed endpoint.

A request is routed by its Host header (lowercased, port dropped) to the endpoint's target, a
local TCP port or a unix socket. The method, path and query (as sent), headers (minus the
hop-by-hop ones), status and bodies pass through; bodies are streamed both ways and neither
side is decompressed. An unknown host gets 404, a target that cannot be reached 502.

An authenticated route wants HTTP Basic credentials `daycare:<password>`, checked against the
route's bcrypt hash; anything else gets 401 with `WWW-Authenticate: Basic realm="daycare"`. The
Authorization header of an authenticated route is not passed on to the target.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import secrets
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import bcrypt
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from daycare.engine.timing import Clock, now_ms
from daycare.storage.repositories.expose_endpoints import expose_domain_normalize

log = logging.getLogger("daycare.engine.expose_proxy")

# The user name of the Basic credentials; the password is the endpoint's.
EXPOSE_AUTH_USERNAME = "daycare"
EXPOSE_AUTH_CHALLENGE = 'Basic realm="daycare"'
# How long a successful credential check is remembered, and how many are.
AUTH_CACHE_MS = 60_000
AUTH_CACHE_SIZE = 1024
# bcrypt looks at no more than this many bytes of a password (and bcrypt 5 refuses longer ones).
_BCRYPT_MAX_BYTES = 72
# Headers that describe one connection, not the message (RFC 9110 section 7.6.1), plus the
# non-standard Proxy-Connection; the headers named in Connection are dropped as well. Expect is
# answered by this server itself, so it must not reach the target again.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
    }
)
# aiohttp's client adds these when a request lacks them; a proxy must send only what it was sent.
_CLIENT_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
# In-flight requests get this long to finish when the proxy stops.
SHUTDOWN_TIMEOUT_S = 2.0


def headers_forwardable(headers: Mapping[str, str]) -> CIMultiDict[str]:
    """The end-to-end headers of a message: the hop-by-hop ones and those named in Connection removed."""
    named = {
        token.strip().lower()
        for name, value in headers.items()
        if name.lower() == "connection"
        for token in value.split(",")
    }
    forwarded: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        lowered = name.lower()
        if lowered not in HOP_BY_HOP and lowered not in named:
            forwarded.add(name, value)
    return forwarded


def host_normalize(value: str) -> str:
    """The Host header trimmed, lowercased, without its port (an IPv6 literal is kept whole)."""
    normalized = value.strip().lower()
    if normalized.startswith("["):
        return normalized
    return normalized.split(":", 1)[0]


def client_session_create(connector: aiohttp.BaseConnector | None = None) -> aiohttp.ClientSession:
    """A client session for proxying: no cookie jar, no decompression, no headers of its own, no timeout but connect."""
    return aiohttp.ClientSession(
        connector=connector or aiohttp.TCPConnector(limit=0),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        skip_auto_headers=_CLIENT_AUTO_HEADERS,
        # A response may stream for as long as the target likes (server-sent events); only connecting is bounded.
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
    )


async def http_forward(
    request: web.BaseRequest, session: aiohttp.ClientSession, url: URL, headers: CIMultiDict[str]
) -> web.StreamResponse:
    """Sends `request` (its method and streamed body, with `headers`) to `url` and streams the answer back.

    Answers 502 when the target cannot be reached or fails before its status line.
    """
    body = request.content if request.body_exists else None
    try:
        upstream = await session.request(request.method, url, headers=headers, data=body, allow_redirects=False)
    except (aiohttp.ClientError, OSError, TimeoutError) as error:
        log.warning("expose target %s unavailable: %s", url.origin(), error)
        return web.Response(status=502, text="Expose upstream unavailable.")
    try:
        response = web.StreamResponse(
            status=upstream.status, reason=upstream.reason, headers=headers_forwardable(upstream.headers)
        )
        await response.prepare(request)
        try:
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            # The status is sent: cut the connection so the client sees a broken response, not a short one.
            log.warning("expose target %s failed mid-response: %s", url.origin(), error)
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write_eof()
        return response
    finally:
        upstream.release()


def _basic_credentials(authorization: str | None) -> bytes | None:
    """The decoded `user:password` bytes of a Basic Authorization header, or None."""
    if authorization is None:
        return None
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        return None
    try:
        return base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


class BasicAuthCheck:
    """Checks Basic credentials against bcrypt hashes, remembering successes for a short while.

    A bcrypt check at cost 10 takes about 60 ms, too slow for every request of a page. A success
    is remembered for `ttl_ms` (60 s by default, at most `size` of them) under an HMAC, with a key
    drawn at random for this process, of the route's hash and the credentials. That is safe
    because: only successes are kept, so a guess always pays the full bcrypt check; the key
    includes the hash, so a new password or disabled auth stops matching at once; the memory
    holds neither the password nor anything that can be checked against it without the key;
    and an entry lives one minute at most.
    """

    def __init__(self, *, clock: Clock = now_ms, ttl_ms: int = AUTH_CACHE_MS, size: int = AUTH_CACHE_SIZE) -> None:
        self._clock = clock
        self._ttl_ms = ttl_ms
        self._size = size
        self._key = secrets.token_bytes(32)
        # HMAC digest -> when it expires (ms), oldest first.
        self._passed: OrderedDict[bytes, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._passed)

    async def check(self, authorization: str | None, password_hash: str) -> bool:
        """Whether the header carries `daycare:<password>` for this bcrypt hash."""
        credentials = _basic_credentials(authorization)
        if credentials is None:
            return False
        user, separator, password = credentials.partition(b":")
        if not separator or user != EXPOSE_AUTH_USERNAME.encode():
            return False
        digest = hmac.new(self._key, password_hash.encode() + b"\0" + credentials, hashlib.sha256).digest()
        now = self._clock()
        expires = self._passed.get(digest)
        if expires is not None:
            if now < expires:
                return True
            del self._passed[digest]
        if not await asyncio.to_thread(_password_matches, password, password_hash):
            return False
        self._passed[digest] = now + self._ttl_ms
        self._passed.move_to_end(digest)
        while len(self._passed) > self._size:
            self._passed.popitem(last=False)
        return True


def _password_matches(password: bytes, password_hash: str) -> bool:
    if len(password) > _BCRYPT_MAX_BYTES:
        return False
    try:
        return bcrypt.checkpw(password, password_hash.encode())
    except ValueError:
        # A malformed stored hash matches nothing.
        return False


@dataclass(frozen=True, slots=True)
class ExposeRoute:
    """Where a domain leads (`{type: "port", port}` or `{type: "unix", path}`) and its bcrypt hash, if any."""

    target: Mapping[str, Any]
    password_hash: str | None


class ExposeProxy:
    """The reverse proxy: routes by domain, started and stopped by the Exposes service."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock = now_ms,
        auth_cache_ms: int = AUTH_CACHE_MS,
    ) -> None:
        """Listens on `host:port` once started (port 0: a free port, see `port`)."""
        self._host = host
        self._requested_port = port
        self._auth = BasicAuthCheck(clock=clock, ttl_ms=auth_cache_ms)
        self._routes: dict[str, ExposeRoute] = {}
        self._runner: web.ServerRunner | None = None
        self._port: int | None = None
        self._tcp_session: aiohttp.ClientSession | None = None
        # One pooled session per unix socket path, made on first use and closed by `stop()`.
        self._unix_sessions: dict[str, aiohttp.ClientSession] = {}

    @property
    def port(self) -> int | None:
        """The port the proxy listens on; None while stopped."""
        return self._port

    @property
    def auth(self) -> BasicAuthCheck:
        return self._auth

    async def start(self) -> int:
        """Starts listening (a second call does nothing) and returns the port."""
        if self._port is not None:
            return self._port
        server = web.Server(self._handle, handler_cancellation=True, auto_decompress=False)
        runner = web.ServerRunner(server, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._requested_port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._tcp_session = client_session_create()
        self._port = int(runner.addresses[0][1])
        return self._port

    async def stop(self) -> None:
        """Stops listening, lets requests in flight finish briefly, closes the client sessions."""
        runner, self._runner, self._port = self._runner, None, None
        sessions = [session for session in (self._tcp_session, *self._unix_sessions.values()) if session]
        self._tcp_session = None
        self._unix_sessions = {}
        try:
            if runner is not None:
                await runner.cleanup()
        finally:
            for session in sessions:
                await session.close()

    def route_add(self, domain: str, target: Mapping[str, Any], password_hash: str | None = None) -> None:
        """Routes `domain` to `target` (replacing a route it had); raises ValueError for an invalid domain."""
        self._routes[expose_domain_normalize(domain)] = ExposeRoute(target, password_hash)

    def route_remove(self, domain: str) -> None:
        self._routes.pop(expose_domain_normalize(domain), None)

    def route_update(self, domain: str, password_hash: str | None) -> None:
        """Changes the route's password hash (None: no auth); raises LookupError for an unrouted domain."""
        normalized = expose_domain_normalize(domain)
        current = self._routes.get(normalized)
        if current is None:
            raise LookupError(f"Expose proxy route not found: {normalized}")
        self._routes[normalized] = ExposeRoute(current.target, password_hash)

    def route_find(self, domain: str) -> ExposeRoute | None:
        return self._routes.get(host_normalize(domain))

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        route = self._routes.get(host_normalize(request.headers.get("Host", "")))
        if route is None:
            return web.Response(status=404, text="Expose route not found.")
        headers = headers_forwardable(request.headers)
        if route.password_hash is not None:
            if not await self._auth.check(request.headers.get("Authorization"), route.password_hash):
                challenge = {"WWW-Authenticate": EXPOSE_AUTH_CHALLENGE}
                return web.Response(status=401, text="Unauthorized", headers=challenge)
            headers.popall("Authorization", None)
        if not request.raw_path.startswith("/"):
            return web.Response(status=400, text="Unsupported request target.")
        if route.target.get("type") == "unix":
            session = self._unix_session(str(route.target["path"]))
            url = URL(f"http://localhost{request.raw_path}", encoded=True)
        else:
            session = self._tcp_session
            url = URL(f"http://127.0.0.1:{int(route.target['port'])}{request.raw_path}", encoded=True)
        if session is None:
            return web.Response(status=503, text="Expose proxy is stopping.")
        return await http_forward(request, session, url, headers)

    def _unix_session(self, path: str) -> aiohttp.ClientSession | None:
        if self._tcp_session is None:
            return None
        session = self._unix_sessions.get(path)
        if session is None:
            session = self._unix_sessions[path] = client_session_create(aiohttp.UnixConnector(path=path, limit=0))
        return session
