"""Helpers shared by the memory, phase-1 job, lock and contention tests (and the benchmarks)."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

from codex_state import Phase1ClaimKind, StateRuntime, ThreadMetadata

T0 = 1_700_000_000
"""Start of every `ManualClock` in these tests."""

SCOPE = ("cwd", "scope")
"""The (scope_kind, scope_key) the seed's job tests use."""


def add_thread(
    runtime: StateRuntime,
    cwd: str | os.PathLike[str] = "/work/project",
    thread_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Insert a thread (the seed's `test_thread_metadata`) and return its id."""
    thread_id = thread_id or uuid.uuid4()
    created = datetime.fromtimestamp(T0, tz=UTC)
    runtime.upsert_thread(
        ThreadMetadata(
            id=thread_id,
            rollout_path=Path(f"/home/codex/rollout-{thread_id}.jsonl"),
            created_at=created,
            updated_at=created,
            source="cli",
            model_provider="test-provider",
            cwd=Path(cwd),
            cli_version="0.0.0",
            first_user_message="hello",
        )
    )
    return thread_id


def claim_token(
    runtime: StateRuntime,
    thread_id: uuid.UUID,
    *,
    source_updated_at: int = 100,
    lease_seconds: int = 3600,
    owner: uuid.UUID | str | None = None,
) -> str:
    """Claim the `SCOPE` job of `thread_id` and return the token; fails unless claimed."""
    outcome = runtime.try_claim_phase1_job(
        thread_id, *SCOPE, owner or uuid.uuid4(), source_updated_at, lease_seconds
    )
    assert outcome.kind is Phase1ClaimKind.CLAIMED, outcome
    assert outcome.ownership_token is not None
    return outcome.ownership_token
