"""The Storage facade: every repository, on the one database the engine opened."""

from __future__ import annotations

from daycare.storage.channel_messages import ChannelMessagesRepository
from daycare.storage.channels import ChannelsRepository
from daycare.storage.connections import ConnectionsRepository
from daycare.storage.cron_tasks import CronTasksRepository
from daycare.storage.database import Database
from daycare.storage.delayed_signals import DelayedSignalsRepository
from daycare.storage.expose_endpoints import ExposeEndpointsRepository
from daycare.storage.heartbeat_tasks import HeartbeatTasksRepository
from daycare.storage.processes import ProcessesRepository
from daycare.storage.signal_events import SignalEventsRepository
from daycare.storage.signal_subscriptions import SignalSubscriptionsRepository
from daycare.storage.system_prompts import SystemPromptsRepository
from daycare.storage.tasks import TasksRepository
from daycare.storage.token_stats import TokenStatsRepository


class Storage:
    """Repositories bound to one open database; it never opens or closes the database itself."""

    def __init__(self, db: Database) -> None:
        self.db = db
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

    @classmethod
    def from_database(cls, db: Database) -> Storage:
        """Builds the repositories on an open, migrated database."""
        return cls(db)
