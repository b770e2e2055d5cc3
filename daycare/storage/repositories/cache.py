"""The state of a legacy write-through cache (convention C7), shared by the repositories.

Records are frozen (see `records.py`), so a cache hands out the cached object itself: a
caller cannot change what the cache holds, and no clone is needed on the hot path.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from daycare.storage.repositories.locks import KeyedLocks

K = TypeVar("K")
R = TypeVar("R")


@dataclass
class RecordCache(Generic[K, R]):
    """Records by key, whether all rows are loaded, and the locks of the legacy pattern."""

    records: dict[K, R] = field(default_factory=dict)
    all_loaded: bool = False
    create_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    cache_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    key_locks: KeyedLocks = field(default_factory=KeyedLocks)
