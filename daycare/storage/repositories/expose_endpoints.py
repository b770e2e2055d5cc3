"""ExposeEndpointsRepository: tunnels that publish a local port or socket under a domain (legacy §2.15).

Domains are stored trimmed and lowercased, and are checked again on every read: a stored
domain that is not a valid hostname raises. A broken target reads as port 80, a broken auth
as no auth.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from daycare.schema import ExposeEndpoint
from daycare.storage.db.database import Database
from daycare.storage.json_values import FrozenDict, frozen, json_encode
from daycare.storage.repositories.cache import RecordCache
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.lenient_json import json_decode_or
from daycare.storage.repositories.patches import record_patch
from daycare.storage.repositories.statements import column_map, upsert_statement
from daycare.storage.repositories.write_through import cache_fill, cache_find

_DOMAIN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+")
_TARGET_FALLBACK = FrozenDict(type="port", port=80)
_COLUMNS = ("id", "user_id", "target", "provider", "domain", "mode", "auth", "created_at", "updated_at")
_UPSERT = upsert_statement("expose_endpoints", _COLUMNS)


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


def _row(record: ExposeEndpointRecord) -> dict[str, Any]:
    """The column values the legacy code wrote for this record (domain normalised)."""
    row = column_map(record, _COLUMNS)
    row["target"] = json_encode(record.target)
    row["domain"] = expose_domain_normalize(record.domain)
    row["auth"] = None if record.auth is None else json_encode(record.auth)
    return row


def _record_read(row: dict[str, Any]) -> ExposeEndpointRecord:
    return ExposeEndpointRecord(
        **{
            **row,
            "target": _target_decode(row["target"]),
            "domain": expose_domain_normalize(row["domain"]),
            "auth": _auth_decode(row["auth"]),
        }
    )


def _order(record: ExposeEndpointRecord) -> tuple[int, str]:
    return (record.created_at, record.id)


class ExposeEndpointsRepository:
    """Expose endpoints with a write-through cache holding what a read of the row would give."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: RecordCache[str, ExposeEndpointRecord] = RecordCache()

    async def create(self, record: ExposeEndpointRecord) -> None:
        """Inserts or overwrites the endpoint; raises ValueError for an invalid domain, writing nothing."""
        row = _row(record)
        async with self._cache.create_lock:
            await self._db.connection().execute_query(_UPSERT, list(row.values()))
            self._cache.records[record.id] = _record_read(row)

    async def find_by_id(self, id: str) -> ExposeEndpointRecord | None:
        return await cache_find(self._cache, id, lambda: self._load(id))

    async def find_many(self, ctx: Context) -> list[ExposeEndpointRecord]:
        """The user's endpoints, oldest first; not cached."""
        rows = (
            await ExposeEndpoint.filter(user_id=ctx.user_id)
            .using_db(self._db.connection())
            .order_by("created_at", "id")
            .values()
        )
        return [_record_read(row) for row in rows]

    async def find_all(self) -> list[ExposeEndpointRecord]:
        """Every endpoint, oldest first; the first call caches them all."""
        if self._cache.all_loaded:
            return sorted(self._cache.records.values(), key=_order)
        rows = await ExposeEndpoint.all().using_db(self._db.connection()).order_by("created_at", "id").values()
        records = [_record_read(row) for row in rows]
        cache_fill(self._cache, records, lambda record: record.id, complete=True)
        return records

    async def update(self, id: str, /, **changes: Any) -> None:
        """Merges `changes` and writes the whole row.

        None keeps a field, except auth, which None clears; an empty domain keeps the current one.
        Raises LookupError("Expose endpoint not found: <id>").
        """
        if "domain" in changes and not changes["domain"]:
            changes = {name: value for name, value in changes.items() if name != "domain"}
        async with self._cache.key_locks.hold(id):
            current = self._cache.records.get(id) or await self._load(id)
            if current is None:
                raise LookupError(f"Expose endpoint not found: {id}")
            keep = tuple(column for column in _COLUMNS if column != "auth")
            updated = record_patch(current, changes, entity="Expose endpoint", keep_if_none=keep, nullable=("auth",))
            row = _row(updated)
            del row["id"]
            await ExposeEndpoint.filter(id=id).using_db(self._db.connection()).update(**row)
            self._cache.records[id] = _record_read({"id": id, **row})

    async def delete(self, id: str) -> bool:
        async with self._cache.key_locks.hold(id):
            removed = await ExposeEndpoint.filter(id=id).using_db(self._db.connection()).delete()
            self._cache.records.pop(id, None)
            return removed > 0

    async def _load(self, id: str) -> ExposeEndpointRecord | None:
        row = await ExposeEndpoint.filter(id=id).using_db(self._db.connection()).first().values()
        return _record_read(row) if row else None
