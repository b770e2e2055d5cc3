"""20260302_cleanup_rlm_snapshot_payloads: removes embedded VM snapshots from `rlm_tool_call` history.

In each such record (a JSON object) the `snapshot` key goes, and so does a `snapshotId` that is
not a cuid2 string (24-32 characters a-z, 0-9). Other keys stay, in their order.

Safe to interrupt: rows are cleaned in batches, each batch is one transaction, and the step is
recorded only after the last one. A crash loses nothing: the batches already committed are
clean, and a rerun finds nothing left to do in them. The edit happens inside SQLite
(`json_remove`), so a row's other values keep their exact text and no payload is ever held in
Python's memory.
"""

from __future__ import annotations

from daycare.storage.migrations.legacy.context import StepContext
from daycare.storage.migrations.legacy.step import LegacyStep

NAME = "20260302_cleanup_rlm_snapshot_payloads"
BATCH_ROWS = 500

# A snapshotId is kept only when it is a cuid2: text of 24 to 32 characters, each a-z or 0-9.
_ID_INVALID = (
    "(json_type(data, '$.snapshotId') IS NOT NULL AND NOT ("
    "json_type(data, '$.snapshotId') = 'text'"
    " AND length(json_extract(data, '$.snapshotId')) BETWEEN 24 AND 32"
    " AND json_extract(data, '$.snapshotId') NOT GLOB '*[^a-z0-9]*'))"
)

CLEAN_SQL = f"""
UPDATE session_history
SET data = CASE WHEN {_ID_INVALID}
    THEN json_remove(data, '$.snapshot', '$.snapshotId')
    ELSE json_remove(data, '$.snapshot') END
WHERE id > ? AND id <= ? AND type = 'rlm_tool_call'
    AND instr(data, 'snapshot') > 0 AND json_valid(data) AND json_type(data) = 'object'
    AND (json_type(data, '$.snapshot') IS NOT NULL OR {_ID_INVALID})
"""


async def run(ctx: StepContext) -> None:
    if not await ctx.table_exists("session_history"):
        return
    total = await ctx.row("SELECT COUNT(*) AS count FROM session_history WHERE type = 'rlm_tool_call'")
    counter = ctx.counter("Removing rlm snapshots from history", int(total["count"]) if total else 0)
    last = 0
    while True:
        async with ctx.transaction() as batch:
            ids = await batch.rows(
                "SELECT id FROM session_history WHERE type = 'rlm_tool_call' AND id > ? ORDER BY id LIMIT ?",
                [last, BATCH_ROWS],
            )
            if not ids:
                break
            end = ids[-1]["id"]
            await batch.execute(CLEAN_SQL, [last, end])
        last = end
        counter.advance(len(ids))
    counter.finish()


STEP = LegacyStep(NAME, run, batched=True)
