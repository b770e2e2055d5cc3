"""20260222_import_expose: imports `<db dir>/expose/endpoints/*.json`, all for the owner.

An endpoint needs an `id`, a `provider`, a `domain`, a `mode` and a `target` (any JSON value,
null included). Files that do not qualify are skipped with a warning.
"""

from __future__ import annotations

from pathlib import Path

from daycare.storage.json_values import json_encode
from daycare.storage.migrations.legacy.context import StepContext
from daycare.storage.migrations.legacy.files import (
    LegacyDataError,
    js_truthy,
    number_or_now,
    string_or_none,
)
from daycare.storage.migrations.legacy.step import LegacyStep

NAME = "20260222_import_expose"


async def endpoint_import(ctx: StepContext, path: Path, owner: str) -> None:
    endpoint = ctx.data.json_read(path)
    endpoint = endpoint if isinstance(endpoint, dict) else {}
    values = [string_or_none(endpoint.get(key)) for key in ("id", "provider", "domain", "mode")]
    if not all(values) or "target" not in endpoint:
        raise LegacyDataError("it has no id, provider, domain, mode or target")
    endpoint_id, provider, domain, mode = values
    auth = endpoint.get("auth")
    await ctx.execute(
        "INSERT OR IGNORE INTO expose_endpoints (id, user_id, target, provider, domain, mode, auth, created_at,"
        " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            endpoint_id,
            owner,
            json_encode(endpoint["target"]),
            provider,
            domain,
            mode,
            json_encode(auth) if js_truthy(auth) else None,
            number_or_now(endpoint.get("createdAt")),
            number_or_now(endpoint.get("updatedAt")),
        ],
    )


async def run(ctx: StepContext) -> None:
    if ctx.data_dir is None:
        return
    files = ctx.files_list(ctx.data_dir / "expose" / "endpoints", lambda name: name.endswith(".json"))
    if not files:
        return
    owner = await ctx.owner_id() or "owner"
    counter = ctx.counter("Importing legacy expose endpoints", len(files))
    for path in files:
        try:
            await endpoint_import(ctx, path, owner)
        except LegacyDataError as exc:
            ctx.skip(path, str(exc))
        counter.advance()
    counter.finish()


STEP = LegacyStep(NAME, run)
