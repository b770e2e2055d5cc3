"""Type checks of records, for both directions: a write refuses a record its table cannot hold, and
a read turns a row the record cannot hold into a skipped row instead of an error.

The checks follow each record dataclass's annotations: `str`, `int` (not a bool), `bool`,
`float` (finite), JSON objects and lists (frozen: dicts and lists), `X | None` for the nullable
fields; `Any` and other annotations are not checked. A key field (`id`, or a name ending in
`_id`, annotated `str`) must be a non-blank string. A check runs in a few hundred nanoseconds:
the specs are built once per record class.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import types
import typing
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

from daycare.storage.db.text import UndecodableText
from daycare.storage.json_values import json_decode

log = logging.getLogger("daycare.storage")

# What reading a broken row raises: a bad type, broken or too deeply nested JSON, a number out of range.
ROW_ERRORS: tuple[type[Exception], ...] = (ValueError, TypeError, RecursionError, ArithmeticError, AttributeError)


@dataclass(frozen=True, slots=True)
class UnreadableRow:
    """A row that a repository cannot read: its table, its key (`id='a1'`) and why."""

    table: str
    key: str
    reason: str


def key_check(value: Any, what: str) -> None:
    """Raises ValueError when a key is None or blank, TypeError when it is not a string; `what` names it."""
    if type(value) is not str:
        if value is None:
            raise ValueError(f"{what} is required, got None")
        if not isinstance(value, str):
            raise TypeError(f"{what} must be a string, got {type(value).__name__} {value!r}")
    if not value.strip():
        raise ValueError(f"{what} is required, got {value!r}")


def number_check(value: Any, what: str, *, nullable: bool = False) -> None:
    """Raises TypeError unless `value` is an int (not a bool), or None when `nullable`; `what` names it."""
    if type(value) is int or (value is None and nullable):
        return
    if value is None:
        raise ValueError(f"{what} cannot be None")
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an integer, got {type(value).__name__} {value!r}")


def text_check(value: Any, what: str, *, nullable: bool = False) -> None:
    """Raises TypeError unless `value` is a str, or None when `nullable`; `what` names it."""
    if type(value) is str or (value is None and nullable):
        return
    if value is None:
        raise ValueError(f"{what} cannot be None")
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, got {type(value).__name__} {_shown(value)}")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True, slots=True)
class _FieldSpec:
    name: str
    kinds: tuple[type, ...]  # what the value may be (empty: anything)
    nullable: bool
    key: bool
    integer: bool  # an int that is not a bool
    finite: bool  # a float that is not NaN or infinite


def _spec(name: str, annotation: Any) -> _FieldSpec:
    nullable = False
    origin = typing.get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        members = [member for member in typing.get_args(annotation) if member is not type(None)]
        nullable = len(members) < len(typing.get_args(annotation))
        annotation = members[0] if len(members) == 1 else Any
        origin = typing.get_origin(annotation)
    base = origin or annotation
    kinds: tuple[type, ...] = ()
    if base is str:
        kinds = (str,)
    elif base is bool:
        kinds = (bool,)
    elif base is int:
        kinds = (int,)
    elif base is float:
        kinds = (int, float)
    elif base in (Mapping, dict):
        kinds = (dict,)  # records hold frozen JSON: FrozenDict is a dict
    elif base in (Sequence, list):
        kinds = (list, tuple)
    elif base is tuple:
        kinds = (tuple,)
    key = base is str and not nullable and (name == "id" or name.endswith("_id"))
    return _FieldSpec(name, kinds, nullable, key, base is int, base is float)


_specs: dict[type, tuple[_FieldSpec, ...]] = {}


def _specs_of(record_type: type) -> tuple[_FieldSpec, ...]:
    specs = _specs.get(record_type)
    if specs is None:
        hints = typing.get_type_hints(record_type)
        specs = tuple(
            spec
            for spec in (_spec(field.name, hints[field.name]) for field in dataclasses.fields(record_type))
            if spec.kinds or spec.key  # `Any` and unknown annotations are not checked
        )
        _specs[record_type] = specs
    return specs


def record_check(record: Any, entity: str) -> None:
    """Raises ValueError for a None the field cannot take or a blank key, TypeError for a value of
    another type, naming `entity` and the field (`Agent updated_at must be an integer, got str 'abc'`)."""
    for spec in _specs_of(type(record)):
        value = getattr(record, spec.name)
        if value is None:
            if spec.nullable:
                continue
            if spec.key:
                key_check(value, f"{entity} {spec.name}")
            raise ValueError(f"{entity} {spec.name} cannot be None")
        if spec.key:
            key_check(value, f"{entity} {spec.name}")
            continue
        if spec.kinds and not isinstance(value, spec.kinds):
            raise TypeError(_type_message(entity, spec, value))
        if spec.integer and type(value) is bool:
            raise TypeError(_type_message(entity, spec, value))
        if spec.finite and (type(value) is bool or not math.isfinite(value)):
            raise ValueError(f"{entity} {spec.name} must be a finite number, got {value!r}")


def _type_message(entity: str, spec: _FieldSpec, value: Any) -> str:
    wanted = {str: "a string", bool: "a bool", dict: "a JSON object", tuple: "a tuple"}
    if spec.integer:
        expected = "an integer"
    elif spec.finite:
        expected = "a number"
    elif spec.kinds == (list, tuple):
        expected = "a list"
    else:
        expected = wanted.get(spec.kinds[0], spec.kinds[0].__name__)
    return f"{entity} {spec.name} must be {expected}, got {type(value).__name__} {_shown(value)}"


def json_column(row: Mapping[str, Any], name: str) -> Any:
    """The frozen JSON value of a column; raises ValueError naming the column when it holds no JSON text."""
    text = row[name]
    try:
        return json_decode(text)
    except RecursionError:
        raise ValueError(f"{name} holds JSON nested too deeply to read") from None
    except (ValueError, TypeError) as error:
        if not isinstance(text, str):
            raise ValueError(f"{name} holds {type(text).__name__}, not JSON text") from None
        raise ValueError(f"{name} is not JSON ({error})") from None


def row_key_text(row: Mapping[str, Any], key_fields: Sequence[str]) -> str:
    """The key of a row as a log names it: `id='a1'`, or `user_id='u', id='t1'`."""
    return ", ".join(f"{field}={_column(row, field)!r}" for field in key_fields)


def _column(row: Mapping[str, Any], name: str) -> Any:
    """A column of a row (a dict, or the driver's row), None when the row does not hold it."""
    try:
        return row[name]
    except (KeyError, IndexError):
        return None


def row_reason(row: Mapping[str, Any], error: BaseException) -> str:
    """Why a row cannot be read, in words: the error, said plainly when the column it names holds
    text that is not UTF-8 or a BLOB."""
    message = str(error) or type(error).__name__
    for name in row.keys():  # noqa: SIM118 - the driver's rows have keys() but no items()
        value = row[name]
        if re.search(rf"\b{re.escape(name)}\b", message):
            if isinstance(value, UndecodableText):
                return f"{name} is not valid UTF-8 text"
            if isinstance(value, bytes | bytearray | memoryview):
                return f"{name} is a BLOB, not text"
    if isinstance(error, RecursionError):
        return "a JSON value is nested too deeply to read"
    return message


class SkippedRows:
    """The rows one repository instance skipped; each is logged once, with its table and key."""

    def __init__(self, table: str, key_fields: Sequence[str]) -> None:
        self.table = table
        self.key_fields = tuple(key_fields)
        self._logged: set[Hashable] = set()

    def skip(self, row: Mapping[str, Any], error: BaseException) -> None:
        """Logs the row once per key (per instance): its table, its key and why it cannot be read."""
        key = tuple(_hashable(_column(row, field)) for field in self.key_fields)
        if key in self._logged:
            return
        self._logged.add(key)
        log.warning(
            "skipped an unreadable row of %s (%s): %s; `daycare db check --data` lists every such row",
            self.table,
            row_key_text(row, self.key_fields),
            row_reason(row, error),
        )

    def unreadable(self, row: Mapping[str, Any], error: BaseException) -> UnreadableRow:
        return UnreadableRow(self.table, row_key_text(row, self.key_fields), row_reason(row, error))


def _hashable(value: Any) -> Hashable:
    return value if isinstance(value, Hashable) else repr(value)


def records_read(
    rows: Iterable[Mapping[str, Any]], read: Callable[[Mapping[str, Any]], Any], skipped: SkippedRows
) -> list[Any]:
    """The records `read` makes of `rows`; a row it cannot read is logged once and left out."""
    records = []
    for row in rows:
        try:
            records.append(read(row))
        except ROW_ERRORS as error:
            skipped.skip(row, error)
    return records
