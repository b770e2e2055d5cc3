"""The public API of Daycare's storage: open a database, use its repositories, close it.

    from daycare.storage import storage_open

    async with storage_open() as storage:          # the database `daycare` uses, migrated
        for user in await storage.users.find_all():
            print(user.nametag, [a.id for a in await storage.agents.find_by_user_id(user.id)])

`storage_open` starts no service. The engine (`daycare.engine.Engine`) opens its own database
the same way. For finer control: `database_open`, `database_migrate`, `Storage.from_database`
and `database_close`. `docs/api.md` has a runnable example.
"""

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
