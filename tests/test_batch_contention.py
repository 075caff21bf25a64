"""Batch claims across processes: 8 processes race for 2,000 jobs in batches of 64.

Half the jobs are new (claimed by insert), half hold a stale lease (claimed by takeover). Each
job must be claimed exactly once and no process may see an error. On PostgreSQL the claimers
must also never wait for each other: every worker connection runs with `lock_timeout = 1ms`
(any lock wait longer than that fails its batch, which the test would see as an error) and the
parent samples `pg_stat_activity` for the workers' lock waits while they run.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text

from codex_state import ManualClock, ThreadMetadata
from codex_state.orm import memory_phase1_jobs
from codex_state.repositories import ThreadRepository
from tests.conftest import Backend
from tests.contention_workers import LEASE, WORKERS, race_batches
from tests.memory_support import SCOPE

pytestmark = pytest.mark.slow

SPAWN = multiprocessing.get_context("spawn")
JOBS = 2_000


def _threads(count: int) -> list[ThreadMetadata]:
    when = datetime.now(UTC)
    return [
        ThreadMetadata(
            id=uuid.uuid4(),
            rollout_path=Path(f"/r/{n}.jsonl"),
            created_at=when,
            updated_at=when,
            source="cli",
            model_provider="p",
            cwd=Path("/work/project"),
            first_user_message="hi",
        )
        for n in range(count)
    ]


def _with_options(url: str, options: str, application_name: str) -> str:
    """`url` with extra PostgreSQL `-c` options and an application name for its connections."""
    base, _, query = url.partition("?")
    parts = dict(part.split("=", 1) for part in query.split("&") if part)
    parts["options"] = f"{parts['options']}%20{options}" if "options" in parts else options
    parts["application_name"] = application_name
    return base + "?" + "&".join(f"{key}={value}" for key, value in parts.items())


class _LockWaitSampler:
    """Counts samples in which a backend of `application_name` waits for a heavyweight lock."""

    def __init__(self, url: str, application_name: str) -> None:
        self.engine = create_engine(url)
        self.application_name = application_name
        self.samples = 0
        self.waits: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _LockWaitSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.engine.dispose()

    def _run(self) -> None:
        query = text(
            "SELECT wait_event FROM pg_stat_activity "
            "WHERE application_name = :name AND wait_event_type = 'Lock'"
        )
        with self.engine.connect() as conn:
            while not self._stop.is_set():
                rows = conn.execute(query, {"name": self.application_name}).scalars().all()
                conn.rollback()
                self.samples += 1
                self.waits.extend(rows)
                time.sleep(0.002)


def test_processes_racing_batch_claims_claim_each_job_exactly_once(
    shared_backend: Backend,
) -> None:
    runtime = shared_backend.runtime()
    threads = _threads(JOBS)
    runtime.run_in_transaction(lambda s: ThreadRepository(s).upsert_threads(threads), write=True)
    jobs = [str(t.id) for t in threads]
    # Half the jobs were claimed two leases ago by a worker that died: stale, to be taken over.
    past = shared_backend.runtime(clock=ManualClock(int(time.time()) - 2 * LEASE))
    stale = []
    for first in range(0, JOBS // 2, 500):
        chunk = [(thread_id, *SCOPE, 100) for thread_id in jobs[first : first + 500]]
        stale += past.try_claim_phase1_jobs(chunk, uuid.uuid4(), LEASE)
    assert all(outcome.claimed for outcome in stale) and len(stale) == JOBS // 2
    stale_tokens = {outcome.ownership_token for outcome in stale}

    url = shared_backend.url
    sampler = None
    if shared_backend.is_postgres:
        name = f"codex-batch-{uuid.uuid4().hex[:8]}"
        url = _with_options(url, "-clock_timeout%3D1ms", name)
        sampler = _LockWaitSampler(shared_backend.url, name)
        with sampler:
            reports = race_batches(SPAWN, url, jobs)
    else:
        reports = race_batches(SPAWN, url, jobs)

    assert [report.errors for report in reports] == [[] for _ in range(WORKERS)]
    assert all(report.attempts == JOBS for report in reports)
    claims = [claim for report in reports for claim in report.claims]
    per_job = Counter(thread_id for thread_id, _ in claims)
    assert sorted(per_job) == sorted(jobs), "a job was left unclaimed"
    assert set(per_job.values()) == {1}, "a job was claimed twice"
    with runtime.engine.connect() as conn:
        stored = dict(
            conn.execute(
                select(memory_phase1_jobs.c.thread_id, memory_phase1_jobs.c.ownership_token)
            ).all()
        )
    assert dict(claims) == stored
    assert not stale_tokens & set(stored.values())
    if sampler is not None:
        assert sampler.samples > 0
        assert sampler.waits == [], f"claimers waited on locks: {Counter(sampler.waits)}"
    # Work was divided: more than one process won jobs.
    assert sum(1 for report in reports if report.claims) > 1
