"""One representative call of every operation on the facades, for surface-wide tests.

A test that walks `codex_state.operations.operations()` asks this module for a call of each;
a new operation without a sample here makes those tests fail, so none escapes them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from codex_state import LogEntry, LogQuery
from codex_state.rollout import builder_from_items, load_rollout_items
from tests.memory_support import SCOPE, add_thread, claim_token
from tests.rollout_files import write_rollout

Call = Callable[[], object]


def sample_calls(runtime: Any, home: Path) -> dict[str, Call]:
    """Name -> a call that succeeds on `runtime` (a `StateRuntime` or a test entry like it)."""
    thread_id = add_thread(runtime)
    token = claim_token(runtime, thread_id)
    owner = uuid.uuid4()
    rollout = write_rollout(home)
    items = load_rollout_items(rollout).items
    builder = builder_from_items(items, rollout)
    assert builder is not None
    when = datetime(2026, 2, 1, tzinfo=UTC)
    metadata = runtime.get_thread(thread_id)
    entry = LogEntry(ts=1, level="INFO", target="t", message="m")
    row = (2, 0, "INFO", "t", "m", None, "mod", "f.py", 1)
    return {
        "get_backfill_state": lambda: runtime.get_backfill_state(),
        "mark_backfill_running": lambda: runtime.mark_backfill_running(),
        "checkpoint_backfill": lambda: runtime.checkpoint_backfill("sessions/x.jsonl"),
        "mark_backfill_complete": lambda: runtime.mark_backfill_complete("sessions/y.jsonl"),
        "get_thread": lambda: runtime.get_thread(thread_id),
        "upsert_thread": lambda: runtime.upsert_thread(metadata),
        "list_threads": lambda: runtime.list_threads(10, allowed_sources=["cli"]),
        "list_thread_ids": lambda: runtime.list_thread_ids(10),
        "find_rollout_path_by_id": lambda: runtime.find_rollout_path_by_id(thread_id),
        "mark_archived": lambda: runtime.mark_archived(thread_id, "/r/a.jsonl", when),
        "mark_unarchived": lambda: runtime.mark_unarchived(thread_id, "/r/b.jsonl"),
        "get_dynamic_tools": lambda: runtime.get_dynamic_tools(thread_id),
        "persist_dynamic_tools": lambda: runtime.persist_dynamic_tools(
            thread_id, [{"name": "t", "description": "d", "inputSchema": {}}]
        ),
        "apply_rollout_items": lambda: runtime.apply_rollout_items(builder, items),
        "get_thread_memory": lambda: runtime.get_thread_memory(thread_id),
        "upsert_thread_memory": lambda: runtime.upsert_thread_memory(thread_id, "raw", "sum"),
        "upsert_thread_memory_for_scope": lambda: runtime.upsert_thread_memory_for_scope(
            thread_id, "user", "user", "raw", "sum"
        ),
        "upsert_thread_memory_for_scope_if_phase1_owner": lambda: (
            runtime.upsert_thread_memory_for_scope_if_phase1_owner(
                thread_id, *SCOPE, token, "raw", "sum"
            )
        ),
        "get_last_n_thread_memories_for_cwd": lambda: runtime.get_last_n_thread_memories_for_cwd(
            "/work/project", 5
        ),
        "get_last_n_thread_memories_for_scope": lambda: (
            runtime.get_last_n_thread_memories_for_scope(*SCOPE, 5)
        ),
        "try_claim_phase1_job": lambda: runtime.try_claim_phase1_job(
            thread_id, "user", "user", owner, 100, 60
        ),
        "renew_phase1_job_lease": lambda: runtime.renew_phase1_job_lease(thread_id, *SCOPE, token),
        "mark_phase1_job_succeeded": lambda: runtime.mark_phase1_job_succeeded(
            thread_id, *SCOPE, token, "/m/raw.md", "hash"
        ),
        "mark_phase1_job_failed": lambda: runtime.mark_phase1_job_failed(
            thread_id, *SCOPE, token, "boom"
        ),
        "list_phase1_candidates": lambda: runtime.list_phase1_candidates(
            "cwd", None, max_age_seconds=10**10, sources=["cli"], limit=5, lease_seconds=60
        ),
        "try_claim_phase1_jobs": lambda: runtime.try_claim_phase1_jobs(
            [(thread_id, "batch", "batch", 100)], owner, 60
        ),
        "mark_memory_scope_dirty": lambda: runtime.mark_memory_scope_dirty(*SCOPE, True),
        "list_dirty_memory_scopes": lambda: runtime.list_dirty_memory_scopes(5),
        "try_claim_phase2_job": lambda: runtime.try_claim_phase2_job(*SCOPE, owner, 60),
        "set_phase2_job_agent_thread_id": lambda: runtime.set_phase2_job_agent_thread_id(
            *SCOPE, "token", owner
        ),
        "heartbeat_phase2_job": lambda: runtime.heartbeat_phase2_job(*SCOPE, "token"),
        "mark_phase2_job_succeeded": lambda: runtime.mark_phase2_job_succeeded(*SCOPE, "token"),
        "mark_phase2_job_failed": lambda: runtime.mark_phase2_job_failed(*SCOPE, "token", "boom"),
        "try_acquire_memory_consolidation_lock": lambda: (
            runtime.try_acquire_memory_consolidation_lock("/m", owner, 60)
        ),
        "release_memory_consolidation_lock": lambda: runtime.release_memory_consolidation_lock(
            "/m", owner
        ),
        "insert_log": lambda: runtime.insert_log(entry),
        "insert_logs": lambda: runtime.insert_logs([entry, entry]),
        "insert_log_rows": lambda: runtime.insert_log_rows([row, row]),
        "query_logs": lambda: runtime.query_logs(LogQuery(level_upper="info", limit=5)),
        "max_log_id": lambda: runtime.max_log_id(LogQuery(module_like=["mod"])),
        "delete_logs_before": lambda: runtime.delete_logs_before(0, limit=10),
        "trim_logs": lambda: runtime.trim_logs(100),
    }
