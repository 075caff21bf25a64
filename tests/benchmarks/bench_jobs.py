"""Phase-1 job hot paths beside the standard library doing the same work; prints ratios.

Run: `python tests/benchmarks/bench_jobs.py` (or `pytest -s tests/benchmarks/bench_jobs.py`).
Set `CODEX_STATE_TEST_PG_URL` to include PostgreSQL in the contention benchmark.
Targets: one job's full cycle (claim, renew, owner-guarded memory upsert, succeed) within 1.5x of
sqlite3 running the same statements in the same transactions; contention: 0 double claims and
0 errors.
"""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # `tests.*` when run as a script

from codex_state import StateRuntime
from tests.contention_workers import WORKERS, race
from tests.memory_support import SCOPE, add_thread

CYCLES = 2_000
ROUNDS = 3
CONTENTION_JOBS = 2_000
PG_URL = os.environ.get("CODEX_STATE_TEST_PG_URL")

CLAIM_SQL = """
INSERT INTO memory_phase1_jobs (thread_id, scope_kind, scope_key, status, owner_session_id,
    started_at, source_updated_at, ownership_token)
SELECT ?, ?, ?, 'running', ?, ?, ?, ? WHERE EXISTS (SELECT cwd FROM threads WHERE id = ?)
ON CONFLICT (thread_id, scope_kind, scope_key) DO NOTHING"""
OWNED = (
    "thread_id = ? AND scope_kind = ? AND scope_key = ?"
    " AND status = 'running' AND ownership_token = ?"
)
RENEW_SQL = f"UPDATE memory_phase1_jobs SET started_at = ? WHERE {OWNED}"
UPSERT_SQL = f"""
INSERT INTO thread_memory (thread_id, scope_kind, scope_key, raw_memory, memory_summary, updated_at)
SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT thread_id FROM memory_phase1_jobs WHERE {OWNED})
ON CONFLICT (thread_id, scope_kind, scope_key) DO UPDATE SET
    raw_memory = excluded.raw_memory, memory_summary = excluded.memory_summary,
    updated_at = CASE WHEN excluded.updated_at <= thread_memory.updated_at
        THEN thread_memory.updated_at + 1 ELSE excluded.updated_at END
RETURNING thread_id, scope_kind, scope_key, raw_memory, memory_summary, updated_at,
    last_used_at, used_count, invalidated_at, invalid_reason"""
SUCCEED_SQL = f"""
UPDATE memory_phase1_jobs SET status = 'succeeded', finished_at = ?, failure_reason = NULL,
    raw_memory_path = ?, summary_hash = ? WHERE {OWNED}"""


@contextmanager
def fresh_db(name: str, threads: int) -> Iterator[tuple[Path, list[str]]]:
    """A migrated state database file holding `threads` threads."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        with StateRuntime.from_url(f"sqlite:///{path}", "bench") as runtime:
            ids = [str(add_thread(runtime)) for _ in range(threads)]
        yield path, ids


def best_of(rounds: list[list[str]], cycle: Callable[[str], None]) -> float:
    """Seconds per cycle, best round (each round uses fresh jobs)."""
    best = float("inf")
    for ids in rounds:
        began = time.perf_counter()
        for thread_id in ids:
            cycle(thread_id)
        best = min(best, (time.perf_counter() - began) / len(ids))
    return best


def codex_state_cycle(path: Path, rounds: list[list[str]]) -> float:
    """StateRuntime: four units of work per job, as a phase-1 worker does them."""
    runtime = StateRuntime.from_url(f"sqlite:///{path}", "bench")
    owner = uuid.uuid4()

    def cycle(thread_id: str) -> None:
        claim = runtime.try_claim_phase1_job(thread_id, *SCOPE, owner, 100, 3600)
        token = claim.ownership_token
        assert token is not None
        assert runtime.renew_phase1_job_lease(thread_id, *SCOPE, token)
        memory = runtime.upsert_thread_memory_for_scope_if_phase1_owner(
            thread_id, *SCOPE, token, "raw memory", "summary"
        )
        assert memory is not None
        assert runtime.mark_phase1_job_succeeded(thread_id, *SCOPE, token, "/raw.md", "hash")

    try:
        return best_of(rounds, cycle)
    finally:
        runtime.close()


def sqlite3_cycle(path: Path, rounds: list[list[str]]) -> float:
    """stdlib sqlite3: the same statements, each in its own BEGIN IMMEDIATE transaction."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for pragma in ("busy_timeout = 5000", "foreign_keys = ON", "synchronous = NORMAL"):
        conn.execute(f"PRAGMA {pragma}")
    owner = str(uuid.uuid4())

    def write(sql: str, params: tuple[object, ...]) -> sqlite3.Cursor:
        conn.execute("BEGIN IMMEDIATE")
        try:
            cursor = conn.execute(sql, params)
            cursor.fetchall()
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return cursor

    def cycle(thread_id: str) -> None:
        key = (thread_id, *SCOPE)
        token = str(uuid.uuid4())
        now = int(time.time())
        assert write(CLAIM_SQL, (*key, owner, now, 100, token, thread_id)).rowcount == 1
        assert write(RENEW_SQL, (int(time.time()), *key, token)).rowcount == 1
        conn.execute("BEGIN IMMEDIATE")
        row = conn.execute(
            UPSERT_SQL, (*key, "raw memory", "summary", int(time.time()), *key, token)
        ).fetchone()
        conn.execute("COMMIT")
        assert row is not None
        succeeded = write(SUCCEED_SQL, (int(time.time()), "/raw.md", "hash", *key, token))
        assert succeeded.rowcount == 1

    try:
        return best_of(rounds, cycle)
    finally:
        conn.close()


def bench_full_cycle() -> float:
    with fresh_db("state_4.sqlite", CYCLES * ROUNDS) as (path, ids):
        half = CYCLES // 2  # interleave so neither side always gets the warmer database
        rounds = [ids[i * CYCLES : (i + 1) * CYCLES] for i in range(ROUNDS)]
        ours = codex_state_cycle(path, [r[:half] for r in rounds])
        stdlib = sqlite3_cycle(path, [r[half:] for r in rounds])
    ratio = ours / stdlib
    print(
        f"full cycle (claim, renew, guarded upsert, succeed), SQLite file: "
        f"codex_state {ours * 1e6:.0f} us, sqlite3 {stdlib * 1e6:.0f} us, "
        f"ratio {ratio:.2f}x (target <= 1.5x)"
    )
    return ratio


def bench_contention(name: str, url: str) -> tuple[int, int]:
    """8 processes race for the same jobs; returns (double claims, errors)."""
    with StateRuntime.from_url(url, "bench") as runtime:
        jobs = [str(add_thread(runtime)) for _ in range(CONTENTION_JOBS)]
    reports = race(multiprocessing.get_context("spawn"), url, jobs)
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


@contextmanager
def pg_schema(base: str) -> Iterator[str]:
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        separator = "&" if "?" in base else "?"
        yield f"{base}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def test_bench_jobs() -> None:
    bench_full_cycle()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        results.append(bench_contention("SQLite file", f"sqlite:///{Path(tmp) / 'state.sqlite'}"))
    if PG_URL:
        with pg_schema(PG_URL) as url:
            results.append(bench_contention("PostgreSQL", url))
    else:
        print("PostgreSQL skipped: set CODEX_STATE_TEST_PG_URL")
    assert all(result == (0, 0) for result in results)


if __name__ == "__main__":
    test_bench_jobs()
