"""ProcessesRepository: the durable mirror of managed processes, cached.

The Processes service writes the whole record on every state change. JSON columns fall back
to safe values when broken: env `{}`, lists `[]`, permissions a root working dir with no write
access, owner None. Permissions always read with `readDirs`. The cache holds what a read of
the row gives.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack

from daycare.schema import Process
from daycare.storage.json_values import FrozenDict, FrozenList, frozen, json_encode
from daycare.storage.repositories.base import CachedRepository
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.lenient_json import json_decode_or, string_list_decode, strings_only

PROCESS_FIELDS = (
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
# The columns where None means "clear"; in every other column None keeps the current value.
_NULLABLE = frozenset({"home", "owner", "pid", "boot_time_ms", "next_restart_at", "last_started_at", "last_exited_at"})
_JSON_FIELDS = ("env", "package_managers", "allowed_domains", "permissions")
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


def _order(record: ProcessRecord) -> tuple[int, str]:
    return (record.created_at, record.id)


def _matches(record: ProcessRecord, user_id: str | None, owner_id: str | None, owner_type: str | None) -> bool:
    """The legacy in-memory filter: an empty filter value filters nothing."""
    if user_id and record.user_id != user_id:
        return False
    if owner_id and (record.owner is None or record.owner.get("id") != owner_id):
        return False
    return not (owner_type and (record.owner is None or record.owner.get("type") != owner_type))


class ProcessChanges(TypedDict, total=False):
    """The fields `ProcessesRepository.update` can change; None clears the nullable ones and keeps the others."""

    user_id: str | None
    name: str | None
    command: str | None
    cwd: str | None
    home: str | None
    env: Mapping[str, str] | None
    package_managers: Sequence[str] | None
    allowed_domains: Sequence[str] | None
    allow_local_binding: bool | None
    permissions: Mapping[str, Any] | None
    owner: Mapping[str, str] | None
    keep_alive: bool | None
    desired_state: str | None
    status: str | None
    pid: int | None
    boot_time_ms: int | None
    restart_count: int | None
    restart_failure_count: int | None
    next_restart_at: int | None
    settings_path: str | None
    log_path: str | None
    created_at: int | None
    updated_at: int | None
    last_started_at: int | None
    last_exited_at: int | None


class ProcessesRepository(CachedRepository[str, ProcessRecord]):
    """Process records by id, cached per instance; returned records are frozen and shared with the cache."""

    model = Process
    fields = PROCESS_FIELDS
    entity = "Process"
    keep_if_none = frozenset(PROCESS_FIELDS) - _NULLABLE
    nullable = _NULLABLE

    def record_read(self, row: Mapping[str, Any]) -> ProcessRecord:
        return ProcessRecord(
            id=row["id"],
            user_id=row["user_id"],
            name=row["name"],
            command=row["command"],
            cwd=row["cwd"],
            home=row["home"],
            env=_env_decode(row["env"]),
            package_managers=string_list_decode(row["package_managers"]),
            allowed_domains=string_list_decode(row["allowed_domains"]),
            allow_local_binding=row["allow_local_binding"] == 1,
            permissions=_permissions_decode(row["permissions"]),
            owner=_owner_decode(row["owner"]),
            keep_alive=row["keep_alive"] == 1,
            desired_state=row["desired_state"],
            status=row["status"],
            pid=row["pid"],
            boot_time_ms=row["boot_time_ms"],
            restart_count=row["restart_count"],
            restart_failure_count=row["restart_failure_count"],
            next_restart_at=row["next_restart_at"],
            settings_path=row["settings_path"],
            log_path=row["log_path"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            last_started_at=row["last_started_at"],
            last_exited_at=row["last_exited_at"],
        )

    def row_of(self, record: ProcessRecord) -> dict[str, Any]:
        """The column values the legacy code wrote for this record (its JSON as given)."""
        row = super().row_of(record)
        for name in _JSON_FIELDS:
            row[name] = json_encode(row[name], f"Process {name}")
        row["owner"] = None if record.owner is None else json_encode(record.owner, "Process owner")
        return row

    def stored(self, record: ProcessRecord) -> ProcessRecord:
        """The record as a read of its row gives it (permissions with readDirs, broken JSON as its fallback)."""
        return self.record_read(self.row_of(record))

    async def create(self, record: ProcessRecord) -> None:
        """Inserts or overwrites the whole record; the cache holds it as a read of the row gives it."""
        # The row keeps the caller's JSON as the legacy code wrote it (permissions without readDirs
        # stay so); writing the stored record, as the base's `_create` does, would add readDirs.
        row = self.row_of(record)
        stored = self.record_read(row)
        self._write_check(stored)
        async with self._writing(stored.id):
            await self._upsert.run(self._conn(), **row)
            self._cache.put(stored.id, stored)

    async def find_by_id(self, id: str) -> ProcessRecord | None:
        """The process with this id; cached, else read and cached (None without a query once all are loaded)."""
        return await self._find(id)

    async def find_many(
        self, ctx: Context, *, owner_id: str | None = None, owner_type: str | None = None
    ) -> list[ProcessRecord]:
        """The user's processes, optionally of one owner; see find_all."""
        return await self.find_all(user_id=ctx.user_id, owner_id=owner_id, owner_type=owner_type)

    async def find_all(
        self, *, user_id: str | None = None, owner_id: str | None = None, owner_type: str | None = None
    ) -> list[ProcessRecord]:
        """Processes oldest first, filtered by user and owner (empty filters are ignored).

        The owner filters run on the parsed owner. The first call without a user caches every process;
        a user filter always reads the database.
        """
        if self._cache.all_loaded and not user_id:
            records = sorted(self._cache.records.values(), key=_order)
        else:
            query = self._query(user_id=user_id) if user_id else self._query()
            records = await self._read_cached(query.order_by("created_at", "id"), complete=not user_id)
        return [record for record in records if _matches(record, user_id, owner_id, owner_type)]

    async def update(self, id: str, /, **changes: Unpack[ProcessChanges]) -> None:
        """Merges `changes` and writes the whole row; None clears the nullable columns and keeps the others.

        Raises LookupError("Process not found: <id>"), TypeError for an unknown field.
        """
        await self._update(id, changes)

    async def delete(self, id: str) -> bool:
        """Deletes the process; whether it existed."""
        return await self._delete(id)

    async def delete_by_owner(self, owner_type: str, owner_id: str) -> int:
        """Deletes every process of this owner in one statement; returns how many were deleted.

        Raises ValueError for an empty owner id (the legacy filter would then have matched every owner).
        """
        if not owner_type.strip() or not owner_id.strip():
            raise ValueError("Process owner type and id are required.")
        targets = sorted(record.id for record in await self.find_all(owner_id=owner_id, owner_type=owner_type))
        if not targets:
            return 0
        async with contextlib.AsyncExitStack() as writes:
            # Sorted order: two concurrent calls cannot each hold a lock the other waits for.
            for id in targets:
                await writes.enter_async_context(self._writing(id))
            # An update that ran while this waited for the locks may have given a target another owner.
            current = await self._read(self._query(id__in=targets))
            owned = [record.id for record in current if _matches(record, None, owner_id, owner_type)]
            removed = await self._query(id__in=owned).delete() if owned else 0
            for id in owned:
                self._cache.drop(id)
        return int(removed)
