"""The write-through cache of a repository, and the one rule that keeps it equal to the database.

The rule, whatever the driver and however often it yields to the event loop:

1. A write holds its key's lock from before it reads the current record until the cache holds
   the result (`writing`). Writes to one key therefore never interleave, and a read-modify-write
   never starts from a record another write is about to replace.
2. The cache changes only after the write committed. A cached repository never writes inside a
   caller's transaction (it refuses); the Storage facade, which writes several repositories in
   one transaction, puts the records in the caches after its COMMIT. A write that fails, or is
   cancelled, evicts its key: the next read asks the database.
3. Reads take no lock. A read that loads rows (`loading`) stores them only for keys that no write
   touched while it ran: the cache counts writes, and a key remembers the count at which its last
   write ended, so a slow load never brings back a row that a write has replaced meanwhile.

4. A change another engine committed (on shared PostgreSQL, announced by the database) invalidates
   its key like a write that ended now: loads in flight do not store it, and a write in flight
   on that key evicts it at its end instead of keeping its own result.

So a concurrent reader sees the committed record from before a write or the one after it, never
an older one. Records are frozen (see `daycare.storage.json_values`), so the cache hands out the
cached object itself.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Generic, TypeVar

from daycare.storage.repositories.locks import KeyedLocks

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")


class CacheLoad(Generic[K, R]):
    """A load in progress: what it read is handed to `store` once the rows are in."""

    def __init__(self, cache: RecordCache[K, R]) -> None:
        self._cache = cache
        self.since = cache._version

    def store(self, records: Iterable[tuple[K, R]], *, complete: bool = False) -> None:
        """Caches the loaded records whose keys no write touched since the load began.

        `complete` says the records are every row of the table: the cache then drops what it
        holds beyond them and answers misses without a query, unless a write ran meanwhile.
        """
        cache = self._cache
        fresh = {key: record for key, record in records if cache._untouched_since(key, self.since)}
        if complete:
            for key in [key for key in cache.records if key not in fresh]:
                if cache._untouched_since(key, self.since):
                    del cache.records[key]
        cache.records.update(fresh)
        if complete and cache._version == self.since and not cache._writing:
            cache.all_loaded = True


class CacheWrite(Generic[K, R]):
    """The async context manager of `RecordCache.writing` (a class: it sits on every cached write)."""

    __slots__ = ("_cache", "_hold", "_key")

    def __init__(self, cache: RecordCache[K, R], key: K) -> None:
        self._cache = cache
        self._key = key
        self._hold = cache.locks.hold(key)

    async def __aenter__(self) -> None:
        await self._hold.__aenter__()
        cache = self._cache
        cache._version += 1
        cache._writing[self._key] = cache._writing.get(self._key, 0) + 1

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        cache, key = self._cache, self._key
        if exc_type is not None or key in cache._invalidated:
            cache.evict(key)
        cache._version += 1
        remaining = cache._writing.pop(key) - 1
        if remaining:
            cache._writing[key] = remaining
        else:
            cache._invalidated.discard(key)
        if cache._loads:
            cache._ended_at[key] = cache._version
        await self._hold.__aexit__(exc_type, exc, tb)


class RecordCache(Generic[K, R]):
    """Records by key, whether every row is loaded, the per-key write locks and the write counter."""

    def __init__(self) -> None:
        self.records: dict[K, R] = {}
        self.all_loaded = False
        self.locks = KeyedLocks()
        self._version = 0  # bumped when a write begins and when it ends
        self._ended_at: dict[K, int] = {}  # the version at which each key's last write ended
        self._writing: dict[K, int] = {}  # keys with writes in flight, and how many
        self._invalidated: set[K] = set()  # keys with writes in flight that another engine changed meanwhile
        self._cleared_at = 0  # the version at which every key was last invalidated
        self._loads = 0

    def get(self, key: K) -> R | None:
        return self.records.get(key)

    def put(self, key: K, record: R) -> None:
        """Caches the record a committed write produced (call it inside `writing(key)`)."""
        self.records[key] = record

    def drop(self, key: K) -> None:
        """Forgets a deleted row (call it inside `writing(key)`); a miss still asks the database."""
        self.records.pop(key, None)

    def evict(self, key: K) -> None:
        """Forgets a key whose row is unknown, and that every row is loaded."""
        self.records.pop(key, None)
        self.all_loaded = False

    def invalidate(self, key: K) -> None:
        """Forgets a key another engine changed, as if a write on it ended now (rule 4)."""
        self._version += 1
        self.evict(key)
        if key in self._writing:
            self._invalidated.add(key)
        if self._loads:
            self._ended_at[key] = self._version

    def invalidate_all(self) -> None:
        """Forgets every key, as if each had a write that ended now (changes may have been missed)."""
        self._version += 1
        self.records.clear()
        self.all_loaded = False
        self._invalidated.update(self._writing)
        self._cleared_at = self._version

    def keys(self) -> list[K]:
        return list(self.records)

    def writing(self, key: K) -> CacheWrite[K, R]:
        """`async with cache.writing(key):` holds the key's lock for one write; a failed or cancelled
        write evicts the key."""
        return CacheWrite(self, key)

    @contextmanager
    def loading(self) -> Iterator[CacheLoad[K, R]]:
        """Marks a load from the database; store its rows with `CacheLoad.store`."""
        self._loads += 1
        try:
            yield CacheLoad(self)
        finally:
            self._loads -= 1
            if not self._loads:
                self._ended_at.clear()

    def _untouched_since(self, key: K, since: int) -> bool:
        return key not in self._writing and self._ended_at.get(key, 0) <= since and self._cleared_at <= since
