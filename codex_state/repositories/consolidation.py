"""Phase-2 coordination: per-scope dirty flags and the per-memory-root consolidation lock.

A dirty mark's `updated_at` is now, except while a phase-2 job of the scope runs that was
claimed in this second or later (by this clock): then it is that job's `started_at + 1`, so the
job's success, which clears the flag only for marks stamped no later than its start, keeps a
scope dirtied during its consolidation dirty (see `codex_state.repositories.phase2`).

The lock is one upsert whose `ON CONFLICT DO UPDATE ... WHERE` admits only a free row, the same
owner (renew) or a stale lease; acquired means one row affected. Release deletes only the
owner's row.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from sqlalchemy import bindparam, func, or_, select

from codex_state.arguments import check_count, check_owner_id, check_texts
from codex_state.dialect import dialect_insert
from codex_state.errors import InvalidInputError
from codex_state.orm import (
    Int64,
    memory_consolidation_locks,
    memory_phase2_jobs,
    memory_scope_dirty,
)
from codex_state.repositories.base import Repository, translated
from codex_state.repositories.memories import JOB_RUNNING, path_key
from codex_state.statements import Prepared

_phase2 = memory_phase2_jobs.c
_now = bindparam("p_now", type_=Int64)

# now, or just after the start of a phase-2 job of the scope that runs since this second or later
_dirty_stamp = func.coalesce(
    select(_phase2.started_at + 1)
    .where(
        _phase2.scope_kind == bindparam("p_scope_kind"),
        _phase2.scope_key == bindparam("p_scope_key"),
        _phase2.status == JOB_RUNNING,
        _phase2.started_at >= _now,
    )
    .scalar_subquery(),
    _now,
)


def _build_mark_dirty(dialect: str) -> Any:
    insert = dialect_insert(dialect, memory_scope_dirty).values(
        scope_kind=bindparam("p_scope_kind"),
        scope_key=bindparam("p_scope_key"),
        dirty=bindparam("p_dirty"),
        updated_at=_dirty_stamp,
    )
    return insert.on_conflict_do_update(
        index_elements=["scope_kind", "scope_key"],
        set_={"dirty": insert.excluded.dirty, "updated_at": insert.excluded.updated_at},
    )


_mark_dirty = Prepared(_build_mark_dirty)

_locks = memory_consolidation_locks.c


def _build_acquire_lock(dialect: str) -> Any:
    insert = dialect_insert(dialect, memory_consolidation_locks).values(
        cwd=bindparam("p_cwd"),
        working_thread_id=bindparam("p_owner"),
        updated_at=bindparam("p_now"),
    )
    return insert.on_conflict_do_update(
        index_elements=["cwd"],
        set_={
            "working_thread_id": insert.excluded.working_thread_id,
            "updated_at": insert.excluded.updated_at,
        },
        # Free rows are inserted; a held row is taken only by its owner (renew) or once stale.
        where=or_(
            _locks.working_thread_id == insert.excluded.working_thread_id,
            _locks.updated_at <= bindparam("p_stale_cutoff"),
        ),
    )


_acquire_lock = Prepared(_build_acquire_lock)

_release_lock = Prepared(
    memory_consolidation_locks.delete().where(
        _locks.cwd == bindparam("p_cwd"), _locks.working_thread_id == bindparam("p_owner")
    )
)


class ConsolidationRepository(Repository):
    """Scope dirty flags and the consolidation lock of each memory root."""

    __slots__ = ()

    @translated
    def mark_memory_scope_dirty(self, scope_kind: str, scope_key: str, dirty: bool) -> None:
        """Flag a scope as needing (or no longer needing) phase-2 consolidation."""
        check_texts(scope_kind=scope_kind, scope_key=scope_key)
        if not isinstance(dirty, bool):
            raise InvalidInputError(f"dirty must be a bool, got {dirty!r}")
        params = {
            "p_scope_kind": scope_kind,
            "p_scope_key": scope_key,
            "p_dirty": int(dirty),
            "p_now": self._now(),
        }
        _mark_dirty.execute(self._session, params)

    @translated
    def try_acquire_memory_consolidation_lock(
        self, cwd: str | os.PathLike[str], working_thread_id: uuid.UUID | str, lease_seconds: int
    ) -> bool:
        """Take or renew the consolidation lock of `cwd` (a memory root).

        True when it was free, already held by `working_thread_id`, or held by someone whose
        last acquire is at least `lease_seconds` old.

        Raises:
            InvalidInputError: `lease_seconds` is negative (the seed clamped it to 0).
        """
        path, owner = path_key("cwd", cwd), check_owner_id("working_thread_id", working_thread_id)
        lease = check_count("lease_seconds", lease_seconds)
        now = self._now()
        params = {"p_cwd": path, "p_owner": owner, "p_now": now, "p_stale_cutoff": now - lease}
        return _acquire_lock.rowcount(self._session, params) > 0

    @translated
    def release_memory_consolidation_lock(
        self, cwd: str | os.PathLike[str], working_thread_id: uuid.UUID | str
    ) -> bool:
        """Release the lock of `cwd` if `working_thread_id` holds it; True when released."""
        params = {
            "p_cwd": path_key("cwd", cwd),
            "p_owner": check_owner_id("working_thread_id", working_thread_id),
        }
        return _release_lock.rowcount(self._session, params) > 0
