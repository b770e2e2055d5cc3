"""Every table of the Daycare database as a Tortoise model: the one schema module.

The tables are the legacy final schema (`tests/fixtures/legacy/schema.sql`); the baseline
migration creates them from the legacy SQL text. These models describe them as far as
Tortoise 1.1 can. What it cannot express is noted in a one-line comment on the model and
lives only in the baseline SQL:
- composite primary keys (tasks, connections, token_stats_hourly): see `CompositeKeyModel`;
- composite foreign keys (tasks_cron, tasks_heartbeat -> tasks);
- partial and unique named indexes, the CHECK on connections, the nametag triggers;
- AUTOINCREMENT (Tortoise would describe any integer key as a plain generated key).

Column types follow SQLite: TEXT columns are `TextField`, except primary keys, which Tortoise
wants as `CharField`; INTEGER millisecond timestamps are `BigIntField`; 0/1 flags are
`BooleanField`. JSON columns are plain text, encoded by the repositories, so that the bytes
stay exactly what the legacy code wrote.
"""

from __future__ import annotations

from typing import Any, ClassVar

from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model

from daycare.storage.db.tortoise_dialects import model_comments_scan_skip

# Before the classes below: Tortoise would otherwise parse this whole module once per model (about 90 ms).
model_comments_scan_skip()

KEY_LENGTH = 255  # TEXT in SQLite; Tortoise needs a length for key columns.


class CompositeKeyError(RuntimeError):
    """Raised when code tries an instance-level write on a table with a composite key."""


class CompositeKeyModel(Model):
    """A table whose real primary key spans several columns.

    Tortoise 1.1 knows only single-column keys, so the declared `pk` is one column of the
    real key. An instance `save()` or `delete()` would then match every row sharing that one
    column (every user's task with the same id). Such writes raise instead: inserts go
    through `create()`, and updates and deletes through a queryset filtered on the whole
    `composite_key`, which the repositories build with `key_filter`.
    """

    composite_key: ClassVar[tuple[str, ...]] = ()

    class Meta:
        abstract = True

    async def save(self, *args: Any, force_create: bool = False, **kwargs: Any) -> None:
        if not force_create:
            raise CompositeKeyError(
                f"{type(self).__name__} has the composite key {self.composite_key}; "
                "update it through a queryset filtered on the whole key"
            )
        await super().save(*args, force_create=True, **kwargs)  # type: ignore[misc]

    async def delete(self, *args: Any, **kwargs: Any) -> None:
        raise CompositeKeyError(
            f"{type(self).__name__} has the composite key {self.composite_key}; "
            "delete it through a queryset filtered on the whole key"
        )

    async def refresh_from_db(self, *args: Any, **kwargs: Any) -> None:
        raise CompositeKeyError(f"{type(self).__name__} rows are read through a queryset on the whole key")

    @classmethod
    def key_filter(cls, **key: Any) -> dict[str, Any]:
        """Returns `key` after checking that it names exactly the columns of the real key."""
        if set(key) != set(cls.composite_key):
            raise CompositeKeyError(f"{cls.__name__} rows are addressed by {cls.composite_key}, got {tuple(key)}")
        return key

    @classmethod
    async def bulk_update(cls, *args: Any, **kwargs: Any) -> int:  # type: ignore[override]
        raise CompositeKeyError(f"{cls.__name__} cannot be bulk-updated by its partial key")


class LegacyMigration(Model):
    """A step of the legacy TypeScript migration runner, kept read-only for forensics."""

    name = fields.CharField(max_length=KEY_LENGTH, primary_key=True)
    applied_at = fields.BigIntField()

    class Meta:
        table = "_migrations"


class User(Model):
    """A person, a sub-user or the owner; nametag is their global handle."""

    # Also in SQL only: idx_users_single_owner UNIQUE(is_owner) WHERE is_owner = 1,
    # idx_users_nametag UNIQUE(nametag) WHERE nametag IS NOT NULL, idx_users_parent WHERE NOT NULL,
    # and the two triggers that make nametag required. unique_together below is idx_users_nametag_required.
    id = fields.CharField(max_length=KEY_LENGTH, primary_key=True)
    is_owner = fields.BooleanField(db_default=False)
    created_at = fields.BigIntField()
    updated_at = fields.BigIntField()
    parent_user: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.NO_ACTION, source_field="parent_user_id"
    )
    name = fields.TextField(null=True)
    nametag = fields.TextField(null=True)

    class Meta:
        table = "users"
        unique_together = (("nametag",),)


class UserConnectorKey(Model):
    """A `connector:user` key that identifies a user on one connector."""

    # SQL only: the key is INTEGER PRIMARY KEY AUTOINCREMENT.
    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, on_delete=fields.CASCADE, source_field="user_id"
    )
    connector_key = fields.CharField(max_length=KEY_LENGTH, unique=True)

    class Meta:
        table = "user_connector_keys"
        indexes = (Index(fields=("user_id",), name="idx_user_connector_keys_user_id"),)


class Agent(Model):
    """An agent, with its descriptor, permissions and token usage as JSON text."""

    # SQL only: user_id's DEFAULT is the bootstrap owner's id, a literal that differs per file.
    id = fields.CharField(max_length=KEY_LENGTH, primary_key=True)
    type = fields.TextField()
    descriptor = fields.TextField()
    active_session_id = fields.TextField(null=True)
    permissions = fields.TextField()
    tokens = fields.TextField(null=True)
    stats = fields.TextField(db_default="{}")
    lifecycle = fields.TextField(db_default="active")
    created_at = fields.BigIntField()
    updated_at = fields.BigIntField()
    user_id = fields.TextField()

    class Meta:
        table = "agents"
        indexes = (Index(fields=("user_id",), name="idx_agents_user_id"),)


class Session(Model):
    """One conversation of an agent; invalidated_at and processed_until are history ids."""

    id = fields.CharField(max_length=KEY_LENGTH, primary_key=True)
    agent: fields.ForeignKeyRelation[Agent] = fields.ForeignKeyField(
        "models.Agent", related_name=False, on_delete=fields.CASCADE, source_field="agent_id"
    )
    inference_session_id = fields.TextField(null=True)
    created_at = fields.BigIntField()
    reset_message = fields.TextField(null=True)
    invalidated_at = fields.BigIntField(null=True)
    processed_until = fields.BigIntField(null=True)
    ended_at = fields.BigIntField(null=True)

    class Meta:
        table = "sessions"
        indexes = (
            Index(fields=("agent_id",), name="idx_sessions_agent_id"),
            Index(fields=("invalidated_at",), name="idx_sessions_invalidated_at"),
        )


class SessionHistory(Model):
    """One history record of a session; data is the record without type and at."""

    # SQL only: the key is INTEGER PRIMARY KEY AUTOINCREMENT (ids are never reused).
    id = fields.IntField(primary_key=True)
    session: fields.ForeignKeyRelation[Session] = fields.ForeignKeyField(
        "models.Session", related_name=False, on_delete=fields.CASCADE, source_field="session_id"
    )
    type = fields.TextField()
    at = fields.BigIntField()
    data = fields.TextField()

    class Meta:
        table = "session_history"
        indexes = (Index(fields=("session_id",), name="idx_session_history_session"),)


class InboxItem(Model):
    """A durable inbox entry of an agent; data is the whole item as JSON text."""

    id = fields.CharField(max_length=KEY_LENGTH, primary_key=True)
    agent_id = fields.TextField()
    posted_at = fields.BigIntField()
    type = fields.TextField()
    data = fields.TextField()

    class Meta:
        table = "inbox"
        indexes = (Index(fields=("agent_id", "posted_at"), name="idx_inbox_agent_order"),)


class Connection(CompositeKeyModel):
    """A friend request state between two users, stored as the sorted pair (a < b)."""

    # SQL only: PRIMARY KEY (user_a_id, user_b_id), both REFERENCES users ON DELETE CASCADE,
    # and CHECK (user_a_id < user_b_id).
    composite_key = ("user_a_id", "user_b_id")
    user_a_id = fields.CharField(max_length=KEY_LENGTH, primary_key=True)
    user_b_id = fields.TextField()
    requested_a = fields.BooleanField(db_default=False)
    requested_b = fields.BooleanField(db_default=False)
    requested_a_at = fields.BigIntField(null=True)
    requested_b_at = fields.BigIntField(null=True)

    class Meta:
        table = "connections"
        unique_together = (("user_a_id", "user_b_id"),)
        indexes = (Index(fields=("user_b_id",), name="idx_connections_user_b"),)


class Task(CompositeKeyModel):
    """A task of one user: the id is unique only within that user; deleted_at marks a soft delete."""

    # SQL only: PRIMARY KEY (user_id, id).
    composite_key = ("user_id", "id")
    id = fields.CharField(max_length=KEY_LENGTH, primary_key=True)
    user_id = fields.TextField()
    title = fields.TextField()
    description = fields.TextField(null=True)
    code = fields.TextField()
    created_at = fields.BigIntField()
    updated_at = fields.BigIntField()
    deleted_at = fields.BigIntField(null=True)

    class Meta:
        table = "tasks"
        unique_together = (("user_id", "id"),)
        indexes = (
            Index(fields=("user_id",), name="idx_tasks_user_id"),
            Index(fields=("updated_at",), name="idx_tasks_updated_at"),
        )


class CronTrigger(Model):
    """A cron schedule that runs a task of the same user."""

    # SQL only: FOREIGN KEY (user_id, task_id) REFERENCES "tasks"(user_id, id).
    id = fields.CharField(max_length=KEY_LENGTH, primary_key=True)
    task_id = fields.TextField()
    user_id = fields.TextField()
    name = fields.TextField()
    description = fields.TextField(null=True)
    schedule = fields.TextField()
    agent_id = fields.TextField(null=True)
    enabled = fields.BooleanField(db_default=True)
    delete_after_run = fields.BooleanField(db_default=False)
    last_run_at = fields.BigIntField(null=True)
    created_at = fields.BigIntField()
    updated_at = fields.BigIntField()

    class Meta:
        table = "tasks_cron"
        indexes = (
            Index(fields=("enabled",), name="idx_tasks_cron_enabled"),
            Index(fields=("updated_at",), name="idx_tasks_cron_updated_at"),
            Index(fields=("user_id", "task_id"), name="idx_tasks_cron_task_id"),
        )


class HeartbeatTrigger(Model):
    """A heartbeat entry that runs a task of the same user on the heartbeat interval."""

    # SQL only: FOREIGN KEY (user_id, task_id) REFERENCES "tasks"(user_id, id).
    id = fields.CharField(max_length=KEY_LENGTH, primary_key=True)
    task_id = fields.TextField()
    user_id = fields.TextField()
    title = fields.TextField()
    last_run_at = fields.BigIntField(null=True)
    created_at = fields.BigIntField()
    updated_at = fields.BigIntField()

    class Meta:
        table = "tasks_heartbeat"
        indexes = (
            Index(fields=("user_id",), name="idx_tasks_heartbeat_user_id"),
            Index(fields=("updated_at",), name="idx_tasks_heartbeat_updated_at"),
            Index(fields=("user_id", "task_id"), name="idx_tasks_heartbeat_task_id"),
        )


class SignalEvent(Model):
    """A generated signal; data NULL means no payload, the text `null` means JSON null."""

    id = fields.CharField(max_length=KEY_LENGTH, primary_key=True)
    user_id = fields.TextField()
    type = fields.TextField()
    source = fields.TextField()
    data = fields.TextField(null=True)
    created_at = fields.BigIntField()

    class Meta:
        table = "signals_events"
        indexes = (
            Index(fields=("user_id",), name="idx_signals_events_user"),
            Index(fields=("type",), name="idx_signals_events_type"),
            Index(fields=("created_at",), name="idx_signals_events_created"),
        )


class SignalSubscription(Model):
    """An agent's subscription to signal types matching a pattern."""

    id = fields.CharField(max_length=KEY_LENGTH, primary_key=True)
    user_id = fields.TextField()
    agent_id = fields.TextField()
    pattern = fields.TextField()
    silent = fields.BooleanField(db_default=False)
    created_at = fields.BigIntField()
    updated_at = fields.BigIntField()

    class Meta:
        table = "signals_subscriptions"
        unique_together = (("user_id", "agent_id", "pattern"),)
        indexes = (Index(fields=("user_id", "agent_id"), name="idx_signals_subscriptions_user_agent"),)


class DelayedSignal(Model):
    """A signal to generate at deliver_at; at most one per (user, type, repeat_key)."""

    id = fields.CharField(max_length=KEY_LENGTH, primary_key=True)
    user_id = fields.TextField()
    type = fields.TextField()
    deliver_at = fields.BigIntField()
    source = fields.TextField()
    data = fields.TextField(null=True)
    repeat_key = fields.TextField(null=True)
    created_at = fields.BigIntField()
    updated_at = fields.BigIntField()

    class Meta:
        table = "signals_delayed"
        indexes = (
            Index(fields=("deliver_at",), name="idx_signals_delayed_deliver"),
            # Replacing or cancelling a delayed signal deletes by these three columns.
            Index(fields=("user_id", "type", "repeat_key"), name="idx_signals_delayed_repeat"),
        )


class Channel(Model):
    """A named channel with a leader agent; names are unique across all users."""

    id = fields.CharField(max_length=KEY_LENGTH, primary_key=True)
    user_id = fields.TextField()
    name = fields.CharField(max_length=KEY_LENGTH, unique=True)
    leader = fields.TextField()
    created_at = fields.BigIntField()
    updated_at = fields.BigIntField()

    class Meta:
        table = "channels"
        indexes = (
            Index(fields=("user_id",), name="idx_channels_user"),
            Index(fields=("name",), name="idx_channels_name"),
        )


class ChannelMember(Model):
    """An agent's membership of a channel under a username."""

    # SQL only: the key is INTEGER PRIMARY KEY AUTOINCREMENT.
    id = fields.IntField(primary_key=True)
    channel: fields.ForeignKeyRelation[Channel] = fields.ForeignKeyField(
        "models.Channel", related_name=False, on_delete=fields.CASCADE, source_field="channel_id"
    )
    user_id = fields.TextField()
    agent_id = fields.TextField()
    username = fields.TextField()
    joined_at = fields.BigIntField()

    class Meta:
        table = "channel_members"
        unique_together = (("channel_id", "agent_id"),)
        indexes = (Index(fields=("channel_id",), name="idx_channel_members_channel"),)


class ChannelMessage(Model):
    """A message sent to a channel; mentions is a JSON array of usernames."""

    id = fields.CharField(max_length=KEY_LENGTH, primary_key=True)
    channel: fields.ForeignKeyRelation[Channel] = fields.ForeignKeyField(
        "models.Channel", related_name=False, on_delete=fields.CASCADE, source_field="channel_id"
    )
    user_id = fields.TextField()
    sender_username = fields.TextField()
    text = fields.TextField()
    mentions = fields.TextField()
    created_at = fields.BigIntField()

    class Meta:
        table = "channel_messages"
        indexes = (Index(fields=("channel_id", "created_at"), name="idx_channel_messages_channel_created"),)


class ExposeEndpoint(Model):
    """A tunnel endpoint that exposes a local port or socket under a domain."""

    id = fields.CharField(max_length=KEY_LENGTH, primary_key=True)
    user_id = fields.TextField()
    target = fields.TextField()
    provider = fields.TextField()
    domain = fields.TextField()
    mode = fields.TextField()
    auth = fields.TextField(null=True)
    created_at = fields.BigIntField()
    updated_at = fields.BigIntField()

    class Meta:
        table = "expose_endpoints"
        indexes = (
            Index(fields=("user_id",), name="idx_expose_endpoints_user"),
            Index(fields=("domain",), name="idx_expose_endpoints_domain"),
        )


class Process(Model):
    """The durable record of a managed process; owner is JSON text and is indexed as such."""

    id = fields.CharField(max_length=KEY_LENGTH, primary_key=True)
    user_id = fields.TextField()
    name = fields.TextField()
    command = fields.TextField()
    cwd = fields.TextField()
    home = fields.TextField(null=True)
    env = fields.TextField()
    package_managers = fields.TextField()
    allowed_domains = fields.TextField()
    allow_local_binding = fields.BooleanField(db_default=False)
    permissions = fields.TextField()
    owner = fields.TextField(null=True)
    keep_alive = fields.BooleanField(db_default=False)
    desired_state = fields.TextField(db_default="running")
    status = fields.TextField(db_default="running")
    pid = fields.BigIntField(null=True)
    boot_time_ms = fields.BigIntField(null=True)
    restart_count = fields.IntField(db_default=0)
    restart_failure_count = fields.IntField(db_default=0)
    next_restart_at = fields.BigIntField(null=True)
    settings_path = fields.TextField()
    log_path = fields.TextField()
    created_at = fields.BigIntField()
    updated_at = fields.BigIntField()
    last_started_at = fields.BigIntField(null=True)
    last_exited_at = fields.BigIntField(null=True)

    class Meta:
        table = "processes"
        indexes = (
            Index(fields=("user_id",), name="idx_processes_user"),
            Index(fields=("owner",), name="idx_processes_owner"),
        )


class SystemPrompt(Model):
    """A global or per-user prompt added to the system prompt or the first message."""

    id = fields.CharField(max_length=KEY_LENGTH, primary_key=True)
    scope = fields.TextField()
    user_id = fields.TextField(null=True)
    kind = fields.TextField()
    condition = fields.TextField(null=True)
    prompt = fields.TextField()
    enabled = fields.BooleanField(db_default=True)
    created_at = fields.BigIntField()
    updated_at = fields.BigIntField()

    class Meta:
        table = "system_prompts"
        indexes = (
            Index(fields=("scope",), name="idx_system_prompts_scope"),
            Index(fields=("user_id",), name="idx_system_prompts_user_id"),
        )


class TokenStatsHourly(CompositeKeyModel):
    """Token and cost sums per hour, user, agent and model; increments add to the row."""

    # SQL only: PRIMARY KEY (hour_start, user_id, agent_id, model); user_id and agent_id
    # REFERENCES users / agents ON DELETE CASCADE (Tortoise cannot make a key column a foreign key).
    composite_key = ("hour_start", "user_id", "agent_id", "model")
    hour_start = fields.BigIntField(primary_key=True, generated=False)
    user_id = fields.TextField()
    agent_id = fields.TextField()
    model = fields.TextField()
    input_tokens = fields.BigIntField(db_default=0)
    output_tokens = fields.BigIntField(db_default=0)
    cache_read_tokens = fields.BigIntField(db_default=0)
    cache_write_tokens = fields.BigIntField(db_default=0)
    cost = fields.FloatField(db_default=0)

    class Meta:
        table = "token_stats_hourly"
        unique_together = (("hour_start", "user_id", "agent_id", "model"),)
        indexes = (
            Index(fields=("hour_start",), name="idx_token_stats_hourly_hour_start"),
            Index(fields=("user_id", "hour_start"), name="idx_token_stats_hourly_user_hour"),
            Index(fields=("agent_id", "hour_start"), name="idx_token_stats_hourly_agent_hour"),
        )


class TriggerRun(Model):
    """The latest occurrence an engine claimed of a cron trigger (`cron:<trigger id>`) or of the heartbeat round.

    Not a legacy table. A claim moves `occurrence_at` forward in the transaction that delivers the run, so each
    occurrence runs once whichever engine leads (docs/postgres.md, "Several engines on one database").
    """

    id = fields.CharField(max_length=KEY_LENGTH, primary_key=True)
    occurrence_at = fields.BigIntField()
    claimed_at = fields.BigIntField()
    engine = fields.TextField()

    class Meta:
        table = "trigger_runs"


__models__ = [
    LegacyMigration,
    User,
    UserConnectorKey,
    Agent,
    Session,
    SessionHistory,
    InboxItem,
    Connection,
    Task,
    CronTrigger,
    HeartbeatTrigger,
    SignalEvent,
    SignalSubscription,
    DelayedSignal,
    Channel,
    ChannelMember,
    ChannelMessage,
    ExposeEndpoint,
    Process,
    SystemPrompt,
    TokenStatsHourly,
    TriggerRun,
]
