"""The data methods of `StateRuntime` and `AsyncStateRuntime`, declared once.

Each entry names a repository method and whether it writes; the facade classes decide how to run
it (`StateRuntime`: one Session transaction, retried whole when the database was busy;
`AsyncStateRuntime`: the same, awaited). Declaring the list once means a method added to the
repositories and listed here appears on both facades with the repository's signature and
docstring, and mypy checks every call through either facade against that signature.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, Self, TypeVar, overload

from sqlalchemy.orm import Session

from codex_state.clock import Clock
from codex_state.metrics import Metrics
from codex_state.repositories.backfill import BackfillRepository
from codex_state.repositories.base import Repository
from codex_state.repositories.consolidation import ConsolidationRepository
from codex_state.repositories.jobs import Phase1JobRepository
from codex_state.repositories.logs import LogRepository
from codex_state.repositories.memories import MemoryRepository
from codex_state.repositories.phase2 import Phase2JobRepository
from codex_state.repositories.threads import ThreadRepository

if TYPE_CHECKING:
    from codex_state.aio import AsyncStateRuntime
    from codex_state.runtime import StateRuntime

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R", bound=Repository)
RepositoryT = TypeVar("RepositoryT", bound=Repository)


class Operation(Generic[R, P, T]):
    """A repository method exposed on the facades (a non-data descriptor).

    On first access from a facade instance the bound callable is stored in the instance's
    `__dict__`, so later calls find it there without going through the descriptor again.
    """

    def __init__(self, method: Callable[Concatenate[R, P], T], *, write: bool) -> None:
        self.method = method
        self.write = write
        # "ThreadRepository.get_thread" -> the ThreadRepository class of the method's module.
        owner_name = method.__qualname__.rpartition(".")[0]
        self.repository: type[R] = getattr(sys.modules[method.__module__], owner_name)
        self.name = method.__name__
        self.__doc__ = method.__doc__

    def __set_name__(self, owner: type[Any], name: str) -> None:
        if name != self.name:
            raise TypeError(f"{owner.__name__}.{name} must be named {self.name}")

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(
        self, obj: AsyncStateRuntime, owner: type[Any]
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...
    @overload
    def __get__(self, obj: StateRuntime, owner: type[Any]) -> Callable[P, T]: ...
    def __get__(self, obj: Any, owner: type[Any]) -> Any:
        if obj is None:
            return self
        bound = obj._bind(self)
        bound.__name__ = self.name
        bound.__qualname__ = f"{type(obj).__name__}.{self.name}"
        bound.__doc__ = self.__doc__
        obj.__dict__[self.name] = bound
        return bound


def _read(method: Callable[Concatenate[R, P], T]) -> Operation[R, P, T]:
    return Operation(method, write=False)


def _write(method: Callable[Concatenate[R, P], T]) -> Operation[R, P, T]:
    return Operation(method, write=True)


class Operations:
    """Every data method of the facades; subclasses provide `_bind(operation)`."""

    # Backfill state
    get_backfill_state = _read(BackfillRepository.get_backfill_state)
    mark_backfill_running = _write(BackfillRepository.mark_backfill_running)
    checkpoint_backfill = _write(BackfillRepository.checkpoint_backfill)
    mark_backfill_complete = _write(BackfillRepository.mark_backfill_complete)

    # Threads and dynamic tools
    get_thread = _read(ThreadRepository.get_thread)
    upsert_thread = _write(ThreadRepository.upsert_thread)
    list_threads = _read(ThreadRepository.list_threads)
    list_thread_ids = _read(ThreadRepository.list_thread_ids)
    find_rollout_path_by_id = _read(ThreadRepository.find_rollout_path_by_id)
    mark_archived = _write(ThreadRepository.mark_archived)
    mark_unarchived = _write(ThreadRepository.mark_unarchived)
    get_dynamic_tools = _read(ThreadRepository.get_dynamic_tools)
    persist_dynamic_tools = _write(ThreadRepository.persist_dynamic_tools)
    apply_rollout_items = _write(ThreadRepository.apply_rollout_items)

    # Memories
    get_thread_memory = _read(MemoryRepository.get_thread_memory)
    upsert_thread_memory = _write(MemoryRepository.upsert_thread_memory)
    upsert_thread_memory_for_scope = _write(MemoryRepository.upsert_thread_memory_for_scope)
    upsert_thread_memory_for_scope_if_phase1_owner = _write(
        MemoryRepository.upsert_thread_memory_for_scope_if_phase1_owner
    )
    get_last_n_thread_memories_for_cwd = _read(MemoryRepository.get_last_n_thread_memories_for_cwd)
    get_last_n_thread_memories_for_scope = _read(
        MemoryRepository.get_last_n_thread_memories_for_scope
    )

    # Phase-1 jobs
    try_claim_phase1_job = _write(Phase1JobRepository.try_claim_phase1_job)
    mark_phase1_job_succeeded = _write(Phase1JobRepository.mark_phase1_job_succeeded)
    mark_phase1_job_failed = _write(Phase1JobRepository.mark_phase1_job_failed)
    renew_phase1_job_lease = _write(Phase1JobRepository.renew_phase1_job_lease)
    list_phase1_candidates = _read(Phase1JobRepository.list_phase1_candidates)
    try_claim_phase1_jobs = _write(Phase1JobRepository.try_claim_phase1_jobs)

    # Consolidation: scope flags and lock
    mark_memory_scope_dirty = _write(ConsolidationRepository.mark_memory_scope_dirty)
    try_acquire_memory_consolidation_lock = _write(
        ConsolidationRepository.try_acquire_memory_consolidation_lock
    )
    release_memory_consolidation_lock = _write(
        ConsolidationRepository.release_memory_consolidation_lock
    )

    # Phase-2 jobs
    list_dirty_memory_scopes = _read(Phase2JobRepository.list_dirty_memory_scopes)
    try_claim_phase2_job = _write(Phase2JobRepository.try_claim_phase2_job)
    set_phase2_job_agent_thread_id = _write(Phase2JobRepository.set_phase2_job_agent_thread_id)
    heartbeat_phase2_job = _write(Phase2JobRepository.heartbeat_phase2_job)
    mark_phase2_job_succeeded = _write(Phase2JobRepository.mark_phase2_job_succeeded)
    mark_phase2_job_failed = _write(Phase2JobRepository.mark_phase2_job_failed)

    # Logs
    insert_log = _write(LogRepository.insert_log)
    insert_logs = _write(LogRepository.insert_logs)
    insert_log_rows = _write(LogRepository.insert_log_rows)
    query_logs = _read(LogRepository.query_logs)
    max_log_id = _read(LogRepository.max_log_id)
    delete_logs_before = _write(LogRepository.delete_logs_before)
    trim_logs = _write(LogRepository.trim_logs)

    def _bind(self, operation: Operation[Any, Any, Any]) -> Callable[..., Any]:
        raise NotImplementedError


class Facade(Operations):
    """What `StateRuntime` and `AsyncStateRuntime` both hold besides their engine."""

    _codex_home: Path | None
    _default_provider: str
    _metrics: Metrics | None
    _clock: Clock | None
    _closed: bool

    def repository(self, cls: type[RepositoryT], session: Session) -> RepositoryT:
        """`cls(session)` with this runtime's clock (and provider and metrics for threads).

        `session` is a synchronous `Session` (for the async runtime, the one `run_sync` hands
        its function).
        """
        if cls is ThreadRepository:
            return cls(  # type: ignore[call-arg]
                session,
                clock=self._clock,
                default_provider=self._default_provider,
                metrics=self._metrics,
            )
        return cls(session, clock=self._clock)

    @property
    def closed(self) -> bool:
        """True once the runtime was closed: every call then raises `StateError`."""
        return self._closed

    @property
    def codex_home(self) -> Path | None:
        """The codex home given to `init` (None for `from_url`)."""
        return self._codex_home

    @property
    def default_provider(self) -> str:
        """The model provider recorded for rollouts that name none."""
        return self._default_provider

    @property
    def metrics(self) -> Metrics | None:
        return self._metrics


def operations() -> dict[str, Operation[Any, Any, Any]]:
    """Every declared operation by name (for tests and tools that walk the surface)."""
    return {name: value for name, value in vars(Operations).items() if isinstance(value, Operation)}
