"""Phase-1 job claims, scope dirty flags and consolidation locks: who may work on what.

Every state change is one compare-and-swap statement judged by the rows it affected, so two
claimers (threads, processes or hosts) can never both win, and losing a race is an outcome, not
an error:

- a claim first tries `INSERT ... ON CONFLICT DO NOTHING`; a loser of the insert race sees 0 rows;
- then one `UPDATE ... WHERE <stealable>` (stale running lease, or succeeded on older input); on
  PostgreSQL a concurrent winner's update makes this re-check the row it wrote and match nothing;
- only when both matched nothing is the row read, to say why the claim was skipped.

Finish, fail and renew are guarded by `status = 'running' AND ownership_token = :token`.

The statements are `FastQuery`s run on the unit of work's DBAPI connection
(`StateRuntime._fast_write`), and the cursor's row count is the CAS verdict.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Text, and_, bindparam, literal, or_, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.engine.interfaces import DBAPIConnection

from codex_state.dialect import PerDialect, dialect_insert
from codex_state.errors import InvalidInputError
from codex_state.fastread import FastQuery
from codex_state.models import Phase1ClaimKind, Phase1JobClaimOutcome, parse_thread_id
from codex_state.orm import (
    Int64,
    memory_consolidation_locks,
    memory_phase1_jobs,
    memory_scope_dirty,
)
from codex_state.repositories.memories import (
    JOB_RUNNING,
    THREAD_CWD_LOCKED,
    MemoryRepository,
    job_key_clause,
    job_owned_clause,
    key_params,
    key_values,
)

JOB_SUCCEEDED = "succeeded"
JOB_FAILED = "failed"

_jobs = memory_phase1_jobs.c


def _build_insert_claim(dialect: str) -> FastQuery:
    values = {
        **key_values(),
        "status": literal(JOB_RUNNING, Text),
        "owner_session_id": bindparam("p_owner", type_=Text),
        "started_at": bindparam("p_now", type_=Int64),
        "source_updated_at": bindparam("p_source_updated_at", type_=Int64),
        "ownership_token": bindparam("p_token", type_=Text),
    }
    # The thread check rides in the insert (FOR KEY SHARE pins it on PostgreSQL), so a claim of
    # an unknown thread inserts nothing instead of failing the foreign key.
    return FastQuery(
        dialect_insert(dialect, memory_phase1_jobs)
        .from_select(list(values), select(*values.values()).where(THREAD_CWD_LOCKED.exists()))
        .on_conflict_do_nothing(index_elements=["thread_id", "scope_kind", "scope_key"])
    )


_insert_claim = PerDialect(_build_insert_claim)

# The seed's decision order, negated: not failed, not succeeded on the same or newer input, not
# running under a live lease. A NULL started_at is a dead lease (as in the seed).
_stealable = and_(
    _jobs.status != JOB_FAILED,
    ~and_(
        _jobs.status == JOB_SUCCEEDED,
        _jobs.source_updated_at >= bindparam("p_source_updated_at"),
    ),
    ~and_(
        _jobs.status == JOB_RUNNING,
        _jobs.started_at.is_not(None),
        _jobs.started_at > bindparam("p_stale_cutoff"),
    ),
)

_steal_claim = FastQuery(
    update(memory_phase1_jobs)
    .where(job_key_clause(), _stealable)
    .values(
        status=JOB_RUNNING,
        owner_session_id=bindparam("p_owner"),
        started_at=bindparam("p_now"),
        finished_at=None,
        failure_reason=None,
        source_updated_at=bindparam("p_source_updated_at"),
        raw_memory_path=None,
        summary_hash=None,
        ownership_token=bindparam("p_token"),
    )
)

_select_job = FastQuery(select(_jobs.status, _jobs.source_updated_at).where(job_key_clause()))


def _owned_update(**values: Any) -> FastQuery:
    """A write that only the current owner of a running job can make."""
    return FastQuery(update(memory_phase1_jobs).where(job_owned_clause()).values(**values))


_succeed = _owned_update(
    status=JOB_SUCCEEDED,
    finished_at=bindparam("p_now"),
    failure_reason=None,
    raw_memory_path=bindparam("p_raw_memory_path"),
    summary_hash=bindparam("p_summary_hash"),
)
_fail = _owned_update(
    status=JOB_FAILED, finished_at=bindparam("p_now"), failure_reason=bindparam("p_failure_reason")
)
_renew = _owned_update(started_at=bindparam("p_now"))


def _build_mark_dirty(dialect: str) -> FastQuery:
    insert = dialect_insert(dialect, memory_scope_dirty).values(
        scope_kind=bindparam("p_scope_kind"),
        scope_key=bindparam("p_scope_key"),
        dirty=bindparam("p_dirty"),
        updated_at=bindparam("p_now"),
    )
    return FastQuery(
        insert.on_conflict_do_update(
            index_elements=["scope_kind", "scope_key"],
            set_={"dirty": insert.excluded.dirty, "updated_at": insert.excluded.updated_at},
        )
    )


_mark_dirty = PerDialect(_build_mark_dirty)

_locks = memory_consolidation_locks.c


def _build_acquire_lock(dialect: str) -> FastQuery:
    insert = dialect_insert(dialect, memory_consolidation_locks).values(
        cwd=bindparam("p_cwd"),
        working_thread_id=bindparam("p_owner"),
        updated_at=bindparam("p_now"),
    )
    return FastQuery(
        insert.on_conflict_do_update(
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
    )


_acquire_lock = PerDialect(_build_acquire_lock)

_release_lock = FastQuery(
    memory_consolidation_locks.delete().where(
        _locks.cwd == bindparam("p_cwd"), _locks.working_thread_id == bindparam("p_owner")
    )
)


def owner_key(owner: uuid.UUID | str) -> str:
    """An owner (session or thread id) as stored: canonical UUID text, else the string as given.

    UUIDs in any case name the same owner; other non-empty strings (a worker or host name) are
    accepted verbatim because ownership is plain text equality.
    """
    if isinstance(owner, uuid.UUID):
        return str(owner)
    if not isinstance(owner, str) or not owner:
        raise InvalidInputError(f"owner must be a UUID or a non-empty string, got {owner!r}")
    try:
        return str(parse_thread_id(owner))
    except ValueError:
        return owner


class Phase1JobRepository:
    """Claims and finishes of phase-1 jobs, keyed by (thread, scope kind, scope key)."""

    def __init__(self, connection: DBAPIConnection, dialect: Dialect) -> None:
        self._connection = connection
        self._dialect = dialect

    def _affected(self, statement: FastQuery, params: dict[str, Any]) -> int:
        return statement.rowcount(self._connection, self._dialect, params)

    def try_claim(
        self,
        thread_id: str,
        scope_kind: str,
        scope_key: str,
        owner: str,
        source_updated_at: int,
        lease_seconds: int,
        now: int,
    ) -> Phase1JobClaimOutcome:
        token = str(uuid.uuid4())
        params = key_params(
            thread_id,
            scope_kind,
            scope_key,
            p_owner=owner,
            p_now=now,
            p_source_updated_at=source_updated_at,
            p_token=token,
            p_stale_cutoff=now - lease_seconds,
        )
        claimed = Phase1JobClaimOutcome(kind=Phase1ClaimKind.CLAIMED, ownership_token=token)
        if self._affected(_insert_claim.for_dialect(self._dialect.name), params):
            return claimed
        if self._affected(_steal_claim, params):
            return claimed
        row = _select_job.first(self._connection, self._dialect, params)
        if row is None:
            # No job and nothing inserted: the thread is unknown (raises), or the row vanished
            # under a concurrent delete, which is a race we lost.
            MemoryRepository(self._connection, self._dialect).thread_cwd(thread_id)
            return Phase1JobClaimOutcome(kind=Phase1ClaimKind.SKIPPED_RUNNING)
        status, stored_source_updated_at = row
        if status == JOB_FAILED:
            return Phase1JobClaimOutcome(kind=Phase1ClaimKind.SKIPPED_TERMINAL_FAILURE)
        if status == JOB_SUCCEEDED and stored_source_updated_at >= source_updated_at:
            return Phase1JobClaimOutcome(kind=Phase1ClaimKind.SKIPPED_UP_TO_DATE)
        return Phase1JobClaimOutcome(kind=Phase1ClaimKind.SKIPPED_RUNNING)

    def mark_succeeded(
        self,
        thread_id: str,
        scope_kind: str,
        scope_key: str,
        ownership_token: str,
        raw_memory_path: str,
        summary_hash: str,
        now: int,
    ) -> bool:
        key = (thread_id, scope_kind, scope_key)
        return self._owned_write(
            _succeed,
            key,
            ownership_token,
            now,
            p_raw_memory_path=raw_memory_path,
            p_summary_hash=summary_hash,
        )

    def mark_failed(
        self,
        thread_id: str,
        scope_kind: str,
        scope_key: str,
        ownership_token: str,
        failure_reason: str,
        now: int,
    ) -> bool:
        key = (thread_id, scope_kind, scope_key)
        return self._owned_write(_fail, key, ownership_token, now, p_failure_reason=failure_reason)

    def renew_lease(
        self, thread_id: str, scope_kind: str, scope_key: str, ownership_token: str, now: int
    ) -> bool:
        return self._owned_write(_renew, (thread_id, scope_kind, scope_key), ownership_token, now)

    def _owned_write(
        self, statement: FastQuery, key: tuple[str, str, str], token: str, now: int, **more: Any
    ) -> bool:
        params = key_params(*key, p_token=token, p_now=now, **more)
        return self._affected(statement, params) > 0


class ConsolidationRepository:
    """Phase-2 coordination: per-scope dirty flags and the per-memory-root lock."""

    def __init__(self, connection: DBAPIConnection, dialect: Dialect) -> None:
        self._connection = connection
        self._dialect = dialect

    def mark_scope_dirty(self, scope_kind: str, scope_key: str, dirty: bool, now: int) -> None:
        params = {"p_scope_kind": scope_kind, "p_scope_key": scope_key, "p_now": now}
        upsert = _mark_dirty.for_dialect(self._dialect.name)
        upsert.rowcount(self._connection, self._dialect, {**params, "p_dirty": int(dirty)})

    def try_acquire_lock(self, cwd: str, owner: str, lease_seconds: int, now: int) -> bool:
        params = {"p_cwd": cwd, "p_owner": owner, "p_now": now}
        params["p_stale_cutoff"] = now - lease_seconds
        upsert = _acquire_lock.for_dialect(self._dialect.name)
        return upsert.rowcount(self._connection, self._dialect, params) > 0

    def release_lock(self, cwd: str, owner: str) -> bool:
        params = {"p_cwd": cwd, "p_owner": owner}
        return _release_lock.rowcount(self._connection, self._dialect, params) > 0
