"""Per-key asyncio locks that disappear once nobody holds or waits for them."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from types import TracebackType


class KeyedLocks:
    """One FIFO lock per key (not re-entrant, like the legacy AsyncLock); idle keys are dropped."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        """How many keys have a lock right now: only those held or waited for."""
        return len(self._locks)

    def hold(self, key: Hashable) -> KeyHold:
        """`async with locks.hold(key):` runs its body while no other holder of `key` runs."""
        return KeyHold(self._locks, key)


class KeyHold:
    """The async context manager of `KeyedLocks.hold` (a class: it sits on every cached write)."""

    __slots__ = ("_key", "_lock", "_locks")

    def __init__(self, locks: dict[Hashable, tuple[asyncio.Lock, int]], key: Hashable) -> None:
        self._locks = locks
        self._key = key

    async def __aenter__(self) -> None:
        lock, users = self._locks.get(self._key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[self._key] = (lock, users + 1)
        self._lock = lock
        try:
            await lock.acquire()
        except BaseException:
            self._release_use()
            raise

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._lock.release()
        self._release_use()

    def _release_use(self) -> None:
        lock, users = self._locks[self._key]
        if users == 1:
            del self._locks[self._key]
        else:
            self._locks[self._key] = (lock, users - 1)
