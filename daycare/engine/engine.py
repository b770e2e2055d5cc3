"""The engine: owns the one database and wires every storage-backed service to it by injection.

`start()` follows the legacy order: open and migrate the database, make sure the owner user
exists, load the channels (subscribing their members again), then start crons, heartbeats
and delayed signals. `stop()` stops those in reverse order and closes the database last. A
failure during `start()` undoes what it had done, so nothing is left running or open. The
engine holds the database's lock (`<name>.lock` beside a SQLite file, an advisory lock on a
PostgreSQL schema; see `daycare.storage.db.lock`) from before it opens the database until after
it closes it, so a second engine on the same database is refused. An engine whose PostgreSQL
lock connection is lost stops by itself (`failed` is then set): another engine may take over.

A PostgreSQL database may be shared by several engines (`shared=true` in its URL, or
`engine.db.shared`): each engine then holds the lock in shared mode through a `Coordinator`,
opens and migrates under the migration lock (so pending migrations run once), serves every
request, and runs the schedulers only while it leads; its caches forget what other engines
change. See docs/postgres.md, "Several engines on one database".
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
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
from daycare.engine.timing import Clock, Sleep, file_time, now_ms, sleep_ms
from daycare.storage.db.coordination import Coordinator
from daycare.storage.db.database import Database, database_close, database_open, database_writable_check
from daycare.storage.db.location import database_location
from daycare.storage.db.lock import ENGINE, DatabaseLock, PostgresLock, database_lock_wait
from daycare.storage.errors import StorageError
from daycare.storage.facade import Storage
from daycare.storage.migrations.migrate import database_migrate
from daycare.storage.repositories.users import UserRecord

log = logging.getLogger("daycare.engine")

# The schedulers: stopped first whenever an engine stops or loses leadership.
SCHEDULERS = ("crons", "heartbeats", "delayed signals")
# The services that run only on the engine that leads a shared database, in start order: the schedulers, and
# the supervisors of what is local to one host (managed processes and their pids; the expose proxy's port).
LEADER_SERVICES = (*SCHEDULERS, "processes", "exposes")
CRON_RELOAD_DELAY = 0.05  # seconds: the leader reads the cron triggers again once per burst of changes


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
    engine: str = "",
) -> EngineServices:
    """Builds every service on `storage`: each gets its repositories and the services it needs.

    Services reach agents through `agent_system`; the default writes their durable inbox.
    `engine` names this engine in the claims of scheduled runs.
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
            runs=storage.trigger_runs,
            engine=engine,
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
            runs=storage.trigger_runs,
            engine=engine,
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
        if config.clock_file is not None and clock is now_ms and sleep is sleep_ms:
            clock, sleep = file_time(config.clock_file)  # a test drives this engine's time from outside
        self._agent_system = agent_system
        self.backup = backup
        self._clock = clock
        self._sleep = sleep
        self._heartbeat_interval_ms = heartbeat_interval_ms
        self._db: Database | None = None
        self._lock: DatabaseLock | PostgresLock | None = None
        self._coordinator: Coordinator | None = None  # on a shared database, instead of `_lock`
        self._leadership = asyncio.Lock()  # the schedulers start and stop one change of leadership at a time
        self._cron_reload_wanted = False
        self._cron_reloading: asyncio.Task[None] | None = None
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
    def name(self) -> str:
        """How this engine names itself in the claims of scheduled runs: `host:pid`."""
        return f"{socket.gethostname()}:{os.getpid()}"

    @property
    def leads(self) -> bool | None:
        """On a shared database, whether this engine leads the schedulers; None otherwise."""
        return self._coordinator.leader if self._coordinator is not None else None

    @property
    def started_services(self) -> list[str]:
        """The running services in start order: signals and channels (loaded), then the schedulers."""
        if self._services is None:
            return []
        return ["signals", "channels", *(name for name, _ in self._started)]

    async def start(self) -> None:
        if self._db is not None or self._lock is not None or self._coordinator is not None:
            raise RuntimeError("The engine is already started.")
        location = database_location(self.config.db_location)
        shared = location.shared or self.config.db_shared
        if shared and not location.shared:  # engine.db.shared: the connections must know it too
            location = dataclasses.replace(location, pragmas=(*location.pragmas, ("shared", "TRUE")))
        if shared and location.server is None:
            raise StorageError(
                f"{location.display} cannot be shared by several engines: only a PostgreSQL database can.",
                "Remove shared=true (a SQLite file has one engine at a time), or use a postgres:// database.",
            )
        self.failed.clear()
        self.failure, self._lost_stop = None, None
        # Held until stop() has closed the database: a second engine on it would undo this one's writes
        # (unless all of them share it).
        if shared:
            self._coordinator = Coordinator(
                location,
                on_lead=self._lead,
                on_lead_lost=self._lead_lost,
                on_change=self._changed,
                on_changes_missed=self._changes_missed,
                on_failed=self._coordination_failed,
            )
            try:
                await self._coordinator.connect(notify=log.info)
            except BaseException:
                self._coordinator = None
                raise
        else:
            self._lock = await database_lock_wait(location, ENGINE, notify=log.info)
            if self._lock is not None:
                self._lock.watch(self._lock_lost)
        try:
            database_writable_check(location.path)  # an engine writes: refuse a read-only file before touching it
            if self._coordinator is not None:
                async with self._coordinator.migrations_locked(notify=log.info):  # one engine migrates
                    self._db = await database_open(location)
                    await database_migrate(self._db, backup=self.backup)
            else:
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
                engine=self.name,
            )
            await services.channels.load()
            for name, service in self._services_of(services):
                if name in LEADER_SERVICES and self._coordinator is not None:
                    continue  # they start when this engine leads
                # Recorded before it starts: a start that fails half-way is still stopped.
                self._started.append((name, service))
                await service.start()
            if self.failure is not None:  # the lock was lost while starting
                raise StorageError(self.failure)
            self._services = services
            if self._coordinator is not None:
                storage.change_listen("tasks_cron", lambda key: self._schedule_reload())
                storage.change_listen("signals_delayed", lambda key: services.delayed_signals.changed())
                await self._coordinator.lead_try()
                self._coordinator.start()
        except BaseException:
            await self.stop()
            raise

    @staticmethod
    def _services_of(services: EngineServices) -> list[tuple[str, _Service]]:
        """The services `start()` starts, in order: the schedulers, then processes and exposes."""
        return [
            ("crons", services.crons),
            ("heartbeats", services.heartbeats),
            ("delayed signals", services.delayed_signals),
            ("processes", services.processes),
            ("exposes", services.exposes),
        ]

    async def _lead(self) -> None:
        """This engine now leads the shared database: its schedulers start."""
        async with self._leadership:
            services = self._services
            if services is None or self._coordinator is None or not self._coordinator.leader:
                return
            for name, service in self._services_of(services):
                if name in LEADER_SERVICES and all(name != started for started, _ in self._started):
                    self._started.append((name, service))
                    await service.start()

    def _lead_lost(self) -> None:
        """This engine no longer leads (its coordination connection is gone): its schedulers stop first of all."""
        log.error("lost the leadership of the shared database: the schedulers stop; another engine takes over")
        asyncio.get_running_loop().create_task(self._leader_services_stop(), name="daycare-schedulers-stop")

    async def _leader_services_stop(self) -> None:
        """Stops the leader's services: the schedulers first, then the others in reverse start order."""
        async with self._leadership:
            running = [(name, service) for name, service in self._started if name in LEADER_SERVICES]
            self._started = [entry for entry in self._started if entry[0] not in LEADER_SERVICES]
            schedulers = [entry for entry in running if entry[0] in SCHEDULERS]
            for name, service in schedulers + [entry for entry in reversed(running) if entry not in schedulers]:
                try:
                    await service.stop()
                except Exception:
                    log.exception("stopping %s failed", name)

    def _schedule_reload(self) -> None:
        """A cron trigger changed (maybe by another engine): the leader's scheduler reads them again, once per burst."""
        if self._services is None or not self.leads:
            return
        self._cron_reload_wanted = True
        if self._cron_reloading is None or self._cron_reloading.done():
            self._cron_reloading = asyncio.get_running_loop().create_task(
                self._cron_reload(), name="daycare-cron-reload"
            )

    async def _cron_reload(self) -> None:
        while self._cron_reload_wanted:
            self._cron_reload_wanted = False
            await asyncio.sleep(CRON_RELOAD_DELAY)  # a run stamps last_run_at, and notices come in bursts
            services = self._services
            if services is None or not self.leads:
                return
            try:
                await services.crons.scheduler.reload()
            except Exception:
                log.warning("reading the cron triggers again failed", exc_info=True)

    def _changed(self, table: str, key: str) -> None:
        if self._services is not None:
            self._services.storage.changed(table, key)

    def _changes_missed(self) -> None:
        if self._services is not None:
            self._services.storage.changes_missed()

    def _coordination_failed(self, why: str) -> None:
        """The shared database cannot be rejoined: the engine stops by itself."""
        self._stop_by_itself(f"{why}; the engine stopped", why)

    async def stop(self) -> None:
        """Stops the schedulers in reverse start order, closes the database, then releases its lock.

        Safe to call twice; a call while the engine stops by itself waits for that stop to end.
        """
        async with self._stopping:
            await self._stop()

    async def _stop(self, first: tuple[str, ...] = ()) -> None:
        """Stops the services named in `first`, then the others in reverse start order; closes; unlocks."""
        async with self._leadership:  # a leadership change in progress ends first
            started, self._started = self._started, []
            db, self._db, self._services = self._db, None, None
        lock, self._lock = self._lock, None
        coordinator, self._coordinator = self._coordinator, None
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
                if coordinator is not None:
                    await coordinator.aclose()

    def _lock_lost(self) -> None:
        """The lock's connection is gone, so another engine may start on the database: stop, schedulers first."""
        where = database_location(self.config.db_location).display
        self._stop_by_itself(
            f"the engine lost its lock on {where} (the connection that held it was closed) and stopped:"
            " another engine may run on that database now",
            f"lost the lock on {where}",
        )

    def _stop_by_itself(self, failure: str, what: str) -> None:
        """Records `failure` and stops the engine, schedulers first; a start in progress sees it and undoes itself."""
        if self.failure is not None:
            return
        self.failure = failure
        if self._services is None:
            log.error("%s while starting; the start is undone", what)
            return
        log.error("%s: stopping the engine, its schedulers first", what)
        self._lost_stop = asyncio.get_running_loop().create_task(self._stop_after_loss())

    async def _stop_after_loss(self) -> None:
        try:
            async with self._stopping:
                await self._stop(first=SCHEDULERS)
        finally:
            self.failed.set()

    async def summary(self) -> EngineSummary:
        """What the running engine holds, for the startup line."""
        services = self.services
        return await engine_summary(services.storage.db, self.started_services, self.leads)

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
