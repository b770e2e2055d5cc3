"""Checks that a repository's write-through cache holds what the database holds."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, TypeVar

from daycare.storage.repositories.base import CachedRepository

K = TypeVar("K", bound=Hashable)


def assert_cache_matches(repo: CachedRepository[K, Any], rows: Mapping[K, Any]) -> None:
    """Every record `repo` caches equals the row a new repository read for its key (`rows`), and a
    cache that claims every row is loaded holds exactly the keys of `rows`."""
    cache = repo._cache
    for key, record in cache.records.items():
        assert rows.get(key) == record, f"cached {key!r} differs from the database"
    if cache.all_loaded:
        assert set(cache.records) == set(rows)
