"""Phase-2 consolidation jobs: which worker consolidates which dirty memory scope.

A scope becomes dirty when phase 1 writes a memory into it (`mark_memory_scope_dirty`); phase 2
claims the scope's job, consolidates, and on success clears the flag. Every state change is one
compare-and-swap statement judged by the rows it affected, so races are outcomes, not errors:

- a claim is one upsert, `INSERT ... SELECT ... FROM memory_scope_dirty WHERE <scope is dirty>
  ON CONFLICT DO UPDATE ... WHERE <no live job>`: a new job is inserted, a finished one or one
  whose last heartbeat is `lease_seconds` old is taken over (fresh token, `attempt + 1`); a
  lost race changes nothing.
  On PostgreSQL a concurrent claimer's upsert waits for ours and then re-checks the row we
  wrote, so two claimers never both win;
- heartbeat, agent id and both finishes are `UPDATE ... WHERE status = 'running' AND
  ownership_token = :token`.

**Re-dirtied during consolidation.** Success clears the dirty flag only when nobody marked the
scope dirty after the job was claimed: `memory_scope_dirty.updated_at <= job.started_at`. Both
are whole seconds, so a mark in the same second as the claim would compare equal and be lost;
`mark_memory_scope_dirty` therefore stamps a mark made while a job runs with at least
`started_at + 1` (see `codex_state.repositories.consolidation`), and a claim's `started_at` is
never before the stamp of the mark it sees (`max(now, updated_at)`). So a mark that committed
before the claim has a stamp `<= started_at` and is covered by that consolidation, which reads
the memories after claiming; a mark after it is stamped later and survives the success. No
column is added and Codex's meaning of the columns is kept (`started_at` may run ahead of the
clock by the one second a same-second re-mark added).

The success statement locks the job row first (`UPDATE ... RETURNING started_at`), then clears
the flag; on PostgreSQL a concurrent mark of the same scope either committed before (its stamp
is then compared) or waits on the dirty row and is re-checked.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Table,
    Text,
    and_,
    bindparam,
    case,
    literal,
    or_,
    select,
    update,
)

from codex_state.arguments import check_count, check_owner_id, check_texts
from codex_state.clock import from_epoch_seconds
from codex_state.dialect import dialect_insert
from codex_state.models import MemoryScope, Phase2ClaimKind, Phase2JobClaimOutcome
from codex_state.orm import Int64, memory_phase2_jobs, memory_scope_dirty
from codex_state.repositories.base import Repository, translated
from codex_state.repositories.jobs import JOB_FAILED, JOB_SUCCEEDED
from codex_state.repositories.memories import JOB_RUNNING
from codex_state.statements import Prepared

_jobs = memory_phase2_jobs.c
_dirty = memory_scope_dirty.c

_SCOPE_KIND = "p_scope_kind"
_SCOPE_KEY = "p_scope_key"


def scope_clause(table: Table) -> ColumnElement[bool]:
    """`table`'s (scope_kind, scope_key) = the `p_scope_kind/p_scope_key` binds."""
    return and_(
        table.c.scope_kind == bindparam(_SCOPE_KIND), table.c.scope_key == bindparam(_SCOPE_KEY)
    )


def _build_claim(dialect: str) -> Any:
    now = bindparam("p_now", type_=Int64)
    values: dict[str, Any] = {
        "scope_kind": _dirty.scope_kind,
        "scope_key": _dirty.scope_key,
        "status": literal(JOB_RUNNING, Text),
        "owner_session_id": bindparam("p_owner", type_=Text),
        # Not before the mark it consolidates: a mark stamped ahead of the clock (made while
        # the previous job of this second ran) is still covered by this job's success.
        "started_at": case((_dirty.updated_at > now, _dirty.updated_at), else_=now),
        "last_heartbeat_at": now,
        "attempt": literal(1, Int64),
        "ownership_token": bindparam("p_token", type_=Text),
    }
    # The row to insert comes from the scope's dirty flag: no dirty flag, nothing to claim.
    dirty_scope = select(*values.values()).where(
        scope_clause(memory_scope_dirty), _dirty.dirty == 1
    )
    insert = dialect_insert(dialect, memory_phase2_jobs).from_select(list(values), dirty_scope)
    excluded = insert.excluded
    return insert.on_conflict_do_update(
        index_elements=["scope_kind", "scope_key"],
        set_={
            "status": JOB_RUNNING,
            "owner_session_id": excluded.owner_session_id,
            "agent_thread_id": None,
            "started_at": excluded.started_at,
            "last_heartbeat_at": excluded.last_heartbeat_at,
            "finished_at": None,
            "attempt": _jobs.attempt + 1,
            "failure_reason": None,
            "ownership_token": excluded.ownership_token,
        },
        # Taken over only when no job runs, or the running one stopped heartbeating (a NULL
        # heartbeat is a dead lease, as a NULL started_at is for phase 1).
        where=or_(
            _jobs.status != JOB_RUNNING,
            _jobs.last_heartbeat_at.is_(None),
            _jobs.last_heartbeat_at <= bindparam("p_stale_cutoff"),
        ),
    )


_claim = Prepared(_build_claim)

_select_dirty = Prepared(select(_dirty.dirty).where(scope_clause(memory_scope_dirty)))

_list_dirty = Prepared(
    select(_dirty.scope_kind, _dirty.scope_key, _dirty.updated_at)
    .where(_dirty.dirty == 1)
    .order_by(_dirty.updated_at.desc(), _dirty.scope_kind, _dirty.scope_key)
    .limit(bindparam("p_limit"))
)

_owned = and_(
    scope_clause(memory_phase2_jobs),
    _jobs.status == JOB_RUNNING,
    _jobs.ownership_token == bindparam("p_token"),
)


def _owned_update(**values: Any) -> Prepared:
    """A write that only the current owner of a running job can make."""
    return Prepared(update(memory_phase2_jobs).where(_owned).values(**values))


_heartbeat = _owned_update(last_heartbeat_at=bindparam("p_now"))
_set_agent = _owned_update(agent_thread_id=bindparam("p_agent"))
_fail = _owned_update(
    status=JOB_FAILED, finished_at=bindparam("p_now"), failure_reason=bindparam("p_reason")
)
_succeed = Prepared(
    update(memory_phase2_jobs)
    .where(_owned)
    .values(status=JOB_SUCCEEDED, finished_at=bindparam("p_now"), failure_reason=None)
    .returning(_jobs.started_at)
)
# Clears the flag only if no mark came after the claim (marks during a job are stamped later
# than its start, see the module docstring).
_clear_dirty = Prepared(
    update(memory_scope_dirty)
    .where(
        scope_clause(memory_scope_dirty),
        _dirty.dirty == 1,
        _dirty.updated_at <= bindparam("p_started_at"),
    )
    .values(dirty=0, updated_at=bindparam("p_now"))
)


class Phase2JobRepository(Repository):
    """Dirty scopes and the phase-2 (consolidation) job of each scope."""

    __slots__ = ()

    @translated
    def list_dirty_memory_scopes(self, limit: int) -> list[MemoryScope]:
        """Up to `limit` dirty scopes, most recently dirtied first (ties by kind, then key)."""
        size = check_count("limit", limit)
        if size == 0:
            return []
        rows = _list_dirty.all(self._session, {"p_limit": size})
        return [
            MemoryScope(scope_kind=kind, scope_key=key, updated_at=from_epoch_seconds(updated_at))
            for kind, key, updated_at in rows
        ]

    @translated
    def try_claim_phase2_job(
        self,
        scope_kind: str,
        scope_key: str,
        owner_session_id: uuid.UUID | str,
        lease_seconds: int,
    ) -> Phase2JobClaimOutcome:
        """Claim the consolidation job of a dirty scope.

        Claimed (fresh token; `started_at` and `last_heartbeat_at` now; `attempt + 1`) when the
        scope is dirty and no job runs for it, or the running job's last heartbeat is at least
        `lease_seconds` old. `skipped_not_dirty` when the scope is not dirty;
        `skipped_running` when a live job holds it, or another claimer won a race just now.

        Raises:
            InvalidInputError: `lease_seconds` is negative.
        """
        check_texts(scope_kind=scope_kind, scope_key=scope_key)
        owner = check_owner_id("owner_session_id", owner_session_id)
        lease = check_count("lease_seconds", lease_seconds)
        now = self._now()
        token = str(uuid.uuid4())
        params = {
            _SCOPE_KIND: scope_kind,
            _SCOPE_KEY: scope_key,
            "p_owner": owner,
            "p_now": now,
            "p_token": token,
            "p_stale_cutoff": now - lease,
        }
        if _claim.rowcount(self._session, params):
            return Phase2JobClaimOutcome(kind=Phase2ClaimKind.CLAIMED, ownership_token=token)
        row = _select_dirty.first(self._session, params)
        if row is None or row[0] != 1:
            return Phase2JobClaimOutcome(kind=Phase2ClaimKind.SKIPPED_NOT_DIRTY)
        return Phase2JobClaimOutcome(kind=Phase2ClaimKind.SKIPPED_RUNNING)

    @translated
    def set_phase2_job_agent_thread_id(
        self,
        scope_kind: str,
        scope_key: str,
        ownership_token: str,
        agent_thread_id: uuid.UUID | str,
    ) -> bool:
        """Record the consolidation agent's thread; False when the token no longer owns the job."""
        agent = check_owner_id("agent_thread_id", agent_thread_id)
        return self._owned_write(_set_agent, scope_kind, scope_key, ownership_token, p_agent=agent)

    @translated
    def heartbeat_phase2_job(self, scope_kind: str, scope_key: str, ownership_token: str) -> bool:
        """Restart the job's lease from now; False when the token no longer owns the job."""
        return self._owned_write(_heartbeat, scope_kind, scope_key, ownership_token)

    @translated
    def mark_phase2_job_succeeded(
        self, scope_kind: str, scope_key: str, ownership_token: str
    ) -> bool:
        """Finish the job as succeeded and clear the scope's dirty flag, unless the scope was
        marked dirty again after the claim (then it stays dirty for the next consolidation).

        False (and nothing changed) when the token no longer owns the running job.
        """
        params = self._owned_params(scope_kind, scope_key, ownership_token)
        row = _succeed.first(self._session, params)
        if row is None:
            return False
        params["p_started_at"] = row[0] if row[0] is not None else params["p_now"]
        _clear_dirty.execute(self._session, params)
        return True

    @translated
    def mark_phase2_job_failed(
        self, scope_kind: str, scope_key: str, ownership_token: str, failure_reason: str
    ) -> bool:
        """Finish the job as failed; the scope stays dirty, so a later claim retries it.

        False when the token no longer owns the running job.
        """
        check_texts(failure_reason=failure_reason)
        return self._owned_write(
            _fail, scope_kind, scope_key, ownership_token, p_reason=failure_reason
        )

    def _owned_params(
        self, scope_kind: str, scope_key: str, ownership_token: str, **more: Any
    ) -> dict[str, Any]:
        check_texts(scope_kind=scope_kind, scope_key=scope_key, ownership_token=ownership_token)
        return {
            _SCOPE_KIND: scope_kind,
            _SCOPE_KEY: scope_key,
            "p_token": ownership_token,
            "p_now": self._now(),
            **more,
        }

    def _owned_write(
        self,
        statement: Prepared,
        scope_kind: str,
        scope_key: str,
        ownership_token: str,
        **more: Any,
    ) -> bool:
        params = self._owned_params(scope_kind, scope_key, ownership_token, **more)
        return statement.rowcount(self._session, params) > 0
