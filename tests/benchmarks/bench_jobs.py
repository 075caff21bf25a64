"""Phase-1 job cycle beside the raw driver and the plain ORM; multi-process contention.

Run: `.venv/bin/python -m tests.benchmarks.bench_jobs` (PostgreSQL too when
`CODEX_STATE_BENCH_PG_URL` or `CODEX_STATE_TEST_PG_URL` is set).

Claim throughput (`bench_throughput`): 8 processes claim 20,000 new jobs, one by one
(`try_claim_phase1_job`) and in batches of 64 (`try_claim_phase1_jobs`), each slice of jobs
handed to one process as a queue hands out work; then every process trying every job (racing,
shuffled). Beside them, on the same PostgreSQL server with the same `synchronous_commit=off`:
pgqueuer's batched dequeue of the same number of jobs by 8 consumers (`pgqueuer_dequeue.py`,
run by the interpreter in `CODEX_STATE_PGQUEUER_PYTHON`, default `/tmp/pgq-venv/bin/python`;
pgqueuer is not a dependency of this project) and pgbench's one-row UPDATE per transaction with
8 clients. Double claims and errors are counted and must be 0.

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

import json
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import make_url

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
from tests.contention_workers import (
    WORKERS,
    ClaimReport,
    race_batches,
    race_dispensed,
)
from tests.contention_workers import race as race_processes
from tests.memory_support import SCOPE, add_thread

SQLITE_ROUNDS, SQLITE_CYCLES = 3, 500
PG_ROUNDS, PG_CYCLES = 5, 100
CONTENTION_JOBS = 1_000
THROUGHPUT_JOBS = 20_000
RACING_JOBS = 5_000
HEAD_TO_HEAD = 3
PGQUEUER_PYTHON = os.environ.get("CODEX_STATE_PGQUEUER_PYTHON", "/tmp/pgq-venv/bin/python")

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


# ------------------------------------------------------------------------ claim throughput


def _claim_figure(
    name: str, jobs: list[str], reports: list[ClaimReport], rates: list[float] | None = None
) -> tuple[int, int]:
    per_job = Counter(thread_id for report in reports for thread_id, _ in report.claims)
    doubles = sum(count - 1 for count in per_job.values())
    missing = len(set(jobs) - set(per_job))
    errors = sum(len(report.errors) for report in reports)
    seconds = max(report.seconds for report in reports) or float("nan")
    attempts = sum(report.attempts for report in reports)
    print(
        f"  {name}: {len(per_job) / seconds:>9,.0f} jobs/s"
        f" ({attempts / seconds:,.0f} attempts/s; {len(per_job):,} jobs in {seconds:.2f} s),"
        f" double claims {doubles}, unclaimed {missing}, errors {errors}"
    )
    for report in reports:
        if report.errors:
            print(f"    worker {report.worker}: {report.errors[0]}")
    if rates is not None:
        rates.append(len(per_job) / seconds)
    return doubles + missing, errors


def _claim_variants(url: str, new_jobs: Callable[[int], list[str]]) -> list[tuple[int, int]]:
    ctx = multiprocessing.get_context("spawn")
    results = []
    jobs = new_jobs(THROUGHPUT_JOBS)
    reports = race_dispensed(ctx, url, jobs, single=True, batch=64)
    results.append(_claim_figure("single claims, 64 per hand-out", jobs, reports))
    jobs = new_jobs(THROUGHPUT_JOBS)
    reports = race_dispensed(ctx, url, jobs, single=False, batch=64)
    results.append(_claim_figure("batch claims of 64", jobs, reports))
    jobs = new_jobs(RACING_JOBS)
    reports = race_batches(ctx, url, jobs, batch=64)
    results.append(
        _claim_figure(f"batch claims of 64, every process tries all {RACING_JOBS:,}", jobs, reports)
    )
    return results


def _pg_new_jobs(url: str) -> Callable[[int], list[str]]:
    def new_jobs(count: int) -> list[str]:
        threads = [make_thread(n) for n in range(count)]
        seed_threads_pg(url, threads)
        with psycopg_connect(url, autocommit=True) as conn:
            conn.execute("ANALYZE memory_phase1_jobs")
        return [str(thread.id) for thread in threads]

    return new_jobs


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URI and environment for the server of a SQLAlchemy PostgreSQL URL."""
    parsed = make_url(url)
    user = parsed.username or "postgres"
    host, port = parsed.host or "127.0.0.1", parsed.port or 5432
    env = {"PGHOST": host, "PGPORT": str(port), "PGUSER": user, "PGDATABASE": parsed.database}
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    return f"postgresql://{user}@{host}:{port}/{parsed.database}", env


def bench_pgqueuer(base: str, batch: int, rates: list[float] | None = None) -> None:
    name = f"pgqueuer dequeue, batches of {batch}"
    if not Path(PGQUEUER_PYTHON).exists():
        print(f"  {name}: pgqueuer not installed (set CODEX_STATE_PGQUEUER_PYTHON)")
        return
    dsn, env = _libpq(base)
    schema = f"pgq_{uuid.uuid4().hex[:10]}"
    script = Path(__file__).with_name("pgqueuer_dequeue.py")
    with psycopg_connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        run = subprocess.run(
            [
                PGQUEUER_PYTHON,
                str(script),
                dsn,
                schema,
                str(THROUGHPUT_JOBS),
                str(WORKERS),
                str(batch),
            ],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, **env},
            timeout=900,
        )
        if run.returncode != 0:
            print(f"  {name}: failed: {run.stderr.strip().splitlines()[-1:]}")
            return
        result = json.loads(run.stdout.strip().splitlines()[-1])
        print(
            f"  {name}: {result['jobs'] / result['seconds']:>9,.0f} jobs/s"
            f" ({result['jobs']:,} jobs in {result['seconds']:.2f} s),"
            f" double picks {result['double_picks']}, missing {result['missing']}"
        )
        if rates is not None:
            rates.append(result["jobs"] / result["seconds"])
    finally:
        with psycopg_connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


PGBENCH_SCRIPT = "\\set id random(1, 10000)\nUPDATE pgbench_rows SET v = v + 1 WHERE id = :id;\n"


def bench_pgbench(base: str) -> None:
    name = f"pgbench, one-row UPDATE per transaction, {WORKERS} clients"
    pgbench = shutil.which("pgbench")
    if pgbench is None:
        print(f"  {name}: pgbench not installed")
        return
    _, env = _libpq(base)
    schema = f"pgb_{uuid.uuid4().hex[:10]}"
    with psycopg_connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"CREATE TABLE {schema}.pgbench_rows (id int PRIMARY KEY, v bigint)")
        conn.execute(
            f"INSERT INTO {schema}.pgbench_rows SELECT n, 0 FROM generate_series(1, 10000) n"
        )
    try:
        with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
            script.write(PGBENCH_SCRIPT)
        options = f"-c search_path={schema} -c synchronous_commit=off"
        run = subprocess.run(
            [pgbench, "-n", "-T", "5", "-f", script.name, "-c", str(WORKERS), "-j", str(WORKERS)],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, **env, "PGOPTIONS": options},
            timeout=120,
        )
        match = re.search(r"tps = ([0-9.]+)", run.stdout)
        if match is None:
            print(f"  {name}: failed: {run.stderr.strip().splitlines()[-1:]}")
        else:
            print(f"  {name}: {float(match.group(1)):>9,.0f} transactions/s")
    finally:
        os.unlink(script.name)
        with psycopg_connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def bench_throughput() -> list[tuple[int, int]]:
    results = []
    print(f"\nclaim throughput, {WORKERS} processes, SQLite file:")
    with tempfile.TemporaryDirectory() as name:
        path = fresh_sqlite(Path(name), "throughput.sqlite")

        def new_jobs(count: int) -> list[str]:
            threads = [make_thread(n) for n in range(count)]
            seed_threads_sqlite(path, threads)
            return [str(thread.id) for thread in threads]

        results += _claim_variants(f"sqlite:///{path}", new_jobs)
    if not PG_URL:
        print(PG_SKIPPED)
        return results
    print(f"\nclaim throughput, {WORKERS} processes, PostgreSQL ({PG_NOTE}):")
    with pg_schema(PG_URL) as url:
        StateRuntime.from_url(url, "bench").close()
        results += _claim_variants(url, _pg_new_jobs(url))
    bench_pgqueuer(PG_URL, 1)
    bench_pgbench(PG_URL)
    # Head to head, rounds interleaved so the load of other processes on this machine hits
    # both alike: batch claims of 64 and pgqueuer's dequeue of batches of 64.
    ours: list[float] = []
    theirs: list[float] = []
    print(f"\nbatch claims of 64 beside pgqueuer's batched dequeue, {HEAD_TO_HEAD} rounds:")
    for _ in range(HEAD_TO_HEAD):
        with pg_schema(PG_URL) as url:
            StateRuntime.from_url(url, "bench").close()
            jobs = _pg_new_jobs(url)(THROUGHPUT_JOBS)
            ctx = multiprocessing.get_context("spawn")
            reports = race_dispensed(ctx, url, jobs, single=False, batch=64)
            results.append(_claim_figure("batch claims of 64", jobs, reports, ours))
        bench_pgqueuer(PG_URL, 64, theirs)
    if theirs:
        print(
            f"  jobs/s, best / median: package {max(ours):,.0f} / {statistics.median(ours):,.0f},"
            f" pgqueuer {max(theirs):,.0f} / {statistics.median(theirs):,.0f}"
            f" (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
        )
    return results


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
    results += bench_throughput()
    if any(result != (0, 0) for result in results):
        raise SystemExit("contention: a job was claimed twice or not at all, or an error escaped")


if __name__ == "__main__":
    main()
