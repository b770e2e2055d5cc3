"""The legacy TypeScript migration chain: its 33 step names, in the order it ran them.

The steps themselves, ported, are in `steps/` (listed in `chain.py`); `catch_up.py` runs the
ones a file lacks before the baseline adopts it. This is history and never changes: the
baseline (`baseline_v1`) records these names in every new file. The steps that only some releases
ran are in `baseline_v1.LEGACY_EXTRA_STEPS`, with the tables the baseline tolerates for them.
"""

from __future__ import annotations

LEGACY_STEPS: tuple[str, ...] = (
    "20260219_initial",
    "20260219_import_files",
    "20260220_add_users",
    "20260220_users_bootstrap",
    "20260220_add_tasks",
    "20260220_import_tasks",
    "20260221_drop_gate_columns",
    "20260221_backfill_cron_users",
    "20260221_add_inbox",
    "20260222_add_signals",
    "20260222_import_signals",
    "20260222_add_channels",
    "20260222_import_channels",
    "20260222_add_expose",
    "20260222_import_expose",
    "20260222_add_processes",
    "20260222_import_processes",
    "20260223_add_heartbeat_users",
    "20260224_rename_prompt_to_code",
    "20260224_add_tasks_table",
    "20260224_add_memory_columns",
    "20260222_session_ended_at",
    "20260222_add_user_parent",
    "20260222_add_usertag_connections",
    "20260225_require_usertag",
    "20260226_rename_usertag_to_nametag",
    "20260227_require_cron_task_id",
    "20260228_soft_delete_tasks",
    "20260301_add_token_stats",
    "20260302_cleanup_rlm_snapshot_payloads",
    "20260303_drop_trigger_code",
    "20260304_scope_task_ids_per_user",
    "20260224_add_system_prompts",
)
