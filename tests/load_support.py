"""A mixed load of many threads sharing one `StateRuntime`, with per-call latencies.

The mix is what a busy Codex host does to the memory tables: claim phase-1 jobs, renew and
finish the ones it won, take and release consolidation locks, and read threads and memories.
Used by `tests/test_load.py` and `tests/test_faults_pg.py`, and runnable as a script to print
the figures quoted in docs/architecture.md:

    python -m tests.load_support URL [THREADS] [SECONDS]
"""

from __future__ import annotations

import random
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from codex_state import StateRuntime
from tests.memory_support import SCOPE, add_thread

THREADS = 16
SECONDS = 10.0
JOBS = 64
LOCK_ROOTS = 4


@dataclass
class LoadReport:
    """Every call's duration (seconds) and every error, as `name: message` lines."""

    durations: list[float] = field(default_factory=list)
    slowest: list[tuple[float, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.durations)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0

    @property
    def worst(self) -> float:
        return max(self.durations, default=0.0)

    def summary(self) -> str:
        worst = max(self.slowest, default=(0.0, "-"))
        return (
            f"{len(self.durations)} calls, {len(self.errors)} errors, "
            f"p50 {self.percentile(0.5) * 1000:.1f} ms, p99 {self.percentile(0.99) * 1000:.1f} ms, "
            f"p99.9 {self.percentile(0.999) * 1000:.1f} ms, "
            f"worst {worst[0] * 1000:.0f} ms ({worst[1]})"
        )


def prepare(runtime: StateRuntime, jobs: int = JOBS) -> list[uuid.UUID]:
    """The threads whose jobs the load claims."""
    return [add_thread(runtime) for _ in range(jobs)]


def worker_calls(
    runtime: StateRuntime, thread_ids: list[uuid.UUID], rng: random.Random
) -> Callable[[], str]:
    """One worker's next call, chosen at random from the mix; returns the call's name."""
    owner = uuid.uuid4()
    held: dict[uuid.UUID, str] = {}  # jobs this worker owns -> token
    locks: set[str] = set()

    def step() -> str:
        choice = rng.random()
        thread_id = rng.choice(thread_ids)
        if choice < 0.30:
            outcome = runtime.try_claim_phase1_job(
                thread_id, *SCOPE, owner, rng.randrange(1, 1_000_000), rng.choice([0, 1, 3600])
            )
            if outcome.claimed and outcome.ownership_token is not None:
                held[thread_id] = outcome.ownership_token
            return "try_claim_phase1_job"
        if choice < 0.45 and held:
            job, token = rng.choice(list(held.items()))
            if not runtime.renew_phase1_job_lease(job, *SCOPE, token):
                del held[job]
            return "renew_phase1_job_lease"
        if choice < 0.50 and held:
            job, token = held.popitem()
            runtime.mark_phase1_job_succeeded(job, *SCOPE, token, "/m/raw.md", "hash")
            return "mark_phase1_job_succeeded"
        if choice < 0.65:
            root = f"/memories/{rng.randrange(LOCK_ROOTS)}"
            if root in locks:
                runtime.release_memory_consolidation_lock(root, owner)
                locks.discard(root)
                return "release_memory_consolidation_lock"
            if runtime.try_acquire_memory_consolidation_lock(root, owner, 60):
                locks.add(root)
            return "try_acquire_memory_consolidation_lock"
        if choice < 0.85:
            runtime.get_thread(thread_id)
            return "get_thread"
        runtime.list_threads(20)
        return "list_threads"

    return step


def run_load(
    runtime: StateRuntime,
    thread_ids: list[uuid.UUID],
    *,
    threads: int = THREADS,
    seconds: float = SECONDS,
    seed: int = 0,
    during: Callable[[], Any] | None = None,
) -> LoadReport:
    """`threads` workers calling the mix for `seconds`; `during` runs meanwhile (a fault)."""
    report = LoadReport()
    guard = threading.Lock()
    start = threading.Barrier(threads + 1)
    stop = time.monotonic() + seconds

    def work(n: int) -> None:
        step = worker_calls(runtime, thread_ids, random.Random(seed * 1000 + n))
        durations: list[float] = []
        slowest = (0.0, "-")
        calls: Counter[str] = Counter()
        errors: list[str] = []
        start.wait()
        while time.monotonic() < stop:
            began = time.perf_counter()
            try:
                name = step()
            except Exception as err:
                name = "error"
                errors.append(f"{type(err).__name__}: {err}")
            took = time.perf_counter() - began
            durations.append(took)
            calls[name] += 1
            slowest = max(slowest, (took, name))
        with guard:
            report.durations.extend(durations)
            report.slowest.append(slowest)
            report.calls.update(calls)
            report.errors.extend(errors)

    workers = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()
    if during is not None:
        during()
    for worker in workers:
        worker.join(seconds + 120)
    return report


def main(argv: list[str]) -> None:
    url = argv[1]
    threads = int(argv[2]) if len(argv) > 2 else THREADS
    seconds = float(argv[3]) if len(argv) > 3 else SECONDS
    with StateRuntime.from_url(url, "load") as runtime:
        ids = prepare(runtime)
        report = run_load(runtime, ids, threads=threads, seconds=seconds)
    print(report.summary())
    for error in sorted(set(report.errors))[:10]:
        print("  ", error)


if __name__ == "__main__":
    main(sys.argv)
