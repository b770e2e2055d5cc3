"""20260220_import_tasks: imports `<db dir>/cron/<id>/TASK.md` and `<db dir>/heartbeat/*.md`.

A cron task needs front matter with a cuid2 `taskId`, a `name`, a `schedule` (or `cron`) and
a non-empty body (its prompt); `STATE.json` may hold its `lastRunAt`. A heartbeat file's title
is its front matter `title` (or `name`), else a leading `# heading`, else the file name; the
rest is its prompt, and `.heartbeat-state.json` holds one `lastRunAt` for all of them.
Rows go in with INSERT OR IGNORE and without a task; the task is made when the chain first
requires one (see `daycare.storage.migrations.legacy.triggers`). Files that do not qualify are skipped
with a warning that names them; a state file that cannot be opened is warned about and ignored.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from daycare.storage.clock import now_ms
from daycare.storage.migrations.legacy.context import StepContext
from daycare.storage.migrations.legacy.files import (
    LegacyDataError,
    iso_ms,
    json_parse,
    string_or_none,
)
from daycare.storage.migrations.legacy.frontmatter import frontmatter_split
from daycare.storage.migrations.legacy.step import LegacyStep

NAME = "20260220_import_tasks"
CUID2 = re.compile(r"^[a-z0-9]{24,32}$")
DELETE_AFTER_RUN_KEYS = ("deleteAfterRun", "delete_after_run", "oneOff", "one_off", "once")
USER_KEYS = ("userId", "user_id", "userID", "userid")
HEADING = re.compile(r"^#{1,6}\s+(.*)$")


def first_present(frontmatter: dict[Any, Any], keys: tuple[str, ...]) -> Any:
    """JS `a ?? b ?? c`: the first of the keys whose value is not null or missing."""
    for key in keys:
        if frontmatter.get(key) is not None:
            return frontmatter[key]
    return None


def slug(value: str) -> str:
    """Lower case, runs of anything but a-z and 0-9 as one hyphen, no hyphen at either end."""
    return re.sub(r"[^a-z0-9]+", "-", value.lower().strip()).strip("-")


def file_times(ctx: StepContext, path: Path) -> tuple[int, int]:
    """(created, updated) in epoch ms: birth time where the platform has it, else the change time."""
    try:
        stat = ctx.data.stat(path)
    except LegacyDataError:
        stat = None
    if stat is None:
        now = now_ms()
        return now, now
    updated = stat.st_mtime_ns // 1_000_000
    birth = getattr(stat, "st_birthtime", None)
    created = int(birth * 1000) if isinstance(birth, int | float) else updated
    return (created if created > 0 else now_ms()), (updated if updated > 0 else now_ms())


def last_run_read(ctx: StepContext, path: Path) -> int | None:
    """`lastRunAt` (an ISO date) of a state file, in ms; None when absent, broken or not a file one may open.

    Like the legacy code, a broken state file is ignored quietly; one that cannot be opened
    (a link out of the data folder, a FIFO, ...) is ignored with a warning.
    """
    try:
        if ctx.data.stat(path) is None:
            return None
        text = ctx.data.text_read(path)
    except LegacyDataError as exc:
        ctx.skip(path, str(exc))
        return None
    try:
        state = json_parse(text)
    except LegacyDataError:
        return None
    return iso_ms(state.get("lastRunAt")) if isinstance(state, dict) else None


async def cron_import(ctx: StepContext, folder: Path, owner_id: str | None) -> None:
    task_path = folder / "TASK.md"
    if ctx.data.stat(task_path) is None:
        raise LegacyDataError("it has no TASK.md")
    frontmatter, body = frontmatter_split(ctx.data.text_read(task_path))
    task_uid = string_or_none(frontmatter.get("taskId"))
    if task_uid is None or not CUID2.match(task_uid):
        raise LegacyDataError("TASK.md has no cuid2 taskId")
    name = string_or_none(frontmatter.get("name"))
    schedule = string_or_none(first_present(frontmatter, ("schedule", "cron")))
    if name is None or schedule is None:
        raise LegacyDataError("TASK.md has no name or no schedule")
    prompt = body.strip()
    if not prompt:
        raise LegacyDataError("TASK.md has an empty prompt")
    times = file_times(ctx, task_path)
    await ctx.execute(
        "INSERT OR IGNORE INTO tasks_cron (id, task_uid, user_id, name, description, schedule, prompt, agent_id,"
        " enabled, delete_after_run, last_run_at, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            folder.name,
            task_uid,
            string_or_none(first_present(frontmatter, USER_KEYS)) or owner_id,
            name,
            string_or_none(frontmatter.get("description")),
            schedule,
            prompt,
            string_or_none(first_present(frontmatter, ("agentId", "agent_id"))),
            0 if frontmatter.get("enabled") is False else 1,
            1 if any(frontmatter.get(key) is True for key in DELETE_AFTER_RUN_KEYS) else 0,
            last_run_read(ctx, folder / "STATE.json"),
            *times,
        ],
    )


def heartbeat_title_prompt(body: str, frontmatter: dict[Any, Any], fallback: str) -> tuple[str, str]:
    """The title and prompt of a heartbeat file, by the legacy rules."""
    text = body.strip()
    title = first_present(frontmatter, ("title", "name"))
    if isinstance(title, str):
        return title.strip() or fallback, text
    if text:
        lines = re.split(r"\r?\n", text)
        heading = HEADING.match(lines[0].strip())
        if heading and heading.group(1):
            return heading.group(1).strip() or fallback, "\n".join(lines[1:]).strip()
    return fallback, text


async def heartbeat_import(ctx: StepContext, path: Path, last_run_at: int | None) -> None:
    frontmatter, body = frontmatter_split(ctx.data.text_read(path))
    base = path.name[: -len(path.suffix)] if path.suffix else path.name
    title, prompt = heartbeat_title_prompt(body, frontmatter, base)
    if not prompt:
        raise LegacyDataError("it has an empty prompt")
    await ctx.execute(
        "INSERT OR IGNORE INTO tasks_heartbeat (id, title, prompt, last_run_at, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [slug(base) or base, title, prompt, last_run_at, *file_times(ctx, path)],
    )


async def run(ctx: StepContext) -> None:
    if ctx.data_dir is None:
        return
    cron_dir, heartbeat_dir = ctx.data_dir / "cron", ctx.data_dir / "heartbeat"
    crons = ctx.folders_list(cron_dir)
    heartbeats = ctx.files_list(heartbeat_dir, lambda name: name.lower().endswith(".md"))
    if not crons and not heartbeats:
        return
    counter = ctx.counter("Importing legacy cron and heartbeat tasks", len(crons) + len(heartbeats))
    owner_id = await ctx.owner_id()
    for folder in crons:
        try:
            await cron_import(ctx, folder, owner_id)
        except LegacyDataError as exc:
            ctx.skip(folder, str(exc))
        counter.advance()
    last_run_at = last_run_read(ctx, heartbeat_dir / ".heartbeat-state.json") if heartbeats else None
    for path in heartbeats:
        try:
            await heartbeat_import(ctx, path, last_run_at)
        except LegacyDataError as exc:
            ctx.skip(path, str(exc))
        counter.advance()
    counter.finish()


STEP = LegacyStep(NAME, run)
