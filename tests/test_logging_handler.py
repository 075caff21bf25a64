"""`StateLogHandler`: records to rows, threads, the bounded queue, retention, shutdown."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence

import pytest
from sqlalchemy import text

from codex_state import LogEntry, LogQuery, StateLogHandler, StateRuntime, log_thread_id
from codex_state.logging import current_log_thread_id, level_name
from codex_state.repositories.logs import LogValues
from tests.conftest import Backend

T1 = "0193c5a0-0000-7000-8000-0000000000a1"
T2 = "0193c5a0-0000-7000-8000-0000000000a2"


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    log = logging.getLogger(f"test.handler.{uuid.uuid4().hex[:8]}")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield log
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()


def attach(logger: logging.Logger, runtime: object, **options: object) -> StateLogHandler:
    handler = StateLogHandler(runtime, **options)  # type: ignore[arg-type]
    logger.addHandler(handler)
    return handler


def test_level_names() -> None:
    assert [level_name(n) for n in (5, 10, 15, 20, 25, 30, 40, 50)] == [
        "TRACE", "DEBUG", "DEBUG", "INFO", "INFO", "WARN", "ERROR", "ERROR",
    ]  # fmt: skip


def test_a_record_becomes_a_row(runtime: StateRuntime, logger: logging.Logger) -> None:
    handler = attach(logger, runtime)
    before = time.time()
    logger.warning("disk %s%% full", 93, extra={"thread_id": uuid.UUID(T1)})
    line = sys._getframe().f_lineno - 1
    try:
        raise KeyError("boom")
    except KeyError:
        logger.exception("failed")
    handler.close()
    first, second = runtime.query_logs(LogQuery())
    assert first.level == "WARN"
    assert first.message == "disk 93% full"
    assert first.target == logger.name
    assert first.thread_id == T1
    assert first.file == __file__
    assert first.line == line
    assert before - 1 <= first.ts + first.ts_nanos / 1e9 <= time.time() + 1
    assert 0 <= first.ts_nanos < 1_000_000_000
    assert second.level == "ERROR"
    assert second.message is not None
    assert second.message.startswith("failed\nTraceback")
    assert "KeyError: 'boom'" in second.message
    assert second.thread_id is None
    with runtime.engine.connect() as conn:
        modules = conn.execute(text("SELECT module_path FROM logs")).scalars().all()
    assert modules == [__name__, __name__]


def test_scoped_thread_id_follows_asyncio_tasks(
    runtime: StateRuntime, logger: logging.Logger
) -> None:
    handler = attach(logger, runtime)

    async def work(thread_id: str, name: str) -> None:
        with log_thread_id(thread_id):
            await asyncio.sleep(0)
            logger.info(name)
            await asyncio.gather(child(name))
            await asyncio.sleep(0)
            logger.info("%s again", name)

    async def child(name: str) -> None:
        await asyncio.sleep(0)
        logger.info("%s child", name)

    async def main() -> None:
        await asyncio.gather(work(T1, "one"), work(T2.upper(), "two"))
        with log_thread_id(T1):
            logger.info("explicit", extra={"thread_id": T2})
        assert current_log_thread_id() is None
        logger.info("outside")

    asyncio.run(main())
    handler.close()
    rows = {row.message: row.thread_id for row in runtime.query_logs(LogQuery())}
    assert rows == {
        "one": T1,
        "one child": T1,
        "one again": T1,
        "two": T2,
        "two child": T2,
        "two again": T2,
        "explicit": T2,
        "outside": None,
    }


def test_eight_writer_threads_lose_nothing_below_the_bound(
    backend: Backend, logger: logging.Logger
) -> None:
    runtime = backend.runtime()
    per_thread = 500
    handler = attach(logger, runtime, queue_capacity=8 * per_thread, flush_interval=0.02)
    barrier = threading.Barrier(8)

    def write(n: int) -> None:
        barrier.wait()
        with log_thread_id(str(uuid.UUID(int=n + 1))):
            for i in range(per_thread):
                logger.info("w%d-%d", n, i)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    handler.close()
    assert handler.dropped == 0
    assert handler.failed == 0
    rows = runtime.query_logs(LogQuery())
    assert len(rows) == handler.written == 8 * per_thread
    for n in range(8):
        mine = [r.message for r in rows if r.thread_id == str(uuid.UUID(int=n + 1))]
        assert mine == [f"w{n}-{i}" for i in range(per_thread)]  # per-thread order kept


class StalledSink:
    """Delegates to a runtime, but the first insert waits until released."""

    def __init__(self, runtime: StateRuntime) -> None:
        self.runtime = runtime
        self.release = threading.Event()
        self.entered = threading.Event()

    def insert_log_rows(self, rows: Sequence[LogValues]) -> None:
        self.entered.set()
        self.release.wait(10)
        self.runtime.insert_log_rows(rows)

    def delete_logs_before(self, cutoff_ts: int, *, limit: int | None = None) -> int:
        return self.runtime.delete_logs_before(cutoff_ts, limit=limit)

    def trim_logs(self, max_rows: int, *, limit: int = 5000) -> int:
        return self.runtime.trim_logs(max_rows, limit=limit)


def test_overflow_drops_and_counts_without_blocking(
    runtime: StateRuntime, logger: logging.Logger
) -> None:
    sink = StalledSink(runtime)
    capacity, batch = 200, 16
    handler = attach(logger, sink, queue_capacity=capacity, batch_size=batch)
    logger.info("first")
    handler_wakes = [logger.info("fill %d", i) for i in range(batch)]
    assert len(handler_wakes) == batch
    assert sink.entered.wait(10)  # the writer is now stuck inside its first insert
    total_more = 8 * 300
    barrier = threading.Barrier(8)

    def write(n: int) -> None:
        barrier.wait()
        for i in range(300):
            logger.info("t%d-%d", n, i)

    started = time.monotonic()
    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert time.monotonic() - started < 5  # nobody waited for the stalled writer
    sink.release.set()
    handler.close()
    total = 1 + batch + total_more
    written = len(runtime.query_logs(LogQuery()))
    assert handler.dropped > 0
    assert written == handler.written
    assert written + handler.dropped == total
    assert written <= 1 + batch + capacity + 8  # the bound holds (len check races by <= 8)


def test_records_after_close_are_dropped_not_raised(
    runtime: StateRuntime, logger: logging.Logger
) -> None:
    handler = attach(logger, runtime)
    handler.close()
    handler.close()
    logger.info("late")
    assert handler.dropped == 1


def test_write_errors_are_counted_never_raised(
    backend: Backend, logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    runtime = backend.runtime()
    handler = attach(logger, runtime, retention_days=None)
    runtime.close()
    logger.info("into a closed runtime")
    handler.flush()
    logger.info("again")
    handler.close()
    assert handler.failed == 2
    assert handler.written == 0
    assert capsys.readouterr().err.count("--- Logging error ---") == 1  # once per failure run


def test_own_database_logging_does_not_loop(backend: Backend) -> None:
    runtime = backend.runtime()
    root = logging.getLogger()
    engine_log = logging.getLogger("sqlalchemy.engine")
    old_root_level, old_engine_level = root.level, engine_log.level
    handler = StateLogHandler(runtime, flush_interval=0.02)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    engine_log.setLevel(logging.INFO)  # SQLAlchemy logs every statement the writer runs
    try:
        logging.getLogger("app").info("only me")
        handler.flush()
        logging.getLogger("app").info("and me")
        handler.flush()
    finally:
        root.removeHandler(handler)
        root.setLevel(old_root_level)
        engine_log.setLevel(old_engine_level)
        handler.close()
    assert [r.message for r in runtime.query_logs(LogQuery(module_like=(__name__,)))] == [
        "only me",
        "and me",
    ]
    assert runtime.query_logs(LogQuery(module_like=("sqlalchemy",))) == []


def test_retention_by_age_and_row_cap(backend: Backend, logger: logging.Logger) -> None:
    runtime = backend.runtime()
    now = int(time.time())
    day = 86_400
    aged = [LogEntry(ts=now - 100 * day, level="INFO", target="old") for _ in range(25)]
    recent = [
        LogEntry(ts=now - 10 * day + i, level="INFO", target="recent", message=str(i))
        for i in range(30)
    ]
    runtime.insert_logs(aged + recent)
    handler = attach(
        logger, runtime, retention_days=90, max_rows=20, retention_batch=4, flush_interval=0.01
    )

    def settled() -> bool:
        rows = runtime.query_logs(LogQuery())
        return len(rows) == 20 and all(r.target == "recent" for r in rows)

    wait_until(settled)
    handler.close()
    kept = [r.message for r in runtime.query_logs(LogQuery())]
    assert kept == [str(i) for i in range(10, 30)]  # the newest 20 stay


def test_retention_can_be_turned_off(runtime: StateRuntime, logger: logging.Logger) -> None:
    runtime.insert_log(LogEntry(ts=1, level="INFO", target="ancient"))
    handler = attach(logger, runtime, retention_days=None, flush_interval=0.01)
    logger.info("new")
    handler.flush()
    handler.close()
    assert [r.target for r in runtime.query_logs(LogQuery())] == ["ancient", logger.name]


def test_interpreter_exit_flushes(backend: Backend) -> None:
    if backend.name == "sqlite_memory":
        pytest.skip("another process cannot see an in-memory database")
    script = f"""
import logging
from codex_state import StateLogHandler, StateRuntime
runtime = StateRuntime.from_url({backend.url!r}, "test")
log = logging.getLogger("exit")
log.setLevel(logging.INFO)
log.addHandler(StateLogHandler(runtime, flush_interval=3600, batch_size=10_000))
for i in range(100):
    log.info("record %d", i)
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    runtime = backend.runtime()
    rows = runtime.query_logs(LogQuery())
    assert [r.message for r in rows] == [f"record {i}" for i in range(100)]


def test_bad_options_are_rejected(runtime: StateRuntime) -> None:
    with pytest.raises(ValueError):
        StateLogHandler(runtime, batch_size=0)
    with pytest.raises(ValueError):
        StateLogHandler(runtime, flush_interval=0)
