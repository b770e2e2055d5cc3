"""SystemPromptsRepository: global and per-user prompts for the system prompt or the first message."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack

from tortoise.expressions import Q

from daycare.schema import SystemPrompt
from daycare.storage.repositories.base import CachedRepository

PROMPT_FIELDS = ("id", "scope", "user_id", "kind", "condition", "prompt", "enabled", "created_at", "updated_at")


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


class SystemPromptChanges(TypedDict, total=False):
    """The fields `SystemPromptsRepository.update` can change; None clears user_id and condition."""

    scope: str
    user_id: str | None
    kind: str
    condition: str | None
    prompt: str
    enabled: bool
    created_at: int
    updated_at: int


class SystemPromptsRepository(CachedRepository[str, SystemPromptRecord]):
    """System prompts by id, cached; the scope and enabled listings read the database."""

    model = SystemPrompt
    fields = PROMPT_FIELDS
    entity = "System prompt"
    nullable = frozenset({"user_id", "condition"})

    def record_read(self, row: Mapping[str, Any]) -> SystemPromptRecord:
        return SystemPromptRecord(**{field: row[field] for field in PROMPT_FIELDS})

    def stored(self, record: SystemPromptRecord) -> SystemPromptRecord:
        return dataclasses.replace(record, enabled=bool(record.enabled))

    async def find_by_id(self, id: str) -> SystemPromptRecord | None:
        """The prompt with this id; cached, else read and cached (None without a query once all are loaded)."""
        return await self._find(id)

    async def find_all(self) -> list[SystemPromptRecord]:
        """Every prompt, oldest first; the first call loads them all into the cache."""
        if self._cache.all_loaded:
            return sorted(self._cache.records.values(), key=lambda record: record.created_at)
        return await self._read_cached(self._query().order_by("created_at"), complete=True)

    async def find_by_scope(self, scope: str, user_id: str | None = None) -> list[SystemPromptRecord]:
        """The prompts of a scope, oldest first; for scope `user`, a user id narrows them to that user."""
        if scope == "user" and user_id:
            return await self._read(self._query(scope=scope, user_id=user_id).order_by("created_at"))
        return await self._read(self._query(scope=scope).order_by("created_at"))

    async def find_enabled(self, user_id: str | None = None) -> list[SystemPromptRecord]:
        """Enabled global prompts, plus the user's own when a user id is given, oldest first."""
        if user_id:
            mine = Q(scope="global") | Q(scope="user", user_id=user_id)
            return await self._read(self._query(mine, enabled=True).order_by("created_at"))
        return await self._read(self._query(enabled=True, scope="global").order_by("created_at"))

    async def create(self, record: SystemPromptRecord) -> None:
        """Inserts or overwrites the prompt."""
        await self._create(record)

    async def update(self, id: str, /, **changes: Unpack[SystemPromptChanges]) -> None:
        """Merges `changes` and writes the whole row; None clears user_id or condition.

        Raises LookupError("System prompt not found: <id>"), TypeError for an unknown field.
        """
        await self._update(id, changes)

    async def delete(self, id: str) -> bool:
        """Deletes the prompt; whether it existed."""
        return await self._delete(id)
