"""Generated identifiers: cuid2 ids and `swiftfalcon123`-style nametags."""

from __future__ import annotations

import random

from daycare.storage.cuid import CuidGenerator

_cuid_generator = CuidGenerator()


def cuid_create() -> str:
    """A new 24-character cuid2, the id format of the legacy code, made as the `cuid2` package makes it."""
    return _cuid_generator.create()


def nametag_generate() -> str:
    """A random adjective and animal joined, then three digits (100-999), like the legacy nametags."""
    import coolname  # its word lists load only when a nametag is made, not on every start

    adjective, noun = coolname.generate(2)
    return f"{adjective}{noun}{random.randint(100, 999)}"
