"""Phase-1 job cycle beside the raw driver and the plain ORM; multi-process contention.

Run: `.venv/bin/python -m tests.benchmarks.bench_jobs` (PostgreSQL too when
`CODEX_STATE_BENCH_PG_URL` or `CODEX_STATE_TEST_PG_URL` is set).

One cycle is what a phase-1 worker does per job: `try_claim_phase1_job`,
`renew_phase1_job_lease`, `upsert_thread_memory_for_scope_if_phase1_owner`,
`mark_phase1_job_succeeded`. The raw baseline runs the seed's statements for each call (claim:
SELECT the job, then INSERT it; guarded upsert: the thread check, the INSERT ... SELECT ... WHERE
EXISTS ... ON CONFLICT and the SELECT of the stored row) in one transaction per call (SQLite:
BEGIN IMMEDIATE) and builds the same pydantic results; the plain ORM is
`tests.benchmarks.plain_orm`. Each variant and round claims fresh jobs. The contention figure has
8 processes race for the same jobs and counts double claims and errors (both must be 0).
"""

from __future__ import annotations

import multiprocessing
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from codex_state import (
    Phase1ClaimKind,
    Phase1JobClaimOutcome,
    StateRuntime,
    ThreadMemory,
    ThreadMetadata,
)
from tests.benchmarks.common import (
    ORM,
    PACKAGE,
    PG_NOTE,
    PG_SKIPPED,
    PG_URL,
    RAW,
    Figure,
    Timing,
    fresh_sqlite,
    make_thread,
    pg_schema,
    print_table,
    psycopg_connect,
    race_fresh,
    seed_threads_pg,
    seed_threads_sqlite,
    sqlite_connect,
)
from tests.benchmarks.plain_orm import PlainOrmState, plain_engine
from tests.contention_workers import WORKERS
from tests.contention_workers import race as race_processes
from tests.memory_support import SCOPE, add_thread

SQLITE_ROUNDS, SQLITE_CYCLES = 3, 500
PG_ROUNDS, PG_CYCLES = 5, 100
CONTENTION_JOBS = 1_000

KEY = "thread_id = ? AND scope_kind = ? AND scope_key = ?"
OWNED = f"{KEY} AND status = 'running' AND ownership_token = ?"
SELECT_JOB_SQL = f"SELECT status, source_updated_at, started_at FROM memory_phase1_jobs WHERE {KEY}"
INSERT_JOB_SQL = """
INSERT INTO memory_phase1_jobs (thread_id, scope_kind, scope_key, status, owner_session_id,
    started_at, finished_at, failure_reason, source_updated_at, raw_memory_path, summary_hash,
    ownership_token)
VALUES (?, ?, ?, 'running', ?, ?, NULL, NULL, ?, NULL, NULL, ?)"""
RENEW_SQL = f"UPDATE memory_phase1_jobs SET started_at = ? WHERE {OWNED}"
THREAD_SQL = "SELECT id FROM threads WHERE id = ?"
UPSERT_MEMORY_SQL = f"""
INSERT INTO thread_memory (thread_id, scope_kind, scope_key, raw_memory, memory_summary, updated_at)
SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM memory_phase1_jobs WHERE {OWNED})
ON CONFLICT (thread_id, scope_kind, scope_key) DO UPDATE SET
    raw_memory = excluded.raw_memory, memory_summary = excluded.memory_summary,
    updated_at = CASE WHEN excluded.updated_at <= thread_memory.updated_at
        THEN thread_memory.updated_at + 1 ELSE excluded.updated_at END"""
SELECT_MEMORY_SQL = f"""
SELECT thread_id, scope_kind, scope_key, raw_memory, memory_summary, updated_at, last_used_at,
    used_count, invalidated_at, invalid_reason FROM thread_memory WHERE {KEY}"""
SUCCEED_SQL = f"""
UPDATE memory_phase1_jobs SET status = 'succeeded', finished_at = ?, failure_reason = NULL,
    raw_memory_path = ?, summary_hash = ? WHERE {OWNED}"""


class Jobs(Protocol):
    """The four calls of a cycle, as `StateRuntime`, `RawJobs` and `PlainOrmState` have them."""

    def try_claim_phase1_job(
        self, thread_id: str, kind: str, key: str, owner: Any, source: int, lease: int
    ) -> Phase1JobClaimOutcome: ...

    def renew_phase1_job_lease(self, thread_id: str, kind: str, key: str, token: str) -> bool: ...

    def upsert_thread_memory_for_scope_if_phase1_owner(
        self, thread_id: str, kind: str, key: str, token: str, raw: str, summary: str
    ) -> ThreadMemory | None: ...

    def mark_phase1_job_succeeded(
        self, thread_id: str, kind: str, key: str, token: str, path: str, summary_hash: str
    ) -> bool: ...


class RawJobs:
    """The seed's statements on one raw connection, one transaction per call."""

    def __init__(self, conn: Any, *, sqlite: bool) -> None:
        self.conn = conn
        self.sqlite = sqlite

    def _run(self, work: Callable[[Callable[..., Any]], Any]) -> Any:
        conn = self.conn
        if self.sqlite:

            def execute(sql: str, params: tuple[Any, ...]) -> Any:
                return conn.execute(sql, params)

            conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(execute)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        def execute_pg(sql: str, params: tuple[Any, ...]) -> Any:
            return conn.execute(sql.replace("?", "%s"), params)

        with conn.transaction():
            return work(execute_pg)

    def try_claim_phase1_job(
        self, thread_id: str, kind: str, key: str, owner: Any, source: int, lease: int
    ) -> Phase1JobClaimOutcome:
        """The seed's claim of a new job: SELECT it, then INSERT it."""
        token = str(uuid.uuid4())

        def work(execute: Callable[..., Any]) -> bool:
            if execute(SELECT_JOB_SQL, (thread_id, kind, key)).fetchone() is not None:
                return False  # (the benchmark only claims new jobs)
            now = int(time.time())
            execute(INSERT_JOB_SQL, (thread_id, kind, key, str(owner), now, source, token))
            return True

        if self._run(work):
            return Phase1JobClaimOutcome(kind=Phase1ClaimKind.CLAIMED, ownership_token=token)
        return Phase1JobClaimOutcome(kind=Phase1ClaimKind.SKIPPED_RUNNING)

    def renew_phase1_job_lease(self, thread_id: str, kind: str, key: str, token: str) -> bool:
        """The seed's guarded UPDATE of started_at."""
        params = (int(time.time()), thread_id, kind, key, token)
        return bool(self._run(lambda execute: execute(RENEW_SQL, params).rowcount))

    def upsert_thread_memory_for_scope_if_phase1_owner(
        self, thread_id: str, kind: str, key: str, token: str, raw: str, summary: str
    ) -> ThreadMemory | None:
        """The seed's thread check, owner-guarded upsert and read-back."""

        def work(execute: Callable[..., Any]) -> Any:
            if execute(THREAD_SQL, (thread_id,)).fetchone() is None:
                raise LookupError(f"thread not found: {thread_id}")
            now = int(time.time())
            params = (thread_id, kind, key, raw, summary, now, thread_id, kind, key, token)
            if not execute(UPSERT_MEMORY_SQL, params).rowcount:
                return None
            return execute(SELECT_MEMORY_SQL, (thread_id, kind, key)).fetchone()

        row = self._run(work)
        if row is None:
            return None
        fields = ThreadMemory.model_fields
        return ThreadMemory(**dict(zip(fields, row, strict=True)))

    def mark_phase1_job_succeeded(
        self, thread_id: str, kind: str, key: str, token: str, path: str, summary_hash: str
    ) -> bool:
        """The seed's guarded UPDATE to succeeded."""
        params = (int(time.time()), path, summary_hash, thread_id, kind, key, token)
        return bool(self._run(lambda execute: execute(SUCCEED_SQL, params).rowcount))


def cycle(jobs: Jobs, owner: uuid.UUID, thread_ids: Sequence[str]) -> None:
    """One full cycle per thread: claim, renew, owner-guarded memory upsert, succeed."""
    for thread_id in thread_ids:
        claim = jobs.try_claim_phase1_job(thread_id, *SCOPE, owner, 100, 3600)
        token = claim.ownership_token
        assert token is not None
        assert jobs.renew_phase1_job_lease(thread_id, *SCOPE, token)
        memory = jobs.upsert_thread_memory_for_scope_if_phase1_owner(
            thread_id, *SCOPE, token, "raw memory", "summary"
        )
        assert memory is not None and memory.raw_memory == "raw memory"
        assert jobs.mark_phase1_job_succeeded(thread_id, *SCOPE, token, "/raw.md", "hash")


def bench_cycle(
    url: str, raw: RawJobs, thread_ids: Sequence[str], rounds: int, cycles: int
) -> Figure:
    """Per-cycle time of the three variants, each round of each taking `cycles` new threads."""
    runtime = StateRuntime.from_url(url, "bench")
    orm = PlainOrmState(plain_engine(url))
    owner = uuid.uuid4()
    ids = iter(thread_ids)
    variants: dict[str, Jobs] = {PACKAGE: runtime, RAW: raw, ORM: orm}

    def setup(jobs: Jobs) -> Callable[[int], Callable[[], None]]:
        def fresh(_round: int) -> Callable[[], None]:
            batch = [next(ids) for _ in range(cycles)]
            return lambda: cycle(jobs, owner, batch)

        return fresh

    try:
        timings = race_fresh({name: setup(jobs) for name, jobs in variants.items()}, rounds=rounds)
    finally:
        orm.close()
        runtime.close()
    per_cycle = {name: Timing(t.best / cycles, t.median / cycles) for name, t in timings.items()}
    return Figure.of("claim, renew, guarded memory upsert, succeed (one cycle)", per_cycle)


def _threads(rounds: int, cycles: int) -> list[ThreadMetadata]:
    """Enough threads for every variant and round to claim new jobs."""
    return [make_thread(n, cwd="/work/project") for n in range(3 * rounds * cycles)]


def bench_cycle_sqlite() -> Figure:
    threads = _threads(SQLITE_ROUNDS, SQLITE_CYCLES)
    with tempfile.TemporaryDirectory() as name:
        path = fresh_sqlite(Path(name), "jobs.sqlite")
        seed_threads_sqlite(path, threads)
        conn = sqlite_connect(path)
        try:
            ids = [str(thread.id) for thread in threads]
            raw = RawJobs(conn, sqlite=True)
            return bench_cycle(f"sqlite:///{path}", raw, ids, SQLITE_ROUNDS, SQLITE_CYCLES)
        finally:
            conn.close()


def bench_cycle_pg(base: str) -> Figure:
    threads = _threads(PG_ROUNDS, PG_CYCLES)
    with pg_schema(base) as url:
        StateRuntime.from_url(url, "bench").close()
        seed_threads_pg(url, threads)
        with psycopg_connect(url) as conn:
            ids = [str(thread.id) for thread in threads]
            return bench_cycle(url, RawJobs(conn, sqlite=False), ids, PG_ROUNDS, PG_CYCLES)


def bench_contention(name: str, url: str) -> tuple[int, int]:
    """8 processes race for the same jobs; returns (double claims + unclaimed, errors)."""
    with StateRuntime.from_url(url, "bench") as runtime:
        jobs = [str(add_thread(runtime)) for _ in range(CONTENTION_JOBS)]
    reports = race_processes(multiprocessing.get_context("spawn"), url, jobs)
    per_job = Counter(thread_id for report in reports for thread_id, _ in report.claims)
    doubles = sum(count - 1 for count in per_job.values())
    errors = sum(len(report.errors) for report in reports)
    missing = len(set(jobs) - set(per_job))
    seconds = max(report.seconds for report in reports)
    attempts = sum(report.attempts for report in reports)
    print(
        f"contention, {WORKERS} processes x {CONTENTION_JOBS} jobs, {name}: "
        f"{len(per_job) / seconds:,.0f} claims/s ({attempts / seconds:,.0f} attempts/s), "
        f"double claims {doubles}, unclaimed {missing}, errors {errors}"
    )
    return doubles + missing, errors


def main() -> None:
    title = "phase-1 job cycle, {}: best of {} rounds, per cycle; ratio = baseline / package"
    print_table(title.format("SQLite file", SQLITE_ROUNDS), [bench_cycle_sqlite()])
    if PG_URL:
        backend = f"PostgreSQL ({PG_NOTE})"
        print_table(title.format(backend, PG_ROUNDS), [bench_cycle_pg(PG_URL)], raw="psycopg")
    print()
    results = []
    with tempfile.TemporaryDirectory() as name:
        results.append(bench_contention("SQLite file", f"sqlite:///{Path(name) / 'state.sqlite'}"))
    if PG_URL:
        with pg_schema(PG_URL) as url:
            results.append(bench_contention(f"PostgreSQL ({PG_NOTE})", url))
    else:
        print(PG_SKIPPED)
    if any(result != (0, 0) for result in results):
        raise SystemExit("contention: a job was claimed twice or not at all, or an error escaped")


if __name__ == "__main__":
    main()
