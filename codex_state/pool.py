"""Fair waits for the shared resources of one process: pooled connections and SQLite's writer.

Why: a `StateRuntime` is shared by many threads, and under the GIL the thread that just gave a
resource back usually takes it again before the one it woke can run. SQLAlchemy's `QueuePool`
queue is a `threading.Condition` around a deque: a return puts the connection in the deque and
notifies a waiter, but the returning thread keeps the GIL and its next checkout finds the deque
non-empty and takes the connection; the woken waiter finds it empty and waits again. Measured on
PostgreSQL with 16 threads on a pool of 5 (+5 overflow): the median call took 5 ms, but one call
in every 10 s run waited the whole run, and over 40 s 4 calls in 60,000 failed after the 30 s
pool timeout ("QueuePool limit of size 5 overflow 5 reached"). SQLite's busy handler is no
fairer: a writer blocked in `BEGIN IMMEDIATE` sleeps and retries, and a writer that arrives
between its retries gets the lock first.

The fix in both places is a hand-off in arrival order: whoever gives the resource back while
others wait gives it to the one that has waited longest, so a returning thread cannot take it
back and every waiter waits at most the work of the threads queued before it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Generic, TypeVar

from sqlalchemy.pool import ConnectionPoolEntry, QueuePool
from sqlalchemy.util.queue import Empty, Full, QueueCommon

from codex_state.errors import LockTimeoutError, first_line

T = TypeVar("T")


class _Waiter(Generic[T]):
    """One blocked `get`: released (its lock) once `item` is handed to it."""

    __slots__ = ("handed", "item", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()
        self.handed = False
        self.item: T | None = None


class FairQueue(QueueCommon[T]):
    """SQLAlchemy's pool queue, with `put` handing the item to the longest-waiting `get`.

    The same interface as `sqlalchemy.util.queue.Queue` (which `QueuePool` uses): a bounded
    FIFO (or LIFO) of idle items, `get(block, timeout)` raising `Empty`, `put(item, False)`
    raising `Full`. Invariant: while anyone waits, no item sits idle, so a `get` that finds an
    idle item never overtakes a waiter. The mutex is reentrant because SQLAlchemy may return a
    connection (a weakref callback) from inside a `get`.
    """

    def __init__(self, maxsize: int = 0, use_lifo: bool = False) -> None:
        self.maxsize = maxsize
        self.use_lifo = use_lifo
        self._items: deque[T] = deque()
        self._waiters: deque[_Waiter[T]] = deque()
        self._mutex = threading.RLock()

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return 0 < self.maxsize <= len(self._items)

    def put_nowait(self, item: T) -> None:
        self.put(item, False)

    def put(self, item: T, block: bool = True, timeout: float | None = None) -> None:
        # The pool only puts without blocking (a full queue closes an overflow connection).
        with self._mutex:
            if self._waiters:
                waiter = self._waiters.popleft()
                waiter.item, waiter.handed = item, True
                waiter.lock.release()
                return
            if self.full():
                raise Full
            self._items.append(item)

    def get_nowait(self) -> T:
        return self.get(False)

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        with self._mutex:
            if self._items:  # nobody waits (the invariant), so nobody is overtaken
                return self._items.pop() if self.use_lifo else self._items.popleft()
            if not block:
                raise Empty
            waiter: _Waiter[T] = _Waiter()
            self._waiters.append(waiter)
        waiter.lock.acquire(timeout=-1 if timeout is None else max(timeout, 0.0))
        with self._mutex:
            if waiter.handed:  # possibly just after the timeout: it is ours all the same
                return waiter.item  # type: ignore[return-value]
            self._waiters.remove(waiter)
            raise Empty


POOL_LOGGER = "sqlalchemy.pool.codex_state"
"""The logger of our pools: under `sqlalchemy.pool`, where hosts look, and used by no other."""

LOG_INTERVAL_SECONDS = 60.0


class FairQueuePool(QueuePool):
    """`QueuePool` whose waiting checkouts are served in arrival order (`FairQueue`)."""

    _queue_class = FairQueue[ConnectionPoolEntry]
    _sqla_logger_namespace = POOL_LOGGER


class OncePerInterval(logging.Filter):
    """Let each kind of warning or error through at most once per interval, as one line.

    Why: when PostgreSQL goes away, every pooled connection fails at once and SQLAlchemy's pool
    logs each failure with its traceback; a host that never configured logging gets them on
    stderr (Python's last-resort handler). The runtime reruns those calls, so one line per
    kind of failure per minute is what a person needs. Records below WARNING pass untouched
    (a host only sees them if it asked for them). Nothing is attached to the root logger.
    """

    def __init__(self, interval: float = LOG_INTERVAL_SECONDS) -> None:
        super().__init__()
        self.interval = interval
        self._lock = threading.Lock()
        self._last: dict[object, float] = {}
        self._suppressed: dict[object, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key, now = record.msg, time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            message = f"{message}: {type(error).__name__}: {first_line(str(error))}"
        if suppressed:
            message = f"{message} ({suppressed} more like it in the last {self.interval:g} s)"
        record.msg, record.args = message, None
        record.exc_info = record.exc_text = None
        return True


logging.getLogger(POOL_LOGGER).addFilter(OncePerInterval())


class FairLock:
    """A lock granted in arrival order, re-entrant for its holder, with a bounded wait.

    `acquire(timeout)` returns False when the wait ran out; `with lock:` waits at most the
    lock's `timeout` and raises `LockTimeoutError` (naming `what`) after it. A thread that holds
    it may take it again (nested units of work in one thread must not wait for themselves).
    """

    def __init__(self, what: str = "a lock", timeout: float | None = None) -> None:
        self.what = what
        self.timeout = timeout
        self._mutex = threading.Lock()
        self._owner: int | None = None
        self._depth = 0
        self._waiters: deque[_Waiter[int]] = deque()

    def acquire(self, timeout: float | None = None) -> bool:
        me = threading.get_ident()
        with self._mutex:
            if self._owner is None:
                self._owner, self._depth = me, 1
                return True
            if self._owner == me:
                self._depth += 1
                return True
            waiter: _Waiter[int] = _Waiter()
            waiter.item = me
            self._waiters.append(waiter)
        waiter.lock.acquire(timeout=-1 if timeout is None else max(timeout, 0.0))
        with self._mutex:
            if waiter.handed:  # the releaser made us the owner (maybe just after the timeout)
                return True
            self._waiters.remove(waiter)
            return False

    def release(self) -> None:
        with self._mutex:
            if self._owner != threading.get_ident():
                raise RuntimeError("FairLock released by a thread that does not hold it")
            self._depth -= 1
            if self._depth:
                return
            if self._waiters:
                waiter = self._waiters.popleft()
                self._owner, self._depth = waiter.item, 1
                waiter.handed = True
                waiter.lock.release()
            else:
                self._owner = None

    def __enter__(self) -> None:
        if not self.acquire(self.timeout):
            raise LockTimeoutError(f"gave up after {self.timeout:g} s waiting for {self.what}")

    def __exit__(self, *exc_info: object) -> None:
        self.release()
