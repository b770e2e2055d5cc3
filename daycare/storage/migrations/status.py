"""Which migrations a database records and lacks, and `db status` of a SQLite file under Aerich without the ORM.

`daycare db status` answers from the versions a file records and the names of the chain's files.
Importing Tortoise and asyncio takes about 200 ms, forty times that reading. So a SQLite file that
records versions of this app (under Aerich, by the baseline's first rule, `baseline_v1.file_kind`,
whatever else it holds) is read here with sqlite3 alone (`db.sqlite_reader`): read-only, by the
recorder's own statement. Everything else gets None from `status_quick_read`, and the full path
(`migrate.database_status`) answers with its own messages: memory, PostgreSQL, a fresh, legacy or
foreign file, and a file that is missing, locked, damaged or not SQLite at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from daycare.storage.db.files import private_modes_ensure, regular_file
from daycare.storage.db.sqlite_reader import ReadFailed, SqliteReader
from daycare.storage.migrations.recorder import versions_applied_read


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


def status_quick_read(path: Path, chain: Sequence[str]) -> VersionsCompared | None:
    """The versions of the SQLite file at `path` against `chain`, if the file records any; else None.

    Opens the file read-only and never waits for a lock: any error, a busy file included, is the
    full path's to report. Like a read-only open, it warns when others can read the file.
    """
    if not regular_file(path):
        return None
    try:
        with SqliteReader(path) as reader:
            applied = versions_applied_read(reader)
    except ReadFailed:
        return None
    if not applied:
        return None
    private_modes_ensure(path, change=False)
    return versions_compare(applied, chain)
