"""20260219_import_files: imports `<db dir>/agents/<id>/` (descriptor.json, state.json, history.jsonl).

Runs only when `agents` is empty. Each agent folder becomes an agent, its sessions and their
history; `start` and `reset` markers in the history open new sessions. A folder whose
descriptor or state cannot be read is skipped with a warning, as is a history line that is
not a JSON record; the other folders are still imported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tortoise.exceptions import BaseORMException

from daycare.storage.clock import now_ms
from daycare.storage.identifiers import cuid_create
from daycare.storage.migrations.legacy.context import StepContext
from daycare.storage.migrations.legacy.files import (
    FileBroken,
    coalesce,
    folder_entries,
    is_number,
    js_truthy,
    json_file_read,
    json_parse,
    jsonl_lines,
)
from daycare.storage.migrations.legacy.step import LegacyStep
from daycare.storage.json_values import json_encode

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


@dataclass
class Session:
    id: str
    created_at: int | float
    reset_message: str | None
    inference_session_id: str | None = None
    records: list[dict[str, Any]] = field(default_factory=list)


def state_parse(raw: Any) -> AgentState:
    """The legacy state.json, with the legacy defaults for what is missing."""
    if raw is None:
        raise FileBroken("state.json holds null")
    parsed = raw if isinstance(raw, dict) else {}
    now = now_ms()
    lifecycle = parsed.get("state")
    if lifecycle not in LIFECYCLES:
        lifecycle = "sleeping" if js_truthy(parsed.get("sleeping")) else "active"
    session_id = parsed.get("inferenceSessionId")
    return AgentState(
        inference_session_id=session_id if isinstance(session_id, str) else None,
        permissions=coalesce(parsed.get("permissions"), {"workingDir": "/", "writeDirs": []}),
        tokens=coalesce(parsed.get("tokens"), None),
        stats=coalesce(parsed.get("stats"), {}),
        created_at=parsed["createdAt"] if is_number(parsed.get("createdAt")) else now,
        updated_at=parsed["updatedAt"] if is_number(parsed.get("updatedAt")) else now,
        lifecycle=str(lifecycle),
    )


def history_read(ctx: StepContext, path: Path) -> list[dict[str, Any]]:
    """The history records of an agent; lines that are not records are skipped with a warning."""
    if not path.is_file():
        return []
    records = []
    for number, line in jsonl_lines(path):
        try:
            record = json_parse(line)
        except FileBroken as exc:
            ctx.skip(path, f"line {number} is {exc}")
            continue
        if not isinstance(record, dict) or not isinstance(record.get("type"), str) or not is_number(record.get("at")):
            ctx.skip(path, f"line {number} is not a history record with a type and a time")
            continue
        records.append(record)
    return records


def sessions_build(records: list[dict[str, Any]], state: AgentState) -> list[Session]:
    """Splits the history at its start and reset markers; the last session keeps the inference id."""
    sessions: list[Session] = []
    for record in records:
        if record["type"] in MARKERS:
            message = record.get("message") if record["type"] == "reset" else None
            sessions.append(Session(cuid_create(), record["at"], message if isinstance(message, str) else None))
            continue
        if not sessions:
            sessions.append(Session(cuid_create(), record["at"], None))
        sessions[-1].records.append(record)
    if not sessions:
        sessions.append(Session(cuid_create(), state.created_at, None))
    sessions[-1].inference_session_id = state.inference_session_id
    return sessions


async def agent_import(ctx: StepContext, folder: Path) -> None:
    """Imports one agent folder inside the step's transaction."""
    descriptor = json_file_read(folder / "descriptor.json")
    if not isinstance(descriptor, dict) or not isinstance(descriptor.get("type"), str):
        raise FileBroken("descriptor.json has no type")
    state = state_parse(json_file_read(folder / "state.json"))
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
    sessions = sessions_build(history_read(ctx, folder / "history.jsonl"), state)
    for session in sessions:
        await ctx.execute(
            "INSERT INTO sessions (id, agent_id, inference_session_id, created_at, reset_message)"
            " VALUES (?, ?, ?, ?, ?)",
            [session.id, agent_id, session.inference_session_id, session.created_at, session.reset_message],
        )
        for record in session.records:
            data = {key: value for key, value in record.items() if key not in ("type", "at")}
            await ctx.execute(
                "INSERT INTO session_history (session_id, type, at, data) VALUES (?, ?, ?, ?)",
                [session.id, record["type"], record["at"], json_encode(data)],
            )
    await ctx.execute("UPDATE agents SET active_session_id = ? WHERE id = ?", [sessions[-1].id, agent_id])


async def run(ctx: StepContext) -> None:
    if ctx.data_dir is None:
        return
    count = await ctx.row("SELECT COUNT(*) AS count FROM agents")
    if count and count["count"] > 0:
        return
    folder = ctx.data_dir / "agents"
    if not folder.is_dir():
        return
    entries = folder_entries(folder, folders=True)
    counter = ctx.counter("Importing legacy agents", len(entries))
    for entry in entries:
        try:
            async with ctx.transaction() as entry_ctx:
                await agent_import(entry_ctx, entry)
        except (FileBroken, BaseORMException) as exc:
            ctx.skip(entry, str(exc))
        counter.advance()
    counter.finish()


STEP = LegacyStep(NAME, run)
