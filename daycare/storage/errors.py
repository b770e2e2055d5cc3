"""Errors a user can act on: what was found, and what to do about it."""

from __future__ import annotations


class StorageError(Exception):
    """A problem with the database or its settings, explained in a few lines for the user."""

    def __init__(self, problem: str, *advice: str) -> None:
        super().__init__("\n".join((problem, *advice)))
        self.problem = problem
        self.advice = advice


class DatabaseRefused(StorageError):
    """The file is not one this version can adopt; it was left exactly as it was."""


class DatabaseLocked(StorageError):
    """Another process held the database's lock for longer than the client's lock timeout."""


class TransactionConflict(StorageError):
    """A transaction met another process's write after it had begun and cannot go on; it must run again."""
