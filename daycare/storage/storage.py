"""The Storage facade: every repository, on the one database the engine opened."""

from __future__ import annotations

from daycare.storage.database import Database


class Storage:
    """Repositories bound to one open database; it never opens or closes the database itself."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @classmethod
    def from_database(cls, db: Database) -> Storage:
        """Builds the repositories on an open, migrated database."""
        return cls(db)
