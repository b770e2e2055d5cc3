"""The engine: owns the one database and wires every storage-backed service to it by injection.

`start()` follows the legacy order: open and migrate the database, make sure the owner user
exists, load the channels (subscribing their members again), then start crons, heartbeats
and delayed signals. `stop()` stops those in reverse order and closes the database last. A
failure during `start()` undoes what it had done, so nothing is left running or open. The
engine holds the database's lock (`<name>.lock` beside a SQLite file, an advisory lock on a
PostgreSQL schema; see `daycare.storage.db.lock`) from before it opens the database until after
it closes it, so a second engine on the same database is refused. An engine whose PostgreSQL
lock connection is lost stops by itself (`failed` is then set): another engine may take over.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from daycare.config import Config
from daycare.engine.agent_system import AgentSystem, signal_deliver
from daycare.engine.channels import Channels
from daycare.engine.crons import Crons
from daycare.engine.delayed_signals import DelayedSignals
from daycare.engine.durable_inbox import DurableInboxAgentSystem
from daycare.engine.events import EngineEvents
from daycare.engine.expose_providers import LocalExposeProvider
from daycare.engine.exposes import Exposes
from daycare.engine.heartbeat_scheduler import DEFAULT_INTERVAL_MS
from daycare.engine.heartbeats import Heartbeats
from daycare.engine.processes import Processes
from daycare.engine.sandbox import sandbox_from_setting
from daycare.engine.signals import Signal, Signals, SignalSubscription
from daycare.engine.summary import EngineSummary, engine_summary
from daycare.engine.timing import Clock, Sleep, now_ms, sleep_ms
from daycare.storage.db.database import (
    Database,
    database_close,
    database_location,
    database_open,
    database_writable_check,
)
from daycare.storage.db.lock import ENGINE, DatabaseLock, PostgresLock, database_lock_wait
from daycare.storage.errors import StorageError
from daycare.storage.facade import Storage
from daycare.storage.migrations.migrate import database_migrate
from daycare.storage.repositories.users import UserRecord

log = logging.getLogger("daycare.engine")


class _Service(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True)
class EngineServices:
    """The services of a started engine, all on its one Storage."""

    storage: Storage
    events: EngineEvents
    agent_system: AgentSystem
    signals: Signals
    delayed_signals: DelayedSignals
    channels: Channels
    crons: Crons
    heartbeats: Heartbeats
    processes: Processes
    exposes: Exposes


async def owner_ensure(storage: Storage) -> UserRecord | None:
    """The owner user, created if the file has none (legacy `ownerCtxEnsure`).

    An owner row that exists but cannot be read (a bad row) is logged and left alone: None.
    """
    owner = await storage.users.find_owner()
    if owner is not None:
        return owner
    try:
        return await storage.create_user(is_owner=True)
    except Exception:
        # Another writer may have created it meanwhile, or its row is unreadable.
        owner = await storage.users.find_owner()
        if owner is not None:
            return owner
        if await storage.users.owner_row_exists():
            log.error("the owner's row cannot be read (see the warning above); the engine runs without an owner")
            return None
        raise RuntimeError("Failed to resolve owner user") from None


def services_build(
    storage: Storage,
    config: Config,
    *,
    clock: Clock,
    sleep: Sleep,
    heartbeat_interval_ms: int,
    agent_system: AgentSystem | None = None,
) -> EngineServices:
    """Builds every service on `storage`: each gets its repositories and the services it needs.

    Services reach agents through `agent_system`; the default writes their durable inbox.
    """
    events = EngineEvents()
    if agent_system is None:
        agent_system = DurableInboxAgentSystem(storage=storage, users_dir=config.data_dir / "users", clock=clock)
    agents = agent_system

    async def deliver(signal: Signal, subscriptions: list[SignalSubscription]) -> None:
        await signal_deliver(agents, signal, subscriptions)

    signals = Signals(
        signal_events=storage.signal_events,
        signal_subscriptions=storage.signal_subscriptions,
        events=events,
        on_deliver=deliver,
        clock=clock,
    )
    return EngineServices(
        storage=storage,
        events=events,
        agent_system=agent_system,
        signals=signals,
        delayed_signals=DelayedSignals(
            delayed_signals=storage.delayed_signals, signals=signals, events=events, clock=clock, sleep=sleep
        ),
        channels=Channels(
            channels=storage.channels,
            channel_messages=storage.channel_messages,
            signals=signals,
            agent_system=agent_system,
            clock=clock,
        ),
        crons=Crons(
            cron_tasks=storage.cron_tasks,
            heartbeat_tasks=storage.heartbeat_tasks,
            tasks=storage.tasks,
            agent_system=agent_system,
            events=events,
            clock=clock,
            sleep=sleep,
        ),
        heartbeats=Heartbeats(
            heartbeat_tasks=storage.heartbeat_tasks,
            cron_tasks=storage.cron_tasks,
            tasks=storage.tasks,
            agent_system=agent_system,
            events=events,
            interval_ms=heartbeat_interval_ms,
            clock=clock,
            sleep=sleep,
        ),
        processes=Processes(
            processes=storage.processes,
            data_dir=config.data_dir,
            sandbox=sandbox_from_setting(config.sandbox),
            clock=clock,
            sleep=sleep,
            stop_processes=config.stop_processes,
        ),
        exposes=Exposes(expose_endpoints=storage.expose_endpoints, providers=[LocalExposeProvider()], clock=clock),
    )


class Engine:
    """Opens the database in `start()`, runs the services on it, and closes it in `stop()`."""

    def __init__(
        self,
        config: Config,
        *,
        backup: bool = True,
        clock: Clock = now_ms,
        sleep: Sleep = sleep_ms,
        heartbeat_interval_ms: int = DEFAULT_INTERVAL_MS,
        agent_system: AgentSystem | None = None,
    ) -> None:
        """`agent_system` is how the services reach agents: a runtime plugs its own agent loop in here.

        It defaults to the durable inbox (`DurableInboxAgentSystem`) on the engine's storage.
        """
        self.config = config
        self._agent_system = agent_system
        self.backup = backup
        self._clock = clock
        self._sleep = sleep
        self._heartbeat_interval_ms = heartbeat_interval_ms
        self._db: Database | None = None
        self._lock: DatabaseLock | PostgresLock | None = None
        self._services: EngineServices | None = None
        self._started: list[tuple[str, _Service]] = []
        self._stopping = asyncio.Lock()  # a stop after a lost lock and the caller's stop run one after the other
        self._lost_stop: asyncio.Task[None] | None = None
        self.failed = asyncio.Event()  # set once the engine stopped by itself; `failure` says why
        self.failure: str | None = None

    @property
    def storage(self) -> Storage:
        return self.services.storage

    @property
    def services(self) -> EngineServices:
        if self._services is None:
            raise RuntimeError("The engine is not started.")
        return self._services

    @property
    def started_services(self) -> list[str]:
        """The running services in start order: signals and channels (loaded), then the schedulers."""
        if self._services is None:
            return []
        return ["signals", "channels", *(name for name, _ in self._started)]

    async def start(self) -> None:
        if self._db is not None or self._lock is not None:
            raise RuntimeError("The engine is already started.")
        location = database_location(self.config.db_location)
        # Held until stop() has closed the database: a second engine on it would undo this one's writes.
        self.failed.clear()
        self.failure, self._lost_stop = None, None
        self._lock = await database_lock_wait(location, ENGINE, notify=log.info)
        if self._lock is not None:
            self._lock.watch(self._lock_lost)
        try:
            database_writable_check(location.path)  # an engine writes: refuse a read-only file before touching it
            self._db = await database_open(location)
            await database_migrate(self._db, backup=self.backup)
            storage = Storage.from_database(self._db)
            await owner_ensure(storage)
            services = services_build(
                storage,
                self.config,
                clock=self._clock,
                sleep=self._sleep,
                heartbeat_interval_ms=self._heartbeat_interval_ms,
                agent_system=self._agent_system,
            )
            await services.channels.load()
            for name, service in (
                ("crons", services.crons),
                ("heartbeats", services.heartbeats),
                ("delayed signals", services.delayed_signals),
                ("processes", services.processes),
                ("exposes", services.exposes),
            ):
                # Recorded before it starts: a start that fails half-way is still stopped.
                self._started.append((name, service))
                await service.start()
            if self.failure is not None:  # the lock was lost while starting
                raise StorageError(self.failure)
            self._services = services
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stops the schedulers in reverse start order, closes the database, then releases its lock.

        Safe to call twice; a call while the engine stops by itself waits for that stop to end.
        """
        async with self._stopping:
            await self._stop()

    async def _stop(self, first: tuple[str, ...] = ()) -> None:
        """Stops the services named in `first`, then the others in reverse start order; closes; unlocks."""
        started, self._started = self._started, []
        db, self._db, self._services = self._db, None, None
        lock, self._lock = self._lock, None
        order = [entry for entry in started if entry[0] in first]
        order += [entry for entry in reversed(started) if entry[0] not in first]
        try:
            for name, service in order:
                try:
                    await service.stop()
                except Exception:
                    log.exception("stopping %s failed", name)
        finally:
            try:
                if db is not None:
                    await database_close(db)
            finally:
                if lock is not None:
                    await lock.aclose()

    def _lock_lost(self) -> None:
        """The lock's connection is gone, so another engine may start on the database: stop, schedulers first."""
        if self.failure is not None:
            return
        where = database_location(self.config.db_location).display
        self.failure = (
            f"the engine lost its lock on {where} (the connection that held it was closed) and stopped:"
            " another engine may run on that database now"
        )
        if self._services is None:  # still starting: start() sees `failure` and undoes what it did
            log.error("lost the lock on %s while starting; the start is undone", where)
            return
        log.error("lost the lock on %s: stopping the engine, its schedulers first", where)
        self._lost_stop = asyncio.get_running_loop().create_task(self._stop_after_loss())

    async def _stop_after_loss(self) -> None:
        try:
            async with self._stopping:
                await self._stop(first=("crons", "heartbeats", "delayed signals"))
        finally:
            self.failed.set()

    async def summary(self) -> EngineSummary:
        """What the running engine holds, for the startup line."""
        services = self.services
        return await engine_summary(services.storage.db, self.started_services)

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
