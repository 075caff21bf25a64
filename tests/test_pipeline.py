"""The documented memory pipeline, run by two processes on one database until it is done.

Both workers run the `# memory pipeline` block of docs/memories.md (`tests.pipeline_worker`).
Every thread's memory must be written exactly once per input version, in each of its two
scopes, and every dirty scope consolidated; after some threads get new turns, a second run
extracts exactly those again.
"""

from __future__ import annotations

import multiprocessing
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from codex_state import StateRuntime, ThreadMetadata
from codex_state.orm import memory_phase1_jobs, memory_phase2_jobs
from codex_state.repositories import ThreadRepository
from tests.conftest import Backend
from tests.pipeline_worker import PipelineReport, run

pytestmark = pytest.mark.slow

SPAWN = multiprocessing.get_context("spawn")
THREADS = 150
WORKERS = 2


def _race(url: str, workdir: Path) -> list[PipelineReport]:
    reports = SPAWN.Queue()
    start = SPAWN.Barrier(WORKERS)
    processes = [
        SPAWN.Process(target=run, args=(url, str(workdir), worker, start, reports))
        for worker in range(WORKERS)
    ]
    for process in processes:
        process.start()
    try:
        results: list[PipelineReport] = [reports.get(timeout=240) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    assert [r.errors for r in results] == [[]] * WORKERS
    return results


def _expected(threads: list[ThreadMetadata]) -> set[tuple[str, str, str, int]]:
    jobs = set()
    for t in threads:
        version = int(t.updated_at.timestamp())
        jobs.add((str(t.id), "cwd", str(t.cwd), version))
        jobs.add((str(t.id), "user", "user", version))
    return jobs


def _check_run(
    runtime: StateRuntime, reports: list[PipelineReport], expected: set[tuple[str, str, str, int]]
) -> None:
    extracted = Counter(job for report in reports for job in report.extracted)
    assert set(extracted) == expected
    assert set(extracted.values()) == {1}, "a memory was written twice for one input version"
    assert runtime.list_dirty_memory_scopes(100) == []
    with runtime.engine.connect() as conn:
        statuses = set(conn.execute(select(memory_phase1_jobs.c.status)).scalars())
        phase2 = set(conn.execute(select(memory_phase2_jobs.c.status)).scalars())
    assert statuses == {"succeeded"}
    assert phase2 == {"succeeded"}


def test_two_workers_run_the_documented_pipeline_to_completion(
    shared_backend: Backend, tmp_path: Path
) -> None:
    runtime = shared_backend.runtime()
    now = datetime.now(UTC).replace(microsecond=0)
    threads = [
        ThreadMetadata(
            id=uuid.uuid4(),
            rollout_path=Path(f"/r/{n}.jsonl"),
            created_at=now - timedelta(seconds=n),
            updated_at=now - timedelta(seconds=n),
            source=("cli", "vscode")[n % 2],
            model_provider="p",
            cwd=Path(f"/work/project-{n % 5}"),
            first_user_message=f"question {n}",
        )
        for n in range(THREADS)
    ]
    runtime.run_in_transaction(lambda s: ThreadRepository(s).upsert_threads(threads), write=True)

    first = _race(shared_backend.url, tmp_path)
    _check_run(runtime, first, _expected(threads))
    assert all(report.extracted for report in first), "one worker did all the work"
    stored = {
        m.raw_memory for m in runtime.get_last_n_thread_memories_for_scope("user", "user", THREADS)
    }
    assert stored == {f"raw memory of {t.id} at {int(t.updated_at.timestamp())}" for t in threads}

    # New turns in some threads: a new input version, extracted again exactly once.
    changed = [
        t.model_copy(update={"updated_at": t.updated_at + timedelta(seconds=7)})
        for t in threads[::10]
    ]
    runtime.run_in_transaction(lambda s: ThreadRepository(s).upsert_threads(changed), write=True)
    second = _race(shared_backend.url, tmp_path)
    _check_run(runtime, second, _expected(changed))
    scopes = {scope for report in second for scope in report.consolidated}
    assert ("user", "user") in scopes
    memories = {
        m.thread_id: m.raw_memory
        for m in runtime.get_last_n_thread_memories_for_scope("user", "user", THREADS)
    }
    for t in changed:
        assert memories[t.id] == f"raw memory of {t.id} at {int(t.updated_at.timestamp())}"
