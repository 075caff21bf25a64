"""Phase-1 job claims on every backend: the seed's tests, token guards, leases and the clock."""

from __future__ import annotations

import time
import types
import uuid
from typing import Any

import pytest
from sqlalchemy import select, text, update

from codex_state import (
    InvalidInputError,
    InvalidThreadIdError,
    ManualClock,
    Phase1ClaimKind,
    StateRuntime,
)
from codex_state.orm import memory_phase1_jobs
from tests.conftest import Backend
from tests.memory_support import SCOPE, T0, add_thread, claim_token

LEASE = 3600


def job_row(runtime: StateRuntime, thread_id: uuid.UUID) -> Any:
    with runtime.engine.connect() as conn:
        return conn.execute(
            select(memory_phase1_jobs).where(memory_phase1_jobs.c.thread_id == str(thread_id))
        ).one()


def claim_kind(
    runtime: StateRuntime, thread_id: uuid.UUID, source_updated_at: int = 100, lease: int = LEASE
) -> Phase1ClaimKind:
    return runtime.try_claim_phase1_job(
        thread_id, *SCOPE, uuid.uuid4(), source_updated_at, lease
    ).kind


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def timed(backend: Backend, clock: ManualClock) -> StateRuntime:
    """A runtime whose leases age only when the test advances `clock`."""
    return backend.runtime(clock=clock)


def test_claim_and_success_require_current_owner_token(runtime: StateRuntime) -> None:
    thread_id = add_thread(runtime)
    owner = uuid.uuid4()
    token = claim_token(runtime, thread_id, owner=owner)
    row = job_row(runtime, thread_id)
    assert (row.status, row.owner_session_id, row.ownership_token) == ("running", str(owner), token)
    assert row.source_updated_at == 100

    assert not runtime.mark_phase1_job_succeeded(
        thread_id, *SCOPE, "wrong-token", "/tmp/path", "summary-hash"
    )
    assert job_row(runtime, thread_id).status == "running"
    assert runtime.mark_phase1_job_succeeded(thread_id, *SCOPE, token, "/tmp/path", "summary-hash")
    row = job_row(runtime, thread_id)
    assert (row.status, row.raw_memory_path, row.summary_hash) == (
        "succeeded",
        "/tmp/path",
        "summary-hash",
    )
    assert row.finished_at is not None
    # A finished job is no longer owned: its token cannot finish it again.
    assert not runtime.mark_phase1_job_succeeded(thread_id, *SCOPE, token, "/other", "h")
    assert not runtime.mark_phase1_job_failed(thread_id, *SCOPE, token, "late")
    assert not runtime.renew_phase1_job_lease(thread_id, *SCOPE, token)


def test_stale_running_can_be_stolen_but_fresh_running_is_skipped(runtime: StateRuntime) -> None:
    thread_id = add_thread(runtime)
    claim_token(runtime, thread_id)
    assert claim_kind(runtime, thread_id) is Phase1ClaimKind.SKIPPED_RUNNING
    assert claim_kind(runtime, thread_id, lease=0) is Phase1ClaimKind.CLAIMED


def test_lease_expires_exactly_after_lease_seconds(timed: StateRuntime, clock: ManualClock) -> None:
    thread_id = add_thread(timed)
    claim_token(timed, thread_id, lease_seconds=LEASE)
    clock.advance(LEASE - 1)
    assert claim_kind(timed, thread_id) is Phase1ClaimKind.SKIPPED_RUNNING
    clock.advance(1)
    assert claim_kind(timed, thread_id) is Phase1ClaimKind.CLAIMED


def test_lease_renewal_requires_current_owner_token(runtime: StateRuntime) -> None:
    thread_id = add_thread(runtime)
    token_a = claim_token(runtime, thread_id)
    token_b = claim_token(runtime, thread_id, lease_seconds=0)
    assert token_a != token_b
    assert not runtime.renew_phase1_job_lease(thread_id, *SCOPE, token_a)
    assert runtime.renew_phase1_job_lease(thread_id, *SCOPE, token_b)


def test_renewal_restarts_the_lease(timed: StateRuntime, clock: ManualClock) -> None:
    thread_id = add_thread(timed)
    token = claim_token(timed, thread_id)
    clock.advance(LEASE - 10)
    assert timed.renew_phase1_job_lease(thread_id, *SCOPE, token)
    assert job_row(timed, thread_id).started_at == clock.current
    clock.advance(LEASE - 10)
    assert claim_kind(timed, thread_id) is Phase1ClaimKind.SKIPPED_RUNNING
    clock.advance(10)
    assert claim_kind(timed, thread_id) is Phase1ClaimKind.CLAIMED
    assert not timed.renew_phase1_job_lease(thread_id, *SCOPE, token)


def test_owner_guarded_upsert_rejects_stale_owner(runtime: StateRuntime) -> None:
    thread_id = add_thread(runtime)
    token_a = claim_token(runtime, thread_id)
    token_b = claim_token(runtime, thread_id, lease_seconds=0)
    stale = runtime.upsert_thread_memory_for_scope_if_phase1_owner(
        thread_id, *SCOPE, token_a, "stale raw memory", "stale summary"
    )
    assert stale is None
    assert runtime.get_thread_memory(thread_id) is None

    current = runtime.upsert_thread_memory_for_scope_if_phase1_owner(
        thread_id, *SCOPE, token_b, "fresh raw memory", "fresh summary"
    )
    assert current is not None
    assert (current.raw_memory, current.memory_summary) == ("fresh raw memory", "fresh summary")
    assert (current.scope_kind, current.scope_key) == SCOPE
    assert runtime.get_thread_memory(thread_id) == current


def test_owner_guarded_upsert_needs_a_running_job(runtime: StateRuntime) -> None:
    thread_id = add_thread(runtime)
    assert (
        runtime.upsert_thread_memory_for_scope_if_phase1_owner(
            thread_id, *SCOPE, "no-job-yet", "r", "s"
        )
        is None
    )
    token = claim_token(runtime, thread_id)
    other_scope = runtime.upsert_thread_memory_for_scope_if_phase1_owner(
        thread_id, "user", "user", token, "r", "s"
    )
    assert other_scope is None  # the token owns (thread, cwd, scope) only
    assert runtime.mark_phase1_job_succeeded(thread_id, *SCOPE, token, "/p", "h")
    assert (
        runtime.upsert_thread_memory_for_scope_if_phase1_owner(thread_id, *SCOPE, token, "r", "s")
        is None
    )
    assert runtime.get_thread_memory(thread_id) is None


def test_failed_is_terminal(runtime: StateRuntime) -> None:
    thread_id = add_thread(runtime)
    token = claim_token(runtime, thread_id)
    assert not runtime.mark_phase1_job_failed(thread_id, *SCOPE, "wrong-token", "nope")
    assert runtime.mark_phase1_job_failed(thread_id, *SCOPE, token, "prompt failed")
    row = job_row(runtime, thread_id)
    assert (row.status, row.failure_reason) == ("failed", "prompt failed")
    assert claim_kind(runtime, thread_id, source_updated_at=101) is (
        Phase1ClaimKind.SKIPPED_TERMINAL_FAILURE
    )
    assert claim_kind(runtime, thread_id, lease=0) is Phase1ClaimKind.SKIPPED_TERMINAL_FAILURE


def test_succeeded_is_up_to_date_for_same_or_older_input_and_reclaimable_for_newer(
    runtime: StateRuntime,
) -> None:
    thread_id = add_thread(runtime)
    token = claim_token(runtime, thread_id, source_updated_at=100)
    assert runtime.mark_phase1_job_succeeded(thread_id, *SCOPE, token, "/p", "h")
    for older_or_same in (99, 100):
        kind = claim_kind(runtime, thread_id, source_updated_at=older_or_same, lease=0)
        assert kind is Phase1ClaimKind.SKIPPED_UP_TO_DATE

    owner = uuid.uuid4()
    new_token = claim_token(runtime, thread_id, source_updated_at=101, owner=owner)
    assert new_token != token
    row = job_row(runtime, thread_id)
    assert (row.status, row.source_updated_at, row.owner_session_id) == ("running", 101, str(owner))
    assert (row.finished_at, row.raw_memory_path, row.summary_hash, row.failure_reason) == (
        None,
        None,
        None,
        None,
    )
    assert not runtime.mark_phase1_job_succeeded(thread_id, *SCOPE, token, "/p", "h")
    assert runtime.mark_phase1_job_succeeded(thread_id, *SCOPE, new_token, "/p2", "h2")


def test_stolen_job_rejects_every_write_of_the_old_token(
    timed: StateRuntime, clock: ManualClock
) -> None:
    thread_id = add_thread(timed)
    old = claim_token(timed, thread_id)
    clock.advance(LEASE)
    new = claim_token(timed, thread_id)
    assert not timed.renew_phase1_job_lease(thread_id, *SCOPE, old)
    assert (
        timed.upsert_thread_memory_for_scope_if_phase1_owner(thread_id, *SCOPE, old, "r", "s")
        is None
    )
    assert not timed.mark_phase1_job_failed(thread_id, *SCOPE, old, "late")
    assert not timed.mark_phase1_job_succeeded(thread_id, *SCOPE, old, "/p", "h")
    row = job_row(timed, thread_id)
    assert (row.status, row.ownership_token, row.started_at) == ("running", new, clock.current)


def test_running_job_with_null_started_at_is_stealable(runtime: StateRuntime) -> None:
    thread_id = add_thread(runtime)
    claim_token(runtime, thread_id)
    with runtime.engine.begin() as conn:
        conn.execute(update(memory_phase1_jobs).values(started_at=None))
    assert claim_kind(runtime, thread_id) is Phase1ClaimKind.CLAIMED


def test_scopes_are_independent_jobs(runtime: StateRuntime) -> None:
    thread_id = add_thread(runtime)
    claim_token(runtime, thread_id)
    user = runtime.try_claim_phase1_job(thread_id, "user", "user", uuid.uuid4(), 100, LEASE)
    assert user.claimed


def test_owner_ids_are_thread_ids_in_any_case(runtime: StateRuntime) -> None:
    thread_id = add_thread(runtime)
    owner = uuid.uuid4()
    claim_token(runtime, thread_id, owner=str(owner).upper())
    assert job_row(runtime, thread_id).owner_session_id == str(owner)
    other = add_thread(runtime)
    with pytest.raises(InvalidThreadIdError, match="owner_session_id"):
        runtime.try_claim_phase1_job(other, *SCOPE, "worker-7", 100, LEASE)


@pytest.mark.parametrize(
    ("field", "value"),
    [("lease_seconds", -1), ("lease_seconds", 1.5), ("source_updated_at", "100")],
)
def test_bad_claim_arguments_are_rejected(runtime: StateRuntime, field: str, value: Any) -> None:
    thread_id = add_thread(runtime)
    arguments: dict[str, Any] = {"source_updated_at": 100, "lease_seconds": LEASE, field: value}
    with pytest.raises(InvalidInputError, match=field):
        runtime.try_claim_phase1_job(thread_id, *SCOPE, uuid.uuid4(), **arguments)
    with pytest.raises(InvalidThreadIdError, match="owner_session_id"):
        runtime.try_claim_phase1_job(thread_id, *SCOPE, "", 100, LEASE)
    with pytest.raises(InvalidInputError, match="ownership_token"):
        runtime.renew_phase1_job_lease(thread_id, *SCOPE, None)  # type: ignore[arg-type]
    assert claim_kind(runtime, thread_id) is Phase1ClaimKind.CLAIMED  # nothing was written


def test_default_clock_is_the_database_servers_on_postgres(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Leases must not depend on the claimer's host clock where hosts share PostgreSQL."""
    runtime = backend.runtime()
    thread_id = add_thread(runtime)
    skewed = 1_000_000  # this host's clock, wildly wrong
    monkeypatch.setattr("codex_state.clock.time", types.SimpleNamespace(time=lambda: skewed))
    claim_token(runtime, thread_id)
    started_at = job_row(runtime, thread_id).started_at
    if backend.is_postgres:
        with runtime.engine.connect() as conn:
            server_now = conn.execute(text("SELECT EXTRACT(EPOCH FROM now())")).scalar_one()
        assert abs(started_at - int(server_now)) <= 60
        assert abs(started_at - int(time.time())) <= 60  # the server runs on this test host
    else:
        assert started_at == skewed
