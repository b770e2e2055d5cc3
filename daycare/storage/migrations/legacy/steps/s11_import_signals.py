"""20260222_import_signals: imports `<db dir>/signals/events.jsonl` and `signals/delayed.json`.

Each event needs an `id` and a `type`; its user is its source's `userId`, else the owner
(else the literal "owner", as in the legacy code). The source is normalized to
`{type, id?, userId?}`. Lines and entries that do not qualify (or hold a number SQLite cannot
store) are skipped with a warning; `events.jsonl` is read one line at a time.
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

NAME = "20260222_import_signals"
MISSING = object()


def source_normalize(source: Any) -> dict[str, str]:
    """The legacy signal source: system unless it is a valid agent, webhook or process source."""
    if not isinstance(source, dict):
        return {"type": "system"}
    user = {"userId": user_id} if (user_id := string_or_none(source.get("userId"))) else {}
    kind, source_id = source.get("type"), string_or_none(source.get("id"))
    if kind == "agent":
        return {"type": "agent", "id": source_id, **user} if source_id else {"type": "system", **user}
    if kind in ("webhook", "process"):
        return {"type": str(kind), **({"id": source_id} if source_id else {}), **user}
    return {"type": "system", **user}


def data_text(entry: dict[str, Any]) -> str | None:
    """The `data` value as JSON text; SQL NULL when the key is missing (JS undefined)."""
    value = entry.get("data", MISSING)
    return None if value is MISSING else json_encode(value)


async def event_insert(ctx: StepContext, event: Any, owner: str) -> None:
    """Imports one event line; raises LegacyDataError when it does not qualify."""
    event = event if isinstance(event, dict) else {}
    event_id, kind = string_or_none(event.get("id")), string_or_none(event.get("type"))
    if not event_id or not kind:
        raise LegacyDataError("it has no id or no type")
    source = source_normalize(event.get("source"))
    await ctx.execute(
        "INSERT OR IGNORE INTO signals_events (id, user_id, type, source, data, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        [
            event_id,
            source.get("userId", owner),
            kind,
            json_encode(source),
            data_text(event),
            number_or_now(event.get("createdAt")),
        ],
    )


async def events_import(ctx: StepContext, path: Path, owner: str) -> None:
    with ctx.data.file_open(path) as stream:
        for number, event in ctx.json_lines(stream, path):
            try:
                await event_insert(ctx, event, owner)
            except LegacyDataError as exc:
                ctx.skip(path, f"line {number}: {exc}")


async def delayed_insert(ctx: StepContext, entry: Any, owner: str) -> None:
    """Imports one delayed event; raises LegacyDataError when it does not qualify."""
    event_id = string_or_none(entry.get("id")) if isinstance(entry, dict) else None
    kind = string_or_none(entry.get("type")) if isinstance(entry, dict) else None
    if not isinstance(entry, dict) or not event_id or not kind:
        raise LegacyDataError("it has no id or no type")
    source = source_normalize(entry.get("source"))
    await ctx.execute(
        "INSERT OR IGNORE INTO signals_delayed (id, user_id, type, deliver_at, source, data, repeat_key,"
        " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            event_id,
            source.get("userId", owner),
            kind,
            number_or_now(entry.get("deliverAt")),
            json_encode(source),
            data_text(entry),
            string_or_none(entry.get("repeatKey")),
            number_or_now(entry.get("createdAt")),
            number_or_now(entry.get("updatedAt")),
        ],
    )


async def delayed_import(ctx: StepContext, path: Path, owner: str) -> None:
    content = ctx.data.json_read(path)
    events = content.get("events") if isinstance(content, dict) else None
    if not isinstance(events, list):
        raise LegacyDataError("it has no events list")
    for index, entry in enumerate(events):
        try:
            await delayed_insert(ctx, entry, owner)
        except LegacyDataError as exc:
            ctx.skip(path, f"event #{index + 1}: {exc}")


async def run(ctx: StepContext) -> None:
    if ctx.data_dir is None:
        return
    folder = ctx.data_dir / "signals"
    files = []
    try:
        candidates = (folder / "events.jsonl", folder / "delayed.json") if ctx.data.folder_found(folder) else ()
    except LegacyDataError as exc:
        ctx.skip(folder, str(exc))
        return
    for path in candidates:
        try:
            if ctx.data.stat(path) is not None:
                files.append(path)
        except LegacyDataError as exc:
            ctx.skip(path, str(exc))
    if not files:
        return
    owner = await ctx.owner_id() or "owner"
    counter = ctx.counter("Importing legacy signals", len(files))
    for path in files:
        try:
            if path.name == "events.jsonl":
                await events_import(ctx, path, owner)
            else:
                await delayed_import(ctx, path, owner)
        except LegacyDataError as exc:
            ctx.skip(path, str(exc))
        counter.advance()
    counter.finish()


STEP = LegacyStep(NAME, run)
