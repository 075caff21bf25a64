"""The backfill-state row: the seed's semantics on every backend."""

from __future__ import annotations

from codex_state import BackfillStatus, ManualClock, StateRuntime
from tests.conftest import Backend


def test_backfill_state_persists_progress_and_completion(runtime: StateRuntime) -> None:
    """Port of the seed's `backfill_state_persists_progress_and_completion`."""
    initial = runtime.get_backfill_state()
    assert initial.status is BackfillStatus.PENDING
    assert initial.last_watermark is None
    assert initial.last_success_at is None

    runtime.mark_backfill_running()
    runtime.checkpoint_backfill("sessions/2026/01/27/rollout-a.jsonl")
    running = runtime.get_backfill_state()
    assert running.status is BackfillStatus.RUNNING
    assert running.last_watermark == "sessions/2026/01/27/rollout-a.jsonl"
    assert running.last_success_at is None

    runtime.mark_backfill_complete("sessions/2026/01/28/rollout-b.jsonl")
    completed = runtime.get_backfill_state()
    assert completed.status is BackfillStatus.COMPLETE
    assert completed.last_watermark == "sessions/2026/01/28/rollout-b.jsonl"
    assert completed.last_success_at is not None


def test_complete_without_watermark_keeps_the_last_one(backend: Backend) -> None:
    runtime = backend.runtime(clock=ManualClock(1_700_000_000))
    runtime.checkpoint_backfill("sessions/a.jsonl")
    runtime.mark_backfill_complete()
    state = runtime.get_backfill_state()
    assert state.last_watermark == "sessions/a.jsonl"
    assert state.last_success_at is not None
    assert int(state.last_success_at.timestamp()) == 1_700_000_000


def test_missing_row_reads_as_pending_and_is_recreated(runtime: StateRuntime) -> None:
    with runtime.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM backfill_state")
    assert runtime.get_backfill_state().status is BackfillStatus.PENDING
    runtime.mark_backfill_running()
    assert runtime.get_backfill_state().status is BackfillStatus.RUNNING
