"""20260220_users_bootstrap: one user per connector identity of the user agents, else one owner.

The earliest identity becomes the owner. When no owner results, one is created. Then
`agents.user_id` is added with the owner's id as its literal DEFAULT (the legacy code baked
it into the table SQL), each user agent is pointed at its user, and the column is indexed.
"""

from __future__ import annotations

import json

from daycare.storage.clock import now_ms
from daycare.storage.identifiers import cuid_create
from daycare.storage.migrations.legacy.context import StepContext
from daycare.storage.migrations.legacy.step import LegacyStep

NAME = "20260220_users_bootstrap"


def connector_key(descriptor: str) -> str | None:
    """`connector:userId` of a user agent's descriptor, or None when it has no usable identity."""
    try:
        parsed = json.loads(descriptor)
    except (ValueError, TypeError):
        return None
    if not isinstance(parsed, dict):
        return None
    connector, user_id = parsed.get("connector"), parsed.get("userId")
    if not isinstance(connector, str) or not isinstance(user_id, str):
        return None
    if not connector.strip() or not user_id.strip():
        return None
    return f"{connector.strip()}:{user_id.strip()}"


async def run(ctx: StepContext) -> None:
    agents = await ctx.rows("SELECT id, descriptor FROM agents WHERE type = 'user' ORDER BY created_at ASC")
    key_by_agent: dict[str, str] = {}
    keys: list[str] = []
    for agent in agents:
        key = connector_key(agent["descriptor"])
        if key is None:
            continue
        key_by_agent[agent["id"]] = key
        if key not in keys:
            keys.append(key)

    now = now_ms()
    user_by_key: dict[str, str] = {}
    for index, key in enumerate(keys):
        user_id = cuid_create()
        await ctx.execute(
            "INSERT INTO users (id, is_owner, created_at, updated_at) VALUES (?, ?, ?, ?)",
            [user_id, 1 if index == 0 else 0, now, now],
        )
        await ctx.execute("INSERT INTO user_connector_keys (user_id, connector_key) VALUES (?, ?)", [user_id, key])
        user_by_key[key] = user_id

    owner_id = await ctx.owner_id()
    if owner_id is None:
        owner_id = cuid_create()
        await ctx.execute(
            "INSERT INTO users (id, is_owner, created_at, updated_at) VALUES (?, 1, ?, ?)", [owner_id, now, now]
        )

    if "user_id" not in await ctx.columns("agents"):
        literal = owner_id.replace("'", "''")
        await ctx.execute(f"ALTER TABLE agents ADD COLUMN user_id TEXT NOT NULL DEFAULT '{literal}'")
    for agent_id, key in key_by_agent.items():
        await ctx.execute("UPDATE agents SET user_id = ? WHERE id = ?", [user_by_key[key], agent_id])
    await ctx.execute("UPDATE agents SET user_id = ? WHERE user_id IS NULL", [owner_id])
    await ctx.execute("CREATE INDEX IF NOT EXISTS idx_agents_user_id ON agents(user_id)")


STEP = LegacyStep(NAME, run)
