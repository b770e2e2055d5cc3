"""ExposeEndpointsRepository: tunnels that publish a local port or socket under a domain, cached.

Domains are stored trimmed and lowercased, and are checked again on every read: a row whose
domain is not a valid hostname cannot be read, so reads leave it out. A broken target reads as
port 80, a broken auth as no auth. The cache holds what a read of the row gives.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack

from daycare.schema import ExposeEndpoint
from daycare.storage.db.statements import rows_statement
from daycare.storage.json_values import FrozenDict, frozen, json_encode
from daycare.storage.repositories.base import CachedRepository
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.lenient_json import json_decode_or

_DOMAIN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+")
_TARGET_FALLBACK = FrozenDict(type="port", port=80)
EXPOSE_FIELDS = ("id", "user_id", "target", "provider", "domain", "mode", "auth", "created_at", "updated_at")
_EVERY_ENDPOINT = rows_statement(ExposeEndpoint, EXPOSE_FIELDS, order=("created_at", "id"))  # read at engine start


def expose_domain_normalize(domain: str) -> str:
    """The domain trimmed and lowercased; raises ValueError("Invalid expose domain: <domain>") if not a hostname."""
    normalized = domain.strip().lower()
    if not _DOMAIN.fullmatch(normalized):
        raise ValueError(f"Invalid expose domain: {domain}")
    return normalized


def _whole_number(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not value.is_integer():
        return None
    return int(value)


def expose_target_parse(value: Any) -> FrozenDict:
    """`{type: "port", port: 1..65535}` or `{type: "unix", path}` (path trimmed, non-empty), no other keys.

    Raises ValueError for anything else.
    """
    if isinstance(value, dict):
        if value.get("type") == "port" and set(value) == {"type", "port"}:
            port = _whole_number(value["port"])
            if port is not None and 1 <= port <= 65535:
                return FrozenDict(type="port", port=port)
        if value.get("type") == "unix" and set(value) == {"type", "path"}:
            path = value["path"]
            if isinstance(path, str) and path.strip():
                return FrozenDict(type="unix", path=path.strip())
    raise ValueError(f"Invalid expose target: {value!r}")


def _target_decode(text: str) -> FrozenDict:
    try:
        return expose_target_parse(json_decode_or(text, None))
    except ValueError:
        return _TARGET_FALLBACK


def _auth_decode(text: str | None) -> FrozenDict | None:
    """`{enabled: true, passwordHash}` when the stored auth says so; anything else is no auth."""
    value = json_decode_or(text or None, None)
    if not isinstance(value, dict) or value.get("enabled") is not True:
        return None
    password_hash = value.get("passwordHash")
    if not isinstance(password_hash, str) or not password_hash.strip():
        return None
    return FrozenDict(enabled=True, passwordHash=password_hash)


@dataclass(frozen=True, slots=True)
class ExposeEndpointRecord:
    """An endpoint: target, tunnel provider instance, domain, mode (`public`/`local-network`), optional auth."""

    id: str
    user_id: str
    target: Mapping[str, Any]
    provider: str
    domain: str
    mode: str
    auth: Mapping[str, Any] | None
    created_at: int
    updated_at: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "target", frozen(self.target))
        object.__setattr__(self, "auth", frozen(self.auth))


class ExposeEndpointChanges(TypedDict, total=False):
    """The fields `ExposeEndpointsRepository.update` can change; None keeps a field, except auth, which it clears."""

    user_id: str | None
    target: Mapping[str, Any] | None
    provider: str | None
    domain: str | None
    mode: str | None
    auth: Mapping[str, Any] | None
    created_at: int | None
    updated_at: int | None


def _order(record: ExposeEndpointRecord) -> tuple[int, str]:
    return (record.created_at, record.id)


class ExposeEndpointsRepository(CachedRepository[str, ExposeEndpointRecord]):
    """Expose endpoints by id, cached per instance; returned records are frozen and shared with the cache."""

    model = ExposeEndpoint
    fields = EXPOSE_FIELDS
    entity = "Expose endpoint"
    keep_if_none = frozenset(EXPOSE_FIELDS) - {"auth"}
    nullable = frozenset({"auth"})

    def record_read(self, row: Mapping[str, Any]) -> ExposeEndpointRecord:
        return ExposeEndpointRecord(
            id=row["id"],
            user_id=row["user_id"],
            target=_target_decode(row["target"]),
            provider=row["provider"],
            domain=expose_domain_normalize(row["domain"]),
            mode=row["mode"],
            auth=_auth_decode(row["auth"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    def row_of(self, record: ExposeEndpointRecord) -> dict[str, Any]:
        """The column values the legacy code wrote for this record (domain normalised)."""
        row = super().row_of(record)
        row["target"] = json_encode(record.target, "Expose endpoint target")
        row["domain"] = expose_domain_normalize(record.domain)
        row["auth"] = None if record.auth is None else json_encode(record.auth, "Expose endpoint auth")
        return row

    def stored(self, record: ExposeEndpointRecord) -> ExposeEndpointRecord:
        """The record as a read of its row gives it; raises ValueError for an invalid domain."""
        return self.record_read(self.row_of(record))

    async def create(self, record: ExposeEndpointRecord) -> None:
        """Inserts or overwrites the endpoint; raises ValueError for an invalid domain, writing nothing."""
        await self._create(record)

    async def find_by_id(self, id: str) -> ExposeEndpointRecord | None:
        """The endpoint with this id; cached, else read and cached (None without a query once all are loaded)."""
        return await self._find(id)

    async def find_many(self, ctx: Context) -> list[ExposeEndpointRecord]:
        """The user's endpoints, oldest first; not cached."""
        return await self._read(self._query(user_id=ctx.user_id).order_by("created_at", "id"))

    async def find_all(self) -> list[ExposeEndpointRecord]:
        """Every endpoint, oldest first; the first call caches them all."""
        if self._cache.all_loaded:
            return sorted(self._cache.records.values(), key=_order)
        return await self._read_cached(_EVERY_ENDPOINT, complete=True)

    async def update(self, id: str, /, **changes: Unpack[ExposeEndpointChanges]) -> None:
        """Merges `changes` and writes the whole row.

        None keeps a field, except auth, which None clears; an empty domain keeps the current one.
        Raises LookupError("Expose endpoint not found: <id>"), TypeError for an unknown field.
        """
        if "domain" in changes and not changes["domain"]:
            del changes["domain"]
        await self._update(id, changes)

    async def delete(self, id: str) -> bool:
        """Deletes the endpoint; whether it existed."""
        return await self._delete(id)
