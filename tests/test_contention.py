"""Exactly-once claims across processes, on a SQLite file and on PostgreSQL.

Processes, not threads: threads would share one pool and never exercise file locking or
PostgreSQL's row locks between independent connections.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
import uuid
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import select

from codex_state import ManualClock, Phase1ClaimKind, StateRuntime
from codex_state.orm import memory_phase1_jobs
from tests.conftest import Backend
from tests.contention_workers import JOBS, LEASE, WORKERS, claim_and_hold, race
from tests.memory_support import SCOPE, add_thread

pytestmark = pytest.mark.slow

SPAWN = multiprocessing.get_context("spawn")


def stored_tokens(runtime: StateRuntime) -> dict[str, str | None]:
    with runtime.engine.connect() as conn:
        rows = conn.execute(
            select(memory_phase1_jobs.c.thread_id, memory_phase1_jobs.c.ownership_token)
        )
        return {thread_id: token for thread_id, token in rows}


@pytest.mark.parametrize("lockstep", [True, False], ids=["lockstep", "shuffled"])
def test_processes_racing_for_the_same_jobs_claim_each_exactly_once(
    shared_backend: Backend, lockstep: bool
) -> None:
    runtime = shared_backend.runtime()
    jobs = [str(add_thread(runtime)) for _ in range(JOBS)]

    reports = race(SPAWN, shared_backend.url, jobs, lockstep=lockstep)

    assert [report.errors for report in reports] == [[] for _ in range(WORKERS)]
    assert all(report.attempts == JOBS for report in reports)
    claims = [claim for report in reports for claim in report.claims]
    per_job = Counter(thread_id for thread_id, _ in claims)
    assert sorted(per_job) == sorted(jobs)
    assert set(per_job.values()) == {1}, "a job was claimed twice"
    # The winner each process was told about is the owner the database recorded.
    assert dict(claims) == stored_tokens(runtime)


def test_a_killed_claimer_loses_its_job_after_the_lease(shared_backend: Backend) -> None:
    runtime = shared_backend.runtime()
    thread_id = add_thread(runtime)
    reports: Any = SPAWN.Queue()
    holder = SPAWN.Process(
        target=claim_and_hold, args=(shared_backend.url, str(thread_id), reports)
    )
    holder.start()
    try:
        stale_token = reports.get(timeout=120)
        assert stale_token is not None
    finally:
        assert holder.pid is not None
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(timeout=30)
    assert holder.exitcode == -signal.SIGKILL

    # Nobody renews a dead claimer's lease, but it still holds until the lease runs out.
    rival = runtime.try_claim_phase1_job(thread_id, *SCOPE, uuid.uuid4(), 100, LEASE)
    assert rival.kind is Phase1ClaimKind.SKIPPED_RUNNING

    later = shared_backend.runtime(clock=ManualClock(int(time.time()) + LEASE + 60))
    takeover = later.try_claim_phase1_job(thread_id, *SCOPE, uuid.uuid4(), 100, LEASE)
    assert takeover.claimed and takeover.ownership_token != stale_token

    assert not later.renew_phase1_job_lease(thread_id, *SCOPE, stale_token)
    assert not later.mark_phase1_job_succeeded(thread_id, *SCOPE, stale_token, "/p", "h")
    assert not later.mark_phase1_job_failed(thread_id, *SCOPE, stale_token, "dead")
    assert (
        later.upsert_thread_memory_for_scope_if_phase1_owner(
            thread_id, *SCOPE, stale_token, "stale", "stale"
        )
        is None
    )
    assert stored_tokens(later) == {str(thread_id): takeover.ownership_token}
    assert later.get_thread_memory(thread_id) is None
    assert later.mark_phase1_job_succeeded(
        thread_id, *SCOPE, str(takeover.ownership_token), "/p", "h"
    )
