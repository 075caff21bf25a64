"""The phase-1 job cycle from many asyncio tasks: the async facade beside the threaded ways.

Run: `.venv/bin/python -m tests.benchmarks.bench_aio` (PostgreSQL when `CODEX_STATE_BENCH_PG_URL`
or `CODEX_STATE_TEST_PG_URL` is set; a SQLite file always).

Each variant runs the same cycles as `tests.benchmarks.bench_jobs` (claim, renew, owner-guarded
memory upsert, succeed; four calls per cycle), each cycle on a job of its own:

- `async facade`: 64 tasks on one `AsyncStateRuntime` (SQLAlchemy asyncio, psycopg async or
  aiosqlite; the repositories through `AsyncSession.run_sync`).
- `to_thread`: 64 tasks, each call `await asyncio.to_thread(runtime.<call>, ...)` over one
  `StateRuntime` (the facade this package had before; the default executor's threads).
- `sync, 8 threads`: 8 threads calling one `StateRuntime` directly (no event loop).

Printed per variant: calls per second (median and best of the rounds, rounds interleaved), this
process's CPU time per call, the most connections checked out of the pool at once, and
(PostgreSQL) the most server backends with the variant's `application_name` seen by a sampler.
Figures are printed, never asserted. The database server runs on the same cores: on a loaded
2-core machine every figure moves a lot between runs (the load average is printed).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text

from codex_state import StateRuntime
from codex_state.aio import AsyncStateRuntime
from tests.benchmarks.common import (
    PG_NOTE,
    PG_SKIPPED,
    PG_URL,
    fresh_sqlite,
    make_thread,
    pg_schema,
    seed_threads_pg,
    seed_threads_sqlite,
)
from tests.memory_support import SCOPE

TASKS = 64
THREADS = 8
CYCLES_PER_TASK = 6
ROUNDS = 5
CALLS_PER_CYCLE = 4
VARIANTS = ("async facade", "to_thread", f"sync, {THREADS} threads")


@dataclass
class Round:
    seconds: float
    cpu: float  # this process's CPU seconds (every thread)
    calls: int
    peak_checked_out: int
    peak_backends: int | None


class PeakCheckouts:
    """The most connections checked out of an engine's pool at once (pool events)."""

    def __init__(self, engine: Engine) -> None:
        self.current = 0
        self.peak = 0
        self._lock = threading.Lock()
        event.listen(engine, "checkout", self._out)
        event.listen(engine, "checkin", self._in)

    def _out(self, *_: Any) -> None:
        with self._lock:
            self.current += 1
            self.peak = max(self.peak, self.current)

    def _in(self, *_: Any) -> None:
        with self._lock:
            self.current -= 1

    def reset(self) -> None:
        with self._lock:
            self.peak = self.current


@contextmanager
def backend_sampler(admin: Engine | None, application: str) -> Iterator[list[int]]:
    """Counts of PostgreSQL backends named `application`, every 5 ms while the block runs."""
    counts: list[int] = []
    if admin is None:
        yield counts
        return
    stop = threading.Event()
    query = text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name")

    def sample() -> None:
        with admin.connect() as connection:
            while not stop.is_set():
                counts.append(int(connection.execute(query, {"name": application}).scalar_one()))
                connection.rollback()
                stop.wait(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield counts
    finally:
        stop.set()
        sampler.join()


# ------------------------------------------------------------------------------------ cycles


def sync_cycle(runtime: StateRuntime, owner: uuid.UUID, thread_id: str) -> None:
    claim = runtime.try_claim_phase1_job(thread_id, *SCOPE, owner, 100, 3600)
    token = claim.ownership_token
    assert token is not None, claim
    assert runtime.renew_phase1_job_lease(thread_id, *SCOPE, token)
    memory = runtime.upsert_thread_memory_for_scope_if_phase1_owner(
        thread_id, *SCOPE, token, "raw memory", "summary"
    )
    assert memory is not None
    assert runtime.mark_phase1_job_succeeded(thread_id, *SCOPE, token, "/raw.md", "hash")


async def async_cycle(db: AsyncStateRuntime, owner: uuid.UUID, thread_id: str) -> None:
    claim = await db.try_claim_phase1_job(thread_id, *SCOPE, owner, 100, 3600)
    token = claim.ownership_token
    assert token is not None, claim
    assert await db.renew_phase1_job_lease(thread_id, *SCOPE, token)
    memory = await db.upsert_thread_memory_for_scope_if_phase1_owner(
        thread_id, *SCOPE, token, "raw memory", "summary"
    )
    assert memory is not None
    assert await db.mark_phase1_job_succeeded(thread_id, *SCOPE, token, "/raw.md", "hash")


async def threaded_cycle(runtime: StateRuntime, owner: uuid.UUID, thread_id: str) -> None:
    """The old facade: every call in a worker thread of the default executor."""
    claim = await asyncio.to_thread(
        runtime.try_claim_phase1_job, thread_id, *SCOPE, owner, 100, 3600
    )
    token = claim.ownership_token
    assert token is not None, claim
    assert await asyncio.to_thread(runtime.renew_phase1_job_lease, thread_id, *SCOPE, token)
    memory = await asyncio.to_thread(
        runtime.upsert_thread_memory_for_scope_if_phase1_owner,
        thread_id,
        *SCOPE,
        token,
        "raw memory",
        "summary",
    )
    assert memory is not None
    assert await asyncio.to_thread(
        runtime.mark_phase1_job_succeeded, thread_id, *SCOPE, token, "/raw.md", "hash"
    )


def _split(ids: Sequence[str], parts: int) -> list[list[str]]:
    return [list(ids[i::parts]) for i in range(parts)]


async def _run_tasks(cycle: Callable[[str], Any], ids: Sequence[str]) -> float:
    async def task(batch: list[str]) -> None:
        for thread_id in batch:
            await cycle(thread_id)

    start = time.perf_counter()
    await asyncio.gather(*(task(batch) for batch in _split(ids, TASKS)))
    return time.perf_counter() - start


def _run_threads(runtime: StateRuntime, owner: uuid.UUID, ids: Sequence[str]) -> float:
    def work(batch: list[str]) -> None:
        for thread_id in batch:
            sync_cycle(runtime, owner, thread_id)

    threads = [threading.Thread(target=work, args=(b,)) for b in _split(ids, THREADS)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start


# --------------------------------------------------------------------------------- the race


def race(url: str, ids: Sequence[str], *, application: str | None) -> dict[str, list[Round]]:
    """Every variant, `ROUNDS` times interleaved, each round on fresh jobs.

    PostgreSQL: the async runtime connects as `<application>_async`, the sync one as
    `<application>_sync`, so each variant's server backends are counted apart.
    """
    per_round = TASKS * CYCLES_PER_TASK
    batches = iter(ids[i : i + per_round] for i in range(0, len(ids), per_round))
    admin = create_engine(PG_URL) if application and PG_URL else None
    results: dict[str, list[Round]] = {name: [] for name in VARIANTS}
    owner = uuid.uuid4()

    def named(suffix: str) -> str:
        return f"{url}&application_name={application}_{suffix}" if application else url

    async def main() -> None:
        db = await AsyncStateRuntime.from_url(named("async"), "bench")
        runtime = StateRuntime.from_url(named("sync"), "bench")
        async_peak = PeakCheckouts(db.engine.sync_engine)
        sync_peak = PeakCheckouts(runtime.engine)
        try:
            for _ in range(ROUNDS):
                for name in VARIANTS:
                    batch = next(batches)
                    peak = async_peak if name == "async facade" else sync_peak
                    peak.reset()
                    suffix = "async" if name == "async facade" else "sync"
                    cpu = time.process_time()
                    with backend_sampler(admin, f"{application}_{suffix}") as counts:
                        if name == "async facade":
                            seconds = await _run_tasks(lambda t: async_cycle(db, owner, t), batch)
                        elif name == "to_thread":
                            seconds = await _run_tasks(
                                lambda t: threaded_cycle(runtime, owner, t), batch
                            )
                        else:
                            seconds = await asyncio.to_thread(_run_threads, runtime, owner, batch)
                    cpu = time.process_time() - cpu
                    results[name].append(
                        Round(
                            seconds,
                            cpu,
                            len(batch) * CALLS_PER_CYCLE,
                            peak.peak,
                            max(counts) if counts else None,
                        )
                    )
        finally:
            runtime.close()
            await db.aclose()

    try:
        asyncio.run(main())
    finally:
        if admin is not None:
            admin.dispose()
    return results


def print_results(title: str, results: dict[str, list[Round]], pool: str) -> None:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n{title}")
    print(
        f"  {TASKS} tasks (threads: {THREADS}) x {CYCLES_PER_TASK} cycles x 4 calls, "
        f"{ROUNDS} rounds; {pool}; load average {load}"
    )
    print(
        f"  {'':<18}{'calls/s median':>15}{'best':>8}{'vs to_thread':>14}{'CPU/call':>10}"
        f"{'peak checked out':>18}{'peak PG backends':>18}"
    )
    rates = {name: [r.calls / r.seconds for r in rounds] for name, rounds in results.items()}
    threaded = statistics.median(rates["to_thread"])
    for name, rounds in results.items():
        backends = [r.peak_backends for r in rounds if r.peak_backends is not None]
        median = statistics.median(rates[name])
        cpu = statistics.median(r.cpu / r.calls for r in rounds)
        print(
            f"  {name:<18}{median:>15,.0f}{max(rates[name]):>8,.0f}{median / threaded:>13.2f}x"
            f"{cpu * 1e6:>8.0f}us{max(r.peak_checked_out for r in rounds):>18}"
            f"{(str(max(backends)) if backends else '-'):>18}"
        )
    print("  (median and best of the rounds; ratio of medians; CPU: this process, all threads)")


def _ids(count: int) -> list[Any]:
    return [make_thread(n, cwd="/work/project") for n in range(count)]


def bench_pg(base: str) -> None:
    threads = _ids(ROUNDS * len(VARIANTS) * TASKS * CYCLES_PER_TASK)
    application = f"bench_aio_{uuid.uuid4().hex[:8]}"
    with pg_schema(base) as url:
        StateRuntime.from_url(url, "bench").close()
        seed_threads_pg(url, threads)
        results = race(url, [str(t.id) for t in threads], application=application)
    print_results(
        f"phase-1 job cycle from {TASKS} tasks, PostgreSQL ({PG_NOTE})",
        results,
        "pool: 5 + 5 overflow per engine",
    )


def bench_sqlite() -> None:
    threads = _ids(ROUNDS * len(VARIANTS) * TASKS * CYCLES_PER_TASK)
    with tempfile.TemporaryDirectory() as folder:
        path = fresh_sqlite(Path(folder), "aio.sqlite")
        seed_threads_sqlite(path, threads)
        results = race(f"sqlite:///{path}", [str(t.id) for t in threads], application=None)
    print_results(
        f"phase-1 job cycle from {TASKS} tasks, SQLite file (one writer at a time)",
        results,
        "pool: 5 per engine",
    )


def main() -> None:
    if PG_URL:
        bench_pg(PG_URL)
    else:
        print(PG_SKIPPED)
    bench_sqlite()


if __name__ == "__main__":
    main()
