"""ProcessesRepository: the durable mirror of managed processes (legacy §2.16).

The Processes service writes the whole record on every state change. JSON columns fall back
to safe values when broken: env `{}`, lists `[]`, permissions a root working dir with no write
access, owner None. Permissions always read with `readDirs`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from daycare.schema import Process
from daycare.storage.db.database import Database
from daycare.storage.json_values import FrozenDict, FrozenList, frozen, json_encode
from daycare.storage.repositories.cache import RecordCache
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.lenient_json import json_decode_or, string_list_decode, strings_only
from daycare.storage.repositories.patches import record_patch
from daycare.storage.repositories.statements import column_map, upsert_statement
from daycare.storage.repositories.write_through import cache_fill, cache_find

_COLUMNS = (
    "id",
    "user_id",
    "name",
    "command",
    "cwd",
    "home",
    "env",
    "package_managers",
    "allowed_domains",
    "allow_local_binding",
    "permissions",
    "owner",
    "keep_alive",
    "desired_state",
    "status",
    "pid",
    "boot_time_ms",
    "restart_count",
    "restart_failure_count",
    "next_restart_at",
    "settings_path",
    "log_path",
    "created_at",
    "updated_at",
    "last_started_at",
    "last_exited_at",
)
_UPSERT = upsert_statement("processes", _COLUMNS)
# The columns where None means "clear"; in every other column None keeps the current value.
_NULLABLE = ("home", "owner", "pid", "boot_time_ms", "next_restart_at", "last_started_at", "last_exited_at")
_PERMISSIONS_FALLBACK = FrozenDict(workingDir="/", writeDirs=FrozenList(), readDirs=FrozenList())


@dataclass(frozen=True, slots=True)
class ProcessRecord:
    """A managed process: how to run it, its sandbox, its owner (`{type: "plugin", id}` or None) and its state."""

    id: str
    user_id: str
    name: str
    command: str
    cwd: str
    home: str | None
    env: Mapping[str, str]
    package_managers: Sequence[str]
    allowed_domains: Sequence[str]
    allow_local_binding: bool
    permissions: Mapping[str, Any]
    owner: Mapping[str, str] | None
    keep_alive: bool
    desired_state: str
    status: str
    pid: int | None
    boot_time_ms: int | None
    restart_count: int
    restart_failure_count: int
    next_restart_at: int | None
    settings_path: str
    log_path: str
    created_at: int
    updated_at: int
    last_started_at: int | None
    last_exited_at: int | None

    def __post_init__(self) -> None:
        for name in ("env", "package_managers", "allowed_domains", "permissions", "owner"):
            object.__setattr__(self, name, frozen(getattr(self, name)))


def _env_decode(text: str) -> FrozenDict:
    value = json_decode_or(text, None)
    if not isinstance(value, dict):
        return FrozenDict()
    return FrozenDict((name, item) for name, item in value.items() if isinstance(item, str))


def _permissions_decode(text: str) -> FrozenDict:
    value = json_decode_or(text, None)
    if not isinstance(value, dict) or not isinstance(value.get("workingDir"), str):
        return _PERMISSIONS_FALLBACK
    if not isinstance(value.get("writeDirs"), list):
        return _PERMISSIONS_FALLBACK
    return FrozenDict(
        workingDir=value["workingDir"],
        writeDirs=strings_only(value["writeDirs"]),
        readDirs=strings_only(value.get("readDirs")),
    )


def _owner_decode(text: str | None) -> FrozenDict | None:
    value = json_decode_or(text or None, None)
    if not isinstance(value, dict) or value.get("type") != "plugin":
        return None
    owner_id = value.get("id")
    if not isinstance(owner_id, str) or not owner_id.strip():
        return None
    return FrozenDict(type="plugin", id=owner_id.strip())


def _record_read(row: dict[str, Any]) -> ProcessRecord:
    return ProcessRecord(
        **{
            **row,
            "env": _env_decode(row["env"]),
            "package_managers": string_list_decode(row["package_managers"]),
            "allowed_domains": string_list_decode(row["allowed_domains"]),
            "allow_local_binding": row["allow_local_binding"] == 1,
            "permissions": _permissions_decode(row["permissions"]),
            "owner": _owner_decode(row["owner"]),
            "keep_alive": row["keep_alive"] == 1,
        }
    )


def _row(record: ProcessRecord) -> dict[str, Any]:
    """The column values the legacy code wrote for this record."""
    row = column_map(record, _COLUMNS)
    for name in ("env", "package_managers", "allowed_domains", "permissions"):
        row[name] = json_encode(getattr(record, name))
    row["owner"] = None if record.owner is None else json_encode(record.owner)
    return row


def _order(record: ProcessRecord) -> tuple[int, str]:
    return (record.created_at, record.id)


def _matches(record: ProcessRecord, user_id: str | None, owner_id: str | None, owner_type: str | None) -> bool:
    """The legacy in-memory filter: an empty filter value filters nothing."""
    if user_id and record.user_id != user_id:
        return False
    if owner_id and (record.owner is None or record.owner.get("id") != owner_id):
        return False
    return not (owner_type and (record.owner is None or record.owner.get("type") != owner_type))


class ProcessesRepository:
    """Process records with a write-through cache holding what a read of the row would give."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: RecordCache[str, ProcessRecord] = RecordCache()

    async def create(self, record: ProcessRecord) -> None:
        """Inserts or overwrites the whole record."""
        row = _row(record)
        async with self._cache.create_lock:
            await self._db.connection().execute_query(_UPSERT, list(row.values()))
            self._cache.records[record.id] = _record_read(row)

    async def find_by_id(self, id: str) -> ProcessRecord | None:
        return await cache_find(self._cache, id, lambda: self._load(id))

    async def find_many(
        self, ctx: Context, *, owner_id: str | None = None, owner_type: str | None = None
    ) -> list[ProcessRecord]:
        """The user's processes, optionally of one owner; see find_all."""
        return await self.find_all(user_id=ctx.user_id, owner_id=owner_id, owner_type=owner_type)

    async def find_all(
        self, *, user_id: str | None = None, owner_id: str | None = None, owner_type: str | None = None
    ) -> list[ProcessRecord]:
        """Processes oldest first, filtered by user and owner (empty filters are ignored).

        The owner filters run on the parsed owner. The first call without a user caches every process.
        """
        if self._cache.all_loaded and not user_id:
            records = sorted(self._cache.records.values(), key=_order)
        else:
            query = Process.filter(user_id=user_id) if user_id else Process.all()
            rows = await query.using_db(self._db.connection()).order_by("created_at", "id").values()
            records = [_record_read(row) for row in rows]
            cache_fill(self._cache, records, lambda record: record.id, complete=not user_id)
        return [record for record in records if _matches(record, user_id, owner_id, owner_type)]

    async def update(self, id: str, /, **changes: Any) -> None:
        """Merges `changes` and writes the whole row; None clears the nullable columns and keeps the others.

        Raises LookupError("Process not found: <id>").
        """
        async with self._cache.key_locks.hold(id):
            current = self._cache.records.get(id) or await self._load(id)
            if current is None:
                raise LookupError(f"Process not found: {id}")
            keep = tuple(column for column in _COLUMNS if column not in _NULLABLE)
            updated = record_patch(current, changes, entity="Process", keep_if_none=keep, nullable=_NULLABLE)
            row = _row(updated)
            del row["id"]
            await Process.filter(id=id).using_db(self._db.connection()).update(**row)
            self._cache.records[id] = _record_read({"id": id, **row})

    async def delete(self, id: str) -> bool:
        async with self._cache.key_locks.hold(id):
            removed = await Process.filter(id=id).using_db(self._db.connection()).delete()
            self._cache.records.pop(id, None)
            return removed > 0

    async def delete_by_owner(self, owner_type: str, owner_id: str) -> int:
        """Deletes every process of this owner in one statement; returns how many were deleted.

        Raises ValueError for an empty owner id (the legacy filter would then have matched every owner).
        """
        if not owner_type.strip() or not owner_id.strip():
            raise ValueError("Process owner type and id are required.")
        targets = sorted(record.id for record in await self.find_all(owner_id=owner_id, owner_type=owner_type))
        async with contextlib.AsyncExitStack() as locks:
            # Sorted order: two concurrent calls cannot each hold a lock the other waits for.
            for id in targets:
                await locks.enter_async_context(self._cache.key_locks.hold(id))
            removed: int = (
                await Process.filter(id__in=targets).using_db(self._db.connection()).delete() if targets else 0
            )
            for id in targets:
                self._cache.records.pop(id, None)
            return removed

    async def _load(self, id: str) -> ProcessRecord | None:
        row = await Process.filter(id=id).using_db(self._db.connection()).first().values()
        return _record_read(row) if row else None
