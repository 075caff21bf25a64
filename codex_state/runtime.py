"""`StateRuntime`: the composition root (engine, sessions, clock, metrics) and the public facade.

Every public method is one unit of work: a transaction that commits when the work returns and
rolls back when it raises, around calls to a repository. Writes begin with the write lock held
(see `engine.py`); a write that still meets a locked database is retried from the start, which
is safe because the rolled-back attempt left nothing behind.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

from sqlalchemy import URL, Engine
from sqlalchemy.engine import Dialect
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import PoolProxiedConnection

from codex_state.arguments import (
    as_path,
    check_anchor,
    check_count,
    check_epoch,
    check_limit,
    check_sort_key,
    check_strings,
    check_texts,
)
from codex_state.clock import Clock, DatabaseClock, SystemClock, file_mtime, utc_whole_seconds
from codex_state.engine import WRITE_OPTION, is_sqlite_memory, make_engine, parse_url
from codex_state.errors import (
    InvalidInputError,
    StateDbOpenError,
    StateError,
    ThreadNotFoundError,
    translate_db_errors,
)
from codex_state.migrations import ensure_schema
from codex_state.models import (
    Anchor,
    BackfillState,
    DynamicToolSpec,
    LogEntry,
    LogQuery,
    LogRow,
    Phase1JobClaimOutcome,
    SortKey,
    ThreadMemory,
    ThreadMetadata,
    ThreadMetadataBuilder,
    ThreadsPage,
    parse_thread_id,
)
from codex_state.paths import remove_legacy_state_files, state_db_path
from codex_state.repositories.backfill import BackfillRepository
from codex_state.repositories.jobs import (
    ConsolidationRepository,
    Phase1JobRepository,
    owner_key,
)
from codex_state.repositories.logs import LogInserts, LogReads, LogRepository, LogValues
from codex_state.repositories.memories import SCOPE_KIND_CWD, MemoryRepository, path_key
from codex_state.repositories.threads import (
    ThreadReads,
    ThreadRepository,
    coerce_tools,
    tool_params,
)
from codex_state.rollout import RolloutItem, dynamic_tools_from_items
from codex_state.rollout import apply_rollout_items as apply_items

logger = logging.getLogger(__name__)

METRIC_DB_INIT = "codex.db.init"
METRIC_DB_ERROR = "codex.db.error"

_RETRY_SECONDS = 30.0
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization failure, deadlock

T = TypeVar("T")


class Metrics(Protocol):
    """Anything with a `counter` method, e.g. an OpenTelemetry adapter."""

    def counter(self, name: str, value: int, tags: dict[str, str]) -> None: ...


class _Unit(AbstractContextManager[None]):
    """The in-memory serial lock, then driver error translation, around one unit of work.

    A class, not a generator context manager: it wraps every call, and the fast reads take
    only a few microseconds in all.
    """

    def __init__(
        self, serial: AbstractContextManager[object], translated: AbstractContextManager[None]
    ) -> None:
        self._serial = serial
        self._translated = translated

    def __enter__(self) -> None:
        self._serial.__enter__()
        self._translated.__enter__()

    def __exit__(self, *exc_info: Any) -> None:
        try:
            self._translated.__exit__(*exc_info)
        finally:
            self._serial.__exit__(*exc_info)


class StateRuntime:
    """Handle on one state database. Safe to share between threads; close it when done."""

    def __init__(
        self,
        engine: Engine,
        default_provider: str,
        *,
        codex_home: Path | None = None,
        metrics: Metrics | None = None,
        clock: Clock | None = None,
    ) -> None:
        """Wrap an engine whose schema is already at head; prefer `init` or `from_url`."""
        self._engine = engine
        self._default_provider = default_provider
        self._codex_home = codex_home
        self._metrics = metrics
        self._sqlite = engine.dialect.name == "sqlite"
        if clock is None:
            clock = SystemClock() if self._sqlite else DatabaseClock()
        self._clock = clock
        self._reads = sessionmaker(engine, expire_on_commit=False, autoflush=False)
        self._writes = sessionmaker(
            engine.execution_options(**{WRITE_OPTION: True}),
            expire_on_commit=False,
            autoflush=False,
        )
        # An in-memory SQLite database is one shared connection: units of work take turns.
        self._serial: AbstractContextManager[object] = (
            threading.RLock() if is_sqlite_memory(engine.url) else nullcontext()
        )
        self._closed = False

    # ----------------------------------------------------------------------------- lifecycle

    @classmethod
    def init(
        cls,
        codex_home: str | Path,
        default_provider: str,
        *,
        metrics: Metrics | None = None,
        clock: Clock | None = None,
    ) -> Self:
        """Open (creating and migrating) `<codex_home>/state_4.sqlite`.

        The directory is created if needed and legacy state files in it are removed first.
        """
        home = Path(codex_home).expanduser()
        path = state_db_path(home)
        try:
            if home.exists() and not home.is_dir():
                raise NotADirectoryError(f"cannot use codex home {home}: it is not a directory")
            home.mkdir(parents=True, exist_ok=True)
            remove_legacy_state_files(home)
            existed = path.exists()
        except OSError as err:
            _count(metrics, METRIC_DB_INIT, {"status": "open_error"})
            raise StateDbOpenError(f"cannot use codex home {home}: {err}") from err
        url = URL.create("sqlite", database=str(path))
        runtime = cls._open(url, str(path), default_provider, home, metrics, clock)
        if not existed:
            _count(metrics, METRIC_DB_INIT, {"status": "created"})
        return runtime

    @classmethod
    def from_url(
        cls,
        url: str | URL,
        default_provider: str,
        *,
        metrics: Metrics | None = None,
        clock: Clock | None = None,
    ) -> Self:
        """Open any SQLAlchemy URL (`sqlite://`, `sqlite:///path`, `postgresql+psycopg://...`)."""
        try:
            parsed = parse_url(url)
        except StateDbOpenError:
            _count(metrics, METRIC_DB_INIT, {"status": "open_error"})
            raise
        shown = parsed.render_as_string(hide_password=True)
        runtime = cls._open(parsed, shown, default_provider, None, metrics, clock)
        if runtime._created:
            _count(metrics, METRIC_DB_INIT, {"status": "created"})
        return runtime

    @classmethod
    def _open(
        cls,
        url: URL,
        shown: str,
        default_provider: str,
        codex_home: Path | None,
        metrics: Metrics | None,
        clock: Clock | None,
    ) -> Self:
        engine: Engine | None = None
        try:
            engine = make_engine(url)
            created = ensure_schema(engine)
        except StateError:
            _count(metrics, METRIC_DB_INIT, {"status": "open_error"})
            if engine is not None:
                engine.dispose()
            raise
        except (SQLAlchemyError, OSError) as err:
            _count(metrics, METRIC_DB_INIT, {"status": "open_error"})
            if engine is not None:
                engine.dispose()
            reason = _first_line(getattr(err, "orig", None) or err)
            raise StateDbOpenError(f"cannot open state database {shown}: {reason}") from err
        _count(metrics, METRIC_DB_INIT, {"status": "opened"})
        runtime = cls(
            engine, default_provider, codex_home=codex_home, metrics=metrics, clock=clock
        )
        runtime._created = created
        return runtime

    _created = False

    def close(self) -> None:
        """Release every pooled connection. Further calls raise `StateError`."""
        self._closed = True
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def codex_home(self) -> Path | None:
        """The codex home given to `init` (None for `from_url`)."""
        return self._codex_home

    @property
    def default_provider(self) -> str:
        return self._default_provider

    @property
    def engine(self) -> Engine:
        """The underlying engine, for tools and tests that need raw SQL."""
        return self._engine

    @property
    def metrics(self) -> Metrics | None:
        return self._metrics

    # -------------------------------------------------------------------------- unit of work

    def _read(self, action: str, work: Callable[[Session], T]) -> T:
        """Run `work` in a read transaction (deferred on SQLite)."""
        with self._unit(action), self._reads() as session, session.begin():
            return work(session)

    def _write(self, action: str, work: Callable[[Session], T]) -> T:
        """Run `work` in a write transaction, retrying it whole if the database was busy."""

        def attempt() -> T:
            with self._unit(action), self._writes() as session, session.begin():
                return work(session)

        return _retrying(attempt)

    def _fast_write(self, action: str, run: Callable[[DBAPIConnection, Dialect], T]) -> T:
        """`_write` on a pooled DBAPI connection, without a Session (see `fastread`).

        The same transaction: on SQLite `BEGIN IMMEDIATE` takes the write lock first (the
        engine turns pysqlite's implicit BEGIN off, so the transaction is ours to open); on
        PostgreSQL the driver opens a READ COMMITTED transaction at the first statement. It
        commits when `run` returns, rolls back when anything raises, and is retried whole
        when the database was busy.
        """
        dialect = self._engine.dialect
        errors = (dialect.loaded_dbapi.Error,)

        def attempt() -> T:
            with self._unit(action, errors):
                connection = self._engine.raw_connection()
                try:
                    if self._sqlite:
                        _execute(connection, "BEGIN IMMEDIATE")
                    result = run(connection, dialect)
                    connection.commit()
                    return result
                except BaseException:
                    _roll_back(connection)
                    raise
                finally:
                    connection.close()

        return _retrying(attempt)

    def _fast_read(self, action: str, run: Callable[[DBAPIConnection, Dialect], T]) -> T:
        """Run one SELECT on a pooled DBAPI connection, without a Session (see `fastread`).

        One statement needs no explicit transaction to see a consistent snapshot: on SQLite
        it runs in autocommit (the engine turns pysqlite's implicit BEGIN off), on PostgreSQL
        the pool's reset-on-return rolls back the transaction the driver opened.
        """
        dialect = self._engine.dialect
        with self._unit(action, (dialect.loaded_dbapi.Error,)):
            connection = self._engine.raw_connection()
            try:
                return run(connection, dialect)
            finally:
                connection.close()

    def _unit(
        self, action: str, dbapi_errors: tuple[type[Exception], ...] = ()
    ) -> AbstractContextManager[None]:
        if self._closed:
            raise StateError("the StateRuntime is closed")
        return _Unit(self._serial, translate_db_errors(action, dbapi_errors))

    def _now(self, session: Session) -> int:
        """The clock's now for a Session unit (fast units pass their connection to the clock)."""
        return self._clock.now(session.connection().connection)

    # ------------------------------------------------------------------------ backfill state

    def get_backfill_state(self) -> BackfillState:
        """Progress of the rollout backfill (pending when never started)."""
        return self._read("get_backfill_state", lambda s: BackfillRepository(s).get())

    def mark_backfill_running(self) -> None:
        self._write(
            "mark_backfill_running",
            lambda s: BackfillRepository(s).mark_running(self._now(s)),
        )

    def checkpoint_backfill(self, watermark: str) -> None:
        """Record that every rollout up to `watermark` (a codex-home-relative path) is indexed."""
        self._write(
            "checkpoint_backfill",
            lambda s: BackfillRepository(s).checkpoint(watermark, self._now(s)),
        )

    def mark_backfill_complete(self, last_watermark: str | None = None) -> None:
        self._write(
            "mark_backfill_complete",
            lambda s: BackfillRepository(s).mark_complete(last_watermark, self._now(s)),
        )

    # ------------------------------------------------------------------------------- threads

    def get_thread(self, thread_id: uuid.UUID | str) -> ThreadMetadata | None:
        key = parse_thread_id(thread_id)
        return self._fast_read("get_thread", lambda c, d: ThreadReads(c, d).get(key))

    def upsert_thread(self, metadata: ThreadMetadata) -> None:
        """Insert the thread, or replace every column of the row with the same id."""
        if not isinstance(metadata, ThreadMetadata):
            raise InvalidInputError(f"expected ThreadMetadata, got {type(metadata).__name__}")
        self._write("upsert_thread", lambda s: ThreadRepository(s).upsert(metadata))

    def list_threads(
        self,
        page_size: int,
        anchor: Anchor | None = None,
        sort_key: SortKey = SortKey.CREATED_AT,
        allowed_sources: Sequence[str] = (),
        model_providers: Sequence[str] | None = None,
        archived_only: bool = False,
    ) -> ThreadsPage:
        """One keyset page, newest first; pass the page's `next_anchor` to get the next one.

        Threads without a first user message are hidden, as in Codex.
        """
        size = check_count("page_size", page_size)
        after, key = check_anchor(anchor), check_sort_key(sort_key)
        sources = check_strings("allowed_sources", allowed_sources)
        providers = check_strings("model_providers", model_providers)
        return self._fast_read(
            "list_threads",
            lambda c, d: ThreadReads(c, d).list_page(
                size, after, key, sources, providers, bool(archived_only)
            ),
        )

    def list_thread_ids(
        self,
        limit: int,
        anchor: Anchor | None = None,
        sort_key: SortKey = SortKey.CREATED_AT,
        allowed_sources: Sequence[str] = (),
        model_providers: Sequence[str] | None = None,
        archived_only: bool = False,
    ) -> list[uuid.UUID]:
        """Ids of up to `limit` threads, with the filters and order of `list_threads`."""
        size = check_count("limit", limit)
        after, key = check_anchor(anchor), check_sort_key(sort_key)
        sources = check_strings("allowed_sources", allowed_sources)
        providers = check_strings("model_providers", model_providers)
        rows = self._fast_read(
            "list_thread_ids",
            lambda c, d: ThreadReads(c, d).page(
                limit=size,
                anchor=after,
                sort_key=key,
                sources=sources,
                providers=providers,
                archived_only=bool(archived_only),
                ids_only=True,
            ),
        )
        return [uuid.UUID(row[0]) for row in rows]

    def find_rollout_path_by_id(
        self, thread_id: uuid.UUID | str, archived_only: bool | None = None
    ) -> Path | None:
        """The thread's rollout path; `archived_only` True/False also requires that state."""
        key = parse_thread_id(thread_id)
        if archived_only is not None and not isinstance(archived_only, bool):
            raise InvalidInputError(f"archived_only must be None or a bool, got {archived_only!r}")
        return self._read(
            "find_rollout_path_by_id",
            lambda s: ThreadRepository(s).find_rollout_path(key, archived_only),
        )

    def mark_archived(
        self,
        thread_id: uuid.UUID | str,
        rollout_path: str | os.PathLike[str],
        archived_at: datetime,
    ) -> None:
        """Record that the thread's rollout moved to `rollout_path` and was archived.

        `updated_at` becomes the file's mtime when the file exists. Unknown threads are ignored.
        """
        if not isinstance(archived_at, datetime):
            raise InvalidInputError(f"archived_at must be a datetime, got {archived_at!r}")
        self._set_archived("mark_archived", thread_id, rollout_path, utc_whole_seconds(archived_at))

    def mark_unarchived(
        self, thread_id: uuid.UUID | str, rollout_path: str | os.PathLike[str]
    ) -> None:
        """Record that the thread's rollout moved back to `rollout_path`; see `mark_archived`."""
        self._set_archived("mark_unarchived", thread_id, rollout_path, None)

    def _set_archived(
        self,
        action: str,
        thread_id: uuid.UUID | str,
        rollout_path: str | os.PathLike[str],
        archived_at: datetime | None,
    ) -> None:
        key = parse_thread_id(thread_id)
        path = as_path("rollout_path", rollout_path)
        update: dict[str, object] = {"archived_at": archived_at, "rollout_path": path}
        mtime = file_mtime(path)
        if mtime is not None:
            update["updated_at"] = mtime

        def work(session: Session) -> None:
            repo = ThreadRepository(session)
            metadata = repo.get(key)
            if metadata is not None:
                repo.upsert(metadata.model_copy(update=update))

        self._write(action, work)

    def get_dynamic_tools(self, thread_id: uuid.UUID | str) -> list[DynamicToolSpec] | None:
        """The tools declared at thread start, in order; None when none were stored."""
        key = parse_thread_id(thread_id)
        return self._read("get_dynamic_tools", lambda s: ThreadRepository(s).get_dynamic_tools(key))

    def persist_dynamic_tools(
        self,
        thread_id: uuid.UUID | str,
        tools: Sequence[DynamicToolSpec | Mapping[str, Any]] | None,
    ) -> None:
        """Store the thread's dynamic tools unless already stored: the first write wins.

        Raises:
            ThreadNotFoundError: the thread has no row (tools belong to a thread).
        """
        key = parse_thread_id(thread_id)
        if tools is None:
            return
        rows = tool_params(key, coerce_tools(tools))
        if not rows:
            return

        def work(session: Session) -> None:
            repo = ThreadRepository(session)
            if not repo.exists(key):
                raise ThreadNotFoundError(key)
            repo.insert_dynamic_tools_many(rows)

        self._write("persist_dynamic_tools", work)

    def apply_rollout_items(
        self,
        builder: ThreadMetadataBuilder,
        items: Sequence[RolloutItem],
        metrics: Metrics | None = None,
    ) -> None:
        """Fold newly written rollout items into the thread's row (Codex's incremental writer).

        The row is loaded, or built from `builder`; it takes the builder's rollout path, the
        items, and the file's mtime as `updated_at`. The row and then (for the foreign key) the
        first session_meta's dynamic tools are written in one transaction. A failure counts
        `codex.db.error` with the failing `stage` on `metrics` (default: the runtime's).
        """
        if not isinstance(builder, ThreadMetadataBuilder):
            raise InvalidInputError(f"expected ThreadMetadataBuilder, got {type(builder).__name__}")
        items = list(items)
        if not items:
            return
        sink = metrics if metrics is not None else self._metrics
        update: dict[str, object] = {"rollout_path": builder.rollout_path}
        tool_rows = tool_params(builder.id, dynamic_tools_from_items(items).tools or [])
        mtime = file_mtime(builder.rollout_path)
        stage = "apply_rollout_items"

        def work(session: Session) -> None:
            nonlocal stage
            stage = "apply_rollout_items"
            repo = ThreadRepository(session)
            current = repo.get(builder.id) or builder.build(self._default_provider)
            metadata = apply_items(
                current.model_copy(update=update), items, self._default_provider
            )
            if mtime is not None:
                metadata = metadata.model_copy(update={"updated_at": mtime})
            repo.upsert(metadata)
            stage = "persist_dynamic_tools"
            repo.insert_dynamic_tools_many(tool_rows)

        try:
            self._write("apply_rollout_items", work)
        except StateError:
            _count(sink, METRIC_DB_ERROR, {"stage": stage})
            raise

    def try_claim_backfill(
        self, owner: str, lease_seconds: int, *, reindex: bool = False
    ) -> BackfillState | None:
        """Take the backfill lease for `owner`; the state to resume from, or None if not taken.

        Not taken means a live owner holds the lease, or (without `reindex`) it is complete.
        """
        check_count("lease_seconds", lease_seconds)

        def work(session: Session) -> BackfillState | None:
            repo = BackfillRepository(session)
            if not repo.try_claim(owner, lease_seconds, self._now(session), reindex=reindex):
                return None
            return repo.get()

        return self._write("try_claim_backfill", work)

    def write_backfill_batch(
        self,
        owner: str,
        threads: Sequence[ThreadMetadata],
        tools: Sequence[tuple[uuid.UUID, Sequence[DynamicToolSpec]]],
        watermark: str | None,
    ) -> bool:
        """Upsert indexed threads, add their tools and checkpoint, in one transaction.

        Nothing is written (False) when `owner` no longer holds the backfill lease.
        """
        tool_rows = [row for thread_id, specs in tools for row in tool_params(thread_id, specs)]

        def work(session: Session) -> bool:
            if not BackfillRepository(session).checkpoint_owned(
                owner, watermark, self._now(session)
            ):
                return False
            repo = ThreadRepository(session)
            repo.upsert_many(threads)
            repo.insert_dynamic_tools_many(tool_rows)
            return True

        return self._write("write_backfill_batch", work)

    def complete_backfill(self, owner: str, watermark: str | None) -> bool:
        """Mark the backfill complete and free the lease, if `owner` still holds it."""
        return self._write(
            "complete_backfill",
            lambda s: BackfillRepository(s).complete_owned(owner, watermark, self._now(s)),
        )

    def release_backfill(self, owner: str) -> bool:
        """Give up the lease early; the next backfill resumes from the last checkpoint."""
        return self._write(
            "release_backfill",
            lambda s: BackfillRepository(s).release(owner, self._now(s)),
        )

    # ------------------------------------------------------------------- memories and jobs

    def get_thread_memory(self, thread_id: uuid.UUID | str) -> ThreadMemory | None:
        """The thread's most recently updated memory across all scopes, if any."""
        key = str(parse_thread_id(thread_id))
        return self._fast_read(
            "get_thread_memory", lambda c, d: MemoryRepository(c, d).get_newest(key)
        )

    def upsert_thread_memory(
        self, thread_id: uuid.UUID | str, raw_memory: str, memory_summary: str
    ) -> ThreadMemory:
        """Write the thread's memory in the `cwd` scope keyed by the thread's stored cwd.

        Raises:
            ThreadNotFoundError: no thread has this id.
        """
        key = str(parse_thread_id(thread_id))
        check_texts(raw_memory=raw_memory, memory_summary=memory_summary)
        return self._fast_write(
            "upsert_thread_memory",
            lambda c, d: MemoryRepository(c, d).upsert_cwd_scope(
                key, raw_memory, memory_summary, self._clock.now(c)
            ),
        )

    def upsert_thread_memory_for_scope(
        self,
        thread_id: uuid.UUID | str,
        scope_kind: str,
        scope_key: str,
        raw_memory: str,
        memory_summary: str,
    ) -> ThreadMemory:
        """Insert or replace the thread's memory in one scope; `updated_at` always advances.

        Raises:
            ThreadNotFoundError: no thread has this id.
        """
        key = str(parse_thread_id(thread_id))
        check_texts(
            scope_kind=scope_kind,
            scope_key=scope_key,
            raw_memory=raw_memory,
            memory_summary=memory_summary,
        )
        return self._fast_write(
            "upsert_thread_memory_for_scope",
            lambda c, d: MemoryRepository(c, d).upsert(
                key, scope_kind, scope_key, raw_memory, memory_summary, self._clock.now(c)
            ),
        )

    def upsert_thread_memory_for_scope_if_phase1_owner(
        self,
        thread_id: uuid.UUID | str,
        scope_kind: str,
        scope_key: str,
        ownership_token: str,
        raw_memory: str,
        memory_summary: str,
    ) -> ThreadMemory | None:
        """Like `upsert_thread_memory_for_scope`, but only while `ownership_token` owns the
        running phase-1 job of this (thread, scope); returns None when it does not.

        Raises:
            ThreadNotFoundError: no thread has this id.
        """
        key = str(parse_thread_id(thread_id))
        check_texts(
            scope_kind=scope_kind,
            scope_key=scope_key,
            ownership_token=ownership_token,
            raw_memory=raw_memory,
            memory_summary=memory_summary,
        )
        return self._fast_write(
            "upsert_thread_memory_for_scope_if_phase1_owner",
            lambda c, d: MemoryRepository(c, d).upsert_if_owner(
                key,
                scope_kind,
                scope_key,
                ownership_token,
                raw_memory,
                memory_summary,
                self._clock.now(c),
            ),
        )

    def get_last_n_thread_memories_for_cwd(
        self, cwd: str | os.PathLike[str], n: int
    ) -> list[ThreadMemory]:
        """The `n` newest valid memories of the `cwd` scope whose key is exactly `cwd`."""
        return self.get_last_n_thread_memories_for_scope(SCOPE_KIND_CWD, path_key("cwd", cwd), n)

    def get_last_n_thread_memories_for_scope(
        self, scope_kind: str, scope_key: str, n: int
    ) -> list[ThreadMemory]:
        """The `n` newest valid (not invalidated) memories of a scope, newest first."""
        check_texts(scope_kind=scope_kind, scope_key=scope_key)
        limit = check_count("n", n)
        return self._fast_read(
            "get_last_n_thread_memories_for_scope",
            lambda c, d: MemoryRepository(c, d).last_n_for_scope(scope_kind, scope_key, limit),
        )

    def try_claim_phase1_job(
        self,
        thread_id: uuid.UUID | str,
        scope_kind: str,
        scope_key: str,
        owner_session_id: uuid.UUID | str,
        source_updated_at: int,
        lease_seconds: int,
    ) -> Phase1JobClaimOutcome:
        """Claim the phase-1 job of (thread, scope) for `source_updated_at` (epoch seconds).

        Claimed (with a fresh ownership token) when there is no job, the running lease is older
        than `lease_seconds`, or the job succeeded on older input. Losing a race to another
        claimer is `skipped_running`, never an error.

        Raises:
            ThreadNotFoundError: no thread has this id.
            InvalidInputError: `lease_seconds` is negative (the seed clamped it to 0).
        """
        key = str(parse_thread_id(thread_id))
        owner = owner_key(owner_session_id)
        check_texts(scope_kind=scope_kind, scope_key=scope_key)
        check_epoch("source_updated_at", source_updated_at)
        lease = check_count("lease_seconds", lease_seconds)
        return self._fast_write(
            "try_claim_phase1_job",
            lambda c, d: Phase1JobRepository(c, d).try_claim(
                key, scope_kind, scope_key, owner, source_updated_at, lease, self._clock.now(c)
            ),
        )

    def mark_phase1_job_succeeded(
        self,
        thread_id: uuid.UUID | str,
        scope_kind: str,
        scope_key: str,
        ownership_token: str,
        raw_memory_path: str,
        summary_hash: str,
    ) -> bool:
        """Finish the job as succeeded; False when `ownership_token` no longer owns it."""
        key = str(parse_thread_id(thread_id))
        check_texts(
            scope_kind=scope_kind,
            scope_key=scope_key,
            ownership_token=ownership_token,
            raw_memory_path=raw_memory_path,
            summary_hash=summary_hash,
        )
        return self._fast_write(
            "mark_phase1_job_succeeded",
            lambda c, d: Phase1JobRepository(c, d).mark_succeeded(
                key,
                scope_kind,
                scope_key,
                ownership_token,
                raw_memory_path,
                summary_hash,
                self._clock.now(c),
            ),
        )

    def mark_phase1_job_failed(
        self,
        thread_id: uuid.UUID | str,
        scope_kind: str,
        scope_key: str,
        ownership_token: str,
        failure_reason: str,
    ) -> bool:
        """Finish the job as failed (terminal); False when `ownership_token` no longer owns it."""
        key = str(parse_thread_id(thread_id))
        check_texts(
            scope_kind=scope_kind,
            scope_key=scope_key,
            ownership_token=ownership_token,
            failure_reason=failure_reason,
        )
        return self._fast_write(
            "mark_phase1_job_failed",
            lambda c, d: Phase1JobRepository(c, d).mark_failed(
                key, scope_kind, scope_key, ownership_token, failure_reason, self._clock.now(c)
            ),
        )

    def renew_phase1_job_lease(
        self,
        thread_id: uuid.UUID | str,
        scope_kind: str,
        scope_key: str,
        ownership_token: str,
    ) -> bool:
        """Restart the job's lease from now; False when `ownership_token` no longer owns it."""
        key = str(parse_thread_id(thread_id))
        check_texts(scope_kind=scope_kind, scope_key=scope_key, ownership_token=ownership_token)
        return self._fast_write(
            "renew_phase1_job_lease",
            lambda c, d: Phase1JobRepository(c, d).renew_lease(
                key, scope_kind, scope_key, ownership_token, self._clock.now(c)
            ),
        )

    def mark_memory_scope_dirty(self, scope_kind: str, scope_key: str, dirty: bool) -> None:
        """Flag a scope as needing (or no longer needing) phase-2 consolidation."""
        check_texts(scope_kind=scope_kind, scope_key=scope_key)
        if not isinstance(dirty, bool):
            raise InvalidInputError(f"dirty must be a bool, got {dirty!r}")
        self._fast_write(
            "mark_memory_scope_dirty",
            lambda c, d: ConsolidationRepository(c, d).mark_scope_dirty(
                scope_kind, scope_key, dirty, self._clock.now(c)
            ),
        )

    def try_acquire_memory_consolidation_lock(
        self, cwd: str | os.PathLike[str], working_thread_id: uuid.UUID | str, lease_seconds: int
    ) -> bool:
        """Take or renew the consolidation lock of `cwd` (a memory root).

        True when it was free, already held by `working_thread_id`, or held by someone whose
        last acquire is at least `lease_seconds` old.

        Raises:
            InvalidInputError: `lease_seconds` is negative (the seed clamped it to 0).
        """
        path, owner = path_key("cwd", cwd), owner_key(working_thread_id)
        lease = check_count("lease_seconds", lease_seconds)
        return self._fast_write(
            "try_acquire_memory_consolidation_lock",
            lambda c, d: ConsolidationRepository(c, d).try_acquire_lock(
                path, owner, lease, self._clock.now(c)
            ),
        )

    def release_memory_consolidation_lock(
        self, cwd: str | os.PathLike[str], working_thread_id: uuid.UUID | str
    ) -> bool:
        """Release the lock of `cwd` if `working_thread_id` holds it; True when released."""
        path, owner = path_key("cwd", cwd), owner_key(working_thread_id)
        return self._fast_write(
            "release_memory_consolidation_lock",
            lambda c, d: ConsolidationRepository(c, d).release_lock(path, owner),
        )


    # ---------------------------------------------------------------------------------- logs

    def insert_log(self, entry: LogEntry) -> None:
        self.insert_logs((entry,))

    def insert_logs(self, entries: Iterable[LogEntry]) -> None:
        """Insert a batch of log entries in one transaction (one executemany)."""
        batch = list(entries)
        if batch:
            self._fast_write("insert_logs", lambda c, d: LogInserts(c, d).insert(batch))

    def insert_log_rows(self, rows: Sequence[LogValues]) -> None:
        """Insert rows in `codex_state.repositories.logs.INSERT_COLUMNS` order, unvalidated.

        The batching log handler's path: it builds the tuples itself, so validating each
        record again as a `LogEntry` would only cost time on the writer thread.
        """
        if rows:
            self._fast_write("insert_logs", lambda c, d: LogInserts(c, d).insert_rows(rows))

    def query_logs(self, query: LogQuery) -> list[LogRow]:
        """Rows matching every filter of `query`, ordered by id."""
        return self._fast_read("query_logs", lambda c, d: LogReads(c, d).query(query))

    def max_log_id(self, query: LogQuery | None = None) -> int:
        """The largest id matching `query`'s filters, 0 when none match."""
        return self._fast_read(
            "max_log_id", lambda c, d: LogReads(c, d).max_id(query or LogQuery())
        )

    def delete_logs_before(self, cutoff_ts: int, *, limit: int | None = None) -> int:
        """Delete rows older than `cutoff_ts` (epoch seconds); returns how many went.

        With `limit`, at most that many rows go in this one short transaction: call again
        until it returns less than `limit` to clear a large backlog without long locks.
        """
        check_limit(limit)
        return self._write(
            "delete_logs_before", lambda s: LogRepository(s).delete_before(cutoff_ts, limit)
        )

    def trim_logs(self, max_rows: int, *, limit: int = 5000) -> int:
        """Delete up to `limit` of the oldest rows beyond the newest `max_rows` rows."""
        if max_rows < 0:
            raise InvalidInputError(f"max_rows must be >= 0, got {max_rows}")
        check_limit(limit)
        return self._write("trim_logs", lambda s: LogRepository(s).trim_to(max_rows, limit))


def _first_line(err: BaseException) -> str:
    """The first line of a driver message: enough for a person, and one line for a CLI."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _count(metrics: Metrics | None, name: str, tags: dict[str, str]) -> None:
    if metrics is None:
        return
    try:
        metrics.counter(name, 1, tags)
    except Exception:  # a broken metrics sink must not break the database
        logger.exception("metrics counter %s failed", name)


def _retrying(attempt: Callable[[], T]) -> T:
    """`attempt()`, run again while the database was busy; a failed attempt rolled back."""
    deadline = time.monotonic() + _RETRY_SECONDS
    while True:
        try:
            return attempt()
        except StateError as err:
            if not (_is_retryable(err.__cause__) and time.monotonic() < deadline):
                raise
        time.sleep(0.01)


def _is_retryable(cause: BaseException | None) -> bool:
    # Session units see the driver error wrapped by SQLAlchemy, fast units see it bare.
    error = cause.orig if isinstance(cause, DBAPIError) else cause
    if isinstance(error, sqlite3.OperationalError):
        return "locked" in str(error).lower()
    return getattr(error, "sqlstate", None) in _RETRYABLE_SQLSTATES


def _execute(connection: DBAPIConnection, sql: str) -> None:
    cursor = connection.cursor()
    try:
        cursor.execute(sql)
    finally:
        cursor.close()


def _roll_back(connection: PoolProxiedConnection) -> None:
    """End the failed transaction; a connection that cannot even roll back is discarded.

    The error that made us roll back is the one worth raising, so a failed rollback (a broken
    connection) only invalidates the connection: the pool replaces it instead of reusing it.
    """
    try:
        connection.rollback()
    except Exception:
        connection.invalidate()
