"""The Storage facade: every repository, on the one database the engine opened.

Its flows that write several rows run in one transaction each. They take the agent's write
lock before they open the transaction, never inside one (a task that holds a lock and waits
for the connection can then never block them in turn), and they put the agent in its cache
only after the COMMIT, as the cache rule of `daycare.storage.repositories.cache` requires.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Unpack

from tortoise.exceptions import IntegrityError

from daycare.schema import UserConnectorKey
from daycare.storage.db.database import Database, database_close, database_open
from daycare.storage.db.location import database_location
from daycare.storage.db.lock import SCRIPT, database_lock_wait
from daycare.storage.errors import StorageError
from daycare.storage.identifiers import cuid_create, nametag_generate
from daycare.storage.migrations.inspection import FileKind
from daycare.storage.migrations.migrate import database_migrate, database_status
from daycare.storage.repositories.agents import AgentRecord, AgentsRepository
from daycare.storage.repositories.base import CachedRepository
from daycare.storage.repositories.channel_messages import ChannelMessagesRepository
from daycare.storage.repositories.channels import ChannelsRepository
from daycare.storage.repositories.connections import ConnectionsRepository
from daycare.storage.repositories.cron_tasks import CronTasksRepository
from daycare.storage.repositories.delayed_signals import DelayedSignalsRepository
from daycare.storage.repositories.expose_endpoints import ExposeEndpointsRepository
from daycare.storage.repositories.heartbeat_tasks import HeartbeatTasksRepository
from daycare.storage.repositories.history import HistoryRecord, HistoryRepository, history_record_check
from daycare.storage.repositories.inbox import InboxRepository
from daycare.storage.repositories.locks import KeyedLocks
from daycare.storage.repositories.processes import ProcessesRepository
from daycare.storage.repositories.record_checks import key_check
from daycare.storage.repositories.sessions import SessionsRepository
from daycare.storage.repositories.signal_events import SignalEventsRepository
from daycare.storage.repositories.signal_subscriptions import SignalSubscriptionsRepository
from daycare.storage.repositories.system_prompts import SystemPromptsRepository
from daycare.storage.repositories.tasks import TasksRepository
from daycare.storage.repositories.token_stats import TokenStatsRepository
from daycare.storage.repositories.trigger_runs import TriggerRunsRepository
from daycare.storage.repositories.users import (
    CONNECTOR_KEY_TAKEN,
    NAMETAG_ATTEMPTS,
    NAMETAG_TAKEN,
    OwnerExists,
    UserFields,
    UserRecord,
    UsersRepository,
    constraint_failed_on,
    key_normalize,
)


@dataclass(frozen=True, slots=True)
class AgentWithSession:
    """What `create_agent_with_session` made: the stored agent and its new active session."""

    agent: AgentRecord
    session_id: str


class Storage:
    """Repositories bound to one open database; it never opens or closes the database itself."""

    def __init__(self, db: Database) -> None:
        self.db = db
        # Users, agents, sessions, history and inbox, and the facade's locks per connector key.
        self.users = UsersRepository(db)
        self.agents = AgentsRepository(db)
        self.sessions = SessionsRepository(db)
        self.history = HistoryRepository(db)
        self.inbox = InboxRepository(db)
        self.connector_key_locks = KeyedLocks()
        # Tasks, triggers, signals, channels, connections, expose, processes, prompts, token stats.
        self.tasks = TasksRepository(db)
        self.cron_tasks = CronTasksRepository(db)
        self.heartbeat_tasks = HeartbeatTasksRepository(db)
        self.signal_events = SignalEventsRepository(db)
        self.signal_subscriptions = SignalSubscriptionsRepository(db)
        self.delayed_signals = DelayedSignalsRepository(db)
        self.channels = ChannelsRepository(db)
        self.channel_messages = ChannelMessagesRepository(db)
        self.connections = ConnectionsRepository(db)
        self.expose_endpoints = ExposeEndpointsRepository(db)
        self.processes = ProcessesRepository(db)
        self.system_prompts = SystemPromptsRepository(db)
        self.token_stats = TokenStatsRepository(db)
        self.trigger_runs = TriggerRunsRepository(db)
        # Shared PostgreSQL: the cached repository of each table whose changes other engines announce.
        cached = [repository for repository in vars(self).values() if isinstance(repository, CachedRepository)]
        self._cached_by_table = {repository.model._meta.db_table: repository for repository in cached}
        self._cached_by_table[UserConnectorKey._meta.db_table] = self.users  # a user's record holds its keys
        self._change_listeners: dict[str, list[Callable[[str], None]]] = {}

    @classmethod
    def from_database(cls, db: Database) -> Storage:
        """Builds the repositories on an open, migrated database."""
        return cls(db)

    def change_listen(self, table: str, listener: Callable[[str], None]) -> None:
        """Calls `listener(key)` after each change another engine commits to `table` (see `changed`)."""
        self._change_listeners.setdefault(table, []).append(listener)

    def changed(self, table: str, key: str) -> None:
        """A change to `table`'s row(s) of `key` was committed (by another engine, or this one: notices do not
        say): its cache forgets them, then the listeners hear of it. Unknown tables are ignored."""
        repository = self._cached_by_table.get(table)
        if repository is not None:
            repository.changed(key)
        for listener in self._change_listeners.get(table, ()):
            listener(key)

    def changes_missed(self) -> None:
        """Changes of other engines may have been missed (the connection that hears them was lost): every
        cache forgets everything, and every listener hears of it with an empty key."""
        for repository in set(self._cached_by_table.values()):
            repository.changes_missed()
        for listeners in self._change_listeners.values():
            for listener in listeners:
                listener("")

    async def create_user(self, *, nametag: str | None = None, **fields: Unpack[UserFields]) -> UserRecord:
        """Creates a user; a given nametag (trimmed) is tried once, else up to 100 generated ones."""
        explicit = (nametag or "").strip()
        if explicit:
            return await self.users.create(nametag=explicit, **fields)
        return await self._user_create_generated(**fields)

    async def resolve_user_by_connector_key(self, connector_key: str) -> UserRecord:
        """The user with this connector key (trimmed; its NFC and NFD spellings are one key), created with a
        generated nametag if new; calls for one key wait for each other, and a key taken meanwhile resolves
        to its user. A blank or None key raises ValueError."""
        if connector_key is not None and not isinstance(connector_key, str):
            raise TypeError(f"connectorKey must be a string, got {type(connector_key).__name__}")
        key = key_normalize((connector_key or "").strip())
        if not key:
            raise ValueError("connectorKey is required")
        async with self.connector_key_locks.hold(key):
            existing = await self.users.find_by_connector_key(key)
            if existing is not None:
                return existing
            # Legacy counted every user (loading them all) to decide this; one indexed query does.
            is_owner = await self.users.is_empty()
            try:
                try:
                    return await self._user_create_generated(is_owner=is_owner, connector_key=key)
                except OwnerExists:  # another engine's first user came first
                    return await self._user_create_generated(is_owner=False, connector_key=key)
            except IntegrityError as error:
                if not constraint_failed_on(error, CONNECTOR_KEY_TAKEN):
                    raise
                raced = await self.users.find_by_connector_key(key)
                if raced is None:
                    raise
                return raced

    async def create_agent_with_session(
        self,
        record: AgentRecord,
        *,
        inference_session_id: str | None = None,
        session_created_at: int | None = None,
        reset_message: str | None = None,
    ) -> AgentWithSession:
        """Writes the agent and its active session (created at `session_created_at`, else the agent's
        created_at) in one transaction; on failure it rolls back and evicts the agent from the cache."""
        created_at = record.created_at if session_created_at is None else session_created_at
        session_id = cuid_create()
        # Legacy wrote the agent, then the session, then the agent again with its session. The
        # agent's active_session_id has no foreign key, so writing it final first (the session
        # id is chosen up front) stores the same rows with one statement less.
        agent = record.with_session(session_id, max(record.updated_at, created_at))
        async with self.agents.writing(record.id):  # a failure evicts the agent from the cache
            async with self.db.in_transaction():
                await self.agents.row_upsert(agent)
                await self.sessions.create(
                    record.id,
                    id=session_id,
                    inference_session_id=inference_session_id,
                    created_at=created_at,
                    reset_message=reset_message,
                )
            self.agents.cache_put(agent)
        return AgentWithSession(agent, session_id)

    async def append_history(self, agent_id: str, record: HistoryRecord) -> None:
        """Appends to the agent's active session; an agent without one gets a new session first,
        in the same transaction as the append. Raises LookupError for an unknown agent (or one whose row
        cannot be read), ValueError for a blank agent id or a record that cannot be stored."""
        key_check(agent_id, "History append agent_id")
        history_record_check(record)
        agent = await self.agents.find_by_id(agent_id)
        if agent is None:
            raise LookupError(f"Agent not found for history append: {agent_id}")
        if agent.active_session_id:
            await self.history.append(agent.active_session_id, record)
            return
        async with self.agents.writing(agent_id):
            # Another task may have created the session while this one waited for the lock.
            current = self.agents.cached(agent_id) or await self.agents.row_load(agent_id)
            if current is None:
                raise LookupError(f"Agent not found for history append: {agent_id}")
            if current.active_session_id:
                await self.history.append(current.active_session_id, record)
                return
            async with self.db.in_transaction():
                # Several engines: another may have given the agent a session meanwhile; its row, read locked, says.
                locked = await self.agents.row_load(agent_id, lock=True) if self.db.shared else None
                if locked is not None and locked.active_session_id:
                    changed = locked
                    await self.history.append(locked.active_session_id, record)
                else:
                    base = locked or current
                    session_id = await self.sessions.create(agent_id, created_at=record.at)
                    changed = base.with_session(session_id, max(base.updated_at, record.at))
                    await self.agents.row_session_set(changed)
                    await self.history.append(session_id, record)
            self.agents.cache_put(changed)

    async def _user_create_generated(self, **fields: Unpack[UserFields]) -> UserRecord:
        """Creates a user under generated nametags, retrying only when the tag is taken."""
        for _ in range(NAMETAG_ATTEMPTS):
            try:
                return await self.users.create(nametag=nametag_generate(), **fields)
            except IntegrityError as error:
                if not constraint_failed_on(error, NAMETAG_TAKEN):
                    raise
        raise RuntimeError(f"Failed to generate unique nametag after {NAMETAG_ATTEMPTS} attempts.")


@asynccontextmanager
async def storage_open(
    location: str | os.PathLike[str] | None = None, *, backup: bool = True, read_only: bool = False
) -> AsyncIterator[Storage]:
    """Opens a database without starting any service, and closes it on exit.

    `location` is a path, a `sqlite://` or a `postgres://` URL; None finds the database as `daycare`
    does (--db, DAYCARE_DB_URL, ~/.daycare/settings.json, ~/.daycare/daycare.db). For reading and
    writing, the database's lock is held as an engine holds it (DatabaseInUse names a running
    engine: two writers would each trust caches the other makes stale), and a pending migration is
    applied first, after a backup unless `backup` is False. `read_only` takes no lock and changes
    nothing; it refuses a database that still needs `daycare upgrade`.
    """
    if location is None:
        from daycare.config import config_load  # not at the top: daycare.config imports daycare.storage

        location = config_load().db_location
    target = database_location(location)
    async with contextlib.AsyncExitStack() as held:
        if not read_only:
            lock = await database_lock_wait(target, SCRIPT)
            if lock is not None:
                held.push_async_callback(lock.aclose)
        db = await database_open(target, create=not read_only, read_only=read_only)
        try:
            if read_only:
                status = await database_status(db)
                if status.pending or status.state.kind is not FileKind.AERICH:
                    raise StorageError(
                        f"{target.display} needs an upgrade before it can be read.",
                        "Run daycare upgrade first, or open it for writing (it is then upgraded).",
                    )
            else:
                await database_migrate(db, backup=backup)
            yield Storage.from_database(db)
        finally:
            await database_close(db)
