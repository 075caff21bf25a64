"""Phase-2 consolidation jobs on every backend: outcomes, token guards, leases, the dirty flag."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select, update

from codex_state import (
    InvalidInputError,
    InvalidThreadIdError,
    ManualClock,
    MemoryScope,
    Phase2ClaimKind,
    Phase2JobClaimOutcome,
    StateRuntime,
)
from codex_state.clock import from_epoch_seconds
from codex_state.orm import memory_phase2_jobs, memory_scope_dirty
from codex_state.repositories import Phase2JobRepository
from tests.conftest import Backend
from tests.memory_support import T0

LEASE = 600
SCOPE = ("cwd", "/work/project")
OTHER = ("user", "user")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def timed(backend: Backend, clock: ManualClock) -> Any:
    """A runtime (or repository entry) whose time moves only when the test advances `clock`."""
    return backend.runtime(clock=clock)


def job_row(runtime: StateRuntime, scope: tuple[str, str] = SCOPE) -> Any:
    with runtime.engine.connect() as conn:
        return conn.execute(
            select(memory_phase2_jobs).where(
                memory_phase2_jobs.c.scope_kind == scope[0],
                memory_phase2_jobs.c.scope_key == scope[1],
            )
        ).one_or_none()


def dirty_row(runtime: StateRuntime, scope: tuple[str, str] = SCOPE) -> Any:
    with runtime.engine.connect() as conn:
        return conn.execute(
            select(memory_scope_dirty.c.dirty, memory_scope_dirty.c.updated_at).where(
                memory_scope_dirty.c.scope_kind == scope[0],
                memory_scope_dirty.c.scope_key == scope[1],
            )
        ).one_or_none()


def claim(runtime: StateRuntime, scope: tuple[str, str] = SCOPE, lease: int = LEASE) -> Any:
    return runtime.try_claim_phase2_job(*scope, uuid.uuid4(), lease)


def claim_token(runtime: StateRuntime, scope: tuple[str, str] = SCOPE, **kwargs: Any) -> str:
    outcome = claim(runtime, scope, **kwargs)
    assert outcome.kind is Phase2ClaimKind.CLAIMED, outcome
    assert outcome.ownership_token is not None
    return str(outcome.ownership_token)


def is_dirty(runtime: StateRuntime, scope: tuple[str, str] = SCOPE) -> bool:
    return any(s.scope_kind == scope[0] and s.scope_key == scope[1] for s in dirty(runtime))


def dirty(runtime: StateRuntime) -> list[MemoryScope]:
    result: list[MemoryScope] = runtime.list_dirty_memory_scopes(100)
    return result


def test_a_scope_that_is_not_dirty_is_not_claimed(timed: StateRuntime) -> None:
    assert claim(timed).kind is Phase2ClaimKind.SKIPPED_NOT_DIRTY
    timed.mark_memory_scope_dirty(*SCOPE, False)
    outcome = claim(timed)
    assert outcome == Phase2JobClaimOutcome(kind=Phase2ClaimKind.SKIPPED_NOT_DIRTY)
    assert outcome.ownership_token is None and not outcome.claimed
    assert job_row(timed) is None


def test_claim_records_owner_times_attempt_and_token(
    timed: StateRuntime, clock: ManualClock
) -> None:
    timed.mark_memory_scope_dirty(*SCOPE, True)
    owner = uuid.uuid4()
    outcome = timed.try_claim_phase2_job(*SCOPE, str(owner).upper(), LEASE)
    assert outcome.claimed and outcome.ownership_token
    row = job_row(timed)
    assert (row.status, row.owner_session_id, row.ownership_token) == (
        "running",
        str(owner),
        outcome.ownership_token,
    )
    assert (row.started_at, row.last_heartbeat_at, row.attempt) == (clock.current,) * 2 + (1,)
    assert (row.agent_thread_id, row.finished_at, row.failure_reason) == (None, None, None)
    # A live job turns every other claimer away, however dirty the scope.
    assert claim(timed).kind is Phase2ClaimKind.SKIPPED_RUNNING
    assert claim(timed, lease=1).kind is Phase2ClaimKind.SKIPPED_RUNNING
    assert claim(timed, OTHER).kind is Phase2ClaimKind.SKIPPED_NOT_DIRTY  # scopes are apart


def test_the_lease_runs_from_the_last_heartbeat(timed: StateRuntime, clock: ManualClock) -> None:
    timed.mark_memory_scope_dirty(*SCOPE, True)
    token = claim_token(timed)
    clock.advance(LEASE - 10)
    assert timed.heartbeat_phase2_job(*SCOPE, token)
    assert job_row(timed).last_heartbeat_at == clock.current
    clock.advance(LEASE - 1)
    assert claim(timed).kind is Phase2ClaimKind.SKIPPED_RUNNING
    clock.advance(1)  # exactly lease_seconds since the heartbeat: stale
    takeover = claim_token(timed)
    row = job_row(timed)
    assert (row.ownership_token, row.attempt, row.started_at) == (takeover, 2, clock.current)
    assert row.last_heartbeat_at == clock.current


def test_a_stale_token_after_a_takeover_can_do_nothing(
    timed: StateRuntime, clock: ManualClock
) -> None:
    timed.mark_memory_scope_dirty(*SCOPE, True)
    old = claim_token(timed)
    assert timed.set_phase2_job_agent_thread_id(*SCOPE, old, uuid.uuid4())
    clock.advance(LEASE)
    new = claim_token(timed)
    assert new != old
    assert job_row(timed).agent_thread_id is None  # the takeover starts afresh
    assert not timed.heartbeat_phase2_job(*SCOPE, old)
    assert not timed.set_phase2_job_agent_thread_id(*SCOPE, old, uuid.uuid4())
    assert not timed.mark_phase2_job_succeeded(*SCOPE, old)
    assert not timed.mark_phase2_job_failed(*SCOPE, old, "late")
    row = job_row(timed)
    assert (row.status, row.ownership_token, row.agent_thread_id) == ("running", new, None)
    assert is_dirty(timed)  # the old owner's success did not clear it
    assert timed.mark_phase2_job_succeeded(*SCOPE, new)
    assert not is_dirty(timed)


def test_wrong_tokens_change_nothing(timed: StateRuntime) -> None:
    timed.mark_memory_scope_dirty(*SCOPE, True)
    token = claim_token(timed)
    before = job_row(timed)
    assert not timed.heartbeat_phase2_job(*SCOPE, "wrong")
    assert not timed.set_phase2_job_agent_thread_id(*SCOPE, "wrong", uuid.uuid4())
    assert not timed.mark_phase2_job_succeeded(*SCOPE, "wrong")
    assert not timed.mark_phase2_job_failed(*SCOPE, "wrong", "no")
    assert not timed.heartbeat_phase2_job(*OTHER, token)  # the token owns its scope only
    assert job_row(timed) == before
    assert is_dirty(timed)


def test_success_clears_the_dirty_flag_and_ends_the_job(
    timed: StateRuntime, clock: ManualClock
) -> None:
    timed.mark_memory_scope_dirty(*SCOPE, True)
    token = claim_token(timed)
    agent = uuid.uuid4()
    assert timed.set_phase2_job_agent_thread_id(*SCOPE, token, str(agent).upper())
    clock.advance(5)
    assert timed.mark_phase2_job_succeeded(*SCOPE, token)
    row = job_row(timed)
    assert (row.status, row.finished_at, row.agent_thread_id) == (
        "succeeded",
        clock.current,
        str(agent),
    )
    assert dirty_row(timed) == (0, clock.current)
    assert dirty(timed) == []
    assert claim(timed).kind is Phase2ClaimKind.SKIPPED_NOT_DIRTY
    # A finished job's token is spent.
    for spent in (
        timed.heartbeat_phase2_job(*SCOPE, token),
        timed.mark_phase2_job_succeeded(*SCOPE, token),
        timed.mark_phase2_job_failed(*SCOPE, token, "late"),
        timed.set_phase2_job_agent_thread_id(*SCOPE, token, agent),
    ):
        assert spent is False
    # Dirty again later: claimable again, as the next attempt.
    timed.mark_memory_scope_dirty(*SCOPE, True)
    claim_token(timed)
    assert job_row(timed).attempt == 2


@pytest.mark.parametrize("delay", [0, 1, 30], ids=["same second", "next second", "later"])
def test_marked_dirty_during_consolidation_stays_dirty(
    timed: StateRuntime, clock: ManualClock, delay: int
) -> None:
    timed.mark_memory_scope_dirty(*SCOPE, True)
    token = claim_token(timed)
    clock.advance(delay)
    timed.mark_memory_scope_dirty(*SCOPE, True)  # a phase-1 worker wrote a new memory
    clock.advance(3)
    assert timed.mark_phase2_job_succeeded(*SCOPE, token)
    assert job_row(timed).status == "succeeded"
    assert is_dirty(timed), "the memory written during consolidation would never be merged"

    # The next consolidation (even in the very same second) covers that mark and clears it.
    token = claim_token(timed)
    assert timed.mark_phase2_job_succeeded(*SCOPE, token)
    assert not is_dirty(timed)


def test_a_mark_just_before_the_claim_in_the_same_second_is_covered(
    timed: StateRuntime, clock: ManualClock
) -> None:
    timed.mark_memory_scope_dirty(*SCOPE, True)
    token = claim_token(timed)
    assert timed.mark_phase2_job_succeeded(*SCOPE, token)
    timed.mark_memory_scope_dirty(*SCOPE, True)  # same second, before the next claim
    token = claim_token(timed)
    assert timed.mark_phase2_job_succeeded(*SCOPE, token)
    assert not is_dirty(timed)


def test_failure_leaves_the_scope_dirty_and_claimable(
    timed: StateRuntime, clock: ManualClock
) -> None:
    timed.mark_memory_scope_dirty(*SCOPE, True)
    token = claim_token(timed)
    clock.advance(2)
    assert timed.mark_phase2_job_failed(*SCOPE, token, "agent crashed")
    row = job_row(timed)
    assert (row.status, row.failure_reason, row.finished_at) == (
        "failed",
        "agent crashed",
        clock.current,
    )
    assert is_dirty(timed)
    retry = claim_token(timed)  # failures are retried by the next claim
    row = job_row(timed)
    assert (row.status, row.attempt, row.failure_reason, row.finished_at) == (
        "running",
        2,
        None,
        None,
    )
    assert timed.mark_phase2_job_succeeded(*SCOPE, retry)
    assert not is_dirty(timed)


def test_a_running_job_without_a_heartbeat_is_stale(timed: StateRuntime) -> None:
    timed.mark_memory_scope_dirty(*SCOPE, True)
    claim_token(timed)
    with timed.engine.begin() as conn:
        conn.execute(update(memory_phase2_jobs).values(last_heartbeat_at=None))
    assert claim(timed).claimed


def test_dirty_scopes_are_listed_most_recently_dirtied_first(
    timed: StateRuntime, clock: ManualClock
) -> None:
    scopes = [("cwd", "/a"), ("cwd", "/b"), ("user", "user"), ("cwd", "/c")]
    for scope in scopes:
        timed.mark_memory_scope_dirty(*scope, True)
        clock.advance(10)
    timed.mark_memory_scope_dirty("cwd", "/b", False)
    timed.mark_memory_scope_dirty("cwd", "/a", True)  # dirtied again: newest
    listed = timed.list_dirty_memory_scopes(10)
    assert [(s.scope_kind, s.scope_key) for s in listed] == [
        ("cwd", "/a"),
        ("cwd", "/c"),
        ("user", "user"),
    ]
    assert listed[0].updated_at == from_epoch_seconds(clock.current)
    assert [s.scope_key for s in timed.list_dirty_memory_scopes(2)] == ["/a", "/c"]
    assert timed.list_dirty_memory_scopes(0) == []
    # Ties (same second) come in (kind, key) order.
    timed.mark_memory_scope_dirty("user", "user", True)
    timed.mark_memory_scope_dirty("cwd", "/z", True)
    assert [s.scope_key for s in timed.list_dirty_memory_scopes(3)] == ["/a", "/z", "user"]


def test_bad_arguments_are_rejected_before_any_write(timed: StateRuntime) -> None:
    timed.mark_memory_scope_dirty(*SCOPE, True)
    with pytest.raises(InvalidInputError, match="lease_seconds"):
        timed.try_claim_phase2_job(*SCOPE, uuid.uuid4(), -1)
    with pytest.raises(InvalidThreadIdError, match="owner_session_id"):
        timed.try_claim_phase2_job(*SCOPE, "worker-1", LEASE)
    with pytest.raises(InvalidInputError, match="scope_key"):
        timed.try_claim_phase2_job("cwd", None, uuid.uuid4(), LEASE)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="limit"):
        timed.list_dirty_memory_scopes(-1)
    assert job_row(timed) is None
    token = claim_token(timed)
    with pytest.raises(InvalidThreadIdError, match="agent_thread_id"):
        timed.set_phase2_job_agent_thread_id(*SCOPE, token, "not-a-thread")
    with pytest.raises(InvalidInputError, match="ownership_token"):
        timed.heartbeat_phase2_job(*SCOPE, None)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="failure_reason"):
        timed.mark_phase2_job_failed(*SCOPE, token, None)  # type: ignore[arg-type]
    assert job_row(timed).status == "running"


def test_the_repository_on_a_callers_session(backend: Backend, clock: ManualClock) -> None:
    runtime = backend.runtime(clock=clock)
    runtime.mark_memory_scope_dirty(*SCOPE, True)
    with runtime.session(write=True) as session:
        jobs = Phase2JobRepository(session, clock=clock)
        outcome = jobs.try_claim_phase2_job(*SCOPE, uuid.uuid4(), LEASE)
        assert outcome.claimed and outcome.ownership_token
        assert jobs.mark_phase2_job_succeeded(*SCOPE, outcome.ownership_token)
        session.rollback()  # the caller decides: nothing happened
    assert job_row(runtime) is None
    assert is_dirty(runtime)
