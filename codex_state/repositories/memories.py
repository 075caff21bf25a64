"""Thread memories: what phase 1 extracted from a thread, one row per (thread, scope).

Writes are single upserts that return the stored row, so a write costs one statement. The
owner-guarded upsert carries its guard (a running phase-1 job holding the caller's token) inside
that statement: there is no window between checking ownership and writing.

Every statement is `Prepared` (compiled once per backend): a phase-1 worker's writes are a few
microseconds of SQLite work each, which SQLAlchemy's per-execution compilation would multiply.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Exists, Text, and_, bindparam, case, select
from sqlalchemy.orm import Session

from codex_state.arguments import as_path, check_count, check_texts
from codex_state.clock import from_epoch_seconds
from codex_state.dialect import dialect_insert
from codex_state.errors import ThreadNotFoundError
from codex_state.models import ThreadMemory, parse_thread_id, path_text
from codex_state.orm import Int64, memory_phase1_jobs, thread_memory, threads
from codex_state.repositories.base import Repository, translated
from codex_state.statements import Prepared

SCOPE_KIND_CWD = "cwd"
"""The scope the legacy helpers use; its key is the thread's cwd as stored."""

JOB_RUNNING = "running"

# Bind names differ from column names: SQLAlchemy reserves column names for VALUES/SET binds.
_THREAD_ID = "p_thread_id"
_SCOPE_KIND = "p_scope_kind"
_SCOPE_KEY = "p_scope_key"

# FOR KEY SHARE (PostgreSQL; SQLite renders nothing and already holds the write lock) pins the
# thread until commit, so a concurrent thread delete waits instead of failing our foreign key.
THREAD_CWD_LOCKED = (
    select(threads.c.cwd)
    .where(threads.c.id == bindparam(_THREAD_ID))
    .with_for_update(read=True, key_share=True)
)

_select_thread_cwd = Prepared(THREAD_CWD_LOCKED)

_select_newest = Prepared(
    select(thread_memory)
    .where(thread_memory.c.thread_id == bindparam(_THREAD_ID))
    .order_by(
        thread_memory.c.updated_at.desc(),
        thread_memory.c.scope_kind.desc(),
        thread_memory.c.scope_key.desc(),
    )
    .limit(1)
)

_select_last_n = Prepared(
    select(thread_memory)
    .where(
        thread_memory.c.scope_kind == bindparam(_SCOPE_KIND),
        thread_memory.c.scope_key == bindparam(_SCOPE_KEY),
        thread_memory.c.invalidated_at.is_(None),
    )
    .order_by(thread_memory.c.updated_at.desc(), thread_memory.c.thread_id.desc())
    .limit(bindparam("p_limit"))
)


def job_key_clause() -> ColumnElement[bool]:
    """`memory_phase1_jobs` primary key = the `p_thread_id/p_scope_kind/p_scope_key` binds."""
    return and_(
        memory_phase1_jobs.c.thread_id == bindparam(_THREAD_ID),
        memory_phase1_jobs.c.scope_kind == bindparam(_SCOPE_KIND),
        memory_phase1_jobs.c.scope_key == bindparam(_SCOPE_KEY),
    )


def job_owned_clause() -> ColumnElement[bool]:
    """The job is running and the `p_token` bind is its current ownership token."""
    return and_(
        job_key_clause(),
        memory_phase1_jobs.c.status == JOB_RUNNING,
        memory_phase1_jobs.c.ownership_token == bindparam("p_token"),
    )


def key_params(thread_id: str, scope_kind: str, scope_key: str, **more: Any) -> dict[str, Any]:
    """Bind values for `job_key_clause` (and the memory statements keyed the same way)."""
    return {_THREAD_ID: thread_id, _SCOPE_KIND: scope_kind, _SCOPE_KEY: scope_key, **more}


# FOR SHARE (PostgreSQL) makes a concurrent steal of the job wait for this write, and makes this
# write re-check the token if a steal committed first: a stale token can never write.
_job_owned: Exists = (
    select(memory_phase1_jobs.c.thread_id)
    .where(job_owned_clause())
    .with_for_update(read=True)
    .exists()
)


def key_values() -> dict[str, Any]:
    """Typed key binds for an `INSERT ... SELECT` (PostgreSQL must know a selected bind's type)."""
    return {
        "thread_id": bindparam(_THREAD_ID, type_=Text),
        "scope_kind": bindparam(_SCOPE_KIND, type_=Text),
        "scope_key": bindparam(_SCOPE_KEY, type_=Text),
    }


def _memory_values() -> dict[str, Any]:
    return {
        **key_values(),
        "raw_memory": bindparam("p_raw_memory", type_=Text),
        "memory_summary": bindparam("p_memory_summary", type_=Text),
        "updated_at": bindparam("p_now", type_=Int64),
    }


def _build_upsert(dialect: str, *, owner_guarded: bool) -> Any:
    insert = dialect_insert(dialect, thread_memory)
    values = _memory_values()
    if owner_guarded:
        insert = insert.from_select(list(values), select(*values.values()).where(_job_owned))
    else:
        insert = insert.values(values)
    old, new = thread_memory.c.updated_at, insert.excluded.updated_at
    upsert = insert.on_conflict_do_update(
        index_elements=["thread_id", "scope_kind", "scope_key"],
        set_={
            "raw_memory": insert.excluded.raw_memory,
            "memory_summary": insert.excluded.memory_summary,
            # Strictly increasing per row, even when the clock has not moved (or went back).
            "updated_at": case((new <= old, old + 1), else_=new),
        },
    )
    return upsert.returning(*thread_memory.c)


_upsert = Prepared(lambda dialect: _build_upsert(dialect, owner_guarded=False))
_upsert_if_owner = Prepared(lambda dialect: _build_upsert(dialect, owner_guarded=True))


def path_key(name: str, path: str | os.PathLike[str]) -> str:
    """A cwd or memory-root argument in the form thread cwds are stored in (`path_text`)."""
    return path_text(as_path(name, path))


def to_thread_memory(row: Sequence[Any]) -> ThreadMemory:
    """A driver tuple of every `thread_memory` column, in table order."""
    (
        thread_id,
        scope_kind,
        scope_key,
        raw_memory,
        memory_summary,
        updated_at,
        last_used_at,
        used_count,
        invalidated_at,
        invalid_reason,
    ) = row
    return ThreadMemory(
        thread_id=thread_id,
        scope_kind=scope_kind,
        scope_key=scope_key,
        raw_memory=raw_memory,
        memory_summary=memory_summary,
        updated_at=from_epoch_seconds(updated_at),
        last_used_at=_maybe_datetime(last_used_at),
        used_count=used_count,
        invalidated_at=_maybe_datetime(invalidated_at),
        invalid_reason=invalid_reason,
    )


def _maybe_datetime(seconds: int | None) -> datetime | None:
    return None if seconds is None else from_epoch_seconds(seconds)


def thread_cwd(session: Session, thread_id: str) -> str:
    """The thread's stored cwd, its row pinned until commit; `ThreadNotFoundError` if unknown."""
    row = _select_thread_cwd.first(session, {_THREAD_ID: thread_id})
    if row is None:
        raise ThreadNotFoundError(thread_id)
    cwd: str = row[0]
    return cwd


class MemoryRepository(Repository):
    """`thread_memory`: what phase 1 extracted from each thread, per scope."""

    __slots__ = ()

    @translated
    def get_thread_memory(self, thread_id: uuid.UUID | str) -> ThreadMemory | None:
        """The thread's most recently updated memory across all scopes, if any."""
        key = str(parse_thread_id(thread_id))
        row = _select_newest.first(self._session, {_THREAD_ID: key})
        return None if row is None else to_thread_memory(row)

    @translated
    def upsert_thread_memory(
        self, thread_id: uuid.UUID | str, raw_memory: str, memory_summary: str
    ) -> ThreadMemory:
        """Write the thread's memory in the `cwd` scope keyed by the thread's stored cwd.

        Raises:
            ThreadNotFoundError: no thread has this id.
        """
        key = str(parse_thread_id(thread_id))
        check_texts(raw_memory=raw_memory, memory_summary=memory_summary)
        scope_key = thread_cwd(self._session, key)
        return self._upsert(key_params(key, SCOPE_KIND_CWD, scope_key), raw_memory, memory_summary)

    @translated
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
        thread_cwd(self._session, key)
        return self._upsert(key_params(key, scope_kind, scope_key), raw_memory, memory_summary)

    @translated
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
        params = key_params(key, scope_kind, scope_key, p_token=ownership_token)
        params.update(_content_params(raw_memory, memory_summary, self._now()))
        row = _upsert_if_owner.first(self._session, params)
        if row is None:
            # Checked only on this cold path: an owned job implies the thread exists.
            thread_cwd(self._session, key)
            return None
        return to_thread_memory(row)

    @translated
    def get_last_n_thread_memories_for_cwd(
        self, cwd: str | os.PathLike[str], n: int
    ) -> list[ThreadMemory]:
        """The `n` newest valid memories of the `cwd` scope whose key is exactly `cwd`."""
        return self._last_n(SCOPE_KIND_CWD, path_key("cwd", cwd), n)

    @translated
    def get_last_n_thread_memories_for_scope(
        self, scope_kind: str, scope_key: str, n: int
    ) -> list[ThreadMemory]:
        """The `n` newest valid (not invalidated) memories of a scope, newest first."""
        return self._last_n(scope_kind, scope_key, n)

    def _last_n(self, scope_kind: str, scope_key: str, n: int) -> list[ThreadMemory]:
        check_texts(scope_kind=scope_kind, scope_key=scope_key)
        limit = check_count("n", n)
        if limit == 0:
            return []
        params = {_SCOPE_KIND: scope_kind, _SCOPE_KEY: scope_key, "p_limit": limit}
        return [to_thread_memory(row) for row in _select_last_n.all(self._session, params)]

    def _upsert(self, key: dict[str, Any], raw_memory: str, memory_summary: str) -> ThreadMemory:
        params = key | _content_params(raw_memory, memory_summary, self._now())
        (row,) = _upsert.all(self._session, params)  # always exactly one
        return to_thread_memory(row)


def _content_params(raw_memory: str, memory_summary: str, now: int) -> dict[str, Any]:
    return {"p_raw_memory": raw_memory, "p_memory_summary": memory_summary, "p_now": now}
