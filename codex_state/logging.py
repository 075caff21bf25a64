"""`StateLogHandler`: Python `logging` records into the `logs` table, as the seed's tracing layer.

The application thread only appends the record to a bounded in-memory queue; a background
thread formats records and writes them in batches, and keeps retention running while the
process lives (the Rust original pruned only at start-up, and its users' log tables grew to
gigabytes). Nothing here ever blocks or raises into the code that logs.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from types import FrameType
from typing import Any, Protocol

from codex_state.errors import first_line
from codex_state.models import canonical_log_thread_id, text_problem
from codex_state.repositories.logs import LogValues

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_ERROR_REPORT_INTERVAL",
    "DEFAULT_FLUSH_INTERVAL",
    "DEFAULT_QUEUE_CAPACITY",
    "DEFAULT_RETENTION_DAYS",
    "LogSink",
    "StateLogHandler",
    "current_log_thread_id",
    "level_name",
    "log_thread_id",
]

DEFAULT_BATCH_SIZE = 64
DEFAULT_FLUSH_INTERVAL = 0.25
# The seed used 512. A Python burst (an exception storm, a chatty loop) outruns one 250 ms tick
# easily; 4096 records of queue cost a few MiB at most and lose far fewer of them.
DEFAULT_QUEUE_CAPACITY = 4096
DEFAULT_RETENTION_DAYS = 90.0
DEFAULT_RETENTION_INTERVAL = 3600.0
DEFAULT_RETENTION_BATCH = 5000
DEFAULT_SHUTDOWN_TIMEOUT = 10.0
# While the database is unreachable every batch fails; one line a minute says so without
# flooding the host's stderr (the counters have the exact numbers).
DEFAULT_ERROR_REPORT_INTERVAL = 60.0

_SECONDS_PER_DAY = 86_400
_NANOS = 1_000_000_000

_scoped_thread_id: ContextVar[str | None] = ContextVar("codex_state_log_thread_id", default=None)


@contextmanager
def log_thread_id(thread_id: uuid.UUID | str | None) -> Iterator[None]:
    """Tag every record logged inside the block (and in tasks it starts) with `thread_id`.

    A contextvar, so it follows asyncio tasks and `contextvars.copy_context()`; an explicit
    `extra={"thread_id": ...}` on a call still wins.
    """
    value = None if thread_id is None else str(canonical_log_thread_id(thread_id))
    token = _scoped_thread_id.set(value)
    try:
        yield
    finally:
        _scoped_thread_id.reset(token)


def current_log_thread_id() -> str | None:
    """The thread id `log_thread_id` scoped over the current context, if any."""
    return _scoped_thread_id.get()


def level_name(levelno: int) -> str:
    """The seed's level for a Python level; custom levels round down to a standard one."""
    if levelno >= logging.ERROR:
        return "ERROR"
    if levelno >= logging.WARNING:
        return "WARN"
    if levelno >= logging.INFO:
        return "INFO"
    if levelno >= logging.DEBUG:
        return "DEBUG"
    return "TRACE"


class LogSink(Protocol):
    """What the handler needs from a `StateRuntime` (a protocol, so tests can wrap one)."""

    def insert_log_rows(self, rows: Sequence[LogValues]) -> None: ...

    def delete_logs_before(self, cutoff_ts: int, *, limit: int | None = None) -> int: ...

    def trim_logs(self, max_rows: int, *, limit: int = ...) -> int: ...


_Queued = tuple[logging.LogRecord, str | None] | threading.Event
"""A record with the scoped thread id captured at emit time, or a flush marker."""


class StateLogHandler(logging.Handler):
    """A `logging.Handler` that writes records to the state database's `logs` table.

    Args:
        runtime: the `StateRuntime` to write to (anything with its log methods).
        level: the handler's level, as for any handler.
        batch_size: rows per insert; reaching it wakes the writer before the interval.
        flush_interval: seconds between writes of a partial batch.
        queue_capacity: records held in memory; beyond it new records are dropped and
            counted in `dropped` instead of blocking the application.
        retention_days: rows older than this are deleted periodically (None keeps all).
        max_rows: keep at most this many rows, deleting the oldest (None: no cap).
        retention_interval: seconds between retention passes (the first runs at start).
        retention_batch: rows deleted per transaction, so writers are never held up long.
        shutdown_timeout: seconds `flush()` and `close()` wait for the writer.
        error_report_interval: the handler's own failures (a write or a retention pass that
            failed, a record that cannot be formatted) print at most one line on stderr per
            this many seconds, and nothing when `logging.raiseExceptions` is False.
    """

    def __init__(
        self,
        runtime: LogSink,
        *,
        level: int | str = logging.NOTSET,
        batch_size: int = DEFAULT_BATCH_SIZE,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        queue_capacity: int = DEFAULT_QUEUE_CAPACITY,
        retention_days: float | None = DEFAULT_RETENTION_DAYS,
        max_rows: int | None = None,
        retention_interval: float = DEFAULT_RETENTION_INTERVAL,
        retention_batch: int = DEFAULT_RETENTION_BATCH,
        shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
        error_report_interval: float = DEFAULT_ERROR_REPORT_INTERVAL,
    ) -> None:
        super().__init__(level)
        if batch_size <= 0 or queue_capacity <= 0 or retention_batch <= 0:
            raise ValueError("batch_size, queue_capacity and retention_batch must be positive")
        if flush_interval <= 0 or retention_interval <= 0:
            raise ValueError("flush_interval and retention_interval must be positive")
        self._sink = runtime
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._capacity = queue_capacity
        self._retention_days = retention_days
        self._max_rows = max_rows
        self._retention_interval = retention_interval
        self._retention_batch = retention_batch
        self._shutdown_timeout = shutdown_timeout
        self._error_report_interval = error_report_interval
        self._next_error_report = float("-inf")
        self._sigterm_hook: Any = None
        self._sigterm_previous: Any = None
        self._pending: deque[_Queued] = deque()
        self._wake = threading.Event()
        self._counts_lock = threading.Lock()
        self._dropped = 0
        self._failed = 0
        self._written = 0
        self._closed = False
        self._stopping = False
        self._exc_formatter = logging.Formatter()
        self._modules: dict[str, str] = {}
        self._writer = threading.Thread(
            target=self._run, name="codex-state-log-writer", daemon=True
        )
        self._writer_ident: int | None = None
        started = threading.Event()
        self._started = started
        self._writer.start()
        started.wait()
        _live_handlers.add(self)

    # --------------------------------------------------------------- application thread

    @property
    def dropped(self) -> int:
        """Records discarded because the queue was full (or the handler closed)."""
        return self._dropped

    @property
    def failed(self) -> int:
        """Records lost because formatting or writing them failed."""
        return self._failed

    @property
    def written(self) -> int:
        """Records written to the database so far."""
        return self._written

    def handle(self, record: logging.LogRecord) -> bool:
        """Filter and emit without the handler lock: `emit` is safe to run concurrently."""
        result = self.filter(record)
        if isinstance(result, logging.LogRecord):
            record = result
        if result:
            self.emit(record)
        return bool(result)

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the record; formatting and writing happen on the writer thread."""
        if threading.get_ident() == self._writer_ident:
            return  # the writer's own database activity (e.g. SQLAlchemy logs) must not loop
        pending = self._pending
        if self._closed or len(pending) >= self._capacity:
            with self._counts_lock:
                self._dropped += 1
            return
        pending.append((record, _scoped_thread_id.get()))
        if len(pending) >= self._batch_size and not self._wake.is_set():
            self._wake.set()

    def flush(self) -> None:
        """Wait until every record queued before this call is written (or failed)."""
        if self._closed or threading.get_ident() == self._writer_ident:
            return
        done = threading.Event()
        self._pending.append(done)
        self._wake.set()
        done.wait(self._shutdown_timeout)

    def close(self) -> None:
        """Write what is queued, stop the writer thread and detach; idempotent."""
        with self._counts_lock:
            if self._closed:
                return
            self._closed = True
        self._stopping = True
        self._wake.set()
        if threading.get_ident() != self._writer_ident:
            self._writer.join(self._shutdown_timeout)
        _live_handlers.discard(self)
        self._uninstall_sigterm_flush()
        super().close()

    def install_sigterm_flush(self) -> None:
        """Write the queued records when the process gets SIGTERM, then carry on as before.

        SIGTERM's default action ends the process at once, without `atexit`, so records still
        in the queue would be lost. After the flush the previous SIGTERM handler runs: a Python
        handler is called, an ignored SIGTERM stays ignored, and the default action is raised
        again, so the process still dies of SIGTERM (status 143 in a shell, -15 for Python's
        `subprocess`). Call it from the main thread, as `signal.signal` requires; calling it
        again does nothing, and `close()` puts the previous handler back.
        """
        if self._sigterm_hook is not None:
            return
        previous = signal.getsignal(signal.SIGTERM)

        def flush_then_previous(signum: int, frame: FrameType | None) -> None:
            self.flush()
            if callable(previous):
                previous(signum, frame)
            elif previous != signal.SIG_IGN:  # SIG_DFL, or None: set outside Python
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGTERM)

        signal.signal(signal.SIGTERM, flush_then_previous)
        self._sigterm_hook, self._sigterm_previous = flush_then_previous, previous

    def _uninstall_sigterm_flush(self) -> None:
        hook, previous = self._sigterm_hook, self._sigterm_previous
        if hook is None or threading.current_thread() is not threading.main_thread():
            return  # closed elsewhere: the hook stays, flushing a closed handler is a no-op
        if signal.getsignal(signal.SIGTERM) is hook:  # not replaced by someone else since
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
        self._sigterm_hook = self._sigterm_previous = None

    # -------------------------------------------------------------------- writer thread

    def _run(self) -> None:
        self._writer_ident = threading.get_ident()
        self._started.set()
        retention = self._retention_days is not None or self._max_rows is not None
        retention_due = time.monotonic() if retention else float("inf")
        retention_busy = False
        while True:
            self._wake.wait(0 if retention_busy else self._flush_interval)
            self._wake.clear()
            stopping = self._stopping
            self._drain()
            if stopping:
                return
            if time.monotonic() >= retention_due:
                retention_busy = self._retention_step()
                if not retention_busy:
                    retention_due = time.monotonic() + self._retention_interval

    def _drain(self) -> None:
        batch: list[LogValues] = []
        pending = self._pending
        while pending:
            item = pending.popleft()
            if isinstance(item, threading.Event):
                self._write(batch)
                batch = []
                item.set()
                continue
            row = self._row(*item)
            if row is not None:
                batch.append(row)
                if len(batch) >= self._batch_size:
                    self._write(batch)
                    batch = []
        self._write(batch)

    def _write(self, batch: list[LogValues]) -> None:
        if not batch:
            return
        try:
            self._sink.insert_log_rows(batch)
        except Exception as err:
            self._failed += len(batch)
            self._report_failure(f"writing {_records(len(batch))} failed", err)
        else:
            self._written += len(batch)

    def _retention_step(self) -> bool:
        """Delete one small batch of expired rows; True while more remain."""
        limit = self._retention_batch
        try:
            if self._retention_days is not None:
                cutoff = int(time.time() - self._retention_days * _SECONDS_PER_DAY)
                if self._sink.delete_logs_before(cutoff, limit=limit) >= limit:
                    return True
            if self._max_rows is not None:
                return self._sink.trim_logs(self._max_rows, limit=limit) >= limit
        except Exception as err:
            self._report_failure("deleting old rows failed", err)
        return False

    def _report_failure(self, what: str, err: Exception) -> None:
        """One line on stderr, at most once per `error_report_interval`; never a traceback.

        `logging`'s own `handleError` would print a traceback for every failed batch: during
        a database outage that floods the host application's stderr.
        """
        now = time.monotonic()
        if now < self._next_error_report or not logging.raiseExceptions:
            return
        self._next_error_report = now + self._error_report_interval
        reason = first_line(str(err), type(err).__name__)
        line = (
            f"codex_state log handler: {what} ({type(err).__name__}: {reason}); "
            f"{_records(self._failed)} lost so far, counted in StateLogHandler.failed; "
            f"next report in {self._error_report_interval:g} s at the earliest\n"
        )
        try:
            if sys.stderr is not None:
                sys.stderr.write(line)
        except Exception:
            pass  # stderr closed or broken: the counters still tell

    def _row(self, record: logging.LogRecord, scoped_thread_id: str | None) -> LogValues | None:
        try:
            message = record.getMessage()
            if record.exc_info:
                text = record.exc_text or self._exc_formatter.formatException(record.exc_info)
                message = f"{message}\n{text}"
            if record.stack_info:
                message = f"{message}\n{record.stack_info}"
            message = _storable(message)
            thread_id = getattr(record, "thread_id", None)
            if thread_id is None:
                thread_id = scoped_thread_id
            else:
                thread_id = str(canonical_log_thread_id(thread_id))
            if thread_id is not None:
                thread_id = _storable(thread_id)
            seconds, nanos = divmod(round(record.created * _NANOS), _NANOS)
            return (
                seconds,
                nanos,
                level_name(record.levelno),
                _storable(record.name),
                message,
                thread_id,
                self._module_name(record),
                _storable(record.pathname),
                record.lineno,
            )
        except Exception as err:
            self._failed += 1
            self._report_failure("formatting a record failed", err)
            return None

    def _module_name(self, record: logging.LogRecord) -> str:
        """The dotted module that logged (the seed's `module_path`), cached per file."""
        name = self._modules.get(record.pathname)
        if name is None:
            name = record.module
            for module_name, module in list(sys.modules.items()):
                if getattr(module, "__file__", None) == record.pathname:
                    name = module_name
                    break
            name = _storable(name)
            self._modules[record.pathname] = name
        return name


def _records(count: int) -> str:
    return "1 record" if count == 1 else f"{count} records"


def _storable(text: str) -> str:
    """`text` with NUL characters and lone surrogates escaped, as every backend can store it.

    A log record is never refused for its content: one such record would otherwise fail its
    whole batch (PostgreSQL rejects NUL, and neither driver can encode a lone surrogate).
    """
    if text_problem(text) is None:
        return text
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


_live_handlers: weakref.WeakSet[StateLogHandler] = weakref.WeakSet()


@atexit.register
def _close_live_handlers() -> None:
    # Registered after `logging`'s own atexit hook, so this runs first: queued records are
    # written while the runtime is still usable.
    for handler in list(_live_handlers):
        handler.close()
