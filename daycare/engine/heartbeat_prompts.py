"""The system message of a heartbeat run (legacy `heartbeatPromptBuildBatch`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HeartbeatRunTask:
    """A heartbeat trigger about to run, with its task's current title and code."""

    id: str
    task_id: str
    user_id: str
    title: str
    code: str
    last_run_at: int | None
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class HeartbeatBatch:
    title: str
    text: str
    code: tuple[str, ...]


def _order(task: HeartbeatRunTask) -> tuple[str, str, str]:
    # Case-insensitive first, like the legacy localeCompare; then exact text and id for ties.
    return (task.title.casefold(), task.title, task.id)


def heartbeat_prompt_build_batch(tasks: Sequence[HeartbeatRunTask]) -> HeartbeatBatch:
    """One message for the given tasks (sorted by title, then id), with one code block each."""
    ordered = sorted(tasks, key=_order)
    if len(ordered) == 1:
        task = ordered[0]
        return HeartbeatBatch(f"Heartbeat: {task.title}", f"Heartbeat: {task.title} (id: {task.id})", (task.code,))
    sections = [f"{index}. {task.title} (id: {task.id})" for index, task in enumerate(ordered, start=1)]
    text = "\n".join(["# Heartbeat run", "", f"Run all {len(ordered)} heartbeat tasks together.", "", *sections])
    return HeartbeatBatch(f"Heartbeat batch ({len(ordered)})", text, tuple(task.code for task in ordered))
