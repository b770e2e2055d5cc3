"""Conventions shared by every repository: JSON text as the legacy code wrote it, and
records that a caller cannot change behind a cache's back.

- `json_encode` writes what JS `JSON.stringify` wrote for the same value: no spaces, raw
  UTF-8, keys in insertion order. (One known difference: a float with an integral value is
  written `1.0`, where JS wrote `1`; values read from a legacy file round-trip unchanged.)
- `frozen` turns parsed JSON into read-only dicts and lists, so a record can be cached and
  returned without copying. They compare equal to plain dicts and lists, serialize as
  usual, and `copy.deepcopy` or `thawed` gives back plain mutable values.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def json_encode(value: Any) -> str:
    """Compact JSON with raw UTF-8 and kept key order, byte-compatible with the legacy writer."""
    return _encoder.encode(value)


def _constant_reject(name: str) -> NoReturn:
    # JS JSON.parse rejects NaN and Infinity; Python's parser would accept them.
    raise ValueError(f"{name} is not JSON")


def _object_freeze(pairs: list[tuple[str, Any]]) -> FrozenDict:
    # Objects arrive with their members already parsed (inner objects frozen by this hook); only
    # lists still need freezing, which is cheaper than walking the whole value afterwards.
    result = FrozenDict()
    dict.update(result, ((key, frozen(value) if type(value) is list else value) for key, value in pairs))
    return result


_decoder = json.JSONDecoder(object_pairs_hook=_object_freeze, parse_constant=_constant_reject)


def json_decode(text: str) -> Any:
    """Parses strict JSON (no NaN, like JS) into frozen values; raises ValueError when it is not JSON."""
    value = _decoder.decode(text)
    return frozen(value) if type(value) is list else value


def _read_only(*_: Any, **__: Any) -> NoReturn:
    raise TypeError("records are read-only; build a new one (dataclasses.replace) or copy with thawed()")


class FrozenDict(dict[str, Any]):
    """A dict that refuses changes; equal to, and serialized like, a plain dict."""

    __slots__ = ()
    __setitem__ = __delitem__ = _read_only
    clear = pop = popitem = setdefault = update = _read_only
    __ior__ = _read_only

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(self.items()))

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (dict(self),))

    def __copy__(self) -> FrozenDict:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return thawed(self)


class FrozenList(list[Any]):
    """A list that refuses changes; equal to, and serialized like, a plain list."""

    __slots__ = ()
    __setitem__ = __delitem__ = _read_only
    append = clear = extend = insert = pop = remove = reverse = sort = _read_only
    __iadd__ = __imul__ = _read_only

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(self))

    def __reduce__(self) -> tuple[Any, ...]:
        return (list, (list(self),))

    def __copy__(self) -> FrozenList:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return thawed(self)


def frozen(value: Any) -> Any:
    """A read-only deep copy of a JSON-like value (dicts, lists, tuples, scalars)."""
    if isinstance(value, FrozenDict | FrozenList):
        return value
    if isinstance(value, dict):
        frozen_dict = FrozenDict()
        dict.update(frozen_dict, ((key, frozen(item)) for key, item in value.items()))
        return frozen_dict
    if isinstance(value, list | tuple):
        frozen_list = FrozenList()
        list.extend(frozen_list, (frozen(item) for item in value))
        return frozen_list
    return value


def thawed(value: Any) -> Any:
    """A plain, mutable deep copy of a (possibly frozen) JSON-like value."""
    if isinstance(value, dict):
        return {key: thawed(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [thawed(item) for item in value]
    return value
