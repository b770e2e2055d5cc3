"""Generated identifiers: cuid2 ids and `swiftfalcon123`-style nametags."""

from __future__ import annotations

import random

import coolname
from cuid2 import Cuid

_cuid = Cuid(length=24)


def cuid_create() -> str:
    """A new 24-character cuid2, the id format of the legacy code."""
    return _cuid.generate()


def nametag_generate() -> str:
    """A random adjective and animal joined, then three digits (100-999), like the legacy nametags."""
    adjective, noun = coolname.generate(2)
    return f"{adjective}{noun}{random.randint(100, 999)}"
