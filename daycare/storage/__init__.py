"""The public API of Daycare's storage: open a database, use its repositories, close it.

    from daycare.storage import storage_open

    async with storage_open() as storage:          # the database `daycare` uses, migrated
        for user in await storage.users.find_all():
            print(user.nametag, [a.id for a in await storage.agents.find_by_user_id(user.id)])

`storage_open` starts no service. The engine (`daycare.engine.Engine`) opens its own database
the same way. For finer control: `database_open`, `database_migrate`, `Storage.from_database`
and `database_close`. `docs/api.md` has a runnable example.

Each name is imported on first use, so importing a submodule (`daycare.storage.errors`, as the
command line does) does not load the whole storage stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from daycare.storage.db.database import Database, database_close, database_open
    from daycare.storage.db.lock import DatabaseInUse
    from daycare.storage.errors import DatabaseLocked, DatabaseRefused, StorageError, TransactionConflict
    from daycare.storage.facade import AgentWithSession, Storage, storage_open
    from daycare.storage.migrations.migrate import DatabaseStatus, database_migrate, database_status
    from daycare.storage.migrations.restore import database_restore
    from daycare.storage.migrations.schema_check import database_schema_check
    from daycare.storage.repositories.agents import AgentRecord
    from daycare.storage.repositories.channel_messages import ChannelMessageRecord
    from daycare.storage.repositories.channels import ChannelMemberRecord, ChannelRecord
    from daycare.storage.repositories.connections import ConnectionRecord
    from daycare.storage.repositories.context import Context, context_for_agent, context_for_user
    from daycare.storage.repositories.cron_tasks import CronTaskRecord
    from daycare.storage.repositories.data_check import UnreadableRow, database_data_check
    from daycare.storage.repositories.delayed_signals import DelayedSignalRecord
    from daycare.storage.repositories.expose_endpoints import ExposeEndpointRecord
    from daycare.storage.repositories.heartbeat_tasks import HeartbeatTaskRecord
    from daycare.storage.repositories.history import HistoryRecord
    from daycare.storage.repositories.inbox import InboxRecord
    from daycare.storage.repositories.processes import ProcessRecord
    from daycare.storage.repositories.sessions import SessionRecord
    from daycare.storage.repositories.signal_events import ABSENT, SignalEventRecord
    from daycare.storage.repositories.signal_subscriptions import SignalSubscriptionRecord
    from daycare.storage.repositories.system_prompts import SystemPromptRecord
    from daycare.storage.repositories.tasks import TaskRecord
    from daycare.storage.repositories.token_stats import TokenStatsRecord
    from daycare.storage.repositories.users import ConnectorKeyRecord, UserRecord

# Where each public name lives; tests/test_cold_start.py checks that it matches the imports above.
_EXPORTS: dict[str, str] = {
    "Database": "daycare.storage.db.database",
    "database_close": "daycare.storage.db.database",
    "database_open": "daycare.storage.db.database",
    "DatabaseInUse": "daycare.storage.db.lock",
    "DatabaseLocked": "daycare.storage.errors",
    "DatabaseRefused": "daycare.storage.errors",
    "StorageError": "daycare.storage.errors",
    "TransactionConflict": "daycare.storage.errors",
    "AgentWithSession": "daycare.storage.facade",
    "Storage": "daycare.storage.facade",
    "storage_open": "daycare.storage.facade",
    "DatabaseStatus": "daycare.storage.migrations.migrate",
    "database_migrate": "daycare.storage.migrations.migrate",
    "database_status": "daycare.storage.migrations.migrate",
    "database_restore": "daycare.storage.migrations.restore",
    "database_schema_check": "daycare.storage.migrations.schema_check",
    "AgentRecord": "daycare.storage.repositories.agents",
    "ChannelMessageRecord": "daycare.storage.repositories.channel_messages",
    "ChannelMemberRecord": "daycare.storage.repositories.channels",
    "ChannelRecord": "daycare.storage.repositories.channels",
    "ConnectionRecord": "daycare.storage.repositories.connections",
    "Context": "daycare.storage.repositories.context",
    "context_for_agent": "daycare.storage.repositories.context",
    "context_for_user": "daycare.storage.repositories.context",
    "CronTaskRecord": "daycare.storage.repositories.cron_tasks",
    "UnreadableRow": "daycare.storage.repositories.data_check",
    "database_data_check": "daycare.storage.repositories.data_check",
    "DelayedSignalRecord": "daycare.storage.repositories.delayed_signals",
    "ExposeEndpointRecord": "daycare.storage.repositories.expose_endpoints",
    "HeartbeatTaskRecord": "daycare.storage.repositories.heartbeat_tasks",
    "HistoryRecord": "daycare.storage.repositories.history",
    "InboxRecord": "daycare.storage.repositories.inbox",
    "ProcessRecord": "daycare.storage.repositories.processes",
    "SessionRecord": "daycare.storage.repositories.sessions",
    "ABSENT": "daycare.storage.repositories.signal_events",
    "SignalEventRecord": "daycare.storage.repositories.signal_events",
    "SignalSubscriptionRecord": "daycare.storage.repositories.signal_subscriptions",
    "SystemPromptRecord": "daycare.storage.repositories.system_prompts",
    "TaskRecord": "daycare.storage.repositories.tasks",
    "TokenStatsRecord": "daycare.storage.repositories.token_stats",
    "ConnectorKeyRecord": "daycare.storage.repositories.users",
    "UserRecord": "daycare.storage.repositories.users",
}


def __getattr__(name: str) -> Any:
    """Imports a public name's module on first use and keeps the name here."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "ABSENT",
    "AgentRecord",
    "AgentWithSession",
    "ChannelMemberRecord",
    "ChannelMessageRecord",
    "ChannelRecord",
    "ConnectionRecord",
    "ConnectorKeyRecord",
    "Context",
    "CronTaskRecord",
    "Database",
    "DatabaseInUse",
    "DatabaseLocked",
    "DatabaseRefused",
    "DatabaseStatus",
    "DelayedSignalRecord",
    "ExposeEndpointRecord",
    "HeartbeatTaskRecord",
    "HistoryRecord",
    "InboxRecord",
    "ProcessRecord",
    "SessionRecord",
    "SignalEventRecord",
    "SignalSubscriptionRecord",
    "Storage",
    "StorageError",
    "SystemPromptRecord",
    "TaskRecord",
    "TokenStatsRecord",
    "TransactionConflict",
    "UnreadableRow",
    "UserRecord",
    "context_for_agent",
    "context_for_user",
    "database_close",
    "database_data_check",
    "database_migrate",
    "database_open",
    "database_restore",
    "database_schema_check",
    "database_status",
    "storage_open",
]
