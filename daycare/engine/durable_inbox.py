"""The default agent port: what is posted lands in the target agent's durable inbox (`inbox` table).

This package has no agent runtime; the inbox is the hand-off to whatever runs the agents, and
it is what the legacy AgentSystem wrote before it queued an item in memory. Each post is one
row: a new cuid2 id, the agent, the time, the item's type, and the item as legacy JSON.

Descriptor targets resolve to the posting user's agent with that descriptor. Only system
descriptors (`{"type": "system", "tag": ...}`) are resolved here: the oldest live agent of the
user with exactly that descriptor, else a new one created with its first session (the rows
the legacy `Agent.create` wrote: type `system`, the user's default permissions, no tokens).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from daycare.engine.agent_system import AgentTarget, DescriptorTarget, InboxItem, PostTarget, inbox_item_type
from daycare.engine.timing import Clock, now_ms
from daycare.storage.facade import Storage
from daycare.storage.identifiers import cuid_create
from daycare.storage.json_values import json_encode
from daycare.storage.repositories.agents import AgentRecord
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.locks import KeyedLocks

log = logging.getLogger("daycare.engine.agents")

DEAD = "dead"


def user_permissions(users_dir: Path, user_id: str) -> dict[str, Any]:
    """A new agent's permissions: the legacy `permissionBuildUser` of the user's home folders."""
    root = users_dir.resolve() / user_id
    home = root / "home"
    return {
        "workingDir": str(home / "desktop"),
        "writeDirs": [str(home)],
        "readDirs": [str(home), str(root / "skills" / "active")],
    }


def _system_tag(descriptor: Mapping[str, Any]) -> str:
    tag = descriptor.get("tag")
    if descriptor.get("type") != "system" or not isinstance(tag, str) or not tag.strip() or len(descriptor) != 2:
        raise ValueError(f"Only system agent descriptors ({{'type': 'system', 'tag': ...}}) resolve here: {descriptor}")
    return tag


class DurableInboxAgentSystem:
    """Agents as stored rows; posting writes their inbox."""

    def __init__(self, *, storage: Storage, users_dir: Path, clock: Clock = now_ms) -> None:
        self._storage = storage
        self._users_dir = users_dir
        self._clock = clock
        self._resolve_locks = KeyedLocks()
        # (user, tag) -> the system agent a post reaches: checked on every use, so it is never
        # stale, and bounded by the users times their system tags.
        self._system_agents: dict[tuple[str, str], str] = {}

    async def agent_exists(self, agent_id: str) -> bool:
        return await self.context_for_agent_id(agent_id) is not None

    async def context_for_agent_id(self, agent_id: str) -> Context | None:
        agent_id = agent_id.strip()
        record = await self._storage.agents.find_by_id(agent_id) if agent_id else None
        return Context(record.user_id, record.id) if record else None

    async def post(self, ctx: Context, target: PostTarget, item: InboxItem) -> None:
        """Writes the item to the target's inbox.

        Raises ValueError for an item of an unknown type, an agent of another user, a dead
        agent or a descriptor that is not a system one; LookupError for an unknown agent.
        """
        item_type = inbox_item_type(item)
        agent_id = await self.agent_id_for_target(ctx, target)
        await self._storage.inbox.insert(cuid_create(), agent_id, self._clock(), item_type, json_encode(item))

    async def target_prepare(self, ctx: Context, target: PostTarget) -> PostTarget:
        """The agent a post to `target` reaches, by id: a missing system agent is created now."""
        return AgentTarget(await self.agent_id_for_target(ctx, target))

    async def agent_id_for_target(self, ctx: Context, target: PostTarget) -> str:
        """The id of the agent a post to `target` reaches; a missing system agent is created."""
        if isinstance(target, AgentTarget):
            record = await self._storage.agents.find_by_id(target.agent_id)
            if record is None:
                raise LookupError(f"Agent not found: {target.agent_id}")
            if record.user_id != ctx.user_id:
                raise ValueError(f"Cannot post to agent from another user: {target.agent_id}")
            if record.lifecycle == DEAD:
                raise ValueError(f"Agent is dead: {target.agent_id}")
            return record.id
        return await self._system_agent_resolve(ctx.user_id, target)

    async def _system_agent_known(self, user_id: str, tag: str, descriptor: Mapping[str, Any]) -> str | None:
        """The remembered system agent of (user, tag) if it still is one: same user and descriptor, alive."""
        agent_id = self._system_agents.get((user_id, tag))
        record = await self._storage.agents.find_by_id(agent_id) if agent_id else None
        if record is None or record.user_id != user_id or record.descriptor != descriptor or record.lifecycle == DEAD:
            self._system_agents.pop((user_id, tag), None)
            return None
        return record.id

    async def _system_agent_resolve(self, user_id: str, target: DescriptorTarget) -> str:
        tag = _system_tag(target.descriptor)
        known = await self._system_agent_known(user_id, tag, target.descriptor)
        if known is not None:
            return known
        # One lock per (user, tag): two posts at once must not create two system agents.
        async with self._resolve_locks.hold((user_id, tag)):
            known = await self._system_agent_known(user_id, tag, target.descriptor)
            if known is not None:
                return known
            agent_id = await self._system_agent_find_or_create(user_id, tag, target)
            self._system_agents[(user_id, tag)] = agent_id
            return agent_id

    async def _system_agent_find_or_create(self, user_id: str, tag: str, target: DescriptorTarget) -> str:
        """The user's oldest live agent with this exact descriptor (one read of their system agents), else a new one."""
        # An agent's type is its descriptor's type, so only the user's system agents are read.
        candidates = [
            record
            for record in await self._storage.agents.find_by_user_id(user_id, type="system")
            if record.descriptor == target.descriptor and record.lifecycle != DEAD
        ]
        if candidates:
            return min(candidates, key=lambda record: (record.created_at, record.id)).id
        now = self._clock()
        record = AgentRecord(
            id=cuid_create(),
            user_id=user_id,
            type="system",
            descriptor=target.descriptor,
            active_session_id=None,
            permissions=user_permissions(self._users_dir, user_id),
            tokens=None,
            stats={},
            lifecycle="active",
            created_at=now,
            updated_at=now,
        )
        created = await self._storage.create_agent_with_session(record, inference_session_id=cuid_create())
        log.info("created the %s system agent %s of user %s", tag, created.agent.id, user_id)
        return created.agent.id
