"""The engine: owns the one database, from its async start to its async stop."""

from __future__ import annotations

from types import TracebackType

from daycare.config import Config
from daycare.storage.database import Database, database_close, database_open
from daycare.storage.migrate import database_migrate
from daycare.storage.storage import Storage


class Engine:
    """Opens and migrates the database in `start()`, hands out `storage`, closes it in `stop()`."""

    def __init__(self, config: Config, *, backup: bool = True) -> None:
        self.config = config
        self.backup = backup
        self._db: Database | None = None
        self._storage: Storage | None = None

    @property
    def storage(self) -> Storage:
        if self._storage is None:
            raise RuntimeError("The engine is not started.")
        return self._storage

    async def start(self) -> None:
        if self._db is not None:
            raise RuntimeError("The engine is already started.")
        db = await database_open(self.config.db_location)
        try:
            await database_migrate(db, backup=self.backup)
        except BaseException:
            await database_close(db)
            raise
        self._db = db
        self._storage = Storage.from_database(db)

    async def stop(self) -> None:
        db, self._db, self._storage = self._db, None, None
        if db is not None:
            await database_close(db)

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
