"""Conventions shared by every repository: JSON text as the legacy code wrote it, and
records that a caller cannot change behind a cache's back.

- `json_encode` writes what JS `JSON.stringify` wrote for the same value: no spaces, raw
  UTF-8, keys in insertion order, and numbers as JS writes them (`2`, not `2.0`; `1e-7`,
  not `1e-07`; `1e+21`). NaN and Infinity are refused, as JSON has no place for them: the
  ValueError names where in the value the number sits.
- `frozen` turns parsed JSON into read-only dicts and lists, so a record can be cached and
  returned without copying. They compare equal to plain dicts and lists, serialize as
  usual, and `copy.deepcopy` or `thawed` gives back plain mutable values.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any, NoReturn

# allow_nan=False: the C encoder raises on NaN and Infinity instead of writing `NaN`, which no
# JSON reader (the legacy one included) accepts; `_non_json_raise` then names the place.
_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)

# Python writes floats with `repr`; JS differs in form, not in digits (both write the shortest
# digits that read back as the same double), so only the form is rewritten, and only in text
# whose value holds a float. `_NO_FLOAT` runs over compact JSON up to the first float outside a
# string; it never backtracks (possessive quantifiers), so it is one linear pass in C.
_NO_FLOAT = re.compile(r'(?:[^"\d-]++|"[^"\\]*+(?:\\.[^"\\]*+)*+"|-?\d++(?![.e]))*+')
_FLOAT = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]\d+)?")
_SCALARS = frozenset({str, int, bool, type(None)})
_CONTAINERS = (dict, list, tuple)


def json_encode(value: Any, field: str = "value") -> str:
    """Compact JSON with raw UTF-8, kept key order and JS number forms, byte-compatible with the legacy writer.

    Raises ValueError for NaN or Infinity and TypeError for a value JSON cannot hold, naming
    its place as `field` plus a path (`data.scores[2]`); nothing is returned then.
    """
    try:
        text = _encoder.encode(value)
    except (ValueError, TypeError) as error:
        _non_json_raise(value, field, error)
    if "." not in text and "e+" not in text and "e-" not in text:
        return text  # every float repr holds one of them: no float can hide here
    if isinstance(value, _CONTAINERS):
        if not _holds_float(value):
            return text
    elif not isinstance(value, float):
        return text
    return _floats_js(text)


def _holds_float(value: dict[Any, Any] | list[Any] | tuple[Any, ...]) -> bool:
    """Whether a float sits anywhere in `value`; each level's types are gathered in C, not item by item."""
    items = value.values() if isinstance(value, dict) else value
    kinds = set(map(type, items))
    if kinds <= _SCALARS:
        return False
    for kind in kinds - _SCALARS:
        if issubclass(kind, float):
            return True
    return any(isinstance(item, _CONTAINERS) and _holds_float(item) for item in items)


def _floats_js(text: str) -> str:
    """`text` with every float outside a string rewritten in the JS form."""
    parts = []
    position = 0
    end = len(text)
    while True:
        safe = _NO_FLOAT.match(text, position).end()  # type: ignore[union-attr]
        if safe == end:
            break
        number = _FLOAT.match(text, safe)
        if number is None:  # not reachable for the encoder's output; keep the text as it is
            return text
        parts.append(text[position:safe])
        parts.append(js_number(number.group()))
        position = number.end()
    parts.append(text[position:])
    return "".join(parts)


def js_number(token: str) -> str:
    """A number written by Python (`repr` of a float, or an int) as ECMAScript Number::toString writes it."""
    if "." not in token and "e" not in token:
        return token
    sign = ""
    if token[0] == "-":
        sign, token = "-", token[1:]
    mantissa, _, exponent = token.partition("e")
    whole, _, fraction = mantissa.partition(".")
    all_digits = whole + fraction
    digits = all_digits.lstrip("0")
    # n: where the decimal point sits relative to the digits (value = 0.digits x 10^n).
    n = len(whole) + (int(exponent) if exponent else 0) - (len(all_digits) - len(digits))
    digits = digits.rstrip("0")
    if not digits:
        return "0"  # JS writes -0 as 0
    k = len(digits)
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * -n + digits
    e = n - 1
    exponent_text = ("e+" if e >= 0 else "e-") + str(abs(e))
    return sign + (digits if k == 1 else digits[0] + "." + digits[1:]) + exponent_text


def _non_json_raise(value: Any, field: str, error: Exception) -> NoReturn:
    """Raises the encoder's error again, naming the place of the first value JSON cannot hold."""
    for path, item in _json_walk(value, field, set()):
        if isinstance(item, float) and not math.isfinite(item):
            number = "NaN" if math.isnan(item) else ("Infinity" if item > 0 else "-Infinity")
            raise ValueError(f"{path} is {number}, which JSON cannot hold (NaN and Infinity are refused)") from None
        if not isinstance(item, str | int | float | dict | list | tuple) and item is not None:
            raise TypeError(f"{path} is a {type(item).__name__}, which JSON cannot hold") from None
    raise error


def _json_walk(value: Any, path: str, seen: set[int]) -> Iterator[tuple[str, Any]]:
    """Every value inside `value` with its path, depth first (a container is visited once)."""
    yield path, value
    if isinstance(value, dict | list | tuple):
        if id(value) in seen:
            return
        seen.add(id(value))
        if isinstance(value, dict):
            for key, item in value.items():
                yield f"{path}.{key}", key  # a key is checked like a value: a float NaN key is refused too
                yield from _json_walk(item, f"{path}.{key}", seen)
        else:
            for index, item in enumerate(value):
                yield from _json_walk(item, f"{path}[{index}]", seen)


def _constant_reject(name: str) -> NoReturn:
    # JS JSON.parse rejects NaN and Infinity; Python's parser would accept them.
    raise ValueError(f"{name} is not JSON")


def _object_freeze(pairs: list[tuple[str, Any]]) -> FrozenDict:
    # Objects arrive with their members already parsed (inner objects frozen by this hook); only
    # lists still need freezing, which is cheaper than walking the whole value afterwards.
    for _, value in pairs:
        if type(value) is list:
            result = FrozenDict()
            dict.update(result, ((key, frozen(item) if type(item) is list else item) for key, item in pairs))
            return result
    return FrozenDict(pairs)  # no list inside: built in one C call (a third faster on history reads)


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
