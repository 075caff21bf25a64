"""`StateRuntime`: the composition root (engine, sessions, clock, metrics) and the public facade.

Every public method is one unit of work: a transaction that commits when the work returns and
rolls back when it raises, around calls to a repository. Writes begin with the write lock held
(see `engine.py`); a write that still meets a locked database is retried from the start, which
is safe because the rolled-back attempt left nothing behind.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self, TypeVar

from sqlalchemy import URL, Engine
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from codex_state.clock import Clock, DatabaseClock, SystemClock
from codex_state.engine import WRITE_OPTION, is_sqlite_memory, make_engine, parse_url
from codex_state.errors import StateDbOpenError, StateError, translate_db_errors
from codex_state.migrations import ensure_schema
from codex_state.models import BackfillState
from codex_state.paths import remove_legacy_state_files, state_db_path
from codex_state.repositories.backfill import BackfillRepository

logger = logging.getLogger(__name__)

METRIC_DB_INIT = "codex.db.init"
METRIC_DB_ERROR = "codex.db.error"

_RETRY_SECONDS = 30.0
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization failure, deadlock

T = TypeVar("T")


class Metrics(Protocol):
    """Anything with a `counter` method, e.g. an OpenTelemetry adapter."""

    def counter(self, name: str, value: int, tags: dict[str, str]) -> None: ...


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
        try:
            home.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            _count(metrics, METRIC_DB_INIT, {"status": "open_error"})
            reason = "it is not a directory" if home.exists() else err.strerror or str(err)
            raise StateDbOpenError(f"cannot use codex home {home}: {reason}") from err
        remove_legacy_state_files(home)
        path = state_db_path(home)
        existed = path.exists()
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
            raise StateDbOpenError(f"cannot open state database {shown}: {err}") from err
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
        deadline = time.monotonic() + _RETRY_SECONDS
        while True:
            try:
                with self._unit(action), self._writes() as session, session.begin():
                    return work(session)
            except StateError as err:
                if not (_is_retryable(err.__cause__) and time.monotonic() < deadline):
                    raise
            time.sleep(0.01)

    @contextmanager
    def _unit(self, action: str) -> Iterator[None]:
        if self._closed:
            raise StateError("the StateRuntime is closed")
        with self._serial, translate_db_errors(action):
            yield

    def _now(self, session: Session) -> int:
        return self._clock.now(session)

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

    # ------------------------------------------------------------------- memories and jobs

    # ---------------------------------------------------------------------------------- logs


def _count(metrics: Metrics | None, name: str, tags: dict[str, str]) -> None:
    if metrics is None:
        return
    try:
        metrics.counter(name, 1, tags)
    except Exception:  # a broken metrics sink must not break the database
        logger.exception("metrics counter %s failed", name)


def _is_retryable(cause: BaseException | None) -> bool:
    if isinstance(cause, OperationalError) and "locked" in str(cause.orig).lower():
        return True
    if isinstance(cause, DBAPIError):
        return getattr(cause.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES
    return False
