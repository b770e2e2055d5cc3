"""20260222_import_channels: imports `<db dir>/channels/<name>/channel.json` and `history.jsonl`.

A channel needs an `id`, a `name` and a `leader`; it belongs to its leader agent's user, else
the owner. Each member belongs to its agent's user, else the channel's. Messages need an
`id`, a `senderUsername` and a `text`. What does not qualify is skipped with a warning, as is
a channel whose name another imported channel already has; `history.jsonl` is read one line
at a time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from daycare.storage.json_values import json_encode
from daycare.storage.migrations.legacy.context import StepContext
from daycare.storage.migrations.legacy.files import (
    LegacyDataError,
    number_or_now,
    string_or_none,
)
from daycare.storage.migrations.legacy.step import LegacyStep

NAME = "20260222_import_channels"


def members_parse(value: Any) -> list[tuple[str, str, int]]:
    """(agent id, username, joined at) of each member that has an agent id and a username."""
    members = []
    for entry in value if isinstance(value, list) else []:
        if not isinstance(entry, dict):
            continue
        agent_id, username = string_or_none(entry.get("agentId")), string_or_none(entry.get("username"))
        if agent_id and username:
            members.append((agent_id, username, number_or_now(entry.get("joinedAt"))))
    return members


async def message_insert(ctx: StepContext, message: Any, channel_id: str, user_id: str) -> None:
    """Imports one message line; raises LegacyDataError when it does not qualify."""
    message = message if isinstance(message, dict) else {}
    message_id = string_or_none(message.get("id"))
    sender, text = string_or_none(message.get("senderUsername")), string_or_none(message.get("text"))
    if not message_id or not sender or not text:
        raise LegacyDataError("it has no id, sender or text")
    mentions = message.get("mentions")
    await ctx.execute(
        "INSERT OR IGNORE INTO channel_messages (id, channel_id, user_id, sender_username, text, mentions,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            message_id,
            channel_id,
            user_id,
            sender,
            text,
            json_encode([item for item in mentions if isinstance(item, str)] if isinstance(mentions, list) else []),
            number_or_now(message.get("createdAt")),
        ],
    )


async def messages_import(ctx: StepContext, path: Path, channel_id: str, user_id: str) -> None:
    try:
        stream = ctx.data.file_find(path)
    except LegacyDataError as exc:
        ctx.skip(path, str(exc))
        return
    if stream is None:
        return
    with stream:
        for number, message in ctx.json_lines(stream, path):
            try:
                await message_insert(ctx, message, channel_id, user_id)
            except LegacyDataError as exc:
                ctx.skip(path, f"line {number}: {exc}")


async def channel_import(ctx: StepContext, folder: Path, owner: str) -> None:
    channel = ctx.data.json_read(folder / "channel.json")
    channel = channel if isinstance(channel, dict) else {}
    channel_id, name = string_or_none(channel.get("id")), string_or_none(channel.get("name"))
    leader = string_or_none(channel.get("leader"))
    if not channel_id or not name or not leader:
        raise LegacyDataError("channel.json has no id, name or leader")
    user_id = await ctx.agent_user_id(leader) or owner
    members = members_parse(channel.get("members"))
    inserted = await ctx.execute(
        "INSERT OR IGNORE INTO channels (id, user_id, name, leader, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
        [
            channel_id,
            user_id,
            name,
            leader,
            number_or_now(channel.get("createdAt")),
            number_or_now(channel.get("updatedAt")),
        ],
    )
    # A name taken by a channel of another id leaves nothing for the members and messages to belong to.
    if not inserted and await ctx.row("SELECT 1 AS found FROM channels WHERE id = ?", [channel_id]) is None:
        raise LegacyDataError(f"channel.json names a channel {name!r}, and another channel has that name")
    for agent_id, username, joined_at in members:
        await ctx.execute(
            "INSERT OR IGNORE INTO channel_members (channel_id, user_id, agent_id, username, joined_at)"
            " VALUES (?, ?, ?, ?, ?)",
            [channel_id, await ctx.agent_user_id(agent_id) or user_id, agent_id, username, joined_at],
        )
    await messages_import(ctx, folder / "history.jsonl", channel_id, user_id)


async def run(ctx: StepContext) -> None:
    if ctx.data_dir is None:
        return
    entries = ctx.folders_list(ctx.data_dir / "channels")
    if not entries:
        return
    owner = await ctx.owner_id() or "owner"
    counter = ctx.counter("Importing legacy channels", len(entries))
    for folder in entries:
        # Only a problem of the channel's files skips it; a database error fails the whole step.
        try:
            async with ctx.transaction() as entry_ctx:
                await channel_import(entry_ctx, folder, owner)
        except LegacyDataError as exc:
            ctx.skip(folder, str(exc))
        counter.advance()
    counter.finish()


STEP = LegacyStep(NAME, run)
