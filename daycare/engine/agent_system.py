"""The agent port: how services reach agents, without knowing how agents run.

Signals, channels, crons and heartbeats post inbox items (the legacy `AgentInboxItem` JSON)
to a target: one agent by id, or the user's system agent for a descriptor such as
`{"type": "system", "tag": "cron"}`. `DurableInboxAgentSystem` is the default implementation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from daycare.engine.signals import Signal, SignalSubscription
from daycare.storage.json_values import frozen
from daycare.storage.repositories.context import Context

log = logging.getLogger("daycare.engine.agents")

# The `type` values of the legacy AgentInboxItem union.
INBOX_ITEM_TYPES = frozenset({"message", "system_message", "signal", "reset", "compact", "restore"})

InboxItem = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class AgentTarget:
    """One agent, by id; it must belong to the posting user."""

    agent_id: str


@dataclass(frozen=True, slots=True)
class DescriptorTarget:
    """The posting user's agent with this descriptor, e.g. `{"type": "system", "tag": "cron"}`."""

    descriptor: Mapping[str, Any]

    def __post_init__(self) -> None:
        object.__setattr__(self, "descriptor", frozen(self.descriptor))


PostTarget = AgentTarget | DescriptorTarget


def system_agent_target(tag: str) -> DescriptorTarget:
    """The user's system agent with this tag (`cron`, `heartbeat`)."""
    return DescriptorTarget({"type": "system", "tag": tag})


def inbox_item_type(item: InboxItem) -> str:
    """The item's `type`; raises ValueError for anything but a legacy inbox item type."""
    item_type = item.get("type") if isinstance(item, Mapping) else None
    if item_type not in INBOX_ITEM_TYPES:
        raise ValueError(f"Unsupported inbox item type: {item_type!r} (expected one of {sorted(INBOX_ITEM_TYPES)})")
    return str(item_type)


class AgentSystem(Protocol):
    """What the services need from agents."""

    async def agent_exists(self, agent_id: str) -> bool:
        """Whether an agent with this id exists."""
        ...

    async def context_for_agent_id(self, agent_id: str) -> Context | None:
        """The agent's (user, agent) context; None for an unknown agent."""
        ...

    async def post(self, ctx: Context, target: PostTarget, item: InboxItem) -> None:
        """Queues `item` for the target agent of `ctx.user_id`; raises if the target cannot take it.

        It may run inside a caller's transaction (a scheduler's claim of a run): it must then write
        nothing but the item itself, so call it with a target from `target_prepare`.
        """
        ...

    async def target_prepare(self, ctx: Context, target: PostTarget) -> PostTarget:
        """The target as a post reaches it, made ready first (a missing system agent is created).

        Schedulers call it before the transaction that claims a run and posts it.
        """
        ...


async def signal_deliver(agents: AgentSystem, signal: Signal, subscriptions: list[SignalSubscription]) -> None:
    """Posts the signal to each subscribed agent (in parallel), as the legacy `signalDeliver` did.

    Skipped: the agent that sent the signal, unknown agents, and agents that now belong to
    another user. A failed post is logged and does not stop the others.
    """

    async def deliver(subscription: SignalSubscription) -> None:
        agent_id = subscription.ctx.agent_id
        if signal.source.get("type") == "agent" and signal.source.get("id") == agent_id:
            return
        ctx = await agents.context_for_agent_id(agent_id)
        if ctx is None or ctx.user_id != subscription.ctx.user_id:
            return
        item = {"type": "signal", "signal": signal.to_json(), "subscriptionPattern": subscription.pattern}
        try:
            await agents.post(ctx, AgentTarget(agent_id), item)
        except Exception:
            log.warning("signal %s (%s): delivery to %s skipped", signal.id, signal.type, agent_id, exc_info=True)

    await asyncio.gather(*(deliver(subscription) for subscription in subscriptions))
