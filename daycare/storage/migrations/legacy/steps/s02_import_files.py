"""20260219_import_files: imports `<db dir>/agents/<id>/` (descriptor.json, state.json, history.jsonl).

Runs only when `agents` is empty. Each agent folder becomes an agent, its sessions and their
history; `start` and `reset` markers in the history open new sessions. The history is read
one line at a time, so memory does not grow with the file. A folder whose descriptor or state
cannot be read is skipped with a warning, as is a history line that is not a JSON record (or
holds a time SQLite cannot store); the other folders are still imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daycare.storage.clock import now_ms
from daycare.storage.identifiers import cuid_create
from daycare.storage.json_values import json_encode
from daycare.storage.migrations.legacy.context import StepContext
from daycare.storage.migrations.legacy.files import (
    LegacyDataError,
    coalesce,
    integer_check,
    is_number,
    js_truthy,
)
from daycare.storage.migrations.legacy.step import LegacyStep

NAME = "20260219_import_files"
LIFECYCLES = ("active", "sleeping", "dead")
MARKERS = ("start", "reset")


@dataclass
class AgentState:
    inference_session_id: str | None
    permissions: Any
    tokens: Any
    stats: Any
    created_at: int | float
    updated_at: int | float
    lifecycle: str


def state_parse(raw: Any) -> AgentState:
    """The legacy state.json, with the legacy defaults for what is missing."""
    if raw is None:
        raise LegacyDataError("state.json holds null")
    parsed = raw if isinstance(raw, dict) else {}
    now = now_ms()
    lifecycle = parsed.get("state")
    if lifecycle not in LIFECYCLES:
        lifecycle = "sleeping" if js_truthy(parsed.get("sleeping")) else "active"
    session_id = parsed.get("inferenceSessionId")
    try:
        created_at = integer_check(parsed["createdAt"]) if is_number(parsed.get("createdAt")) else now
        updated_at = integer_check(parsed["updatedAt"]) if is_number(parsed.get("updatedAt")) else now
    except LegacyDataError as exc:
        raise LegacyDataError(f"state.json: {exc}") from None
    return AgentState(
        inference_session_id=session_id if isinstance(session_id, str) else None,
        permissions=coalesce(parsed.get("permissions"), {"workingDir": "/", "writeDirs": []}),
        tokens=coalesce(parsed.get("tokens"), None),
        stats=coalesce(parsed.get("stats"), {}),
        created_at=created_at,
        updated_at=updated_at,
        lifecycle=str(lifecycle),
    )


async def session_insert(ctx: StepContext, agent_id: str, created_at: int | float, reset_message: Any) -> str:
    """Opens a new session of the agent; returns its id."""
    session_id = cuid_create()
    await ctx.execute(
        "INSERT INTO sessions (id, agent_id, inference_session_id, created_at, reset_message)"
        " VALUES (?, ?, NULL, ?, ?)",
        [session_id, agent_id, created_at, reset_message if isinstance(reset_message, str) else None],
    )
    return session_id


async def history_import(ctx: StepContext, path: Path, agent_id: str, state: AgentState) -> str:
    """Streams the agent's history into sessions split at the markers; returns the last session's id.

    The last session keeps the state's inference session id. A history file that is absent
    gives one empty session; one that cannot be opened is skipped with a warning, and so is
    each line that is not a history record.
    """
    session_id: str | None = None
    try:
        stream = ctx.data.file_find(path)
    except LegacyDataError as exc:
        ctx.skip(path, str(exc))
        stream = None
    if stream is not None:
        with stream:
            for number, record in ctx.json_lines(stream, path):
                if (
                    not isinstance(record, dict)
                    or not isinstance(record.get("type"), str)
                    or not is_number(record.get("at"))
                ):
                    ctx.skip(path, f"line {number} is not a history record with a type and a time")
                    continue
                try:
                    at = integer_check(record["at"])
                except LegacyDataError as exc:
                    ctx.skip(path, f"line {number}: {exc}")
                    continue
                if record["type"] in MARKERS:
                    message = record.get("message") if record["type"] == "reset" else None
                    session_id = await session_insert(ctx, agent_id, at, message)
                    continue
                if session_id is None:
                    session_id = await session_insert(ctx, agent_id, at, None)
                data = {key: value for key, value in record.items() if key not in ("type", "at")}
                await ctx.execute(
                    "INSERT INTO session_history (session_id, type, at, data) VALUES (?, ?, ?, ?)",
                    [session_id, record["type"], at, json_encode(data)],
                )
    if session_id is None:
        session_id = await session_insert(ctx, agent_id, state.created_at, None)
    if state.inference_session_id is not None:
        await ctx.execute(
            "UPDATE sessions SET inference_session_id = ? WHERE id = ?", [state.inference_session_id, session_id]
        )
    return session_id


async def agent_import(ctx: StepContext, folder: Path) -> None:
    """Imports one agent folder inside the step's transaction."""
    descriptor = ctx.data.json_read(folder / "descriptor.json")
    if not isinstance(descriptor, dict) or not isinstance(descriptor.get("type"), str):
        raise LegacyDataError("descriptor.json has no type")
    state = state_parse(ctx.data.json_read(folder / "state.json"))
    agent_id = folder.name
    await ctx.execute(
        "INSERT INTO agents (id, type, descriptor, active_session_id, permissions, tokens, stats, lifecycle,"
        " created_at, updated_at) VALUES (?, ?, ?, NULL, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT(id) DO UPDATE SET type = excluded.type, descriptor = excluded.descriptor,"
        " permissions = excluded.permissions, tokens = excluded.tokens, stats = excluded.stats,"
        " lifecycle = excluded.lifecycle, updated_at = excluded.updated_at",
        [
            agent_id,
            descriptor["type"],
            json_encode(descriptor),
            json_encode(state.permissions),
            json_encode(state.tokens) if js_truthy(state.tokens) else None,
            json_encode(state.stats),
            state.lifecycle,
            state.created_at,
            state.updated_at,
        ],
    )
    session_id = await history_import(ctx, folder / "history.jsonl", agent_id, state)
    await ctx.execute("UPDATE agents SET active_session_id = ? WHERE id = ?", [session_id, agent_id])


async def run(ctx: StepContext) -> None:
    if ctx.data_dir is None:
        return
    count = await ctx.row("SELECT COUNT(*) AS count FROM agents")
    if count and count["count"] > 0:
        return
    entries = ctx.folders_list(ctx.data_dir / "agents")
    counter = ctx.counter("Importing legacy agents", len(entries))
    for entry in entries:
        # Only a problem of the agent's files skips it; a database error fails the whole step.
        try:
            async with ctx.transaction() as entry_ctx:
                await agent_import(entry_ctx, entry)
        except LegacyDataError as exc:
            ctx.skip(entry, str(exc))
        counter.advance()
    counter.finish()


STEP = LegacyStep(NAME, run)
