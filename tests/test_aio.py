"""`AsyncStateRuntime` on its own terms: the surface, the event loop, cancellation, sessions.

The behaviour of every operation through the async facade is the behaviour suite's `async`
entry (`tests.entries`); this module covers what only an asyncio facade has.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, event, select, text
from sqlalchemy.orm import Session

from codex_state import (
    InvalidInputError,
    LogQuery,
    Phase1ClaimKind,
    StateDbOpenError,
    StateError,
    StateLogHandler,
    StateRuntime,
)
from codex_state.aio import AsyncStateRuntime
from codex_state.engine import SQLITE_ASYNC_BUSY_TIMEOUT_MS
from codex_state.operations import Operation, operations
from codex_state.orm import memory_phase1_jobs
from codex_state.repositories.jobs import Phase1JobRepository
from tests.benchmarks.common import make_thread
from tests.conftest import Backend
from tests.entries import LOOP, AsyncEntry
from tests.memory_support import SCOPE
from tests.operation_calls import sample_calls
from tests.test_docs_examples import python_blocks

T = TypeVar("T")

TICK = 0.01
MAX_GAP = 0.1
"""The ticker's interval, and the longest gap between two ticks that counts as not blocked."""

LOCK_HELD = 1.0
"""How long another connection holds the write lock in the waiting tests."""


def run(scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(scenario())


@pytest.fixture(params=["sqlite_memory", "sqlite_file", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database of each kind (PostgreSQL when configured)."""
    if request.param == "sqlite_memory":
        return "sqlite://"
    if request.param == "sqlite_file":
        return f"sqlite:///{tmp_path / 'state_4.sqlite'}"
    schema_url: str = request.getfixturevalue("pg_schema_url")
    return schema_url


@pytest.fixture(params=["sqlite_file", "postgres"])
def lockable_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Databases another connection can hold a write lock on."""
    if request.param == "sqlite_file":
        return f"sqlite:///{tmp_path / 'state_4.sqlite'}"
    schema_url: str = request.getfixturevalue("pg_schema_url")
    return schema_url


# ------------------------------------------------------------------------------------ surface


def _public_signature(function: Callable[..., Any]) -> inspect.Signature:
    signature = inspect.signature(function)
    return signature.replace(parameters=list(signature.parameters.values())[1:])


def test_the_async_surface_is_the_sync_one_awaitable() -> None:
    async def scenario() -> None:
        with StateRuntime.from_url("sqlite://", "p") as runtime:
            async with await AsyncStateRuntime.from_url("sqlite://", "p") as db:
                names = [n for n in dir(StateRuntime) if not n.startswith("_")]
                declared = {
                    n
                    for n in names
                    if isinstance(inspect.getattr_static(StateRuntime, n), Operation)
                }
                assert declared == set(operations())
                for name in declared:
                    sync, awaitable = getattr(runtime, name), getattr(db, name)
                    assert callable(sync), name
                    assert inspect.iscoroutinefunction(awaitable), name
                    expected = _public_signature(operations()[name].method)
                    assert inspect.signature(awaitable) == expected, name
                    assert awaitable.__doc__ == sync.__doc__, name
                # The unit-of-work seam, awaitable too.
                assert inspect.iscoroutinefunction(db.run_in_transaction)
                assert _public_signature(AsyncStateRuntime.run_in_transaction) == (
                    _public_signature(StateRuntime.run_in_transaction)
                )
                async with db.session() as session:
                    assert type(session).__name__ == "AsyncSession"
                for name in ("repository", "closed", "codex_home", "default_provider", "metrics"):
                    assert hasattr(db, name), name

    run(scenario)


def test_calls_run_concurrently_on_every_backend(url: str) -> None:
    async def scenario() -> None:
        async with await AsyncStateRuntime.from_url(url, "openai") as db:
            threads = [make_thread(n) for n in range(20)]
            await asyncio.gather(*(db.upsert_thread(t) for t in threads))
            page = await db.list_threads(50)
            assert {t.id for t in page.items} == {t.id for t in threads}
            assert await db.get_thread(threads[0].id) == threads[0]
        assert db.closed
        with pytest.raises(StateError, match="closed"):
            await db.get_backfill_state()
        with pytest.raises(StateError, match="closed"):
            db.sync_runtime()

    run(scenario)


def test_init_opens_a_codex_home(tmp_path: Path) -> None:
    async def scenario() -> str:
        async with await AsyncStateRuntime.init(tmp_path, "openai") as db:
            assert db.codex_home == tmp_path
            state = await db.get_backfill_state()
            return state.status.value

    assert run(scenario) == "pending"
    assert (tmp_path / "state_4.sqlite").exists()


def test_open_errors_are_the_sync_ones(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")

    async def scenario() -> None:
        with pytest.raises(StateDbOpenError, match="not a directory"):
            await AsyncStateRuntime.init(not_a_dir, "p")
        with pytest.raises(StateDbOpenError, match="unsupported database URL"):
            await AsyncStateRuntime.from_url("mysql://x/y", "p")
        garbage = tmp_path / "garbage.sqlite"
        garbage.write_bytes(b"not a database" * 100)
        with pytest.raises(StateDbOpenError, match=r"garbage\.sqlite"):
            await AsyncStateRuntime.from_url(f"sqlite:///{garbage}", "p")

    run(scenario)


def test_sqlite_connections_have_the_pragmas_and_writes_begin_immediate(tmp_path: Path) -> None:
    """The async engine's connections are set up by the same `configure_engine`."""
    entry = AsyncEntry(f"sqlite:///{tmp_path / 'state_4.sqlite'}", "p")
    try:
        calls = sample_calls(entry, tmp_path)
        engine = entry.db.engine.sync_engine
        executed: list[str] = []

        def on_checkout(dbapi_connection: Any, *_: Any) -> None:
            # aiosqlite's sqlite3 connection: what SQLite itself ran, on aiosqlite's thread.
            dbapi_connection.driver_connection._conn.set_trace_callback(executed.append)

        event.listen(engine, "checkout", on_checkout)
        for name, operation in operations().items():
            executed.clear()
            calls[name]()
            begins = [s for s in executed if s.upper().startswith("BEGIN")]
            expected = "BEGIN IMMEDIATE" if operation.write else "BEGIN"
            assert begins == [expected], (name, executed)

        async def pragmas() -> list[Any]:
            async with entry.db.engine.connect() as connection:
                names = ("journal_mode", "foreign_keys", "synchronous", "busy_timeout")
                return [
                    (await connection.exec_driver_sql(f"PRAGMA {name}")).scalar_one()
                    for name in names
                ]

        # synchronous=NORMAL is 1; the short busy wait is SQLITE_ASYNC_BUSY_TIMEOUT_MS.
        assert LOOP.run(pragmas()) == ["wal", 1, 1, SQLITE_ASYNC_BUSY_TIMEOUT_MS]
    finally:
        entry.close()


# --------------------------------------------------------------------------- the event loop


async def max_tick_gap(work: Awaitable[T]) -> tuple[float, T]:
    """(longest gap between two ticks of a TICK ticker while `work` ran, its result)."""
    gaps: list[float] = []
    done = False

    async def tick() -> None:
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(TICK)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(3 * TICK)
    try:
        result = await work
    finally:
        done = True
        await ticker
    return max(gaps), result


class _WriteLock:
    """Another connection holding the write lock that a claim needs, released after `seconds`.

    SQLite: a raw sqlite3 connection in `BEGIN IMMEDIATE`. PostgreSQL: a psycopg connection
    holding `LOCK TABLE memory_phase1_jobs` (the claim's INSERT waits for it).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite = url.startswith("sqlite")
        self._timer: threading.Timer | None = None

    def hold(self, seconds: float | None = LOCK_HELD) -> None:
        if self.sqlite:
            path = self.url.removeprefix("sqlite:///")
            self._conn: Any = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._conn.execute("BEGIN IMMEDIATE")
        else:
            from tests.benchmarks.common import psycopg_connect

            self._conn = psycopg_connect(self.url)
            self._conn.execute("LOCK TABLE memory_phase1_jobs IN ACCESS EXCLUSIVE MODE")
        if seconds is not None:
            self._timer = threading.Timer(seconds, self.release)
            self._timer.start()

    def release(self) -> None:
        self._conn.rollback()
        self._conn.close()

    def join(self) -> None:
        if self._timer is not None:
            self._timer.join()


def test_a_call_waiting_for_the_write_lock_does_not_block_the_loop(lockable_url: str) -> None:
    async def scenario() -> None:
        async with await AsyncStateRuntime.from_url(lockable_url, "p") as db:
            thread = make_thread(1)
            await db.upsert_thread(thread)
            lock = _WriteLock(lockable_url)
            lock.hold()
            start = time.perf_counter()
            gap, outcome = await max_tick_gap(
                db.try_claim_phase1_job(thread.id, *SCOPE, uuid.uuid4(), 100, 60)
            )
            waited = time.perf_counter() - start
            lock.join()
            assert outcome.kind is Phase1ClaimKind.CLAIMED
            assert waited >= LOCK_HELD * 0.8, "the claim did not wait for the lock"
            assert gap < MAX_GAP, f"the event loop stalled for {gap:.3f} s"

    run(scenario)


def test_a_hundred_calls_in_flight_do_not_block_the_loop(url: str) -> None:
    async def scenario() -> None:
        async with await AsyncStateRuntime.from_url(url, "p") as db:
            threads = [make_thread(n) for n in range(26)]
            await asyncio.gather(*(db.upsert_thread(t) for t in threads))
            # Each statement is compiled on its first use (once per process and driver), on
            # the loop: warm them up, the ticker measures the calls themselves.
            warm = threads.pop()
            await db.try_claim_phase1_job(warm.id, *SCOPE, uuid.uuid4(), 100, 60)
            await db.list_threads(10)
            calls: list[Awaitable[Any]] = []
            for thread in threads:
                calls += [
                    db.try_claim_phase1_job(thread.id, *SCOPE, uuid.uuid4(), 100, 60),
                    db.get_thread(thread.id),
                    db.list_threads(10),
                    db.upsert_thread(thread),
                ]
            assert len(calls) == 100
            gap, results = await max_tick_gap(asyncio.gather(*calls))
            claims = results[0::4]
            assert all(claim.kind is Phase1ClaimKind.CLAIMED for claim in claims)
            assert results[1::4] == threads
            assert gap < MAX_GAP, f"the event loop stalled for {gap:.3f} s"

    run(scenario)


def test_the_ticker_catches_a_blocking_call(tmp_path: Path) -> None:
    """The two tests above would fail for a facade that blocks: the harness sees it."""
    url = f"sqlite:///{tmp_path / 'state_4.sqlite'}"

    async def sleeps() -> None:
        time.sleep(0.3)

    async def scenario() -> None:
        gap, _ = await max_tick_gap(sleeps())
        assert gap >= 0.25
        async with await AsyncStateRuntime.from_url(url, "p") as db:
            thread = make_thread(1)
            await db.upsert_thread(thread)
            runtime = db.sync_runtime()

            async def sync_call_on_the_loop() -> Any:
                return runtime.try_claim_phase1_job(thread.id, *SCOPE, uuid.uuid4(), 100, 60)

            lock = _WriteLock(url)
            lock.hold()
            gap, outcome = await max_tick_gap(sync_call_on_the_loop())
            lock.join()
            assert outcome.claimed
            assert gap >= LOCK_HELD * 0.5, gap

    run(scenario)


# ----------------------------------------------------------------------------- cancellation


def _job_rows(db: AsyncStateRuntime) -> int:
    with db.sync_runtime().session() as session:
        return len(session.execute(select(memory_phase1_jobs.c.thread_id)).all())


def test_a_cancelled_call_leaves_the_database_and_the_pool_consistent(lockable_url: str) -> None:
    async def scenario() -> None:
        async with await AsyncStateRuntime.from_url(lockable_url, "p") as db:
            thread = make_thread(1)
            await db.upsert_thread(thread)
            lock = _WriteLock(lockable_url)
            lock.hold(seconds=None)
            try:
                for _ in range(3):
                    start = time.perf_counter()
                    with pytest.raises(TimeoutError):
                        await asyncio.wait_for(
                            db.try_claim_phase1_job(thread.id, *SCOPE, uuid.uuid4(), 100, 60),
                            0.05,
                        )
                    # The cancellation lands within SQLite's short async busy wait (or at once).
                    assert time.perf_counter() - start < 0.5
                    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
            finally:
                lock.release()
            assert await asyncio.to_thread(_job_rows, db) == 0  # nothing half-written
            start = time.perf_counter()
            outcome = await db.try_claim_phase1_job(thread.id, *SCOPE, uuid.uuid4(), 100, 60)
            assert outcome.kind is Phase1ClaimKind.CLAIMED  # not "running": no earlier claim
            assert time.perf_counter() - start < 0.5
            assert await asyncio.to_thread(_job_rows, db) == 1
            assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]

    run(scenario)


def test_a_call_cancelled_while_waiting_its_turn_in_memory_frees_the_turn() -> None:
    async def scenario() -> None:
        async with await AsyncStateRuntime.from_url("sqlite://", "p") as db:
            thread = make_thread(1)
            await db.upsert_thread(thread)
            async with db.session(write=True):
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(db.get_thread(thread.id), 0.05)
            assert await asyncio.wait_for(db.get_thread(thread.id), 1) == thread

    run(scenario)


def test_connections_that_died_in_the_pool_are_replaced(pg_schema_url: str) -> None:
    """PostgreSQL: what the sync engine's pre-ping is for, without a round trip per call."""
    application = f"aio_{uuid.uuid4().hex[:8]}"
    url = f"{pg_schema_url}&application_name={application}"
    admin = create_engine(pg_schema_url)

    def kill_all() -> int:
        with admin.begin() as connection:
            return len(
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = :name"
                    ),
                    {"name": application},
                ).all()
            )

    async def scenario() -> None:
        async with await AsyncStateRuntime.from_url(url, "p") as db:
            threads = [make_thread(n) for n in range(20)]
            await asyncio.gather(*(db.upsert_thread(t) for t in threads))  # fills the pool
            assert await asyncio.to_thread(kill_all) > 1
            await asyncio.sleep(0.2)  # the server closes them
            found = await asyncio.gather(*(db.get_thread(t.id) for t in threads))
            assert found == threads
            assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]

    try:
        run(scenario)
    finally:
        admin.dispose()


# ------------------------------------------------------------------------- session and work


@pytest.fixture
def own_table() -> Table:
    """A table of the caller's application, in the same database."""
    return Table(
        f"agent_events_{uuid.uuid4().hex[:8]}",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("what", String(50)),
    )


def test_a_session_holds_repositories_and_the_callers_async_work(
    url: str, own_table: Table
) -> None:
    async def scenario() -> None:
        async with await AsyncStateRuntime.from_url(url, "p") as db:
            async with db.engine.begin() as connection:
                await connection.run_sync(own_table.metadata.create_all)
            thread = make_thread(1)
            await db.upsert_thread(thread)

            def claim(session: Session) -> Any:
                return db.repository(Phase1JobRepository, session).try_claim_phase1_job(
                    thread.id, *SCOPE, uuid.uuid4(), 100, 60
                )

            async with db.session(write=True) as session:
                outcome = await session.run_sync(claim)
                await session.execute(own_table.insert().values(what="claimed"))
            assert outcome.claimed
            async with db.session() as session:
                what = (await session.execute(select(own_table.c.what))).scalars().all()
            assert what == ["claimed"]

            with pytest.raises(RuntimeError, match="boom"):
                async with db.session(write=True) as session:
                    await session.execute(own_table.insert().values(what="rolled back"))
                    raise RuntimeError("boom")
            async with db.session() as session:
                what = (await session.execute(select(own_table.c.what))).scalars().all()
            assert what == ["claimed"]

            # run_in_transaction: synchronous work on the Session, awaited, retried when busy.
            def count_events(session: Session) -> int:
                return len(session.execute(select(own_table.c.id)).all())

            assert await db.run_in_transaction(count_events) == 1

    run(scenario)


# ----------------------------------------------------------------------- the log handler


def test_the_log_handler_writes_through_a_sync_runtime_in_an_asyncio_program(url: str) -> None:
    async def scenario() -> None:
        async with await AsyncStateRuntime.from_url(url, "p") as db:
            log = logging.getLogger(f"test.aio.{uuid.uuid4().hex[:8]}")
            log.setLevel(logging.INFO)
            log.propagate = False
            handler = StateLogHandler(db.sync_runtime(), flush_interval=0.01)
            log.addHandler(handler)
            try:

                async def work(n: int) -> None:
                    await asyncio.sleep(0)
                    log.info("task %d", n)

                gap, _ = await max_tick_gap(asyncio.gather(*(work(n) for n in range(50))))
                await asyncio.to_thread(handler.flush)  # flush waits: not on the loop
                rows = await db.query_logs(LogQuery(module_like=(__name__,), limit=100))
                assert sorted(row.message for row in rows) == sorted(f"task {n}" for n in range(50))
                assert handler.failed == 0
                assert gap < MAX_GAP
            finally:
                log.removeHandler(handler)
                await asyncio.to_thread(handler.close)
            runtime = db.sync_runtime()
        assert runtime.closed  # closed with the async runtime

    run(scenario)


def test_an_in_memory_sync_runtime_refuses_to_run_on_the_loop() -> None:
    async def scenario() -> None:
        async with await AsyncStateRuntime.from_url("sqlite://", "p") as db:
            runtime = db.sync_runtime()
            with pytest.raises(StateError, match="event loop"):
                runtime.get_backfill_state()
            thread = make_thread(1)
            await asyncio.to_thread(runtime.upsert_thread, thread)
            assert await db.get_thread(thread.id) == thread  # one database, one connection

    run(scenario)


# ------------------------------------------------------------------------------------ docs

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture
def scratch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def test_the_asyncio_page_examples_run(scratch_home: Path) -> None:
    blocks = python_blocks(DOCS / "asyncio.md")
    assert blocks
    namespace: dict[str, object] = {"__name__": "docs_asyncio"}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"docs/asyncio.md:block{number}", "exec"), namespace)


def test_engine_settings_reach_the_async_pools(shared_backend: Backend) -> None:
    """`pool_size`, `pool_timeout` and `lock_timeout` mean the same as on `StateRuntime`."""

    async def scenario() -> tuple[int, float, int, str | None]:
        db = await AsyncStateRuntime.from_url(
            shared_backend.url, "p", pool_size=2, pool_timeout=1.5, lock_timeout=0.25
        )
        async with db:
            pool = db.engine.sync_engine.pool
            sync_pool = db.sync_runtime().engine.pool
            shown = None
            if shared_backend.is_postgres:
                async with db.engine.connect() as connection:
                    shown = (await connection.exec_driver_sql("SHOW lock_timeout")).scalar()
            return pool.size(), pool.timeout(), sync_pool.size(), shown  # type: ignore[attr-defined]

    size, timeout, sync_size, lock = asyncio.run(scenario())
    assert (size, timeout, sync_size) == (2, 1.5, 2)
    if shared_backend.is_postgres:
        assert lock == "250ms"
    with pytest.raises(InvalidInputError, match="pool_size"):
        asyncio.run(AsyncStateRuntime.from_url(shared_backend.url, "p", pool_size=0))
