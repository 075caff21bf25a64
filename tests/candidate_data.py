"""A large state database for candidate selection: 200,000 threads and 100,000 phase-1 jobs.

Shared by the query-plan test and `tests/benchmarks/bench_candidates.py`. Rows are written with
one `executemany` (SQLite) or `COPY` (PostgreSQL) on the engine's driver connection: seconds
instead of the minutes that 300,000 single upserts would take.

The shape is Codex's steady state: threads one every 26 seconds over 60 days (so the 30-day
window holds half of them), a third of them `exec` (not interactive), 10% archived, 5% without a
first user message, in 50 working directories. The newest 100,000 threads have a job in the
`user` scope: 90% succeeded on their current input, 4% succeeded on older input (the thread has
new turns), 2% running under a live lease, 2% under a stale one, 2% failed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine

THREADS = 200_000
JOBS = 100_000
NOW = 1_780_000_000
SPACING = 26  # seconds between threads: 200,000 x 26 s = 60 days
LEASE = 3600
DAY = 86_400

THREAD_COLUMNS = (
    "id",
    "rollout_path",
    "created_at",
    "updated_at",
    "source",
    "model_provider",
    "cwd",
    "title",
    "sandbox_policy",
    "approval_mode",
    "archived",
    "archived_at",
    "first_user_message",
)
JOB_COLUMNS = (
    "thread_id",
    "scope_kind",
    "scope_key",
    "status",
    "owner_session_id",
    "started_at",
    "source_updated_at",
    "ownership_token",
)


def thread_rows(count: int = THREADS) -> Iterator[tuple[Any, ...]]:
    """Threads newest first: thread n was updated n * SPACING seconds before NOW."""
    for n in range(count):
        updated = NOW - n * SPACING
        archived = n % 10 == 9
        yield (
            str(uuid.UUID(int=n + 1)),
            f"/home/u/.codex/sessions/rollout-{n}.jsonl",
            updated - 600,
            updated,
            ("cli", "vscode", "exec")[n % 3],
            "openai",
            f"/home/u/project-{n % 50}",
            f"thread {n}",
            '{"type":"read-only"}',
            "on-request",
            int(archived),
            updated if archived else None,
            "" if n % 20 == 7 else f"question {n}",
        )


def job_state(n: int) -> str:
    """The state of thread n's `user` job (n < JOBS)."""
    bucket = n % 50
    if bucket < 45:
        return "done"
    return ("outdated", "outdated", "fresh", "stale", "failed")[bucket - 45]


def job_rows(count: int = JOBS) -> Iterator[tuple[Any, ...]]:
    for n in range(count):
        updated = NOW - n * SPACING
        state = job_state(n)
        status = {"done": "succeeded", "outdated": "succeeded", "failed": "failed"}.get(
            state, "running"
        )
        started = NOW - (LEASE if state == "stale" else 60)
        yield (
            str(uuid.UUID(int=n + 1)),
            "user",
            "user",
            status,
            str(uuid.UUID(int=10**9 + n)),
            started,
            updated - 1 if state == "outdated" else updated,
            str(uuid.UUID(int=2 * 10**9 + n)),
        )


def seed(engine: Engine, threads: int = THREADS, jobs: int = JOBS) -> None:
    """Fill a migrated, empty database, then refresh the planner's statistics."""
    raw = engine.raw_connection()
    try:
        driver: Any = raw.driver_connection
        if engine.dialect.name == "sqlite":
            driver.execute("BEGIN IMMEDIATE")
            for table, columns, rows in (
                ("threads", THREAD_COLUMNS, thread_rows(threads)),
                ("memory_phase1_jobs", JOB_COLUMNS, job_rows(jobs)),
            ):
                marks = ", ".join("?" * len(columns))
                driver.executemany(
                    f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows
                )
            driver.execute("COMMIT")
            driver.execute("ANALYZE")
            return
        with driver.cursor() as cursor:
            for table, columns, rows in (
                ("threads", THREAD_COLUMNS, thread_rows(threads)),
                ("memory_phase1_jobs", JOB_COLUMNS, job_rows(jobs)),
            ):
                with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
        driver.commit()
        driver.autocommit = True
        try:
            # VACUUM sets the visibility map, so the walk can be an index-only scan.
            driver.execute("VACUUM ANALYZE threads")
            driver.execute("VACUUM ANALYZE memory_phase1_jobs")
        finally:
            driver.autocommit = False
    finally:
        raw.close()
