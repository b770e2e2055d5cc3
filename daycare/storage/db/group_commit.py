"""Group commit: the writes of many tasks share one transaction, and so one fsync.

Under `synchronous=FULL` every COMMIT waits for the disk, so one commit per write caps a
file at the disk's flush rate however many tasks write. With group commit on (the default;
`group_commit=off` in a `sqlite://` URL turns it off), the SQLite client keeps one shared
transaction open while writes arrive:

- a unit is one write statement outside a transaction, or one whole `in_transaction()` block;
  each runs in its own SAVEPOINT inside the shared transaction, so a failing unit rolls back
  alone and its caller gets its error, while the others stay in;
- the first unit to finish in a group (its leader) lets every task that is ready run first (it
  yields to the loop until a turn brings no new unit, at most 16 turns), then takes the
  connection's lock behind the units already waiting for it and COMMITs;
  units that arrive after that join the next group;
- a task that writes again when it was the last to write and no group is open has nobody to
  share a COMMIT with: its write commits at once, as with group commit off, so a lone writer
  pays nothing; a write from another task opens a group, and from then on they share;
- every caller's await returns only once the COMMIT that holds its unit has returned, so
  `synchronous=FULL` still means an acknowledged write survives a power cut; a COMMIT that
  fails (a full disk, an I/O error, a deferred foreign key) is rolled back, and every caller
  in the group gets the error: nothing of the group is kept;
- a read that runs while a group is open sees the group's writes, as reads inside one
  transaction do, and then waits for that group's COMMIT and fails with it, so no caller is
  ever handed a write that is later lost. A read with no group open runs at once.

Statements that cannot share a transaction (PRAGMA, DDL, VACUUM, scripts) first COMMIT the
open group, then run on their own as without group commit. This module holds what a group
is; `daycare.storage.db.backend` runs the SQL.
"""

from __future__ import annotations

import asyncio
import enum
import re
from dataclasses import dataclass

from daycare.storage.errors import StorageError

GROUP_COMMIT = True  # the default when the URL does not say group_commit=on or off


class StatementKind(enum.Enum):
    """How a statement outside a transaction takes part in group commit."""

    READ = "read"  # runs inside an open group (and waits for it), else at once
    WRITE = "write"  # a unit of the group, in its own savepoint; opens a group when none is open
    ALONE = "alone"  # commits the open group first, then runs outside any transaction


_FIRST_WORD = re.compile(r"[\s(]*([A-Za-z]+)")
_KINDS = {
    "SELECT": StatementKind.READ,
    "VALUES": StatementKind.READ,
    "EXPLAIN": StatementKind.READ,
    "INSERT": StatementKind.WRITE,
    "UPDATE": StatementKind.WRITE,
    "DELETE": StatementKind.WRITE,
    "REPLACE": StatementKind.WRITE,
    "WITH": StatementKind.WRITE,  # may hold an INSERT, UPDATE or DELETE
}


def statement_kind(query: str) -> StatementKind:
    """The kind of `query` by its first keyword; anything not plainly a read or a write runs alone."""
    match = _FIRST_WORD.match(query)
    return _KINDS.get(match.group(1).upper(), StatementKind.ALONE) if match else StatementKind.ALONE


def group_commit_parse(value: object) -> bool:
    """The `group_commit` URL parameter (on or off, any case) as a bool; StorageError otherwise."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().upper()
    if text not in ("ON", "OFF"):
        raise StorageError(f"Invalid group_commit={value!r} in the database URL.", "Use group_commit=on or off.")
    return text == "ON"


class CommitGroup:
    """The units one shared transaction holds: its leader commits it, the other callers wait for the outcome."""

    __slots__ = ("done", "error", "led", "waiters")

    def __init__(self) -> None:
        self.led = False  # a unit has joined, and so has taken on the COMMIT
        self.done = False
        self.error: BaseException | None = None  # why the group was not kept, once done
        self.waiters: list[asyncio.Future[None]] = []

    @property
    def size(self) -> int:
        """How many units have joined (those that were cancelled while waiting included)."""
        return len(self.waiters) + 1 if self.led else 0

    def join(self) -> Membership:
        """Adds a finished unit; the first one leads (it commits the group), the others wait."""
        if not self.led:
            self.led = True
            return Membership(self, None)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        return Membership(self, waiter)

    def finish(self, error: BaseException | None) -> None:
        """Records the outcome (None: committed) and wakes every waiting caller; a cancelled one is skipped."""
        if self.done:
            return
        self.done = True
        self.error = error
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(None)
        self.waiters.clear()


@dataclass(slots=True)
class Membership:
    """A unit's place in a group: the leader has no waiter, because it commits the group itself."""

    group: CommitGroup
    waiter: asyncio.Future[None] | None
