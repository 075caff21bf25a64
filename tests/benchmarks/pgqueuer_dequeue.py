"""pgqueuer's batched dequeue, for `bench_jobs.py`: run with an interpreter that has pgqueuer.

pgqueuer is not a dependency of this project; install it in a virtual environment of its own
(`python -m venv /tmp/pgq-venv && /tmp/pgq-venv/bin/pip install pgqueuer asyncpg`) and point
`CODEX_STATE_PGQUEUER_PYTHON` at its interpreter. Usage:

    python pgqueuer_dequeue.py DSN SCHEMA JOBS CONSUMERS BATCH

It installs pgqueuer's tables in the (existing, empty) schema, enqueues JOBS jobs, and lets
CONSUMERS processes dequeue them in batches of BATCH (`Queries.dequeue`: `FOR UPDATE SKIP
LOCKED`, status set to 'picked') until the queue is empty. Connections run with
`synchronous_commit=off`, as the package's do in the benchmark. Prints one JSON line:
{"jobs", "seconds", "double_picks", "missing"}.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import sys
import time
import uuid
from datetime import timedelta


def _settings(schema: str) -> dict[str, str]:
    return {"search_path": schema, "synchronous_commit": "off"}


async def _setup(dsn: str, schema: str, jobs: int) -> None:
    import asyncpg
    from pgqueuer.queries import Queries

    conn = await asyncpg.connect(dsn, server_settings=_settings(schema))
    try:
        queries = Queries.from_asyncpg_connection(conn)
        await queries.install()
        for first in range(0, jobs, 1000):
            count = min(1000, jobs - first)
            await queries.enqueue(["bench"] * count, [None] * count, [0] * count)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def _consume(dsn: str, schema: str, batch: int) -> tuple[list[int], float, float]:
    import asyncpg
    from pgqueuer.ports.repository import EntrypointExecutionParameter
    from pgqueuer.queries import Queries

    conn = await asyncpg.connect(dsn, server_settings=_settings(schema))
    try:
        queries = Queries.from_asyncpg_connection(conn)
        entrypoints = {"bench": EntrypointExecutionParameter(concurrency_limit=0)}
        manager = uuid.uuid4()
        picked: list[int] = []
        began = time.perf_counter()
        ended = began
        while True:
            jobs = await queries.dequeue(
                batch_size=batch,
                entrypoints=entrypoints,  # type: ignore[arg-type]
                queue_manager_id=manager,  # type: ignore[arg-type]
                global_concurrency_limit=None,
                heartbeat_timeout=timedelta(hours=1),
            )
            if not jobs:
                break
            picked.extend(int(job.id) for job in jobs)
            ended = time.perf_counter()
        return picked, began, ended
    finally:
        await conn.close()


def _consumer(dsn: str, schema: str, batch: int, start: object, out: object) -> None:
    start.wait()  # type: ignore[attr-defined]
    out.put(asyncio.run(_consume(dsn, schema, batch)))  # type: ignore[attr-defined]


def main() -> None:
    dsn, schema, jobs, consumers, batch = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
    asyncio.run(_setup(dsn, schema, jobs))
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Barrier(consumers), ctx.Queue()
    processes = [
        ctx.Process(target=_consumer, args=(dsn, schema, batch, start, out))
        for _ in range(consumers)
    ]
    for process in processes:
        process.start()
    results = [out.get(timeout=600) for _ in processes]
    for process in processes:
        process.join()
    picked = [job for ids, _, _ in results for job in ids]
    seconds = max(end for _, _, end in results) - min(begin for _, begin, _ in results)
    print(
        json.dumps(
            {
                "jobs": len(set(picked)),
                "seconds": seconds,
                "double_picks": len(picked) - len(set(picked)),
                "missing": jobs - len(set(picked)),
            }
        )
    )


if __name__ == "__main__":
    main()
