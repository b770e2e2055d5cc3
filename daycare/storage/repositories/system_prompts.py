"""SystemPromptsRepository: global and per-user prompts for the system prompt or the first message (legacy §2.17)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from tortoise.expressions import Q
from tortoise.queryset import QuerySet

from daycare.schema import SystemPrompt
from daycare.storage.db.database import Database
from daycare.storage.repositories.cache import RecordCache
from daycare.storage.repositories.patches import record_patch
from daycare.storage.repositories.statements import column_map, column_values, upsert_statement
from daycare.storage.repositories.write_through import cache_fill, cache_find

_COLUMNS = ("id", "scope", "user_id", "kind", "condition", "prompt", "enabled", "created_at", "updated_at")
_UPSERT = upsert_statement("system_prompts", _COLUMNS)


@dataclass(frozen=True, slots=True)
class SystemPromptRecord:
    """A prompt: scope `global`/`user`, kind `system`/`first_message`, condition `new_user`/`returning_user`/None."""

    id: str
    scope: str
    user_id: str | None
    kind: str
    condition: str | None
    prompt: str
    enabled: bool
    created_at: int
    updated_at: int


def _stored(record: SystemPromptRecord) -> SystemPromptRecord:
    return dataclasses.replace(record, enabled=bool(record.enabled))


class SystemPromptsRepository:
    """System prompts with a write-through cache."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: RecordCache[str, SystemPromptRecord] = RecordCache()

    async def find_by_id(self, id: str) -> SystemPromptRecord | None:
        return await cache_find(self._cache, id, lambda: self._load(id))

    async def find_many(self) -> list[SystemPromptRecord]:
        """Every prompt, oldest first; the first call caches them all."""
        if self._cache.all_loaded:
            return sorted(self._cache.records.values(), key=lambda record: record.created_at)
        records = await self._query(SystemPrompt.all())
        cache_fill(self._cache, records, lambda record: record.id, clear=True, complete=True)
        return records

    async def find_by_scope(self, scope: str, user_id: str | None = None) -> list[SystemPromptRecord]:
        """The prompts of a scope, oldest first; for scope `user`, a user id narrows them to that user."""
        if scope == "user" and user_id:
            return await self._query(SystemPrompt.filter(scope=scope, user_id=user_id))
        return await self._query(SystemPrompt.filter(scope=scope))

    async def find_enabled(self, user_id: str | None = None) -> list[SystemPromptRecord]:
        """Enabled global prompts, plus the user's own when a user id is given, oldest first."""
        if user_id:
            mine = Q(scope="global") | Q(scope="user", user_id=user_id)
            return await self._query(SystemPrompt.filter(mine, enabled=True))
        return await self._query(SystemPrompt.filter(enabled=True, scope="global"))

    async def create(self, record: SystemPromptRecord) -> None:
        """Inserts or overwrites the prompt."""
        stored = _stored(record)
        async with self._cache.create_lock:
            await self._db.connection().execute_query(_UPSERT, column_values(stored, _COLUMNS))
            self._cache.records[stored.id] = stored

    async def update_by_id(self, id: str, /, **changes: Any) -> None:
        """Merges `changes` and writes the whole row; None clears user_id or condition.

        Raises LookupError("System prompt not found: <id>").
        """
        async with self._cache.key_locks.hold(id):
            current = self._cache.records.get(id) or await self._load(id)
            if current is None:
                raise LookupError(f"System prompt not found: {id}")
            updated = _stored(record_patch(current, changes, entity="System prompt", nullable=("user_id", "condition")))
            await SystemPrompt.filter(id=id).using_db(self._db.connection()).update(**column_map(updated, _COLUMNS[1:]))
            self._cache.records[id] = updated

    async def delete_by_id(self, id: str) -> bool:
        async with self._cache.key_locks.hold(id):
            removed = await SystemPrompt.filter(id=id).using_db(self._db.connection()).delete()
            self._cache.records.pop(id, None)
            return removed > 0

    async def _query(self, query: QuerySet[SystemPrompt]) -> list[SystemPromptRecord]:
        rows = await query.using_db(self._db.connection()).order_by("created_at").values()
        return [SystemPromptRecord(**row) for row in rows]

    async def _load(self, id: str) -> SystemPromptRecord | None:
        row = await SystemPrompt.filter(id=id).using_db(self._db.connection()).first().values()
        return SystemPromptRecord(**row) if row else None
