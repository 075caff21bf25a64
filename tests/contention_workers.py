"""Process entry points for the contention tests and benchmarks (importable under "spawn").

Each worker opens its own `StateRuntime` from the URL, as a separate Codex process would, and
reports through a queue instead of raising, so the parent sees every error of every process.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.context import SpawnContext
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import Any

from codex_state import StateRuntime
from tests.memory_support import SCOPE

WORKERS = 8
JOBS = 200
LEASE = 3600


@dataclass
class ClaimReport:
    worker: int
    claims: list[tuple[str, str]] = field(default_factory=list)  # (thread id, token)
    errors: list[str] = field(default_factory=list)
    attempts: int = 0
    seconds: float = 0.0


def claim_all(
    url: str,
    thread_ids: Sequence[str],
    worker: int,
    start: Barrier,
    reports: Queue[Any],
    lockstep: bool,
) -> None:
    """Try to claim every job once.

    In lockstep every worker waits for all the others before each job, so all of them race for
    the same missing row at the same instant; otherwise each goes through the jobs in its own
    shuffled order, as independent Codex processes would.
    """
    report = ClaimReport(worker)
    try:
        runtime = StateRuntime.from_url(url, "contention")
    except Exception as err:  # reported, not raised: the parent asserts on it
        report.errors.append(f"open: {err!r}")
        start.abort()
        reports.put(report)
        return
    owner = uuid.uuid4()
    try:
        order = list(thread_ids)
        if not lockstep:
            random.Random(worker).shuffle(order)
        start.wait(timeout=120)
        began = time.perf_counter()
        for thread_id in order:
            if lockstep:
                start.wait(timeout=120)
            report.attempts += 1
            try:
                outcome = runtime.try_claim_phase1_job(thread_id, *SCOPE, owner, 100, LEASE)
            except Exception as err:
                report.errors.append(repr(err))
                continue
            if outcome.ownership_token is not None:
                report.claims.append((thread_id, outcome.ownership_token))
        report.seconds = time.perf_counter() - began
    except Exception as err:
        report.errors.append(repr(err))
    finally:
        runtime.close()
        reports.put(report)


def claim_and_hold(url: str, thread_id: str, reports: Queue[Any]) -> None:
    """Claim one job, report the token, then hang until killed (a crashed phase-1 worker)."""
    runtime = StateRuntime.from_url(url, "holder")
    outcome = runtime.try_claim_phase1_job(thread_id, *SCOPE, uuid.uuid4(), 100, LEASE)
    reports.put(outcome.ownership_token)
    time.sleep(3600)


def race(
    ctx: SpawnContext, url: str, thread_ids: Sequence[str], *, lockstep: bool = False
) -> list[ClaimReport]:
    """Run `WORKERS` `claim_all` processes against the same jobs and collect their reports."""
    reports: Queue[Any] = ctx.Queue()
    start = ctx.Barrier(WORKERS)
    processes: list[BaseProcess] = [
        ctx.Process(
            target=claim_all,
            args=(url, list(thread_ids), worker, start, reports, lockstep),
        )
        for worker in range(WORKERS)
    ]
    for process in processes:
        process.start()
    try:
        results = [reports.get(timeout=240) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    return sorted(results, key=lambda report: report.worker)


BATCH = 64


def batch_claim_all(
    url: str,
    thread_ids: Sequence[str],
    worker: int,
    start: Barrier,
    reports: Queue[Any],
    batch: int,
) -> None:
    """Claim every job once, in batches of `batch`, in this worker's own shuffled order."""
    report = ClaimReport(worker)
    try:
        runtime = StateRuntime.from_url(url, "contention")
    except Exception as err:  # reported, not raised: the parent asserts on it
        report.errors.append(f"open: {err!r}")
        start.abort()
        reports.put(report)
        return
    owner = uuid.uuid4()
    try:
        order = list(thread_ids)
        random.Random(worker).shuffle(order)
        start.wait(timeout=120)
        began = time.perf_counter()
        for first in range(0, len(order), batch):
            chunk = [(thread_id, *SCOPE, 100) for thread_id in order[first : first + batch]]
            report.attempts += len(chunk)
            try:
                outcomes = runtime.try_claim_phase1_jobs(chunk, owner, LEASE)
            except Exception as err:
                report.errors.append(repr(err))
                continue
            for (thread_id, *_), outcome in zip(chunk, outcomes, strict=True):
                if outcome.ownership_token is not None:
                    report.claims.append((thread_id, outcome.ownership_token))
        report.seconds = time.perf_counter() - began
    except Exception as err:
        report.errors.append(repr(err))
    finally:
        runtime.close()
        reports.put(report)


def race_batches(
    ctx: SpawnContext,
    url: str,
    thread_ids: Sequence[str],
    *,
    workers: int = WORKERS,
    batch: int = BATCH,
) -> list[ClaimReport]:
    """Run `workers` `batch_claim_all` processes against the same jobs; collect their reports."""
    reports: Queue[Any] = ctx.Queue()
    start = ctx.Barrier(workers)
    processes: list[BaseProcess] = [
        ctx.Process(
            target=batch_claim_all, args=(url, list(thread_ids), worker, start, reports, batch)
        )
        for worker in range(workers)
    ]
    for process in processes:
        process.start()
    try:
        results = [reports.get(timeout=240) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    return sorted(results, key=lambda report: report.worker)


def drain(
    url: str,
    worker: int,
    start: Barrier,
    reports: Queue[Any],
    batch: int,
    single: bool,
) -> None:
    """Take jobs as a queue consumer would until none is left: list the claimable candidates
    of `SCOPE` and claim them, in one batch (`try_claim_phase1_jobs`) or one by one."""
    report = ClaimReport(worker)
    try:
        runtime = StateRuntime.from_url(url, "contention")
    except Exception as err:
        report.errors.append(f"open: {err!r}")
        start.abort()
        reports.put(report)
        return
    owner = uuid.uuid4()
    try:
        start.wait(timeout=120)
        began = time.perf_counter()
        misses = 0
        while misses < 3:
            candidates = runtime.list_phase1_candidates(
                *SCOPE, max_age_seconds=10**10, sources=[], limit=batch, lease_seconds=LEASE
            )
            if not candidates:
                break
            report.attempts += len(candidates)
            if single:
                outcomes = [
                    runtime.try_claim_phase1_job(
                        c.thread_id, *SCOPE, owner, c.source_updated_at, LEASE
                    )
                    for c in candidates
                ]
            else:
                outcomes = runtime.try_claim_phase1_jobs(candidates, owner, LEASE)
            won = 0
            for c, outcome in zip(candidates, outcomes, strict=True):
                if outcome.ownership_token is not None:
                    report.claims.append((str(c.thread_id), outcome.ownership_token))
                    won += 1
            misses = 0 if won else misses + 1
        report.seconds = time.perf_counter() - began
    except Exception as err:
        report.errors.append(repr(err))
    finally:
        runtime.close()
        reports.put(report)


def race_drain(
    ctx: SpawnContext, url: str, *, workers: int = WORKERS, batch: int = BATCH, single: bool
) -> list[ClaimReport]:
    """Run `workers` `drain` processes on the same queue of jobs; collect their reports."""
    reports: Queue[Any] = ctx.Queue()
    start = ctx.Barrier(workers)
    processes: list[BaseProcess] = [
        ctx.Process(target=drain, args=(url, worker, start, reports, batch, single))
        for worker in range(workers)
    ]
    for process in processes:
        process.start()
    try:
        results = [reports.get(timeout=600) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    return sorted(results, key=lambda report: report.worker)


def dispensed(
    url: str,
    thread_ids: Sequence[str],
    worker: int,
    start: Barrier,
    reports: Queue[Any],
    batch: int,
    single: bool,
    cursor: Any,
) -> None:
    """Claim slices of `thread_ids` handed out by a shared `cursor` (each slice to one worker),
    as a queue hands out jobs: in one batch (`try_claim_phase1_jobs`) or one by one."""
    report = ClaimReport(worker)
    try:
        runtime = StateRuntime.from_url(url, "contention")
    except Exception as err:
        report.errors.append(f"open: {err!r}")
        start.abort()
        reports.put(report)
        return
    owner = uuid.uuid4()
    try:
        start.wait(timeout=120)
        began = time.perf_counter()
        while True:
            with cursor.get_lock():
                first = cursor.value
                cursor.value += batch
            chunk = [(thread_id, *SCOPE, 100) for thread_id in thread_ids[first : first + batch]]
            if not chunk:
                break
            report.attempts += len(chunk)
            if single:
                outcomes = [
                    runtime.try_claim_phase1_job(t, kind, key, owner, source, LEASE)
                    for t, kind, key, source in chunk
                ]
            else:
                outcomes = runtime.try_claim_phase1_jobs(chunk, owner, LEASE)
            for (thread_id, *_), outcome in zip(chunk, outcomes, strict=True):
                if outcome.ownership_token is not None:
                    report.claims.append((thread_id, outcome.ownership_token))
        report.seconds = time.perf_counter() - began
    except Exception as err:
        report.errors.append(repr(err))
    finally:
        runtime.close()
        reports.put(report)


def race_dispensed(
    ctx: SpawnContext,
    url: str,
    thread_ids: Sequence[str],
    *,
    workers: int = WORKERS,
    batch: int = BATCH,
    single: bool,
) -> list[ClaimReport]:
    """Run `workers` `dispensed` processes over `thread_ids`; collect their reports."""
    reports: Queue[Any] = ctx.Queue()
    start = ctx.Barrier(workers)
    cursor = ctx.Value("q", 0)
    processes: list[BaseProcess] = [
        ctx.Process(
            target=dispensed,
            args=(url, list(thread_ids), worker, start, reports, batch, single, cursor),
        )
        for worker in range(workers)
    ]
    for process in processes:
        process.start()
    try:
        results = [reports.get(timeout=600) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    return sorted(results, key=lambda report: report.worker)
