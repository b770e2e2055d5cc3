"""Merging a partial update into a record, with the legacy rules for None.

The legacy `update(id, partial)` methods spread the partial over the current record. Per field
they did one of three things with `null`, and `keep_if_none` / `nullable` say which:
- `??` fields (`keep_if_none`): None keeps the current value;
- nullable columns (`nullable`): None clears the value;
- any other field: None would have written NULL into a NOT NULL column (or 0 into a flag), so it
  is refused here.
An `id` equal to the record's own is ignored (callers pass whole records); another id is refused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import Any, ClassVar, Protocol, TypeVar


class _Record(Protocol):
    __dataclass_fields__: ClassVar[dict[str, Any]]

    @property
    def id(self) -> str: ...


R = TypeVar("R", bound=_Record)


def record_patch(
    current: R,
    changes: Mapping[str, Any],
    *,
    entity: str,
    keep_if_none: Collection[str] = (),
    nullable: Collection[str] = (),
) -> R:
    """`current` with `changes` applied.

    Raises TypeError for an unknown field or another id, ValueError for a None the field cannot take.
    """
    names = {item.name for item in dataclasses.fields(current)}
    merged: dict[str, Any] = {}
    for name, value in changes.items():
        if name not in names:
            raise TypeError(f"{entity} has no field {name!r}")
        if name == "id":
            if value != current.id:
                raise TypeError(f"{entity} id cannot be changed (from {current.id!r} to {value!r})")
            continue
        if value is None:
            if name in keep_if_none:
                continue
            if name not in nullable:
                raise ValueError(f"{entity} {name} cannot be None")
        merged[name] = value
    return dataclasses.replace(current, **merged)
