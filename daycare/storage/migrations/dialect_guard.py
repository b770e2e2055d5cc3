"""The first line of every migration file: it refuses to run on the other dialect's database.

Aerich writes SQL for one dialect into each file, so each dialect has its own chain
(`migrations/models/` for SQLite, `migrations/postgres/models/` for PostgreSQL). Pointing the
Aerich CLI at the wrong chain would otherwise fail half-way with a syntax error, or worse, succeed.
"""

from __future__ import annotations

from tortoise.backends.base.client import BaseDBAsyncClient

from daycare.storage.db.dialect import dialect_of
from daycare.storage.db.location import POSTGRES, SQLITE
from daycare.storage.errors import DatabaseRefused

# How to run each dialect's chain with the Aerich CLI, from the project folder.
CHAIN_COMMANDS = {
    SQLITE: "aerich upgrade",
    POSTGRES: "aerich -c migrations/postgres/aerich.toml upgrade",
}
_NAMES = {SQLITE: "SQLite", POSTGRES: "PostgreSQL"}


def dialect_require(db: BaseDBAsyncClient, needed: str) -> None:
    """Raises DatabaseRefused, before anything is changed, unless the database behind `db` is of dialect `needed`."""
    found = dialect_of(db)
    if found == needed:
        return
    found_name, needed_name = _NAMES.get(found, found), _NAMES.get(needed, needed)
    command = CHAIN_COMMANDS.get(found)
    advice = f"For {found_name} run `{command}`" if command else f"Daycare has no migrations for {found_name}"
    raise DatabaseRefused(
        f"This migration is of the {needed_name} chain, but the database is {found_name}.",
        f"{advice}; `daycare upgrade` picks the right chain itself. Nothing was changed.",
    )
