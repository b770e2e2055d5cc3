"""Which migrations a database records and lacks: its applied versions against the chain this Daycare has."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass



@dataclass(frozen=True)
class VersionsCompared:
    """The versions a database records, against the chain this Daycare has.

    `unknown` holds the recorded versions this Daycare lacks (a newer one applied them); `pending`
    then says nothing about what that newer version would apply.
    """

    applied: tuple[str, ...]
    pending: tuple[str, ...]
    unknown: tuple[str, ...]


def versions_compare(applied: Sequence[str], chain: Sequence[str]) -> VersionsCompared:
    """`applied` (oldest first) against `chain` (the versions of this Daycare's migration files, in order)."""
    recorded, known = set(applied), set(chain)
    return VersionsCompared(
        tuple(applied),
        tuple(version for version in chain if version not in recorded),
        tuple(version for version in applied if version not in known),
    )
