"""The read side of the legacy write-through cache (convention C7), shared by the repositories.

Statements run on the event loop and a coroutine resumes right after its statement without
yielding, so "run a statement, then update the cache" is never interleaved with another task:
the cache needs no lock of its own around synchronous updates.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import TypeVar

from daycare.storage.repositories.cache import RecordCache

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")


async def cache_find(cache: RecordCache[K, R], key: K, load: Callable[[], Awaitable[R | None]]) -> R | None:
    """A cached record; None without a query once every row is loaded; else loads under the key's lock."""
    record = cache.records.get(key)
    if record is not None:
        return record
    if cache.all_loaded:
        return None
    async with cache.key_locks.hold(key):
        record = cache.records.get(key)
        if record is not None:
            return record
        record = await load()
        if record is not None:
            cache.records[key] = record
        return record


def cache_fill(
    cache: RecordCache[K, R],
    records: Iterable[R],
    key: Callable[[R], K],
    *,
    clear: bool = False,
    complete: bool = False,
) -> None:
    """Stores loaded records; `clear` drops the old entries first, `complete` marks every row loaded."""
    if clear:
        cache.records.clear()
    for record in records:
        cache.records[key(record)] = record
    if complete:
        cache.all_loaded = True
