"""`StateLogHandler`: records to rows, threads, the bounded queue, retention, shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence

import pytest
from sqlalchemy import text

from codex_state import LogEntry, LogQuery, StateLogHandler, StateRuntime, log_thread_id
from codex_state.errors import DatabaseError
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
    err = capsys.readouterr().err
    assert "--- Logging error ---" not in err and "Traceback" not in err
    assert err.count("\n") == 1  # one line for both failures: they fall in one interval
    assert err.startswith("codex_state log handler: writing 1 record failed (StateError: ")


class FailingSink:
    """A runtime whose database is gone: every insert fails with a driver-like message."""

    def __init__(self) -> None:
        self.inserts = 0

    def insert_log_rows(self, rows: Sequence[LogValues]) -> None:
        self.inserts += 1
        raise DatabaseError(
            "insert_logs failed: server closed the connection unexpectedly\n"
            "[parameters: ('the secret message',)]"
        )

    def delete_logs_before(self, cutoff_ts: int, *, limit: int | None = None) -> int:
        raise DatabaseError("delete_logs_before failed: server closed the connection")

    def trim_logs(self, max_rows: int, *, limit: int = 5000) -> int:
        return 0


def test_an_outage_prints_one_line_per_interval(
    logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    sink = FailingSink()
    handler = attach(logger, sink, batch_size=10, retention_days=None, error_report_interval=3600)
    for i in range(200):
        logger.info("record %d", i)
        if i % 20 == 0:
            handler.flush()
    handler.close()
    assert sink.inserts >= 10
    assert handler.failed == 200 and handler.written == 0
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines  # the first failure is the only line printed
    assert lines[0] == (
        "codex_state log handler: writing 1 record failed (DatabaseError: insert_logs "
        "failed: server closed the connection unexpectedly); 1 record lost so far, counted "
        "in StateLogHandler.failed; next report in 3600 s at the earliest"
    )


def test_a_failed_retention_pass_is_reported_too(
    logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    handler = attach(logger, FailingSink(), error_report_interval=3600)
    handler.flush()  # the first retention pass runs as the writer starts
    handler.close()
    assert capsys.readouterr().err == (
        "codex_state log handler: deleting old rows failed (DatabaseError: delete_logs_before "
        "failed: server closed the connection); 0 records lost so far, counted in "
        "StateLogHandler.failed; next report in 3600 s at the earliest\n"
    )


def test_a_later_failure_is_reported_once_the_interval_passed(
    logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    handler = attach(logger, FailingSink(), retention_days=None, error_report_interval=0.05)
    logger.info("one")
    handler.flush()
    logger.info("two")
    handler.flush()  # within the interval: counted, not printed
    time.sleep(0.1)
    logger.info("three")
    handler.close()
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(";")[1] for line in lines] == [
        " 1 record lost so far, counted in StateLogHandler.failed",
        " 3 records lost so far, counted in StateLogHandler.failed",
    ]
    assert all("secret" not in line for line in lines)  # only the error's first line


def test_unformattable_records_are_counted_not_reported_each(
    runtime: StateRuntime, logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    for other in list(logger.handlers):  # pytest's capture handlers would format it and raise
        logger.removeHandler(other)
    handler = attach(logger, runtime, retention_days=None)
    for _ in range(50):
        logger.info("%d items", "many")  # TypeError when the message is formatted
    logger.info("fine")
    handler.close()
    assert handler.failed == 50 and handler.written == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("codex_state log handler: formatting a record failed (TypeError: ")


def test_raise_exceptions_off_silences_the_reports(
    logger: logging.Logger, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logging, "raiseExceptions", False)
    handler = attach(logger, FailingSink())
    logger.info("lost")
    handler.close()
    assert handler.failed == 1
    assert capsys.readouterr().err == ""


def test_text_no_backend_can_store_is_escaped_not_lost(
    backend: Backend, logger: logging.Logger
) -> None:
    runtime = backend.runtime()
    handler = attach(logger, runtime, retention_days=None)
    logger.info("nul \x00 here", extra={"thread_id": "t\x00"})
    logger.info("bytes %s", b"\xff".decode("utf-8", "surrogateescape"))
    logger.info("plain")
    handler.close()
    assert handler.failed == 0
    rows = runtime.query_logs(LogQuery())
    assert [(r.message, r.thread_id) for r in rows] == [
        ("nul \\x00 here", "t\\x00"),
        ("bytes \\udcff", None),
        ("plain", None),
    ]


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


_SIGTERM_CHILD = """
import logging, signal, sys, time
from codex_state import StateLogHandler, StateRuntime
runtime = StateRuntime.from_url(sys.argv[1], "test")
if sys.argv[2] == "python-handler":
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(3))
elif sys.argv[2] == "ignored":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
# Nothing is written until a flush: the writer would wait an hour for a batch of 100,000.
handler = StateLogHandler(runtime, flush_interval=3600, batch_size=100_000,
                          queue_capacity=100_000, retention_days=None)
if sys.argv[2] != "not-installed":
    handler.install_sigterm_flush()
log = logging.getLogger("burst")
log.setLevel(logging.INFO)
log.addHandler(handler)
for i in range(5000):
    log.info("record %d", i)
print("ready", flush=True)
time.sleep(60)
print("still running", flush=True)
"""


def _sigterm_child(backend: Backend, mode: str) -> subprocess.Popen[str]:
    if backend.name == "sqlite_memory":
        pytest.skip("another process cannot see an in-memory database")
    backend.runtime()  # migrated before the child opens it
    child = subprocess.Popen(
        [sys.executable, "-c", _SIGTERM_CHILD, backend.url, mode],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline() == "ready\n"
    child.send_signal(signal.SIGTERM)
    return child


def _burst_rows(backend: Backend) -> int:
    return len(backend.runtime().query_logs(LogQuery()))


def test_sigterm_flush_writes_the_queue_then_dies_of_sigterm(backend: Backend) -> None:
    child = _sigterm_child(backend, "installed")
    assert child.wait(60) == -signal.SIGTERM  # the default action, raised again
    assert _burst_rows(backend) == 5000


def test_without_it_sigterm_loses_the_queue(backend: Backend) -> None:
    child = _sigterm_child(backend, "not-installed")
    assert child.wait(60) == -signal.SIGTERM
    assert _burst_rows(backend) == 0  # what install_sigterm_flush is for


def test_sigterm_flush_chains_to_the_previous_python_handler(backend: Backend) -> None:
    child = _sigterm_child(backend, "python-handler")
    assert child.wait(60) == 3  # the application's own handler ran after the flush
    assert _burst_rows(backend) == 5000


def test_sigterm_flush_keeps_an_ignored_sigterm_ignored(backend: Backend) -> None:
    child = _sigterm_child(backend, "ignored")
    try:
        wait_until(lambda: _burst_rows(backend) == 5000, timeout=30)
        assert child.poll() is None  # still running
    finally:
        child.kill()
        child.wait(60)


def test_close_puts_the_previous_sigterm_handler_back(runtime: StateRuntime) -> None:
    def previous(signum: int, frame: object) -> None:
        raise AssertionError("not called")

    old = signal.signal(signal.SIGTERM, previous)
    try:
        handler = StateLogHandler(runtime)
        handler.install_sigterm_flush()
        installed = signal.getsignal(signal.SIGTERM)
        assert installed is not previous
        handler.install_sigterm_flush()  # a second call changes nothing
        assert signal.getsignal(signal.SIGTERM) is installed
        handler.close()
        assert signal.getsignal(signal.SIGTERM) is previous
    finally:
        signal.signal(signal.SIGTERM, old)


def test_bad_options_are_rejected(runtime: StateRuntime) -> None:
    with pytest.raises(ValueError):
        StateLogHandler(runtime, batch_size=0)
    with pytest.raises(ValueError):
        StateLogHandler(runtime, flush_interval=0)
