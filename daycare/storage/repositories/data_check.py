"""The data pass of `daycare db check --data`: every row of every table, read as the repositories read it.

A row that a repository cannot read is left out of every read (and logged once); this pass lists
all of them by table and key, so that a user can see what the engine skips and repair or delete it.
It only reads: run it while an engine runs, or on a copy.
"""

from __future__ import annotations

from typing import Any

from tortoise.exceptions import OperationalError

from daycare.storage.db.database import Database
from daycare.storage.repositories.agents import AgentsRepository
from daycare.storage.repositories.base import Repository
from daycare.storage.repositories.channel_messages import ChannelMessagesRepository
from daycare.storage.repositories.channels import ChannelsRepository
from daycare.storage.repositories.connections import ConnectionsRepository
from daycare.storage.repositories.cron_tasks import CronTasksRepository
from daycare.storage.repositories.delayed_signals import DelayedSignalsRepository
from daycare.storage.repositories.expose_endpoints import ExposeEndpointsRepository
from daycare.storage.repositories.heartbeat_tasks import HeartbeatTasksRepository
from daycare.storage.repositories.history import HistoryRepository
from daycare.storage.repositories.inbox import InboxRepository
from daycare.storage.repositories.processes import ProcessesRepository
from daycare.storage.repositories.record_checks import UnreadableRow
from daycare.storage.repositories.sessions import SessionsRepository
from daycare.storage.repositories.signal_events import SignalEventsRepository
from daycare.storage.repositories.signal_subscriptions import SignalSubscriptionsRepository
from daycare.storage.repositories.system_prompts import SystemPromptsRepository
from daycare.storage.repositories.tasks import TasksRepository
from daycare.storage.repositories.token_stats import TokenStatsRepository
from daycare.storage.repositories.users import UsersRepository

__all__ = ["UnreadableRow", "data_report", "database_data_check"]

# Every table with rows: the users repository reads user_connector_keys too, channels channel_members.
_REPOSITORIES: tuple[type[Repository[Any]], ...] = (
    UsersRepository,
    AgentsRepository,
    SessionsRepository,
    HistoryRepository,
    InboxRepository,
    TasksRepository,
    CronTasksRepository,
    HeartbeatTasksRepository,
    SignalEventsRepository,
    SignalSubscriptionsRepository,
    DelayedSignalsRepository,
    ChannelsRepository,
    ChannelMessagesRepository,
    ConnectionsRepository,
    ExposeEndpointsRepository,
    ProcessesRepository,
    SystemPromptsRepository,
    TokenStatsRepository,
)


async def database_data_check(db: Database) -> list[UnreadableRow]:
    """Every row a read would leave out, by table and key, with the reason; empty when every row reads.

    A table that cannot be read at all (missing, or missing a column: schema drift) is one entry
    with the key `*`.
    """
    found: list[UnreadableRow] = []
    for repository_type in _REPOSITORIES:
        repository = repository_type(db)
        try:
            found.extend(await repository.rows_unreadable())
        except OperationalError as error:
            found.append(UnreadableRow(repository.model._meta.db_table, "*", f"the table cannot be read: {error}"))
    return found


def data_report(rows: list[UnreadableRow]) -> str:
    """The unreadable rows as lines of `  table (key): reason`, in the order the pass found them."""
    return "\n".join(f"  {row.table} ({row.key}): {row.reason}" for row in rows)
