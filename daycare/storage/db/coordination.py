"""Several engines on one PostgreSQL schema: the engine lock they share, scheduler leadership, change notices.

Each engine of a shared database holds one connection of its own, outside Tortoise's pool, named
`daycare engine pid=<pid> host=<host>` in pg_stat_activity. On it:
- the schema's engine lock, in shared mode: every engine of the database holds it at once, and an
  upgrade, a script or an engine without `shared=true`, which take it exclusively, are refused
  while one runs (and the other way round);
- leadership: an advisory lock of its own ("dayl" + the schema's hash) that at most one engine
  holds; the leader runs the schedulers. The others try to take it every `leader_retry` seconds,
  so when a leader dies (the server ends its session, freeing the lock) another leads within that;
- `LISTEN daycare_changes`: the changes committed to the tables that engines cache, announced by
  the database's triggers in the committing transaction (a rolled-back change announces nothing).

Losing that connection loses leadership at once: `on_lead_lost` is called before anything else,
then `on_changes_missed` (notices may be lost from now on), and the coordinator reconnects; once
connected again it calls `on_changes_missed` again (what was cached meanwhile is dropped too) and
competes for leadership again. If, meanwhile, something took the schema exclusively (an upgrade),
`on_failed` says so: the engine must stop.

Migrations run once: `migrations_locked()` holds the schema's migration lock ("daym") while an
engine opens and migrates the database; the others wait, then find nothing pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from daycare.storage.db import postgres
from daycare.storage.db.database import Database
from daycare.storage.db.location import DatabaseLocation
from daycare.storage.db.lock import (
    UPGRADE_WAIT,
    DatabaseInUse,
    LockHolder,
    PostgresLock,
    lock_holder_parse,
    lock_holder_text,
    postgres_lock_shared,
)
from daycare.storage.errors import StorageError

log = logging.getLogger("daycare.storage")

LEADER_RETRY = 1.0  # seconds between two attempts of a follower to lead
RECONNECT_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)  # seconds before each attempt to reconnect; the last one repeats
MIGRATION_POLL = 0.1  # seconds between two attempts to take the migration lock


class Coordinator:
    """One engine's part in a shared database: its lock, its leadership and the changes it hears of."""

    def __init__(
        self,
        location: DatabaseLocation,
        *,
        on_lead: Callable[[], Awaitable[None]],
        on_lead_lost: Callable[[], None],
        on_change: Callable[[str, str], None],
        on_changes_missed: Callable[[], None],
        on_failed: Callable[[str], None],
        leader_retry: float = LEADER_RETRY,
    ) -> None:
        self.location = location
        self.leader = False
        self._on_lead = on_lead
        self._on_lead_lost = on_lead_lost
        self._on_change = on_change
        self._on_changes_missed = on_changes_missed
        self._on_failed = on_failed
        self._leader_retry = leader_retry
        self._lock: PostgresLock | None = None
        self._schema = ""
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._calm_until = 0.0  # monotonic time before which this engine does not try to lead (just reconnected)
        self._leading = asyncio.Lock()  # one change of leadership at a time

    @property
    def schema(self) -> str:
        return self._schema

    @property
    def session(self) -> int | None:
        """The server process of this engine's coordination connection."""
        return self._lock.session if self._lock is not None else None

    async def connect(self, *, notify: Callable[[str], None] | None = None) -> None:
        """Takes the engine lock in shared mode and listens for changes; raises DatabaseInUse when the schema
        is held exclusively (waiting up to 30 s for an upgrade to end, as any engine does)."""
        await self._connect(wait=True, notify=notify)

    async def _connect(self, *, wait: bool, notify: Callable[[str], None] | None = None) -> None:
        lock = await postgres_lock_shared(self.location, wait=UPGRADE_WAIT if wait else None, notify=notify)
        try:
            await lock.listen(postgres.CHANGES_CHANNEL, self._notice)
        except BaseException:
            await lock.aclose()
            raise
        self._schema = lock.schema
        self._lock = lock
        lock.watch(self._lost)

    def start(self) -> None:
        """Starts competing for leadership (the first attempt is `lead_try`, which the engine awaits)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._compete(), name="daycare-leadership")

    async def lead_try(self) -> bool:
        """Tries once to take leadership; calls `on_lead` when it did. Whether this engine leads."""
        async with self._leading:
            lock = self._lock
            if self.leader or lock is None or self._closing:
                return self.leader
            try:
                taken = await lock.fetchval(postgres.ADVISORY_LOCK_TRY, *self._leader_key())
            except Exception as exc:  # the connection is lost: `_lost` reconnects
                log.debug("an attempt to lead failed: %s", exc)
                return False
            if not taken or self._lock is not lock:
                return False
            self.leader = True
            log.info("this engine leads the schedulers of %s (schema %s)", self.location.display, self._schema)
            await self._on_lead()
            return True

    async def _compete(self) -> None:
        while not self._closing:
            if self._lock is not None and not self.leader and time.monotonic() >= self._calm_until:
                try:
                    await self.lead_try()
                except Exception:  # a leader's service failed to start: it leads without it (logged)
                    log.exception("starting the leader's services failed")
            await asyncio.sleep(self._leader_retry)

    def _leader_key(self) -> tuple[int, int]:
        return postgres.LEADER_LOCK_CLASS, postgres.name_hash(self._schema)

    def _notice(self, payload: str) -> None:
        schema, _, rest = payload.partition(" ")
        table, _, key = rest.partition(" ")
        if schema == self._schema and table:
            self._on_change(table, key)

    def _lost(self) -> None:
        """The coordination connection is gone: leadership first, then the caches, then reconnect."""
        self._lock = None
        if self.leader:
            self.leader = False
            self._on_lead_lost()
        self._on_changes_missed()
        if not self._closing:
            asyncio.get_running_loop().create_task(self._reconnect(), name="daycare-reconnect")

    async def _reconnect(self) -> None:
        for attempt in range(1_000_000):
            await asyncio.sleep(RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)])
            if self._closing:
                return
            try:
                await self._connect(wait=False)
            except DatabaseInUse as exc:
                self._on_failed(
                    f"while this engine was disconnected from {self.location.display}, {lock_holder_text(exc.holder)}"
                    " took its schema for itself"
                )
                return
            except StorageError as exc:
                log.warning("reconnecting to %s failed (%s); trying again", self.location.display, exc.problem)
                continue
            log.info("reconnected to %s; the caches start afresh", self.location.display)
            self._on_changes_missed()
            # Engines whose connection held are first in line to lead: this one competes again a little later.
            self._calm_until = time.monotonic() + 2 * self._leader_retry
            return

    @asynccontextmanager
    async def migrations_locked(self, *, notify: Callable[[str], None] | None = None) -> AsyncIterator[None]:
        """Holds the schema's migration lock for the block, waiting while another engine migrates."""
        lock = self._lock
        if lock is None:
            raise StorageError(f"Not connected to {self.location.display}.")
        key = (postgres.MIGRATION_LOCK_CLASS, postgres.name_hash(self._schema))
        told = notify is None
        while not await lock.fetchval(postgres.ADVISORY_LOCK_TRY, *key):
            if not told and notify is not None:
                notify(f"Waiting for another engine to finish opening and migrating {self.location.display}")
                told = True
            await asyncio.sleep(MIGRATION_POLL)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):  # a lost connection has freed it already
                await lock.fetchval(postgres.ADVISORY_UNLOCK, *key)

    async def aclose(self) -> None:
        """Stops competing, gives up leadership and the lock (closing the connection frees both)."""
        self._closing = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        async with self._leading:
            lock, self._lock = self._lock, None
            self.leader = False
        if lock is not None:
            await lock.aclose()


@dataclass(frozen=True, slots=True)
class EngineSession:
    """An engine connected to a PostgreSQL schema, as `daycare db status` lists it."""

    holder: LockHolder
    shared: bool  # it holds the engine lock in shared mode (a shared database)
    leads: bool  # it holds the scheduler leadership

    def describe(self) -> str:
        role = " (leads the schedulers)" if self.leads else ""
        return self.holder.describe() + role


async def engines_connected(db: Database) -> list[EngineSession]:
    """The engines (and upgrades, scripts) holding the engine lock of `db`'s PostgreSQL schema, oldest first."""
    conn = db.connection()
    schema = db.location.schema or str(
        (await conn.execute_query_dict(postgres.LOCK_CURRENT_SCHEMA))[0]["current_schema"]
    )
    rows = await conn.execute_query_dict(
        postgres.ENGINES_CONNECTED, [postgres.ENGINE_LOCK_CLASS, postgres.name_hash(schema), postgres.LEADER_LOCK_CLASS]
    )
    return [EngineSession(lock_holder_parse(row), bool(row["shared"]), bool(row["leads"])) for row in rows]
