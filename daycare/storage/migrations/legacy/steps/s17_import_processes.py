"""20260222_import_processes: imports `<db dir>/processes/<id>/record.json` (record version 2 only).

A record needs an `id`, `name`, `command`, `cwd`, `settingsPath` and `logPath`; the rest gets
the legacy defaults. It belongs to the user of the agent named by its plugin owner's id, else
to the owner. Records that do not qualify are skipped with a warning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from daycare.storage.json_values import json_encode
from daycare.storage.migrations.legacy.context import StepContext
from daycare.storage.migrations.legacy.files import (
    LegacyDataError,
    number_or_none,
    number_or_now,
    number_or_zero,
    string_or_none,
)
from daycare.storage.migrations.legacy.step import LegacyStep

NAME = "20260222_import_processes"
REQUIRED = ("id", "name", "command", "cwd", "settingsPath", "logPath")
STATUSES = ("running", "stopped", "exited")


def strings(value: Any) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def permissions_parse(value: Any) -> dict[str, Any]:
    parsed = value if isinstance(value, dict) else {}
    return {
        "workingDir": string_or_none(parsed.get("workingDir")) or "/",
        "writeDirs": strings(parsed.get("writeDirs")),
        "readDirs": strings(parsed.get("readDirs")),
        "network": parsed.get("network") is True,
        "events": parsed.get("events") is True,
    }


def owner_parse(value: Any) -> dict[str, str] | None:
    owner_id = string_or_none(value.get("id")) if isinstance(value, dict) else None
    if not isinstance(value, dict) or value.get("type") != "plugin" or not owner_id:
        return None
    return {"type": "plugin", "id": owner_id}


async def process_import(ctx: StepContext, path: Path, owner: str) -> None:
    record = ctx.data.json_read(path)
    if not isinstance(record, dict) or record.get("version") != 2:
        raise LegacyDataError("record.json is not a version 2 process record")
    required = {key: string_or_none(record.get(key)) for key in REQUIRED}
    if not all(required.values()):
        raise LegacyDataError(f"record.json lacks one of {', '.join(REQUIRED)}")
    env = record.get("env")
    plugin = owner_parse(record.get("owner"))
    user_id = (await ctx.agent_user_id(plugin["id"]) if plugin else None) or owner
    status = record.get("status")
    await ctx.execute(
        "INSERT OR IGNORE INTO processes (id, user_id, name, command, cwd, home, env, package_managers,"
        " allowed_domains, allow_local_binding, permissions, owner, keep_alive, desired_state, status, pid,"
        " boot_time_ms, restart_count, restart_failure_count, next_restart_at, settings_path, log_path,"
        " created_at, updated_at, last_started_at, last_exited_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            required["id"],
            user_id,
            required["name"],
            required["command"],
            required["cwd"],
            string_or_none(record.get("home")),
            json_encode({k: v for k, v in env.items() if isinstance(v, str)} if isinstance(env, dict) else {}),
            json_encode(strings(record.get("packageManagers"))),
            json_encode(strings(record.get("allowedDomains"))),
            1 if record.get("allowLocalBinding") is True else 0,
            json_encode(permissions_parse(record.get("permissions"))),
            json_encode(plugin) if plugin else None,
            1 if record.get("keepAlive") is True else 0,
            "stopped" if record.get("desiredState") == "stopped" else "running",
            status if status in STATUSES else "stopped",
            number_or_none(record.get("pid")),
            number_or_none(record.get("bootTimeMs")),
            number_or_zero(record.get("restartCount")),
            number_or_zero(record.get("restartFailureCount")),
            number_or_none(record.get("nextRestartAt")),
            required["settingsPath"],
            required["logPath"],
            number_or_now(record.get("createdAt")),
            number_or_now(record.get("updatedAt")),
            number_or_none(record.get("lastStartedAt")),
            number_or_none(record.get("lastExitedAt")),
        ],
    )


async def run(ctx: StepContext) -> None:
    if ctx.data_dir is None:
        return
    entries = ctx.folders_list(ctx.data_dir / "processes")
    if not entries:
        return
    owner = await ctx.owner_id() or "owner"
    counter = ctx.counter("Importing legacy processes", len(entries))
    for entry in entries:
        try:
            await process_import(ctx, entry / "record.json", owner)
        except LegacyDataError as exc:
            ctx.skip(entry, str(exc))
        counter.advance()
    counter.finish()


STEP = LegacyStep(NAME, run)
