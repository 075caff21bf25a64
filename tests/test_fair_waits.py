"""The fair waits of `codex_state.pool`: hand-off in arrival order, bounded, quiet pool logs."""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.util.queue import Empty, Full

from codex_state import InvalidInputError, LockTimeoutError, StateRuntime
from codex_state.errors import connection_lost
from codex_state.pool import POOL_LOGGER, FairLock, FairQueue, FairQueuePool, OncePerInterval


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.001)


def blocked_getter(queue: FairQueue[str], got: list[str], timeout: float | None = None) -> None:
    try:
        got.append(queue.get(True, timeout))
    except Empty:
        got.append("empty")


def test_a_returned_item_goes_to_the_waiter_not_back_to_the_returner() -> None:
    # QueuePool's own queue fails this: the returner's next get takes the item it just put,
    # and the woken waiter finds the queue empty again (the 30 s pool timeouts of issue 10).
    queue: FairQueue[str] = FairQueue(1)
    queue.put("connection", False)
    mine = queue.get(False)
    got: list[str] = []
    waiter = threading.Thread(target=blocked_getter, args=(queue, got))
    waiter.start()
    wait_until(lambda: len(queue._waiters) == 1)
    queue.put(mine, False)
    with pytest.raises(Empty):
        queue.get(False)  # barging in is refused while someone waits
    waiter.join(5)
    assert got == ["connection"]


def test_waiters_are_served_in_arrival_order() -> None:
    queue: FairQueue[int] = FairQueue(3)
    got: dict[int, int] = {}

    def take(n: int) -> None:
        got[n] = queue.get(True, 5)  # the n-th to wait gets the n-th item returned

    threads = []
    for n in range(3):
        thread = threading.Thread(target=take, args=(n,))
        thread.start()
        threads.append(thread)
        wait_until(lambda n=n: len(queue._waiters) == n + 1)  # type: ignore[misc]
    for n in range(3):
        queue.put(n, False)
    for thread in threads:
        thread.join(5)
    assert got == {0: 0, 1: 1, 2: 2}


def test_a_waiter_times_out_and_leaves_the_line() -> None:
    queue: FairQueue[str] = FairQueue(1)
    got: list[str] = []
    began = time.monotonic()
    blocked_getter(queue, got, timeout=0.05)
    assert got == ["empty"] and time.monotonic() - began < 2
    assert not queue._waiters
    queue.put("a", False)
    with pytest.raises(Full):
        queue.put("b", False)
    assert queue.qsize() == 1 and queue.full() and not queue.empty()
    assert queue.get(False) == "a"


def test_fair_lock_is_first_come_first_served_and_reentrant() -> None:
    lock = FairLock("the test's lock", timeout=5)
    order: list[int] = []
    lock.acquire()
    assert lock.acquire()  # the holder may take it again
    lock.release()

    def take(n: int) -> None:
        with lock:
            order.append(n)

    threads = []
    for n in range(4):
        thread = threading.Thread(target=take, args=(n,))
        thread.start()
        threads.append(thread)
        wait_until(lambda n=n: len(lock._waiters) == n + 1)  # type: ignore[misc]
    lock.release()
    for thread in threads:
        thread.join(5)
    assert order == [0, 1, 2, 3]


def test_fair_lock_wait_is_bounded() -> None:
    lock = FairLock("the other writers", timeout=0.05)
    lock.acquire()
    failure: list[BaseException] = []

    def take() -> None:
        try:
            with lock:
                pass
        except LockTimeoutError as err:
            failure.append(err)

    thread = threading.Thread(target=take)
    thread.start()
    thread.join(5)
    assert [str(err) for err in failure] == ["gave up after 0.05 s waiting for the other writers"]
    assert not lock._waiters
    lock.release()
    assert lock.acquire(0)


def test_every_pool_of_a_file_database_is_fair(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    with StateRuntime.from_url(url, "x") as runtime:
        assert isinstance(runtime.engine.pool, FairQueuePool)
        assert runtime.engine.pool.size() == 5
    with StateRuntime.from_url(url, "x", pool_size=2, pool_timeout=1.5) as runtime:
        assert runtime.engine.pool.size() == 2
        assert runtime.engine.pool.timeout() == 1.5


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"pool_size": 6}, "pool_size is at most 5 on SQLite: 6"),
        ({"pool_size": 0}, "pool_size must be a positive int, got 0"),
        ({"pool_size": True}, "pool_size must be a positive int, got True"),
        ({"pool_timeout": -1}, "pool_timeout must be a number of seconds >= 0, got -1"),
        ({"lock_timeout": float("nan")}, "lock_timeout must be a number of seconds >= 0"),
    ],
)
def test_bad_engine_settings_are_bad_input(
    tmp_path: Path, settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=re.escape(message)):
        StateRuntime.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}", "x", **settings)


def test_pool_warnings_pass_once_per_interval_as_one_line() -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger(POOL_LOGGER)
    (installed,) = [f for f in logger.filters if isinstance(f, OncePerInterval)]
    quiet = OncePerInterval(interval=0.2)  # a short interval, for the test
    logger.removeFilter(installed)
    logger.addFilter(quiet)
    handler = Keep()
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        for _ in range(50):
            try:
                raise ConnectionError("server closed the connection\nsecond line")
            except ConnectionError:
                logger.error("Exception during reset or similar", exc_info=True)
        logger.debug("Connection %s checked out", "c1")  # below WARNING: untouched
        time.sleep(0.25)
        logger.error("Exception during reset or similar", exc_info=True)
    finally:
        logger.setLevel(level)
        logger.removeHandler(handler)
        logger.removeFilter(quiet)
        logger.addFilter(installed)
    lines = [(r.levelname, r.getMessage()) for r in records]
    reset = "Exception during reset or similar"
    assert lines == [
        ("ERROR", f"{reset}: ConnectionError: server closed the connection"),
        ("DEBUG", "Connection c1 checked out"),
        ("ERROR", f"{reset} (49 more like it in the last 0.2 s)"),
    ]
    assert all(r.exc_info is None for r in records)


def test_connection_loss_is_told_apart_from_other_errors() -> None:
    psycopg = pytest.importorskip("psycopg")
    from psycopg import errors

    assert connection_lost(errors.AdminShutdown("terminating connection"))
    assert connection_lost(errors.CannotConnectNow("the database system is starting up"))
    assert connection_lost(psycopg.OperationalError("server closed the connection unexpectedly"))
    assert connection_lost(errors.ConnectionFailure("connection failure"))
    assert not connection_lost(errors.UniqueViolation("duplicate key"))
    assert not connection_lost(errors.LockNotAvailable("canceling statement due to lock timeout"))
    assert not connection_lost(errors.QueryCanceled("canceling statement due to user request"))
    assert not connection_lost(sqlite3.OperationalError("database is locked"))
