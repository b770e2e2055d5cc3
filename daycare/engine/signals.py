"""Signals: typed events that agents subscribe to by pattern.

A generated signal is stored in `signals_events`, announced as `signal.generated`, and handed
with the user's matching subscriptions to `on_deliver` (the engine wires it to the agent port).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from daycare.engine.events import EngineEvents
from daycare.engine.timing import Clock, now_ms
from daycare.storage.identifiers import cuid_create
from daycare.storage.json_values import frozen
from daycare.storage.repositories.context import Context, context_for_user
from daycare.storage.repositories.signal_events import ABSENT, SignalEventRecord, SignalEventsRepository
from daycare.storage.repositories.signal_subscriptions import SignalSubscriptionRecord, SignalSubscriptionsRepository

log = logging.getLogger("daycare.engine.signals")

SOURCE_TYPES = ("system", "agent", "webhook", "process")


@dataclass(frozen=True, slots=True)
class Signal:
    """A generated signal; `source` is `{type, id?, userId}`, `data` any JSON value or ABSENT."""

    id: str
    type: str
    source: Mapping[str, Any]
    created_at: int
    data: Any = ABSENT

    def __post_init__(self) -> None:
        object.__setattr__(self, "source", frozen(self.source))
        object.__setattr__(self, "data", frozen(self.data))

    def to_json(self) -> dict[str, Any]:
        """The legacy Signal object, keys in its order; an ABSENT payload has no `data` key."""
        payload: dict[str, Any] = {"id": self.id, "type": self.type, "source": self.source}
        if self.data is not ABSENT:
            payload["data"] = self.data
        payload["createdAt"] = self.created_at
        return payload


@dataclass(frozen=True, slots=True)
class SignalSubscription:
    """An agent's subscription to a pattern; silent ones do not wake the agent."""

    ctx: Context
    pattern: str
    silent: bool
    created_at: int
    updated_at: int


Deliver = Callable[[Signal, list[SignalSubscription]], Awaitable[None]]


def signal_source_normalize(source: Any, *, id_first: bool = False) -> dict[str, Any]:
    """The source with trimmed ids, checked as the legacy code did (same messages).

    Optional webhook/process ids are dropped when blank. The key order is what the legacy code
    stored: `{type, userId, id}` for generated signals, `{type, id, userId}` (`id_first`) for
    delayed ones.
    """
    if not isinstance(source, Mapping) or source.get("type") not in SOURCE_TYPES:
        kind = source.get("type") if isinstance(source, Mapping) else None
        raise ValueError(f"Unsupported signal source type: {'undefined' if kind is None else kind}")
    kind = source["type"]
    if kind == "system":
        return {"type": "system", "userId": _source_user_id(source)}
    raw_id = source.get("id")
    source_id = raw_id.strip() if isinstance(raw_id, str) else ""
    if kind == "agent":
        if not source_id:
            raise ValueError("Agent signal source id is required")
        return {"type": "agent", "id": source_id, "userId": _source_user_id(source)}
    user_id = _source_user_id(source)
    if not source_id:
        return {"type": kind, "userId": user_id}
    if id_first:
        return {"type": kind, "id": source_id, "userId": user_id}
    return {"type": kind, "userId": user_id, "id": source_id}


def _source_user_id(source: Mapping[str, Any]) -> str:
    user_id = source.get("userId")
    if not isinstance(user_id, str) or not user_id.strip():
        raise ValueError("Signal source userId is required")
    return user_id.strip()


def signal_type_require(type: str, message: str = "Signal type is required") -> str:
    """The trimmed type; raises ValueError(message) when it is blank."""
    trimmed = type.strip() if isinstance(type, str) else ""
    if not trimmed:
        raise ValueError(message)
    return trimmed


def signal_limit_normalize(limit: float) -> int:
    """200 for a non-finite limit, else floor(limit) clamped to 1..1000."""
    if isinstance(limit, bool) or not isinstance(limit, int | float) or not math.isfinite(limit):
        return 200
    return min(1000, max(1, math.floor(limit)))


def _signal_read(record: SignalEventRecord) -> Signal:
    return Signal(record.id, record.type, record.source, record.created_at, record.data)


def _subscription_read(record: SignalSubscriptionRecord) -> SignalSubscription:
    return SignalSubscription(
        Context(record.user_id, record.agent_id), record.pattern, record.silent, record.created_at, record.updated_at
    )


def _subscription_key(ctx: Context, pattern: str) -> tuple[Context, str]:
    trimmed = pattern.strip()
    if not trimmed:
        raise ValueError("Signal subscription pattern is required")
    if not ctx.has_agent_id:
        raise ValueError("Signal subscription agentId is required")
    return ctx, trimmed


class Signals:
    """Generates, stores and routes signals; holds no state of its own besides the repositories."""

    def __init__(
        self,
        *,
        signal_events: SignalEventsRepository,
        signal_subscriptions: SignalSubscriptionsRepository,
        events: EngineEvents | None = None,
        on_deliver: Deliver | None = None,
        clock: Clock = now_ms,
    ) -> None:
        self._signal_events = signal_events
        self._signal_subscriptions = signal_subscriptions
        self._events = events or EngineEvents()
        self._on_deliver = on_deliver
        self._clock = clock

    async def generate(self, type: str, source: Mapping[str, Any], data: Any = ABSENT) -> Signal:
        """Stores a new signal and delivers it to the source user's matching subscriptions.

        Delivery errors are logged, never raised: the signal is stored either way.
        """
        signal_type = signal_type_require(type)
        normalized = signal_source_normalize(source)
        signal = Signal(cuid_create(), signal_type, normalized, self._clock(), data)
        user_id = normalized["userId"]
        await self._signal_events.create(
            SignalEventRecord(signal.id, user_id, signal.type, signal.source, signal.created_at, signal.data)
        )
        self._events.emit("signal.generated", signal)
        matching = await self._signal_subscriptions.find_matching(context_for_user(user_id), signal.type)
        if matching and self._on_deliver is not None:
            try:
                await self._on_deliver(signal, [_subscription_read(record) for record in matching])
            except Exception:
                log.warning("signal %s (%s): delivery failed", signal.id, signal.type, exc_info=True)
        log.info("signal generated: %s %s from %s", signal.id, signal.type, normalized["type"])
        return signal

    async def subscribe(self, ctx: Context, pattern: str, silent: bool | None = None) -> SignalSubscription:
        """Subscribes the context's agent to `pattern`; a new subscription is silent unless told otherwise.

        Subscribing again keeps the id and created_at, and the silent flag unless one is given.
        """
        ctx, pattern = _subscription_key(ctx, pattern)
        now = self._clock()
        existing = await self._signal_subscriptions.find_by_user_and_agent(ctx, pattern)
        record = SignalSubscriptionRecord(
            id=existing.id if existing else cuid_create(),
            user_id=ctx.user_id,
            agent_id=ctx.agent_id,
            pattern=pattern,
            silent=(existing.silent if existing else True) if silent is None else silent,
            created_at=existing.created_at if existing else now,
            updated_at=now,
        )
        await self._signal_subscriptions.create(record)
        return _subscription_read(record)

    async def subscription_get(self, ctx: Context, pattern: str) -> SignalSubscription | None:
        ctx, pattern = _subscription_key(ctx, pattern)
        record = await self._signal_subscriptions.find_by_user_and_agent(ctx, pattern)
        return _subscription_read(record) if record else None

    async def unsubscribe(self, ctx: Context, pattern: str) -> bool:
        """Removes the agent's subscription; False when there was none."""
        ctx, pattern = _subscription_key(ctx, pattern)
        return await self._signal_subscriptions.delete(ctx, pattern)

    async def list_subscriptions(self) -> list[SignalSubscription]:
        return [_subscription_read(record) for record in await self._signal_subscriptions.find_all()]

    async def list_all(self) -> list[Signal]:
        """Every stored signal in the order it was generated."""
        return [_signal_read(record) for record in await self._signal_events.find_all()]

    async def list_recent_for_context(self, ctx: Context, limit: float = 200) -> list[Signal]:
        records = await self._signal_events.find_recent(ctx, signal_limit_normalize(limit))
        return [_signal_read(record) for record in records]

    async def list_recent(self, limit: float = 200) -> list[Signal]:
        records = await self._signal_events.find_recent_all(signal_limit_normalize(limit))
        return [_signal_read(record) for record in records]
