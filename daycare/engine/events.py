"""The engine's event bus: services announce what they did (legacy `EngineEventBus`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("daycare.engine.events")


@dataclass(frozen=True, slots=True)
class EngineEvent:
    """One announcement, e.g. `signal.generated` with the signal as payload."""

    type: str
    payload: Any


Listener = Callable[[EngineEvent], None]


class EngineEvents:
    """Synchronous fan-out to listeners; a listener that raises is logged and skipped."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Adds a listener; returns the function that removes it."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    def emit(self, type: str, payload: Any = None) -> None:
        event = EngineEvent(type, payload)
        log.debug("%s", type)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("listener of %s failed", type)
