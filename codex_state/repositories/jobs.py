"""Phase-1 job claims: which worker extracts the memory of which (thread, scope).

Every state change is one compare-and-swap statement judged by the rows it affected, so two
claimers (threads, processes or hosts) can never both win, and losing a race is an outcome, not
an error:

- a claim first tries `INSERT ... ON CONFLICT DO NOTHING`; a loser of the insert race sees 0 rows;
- then one `UPDATE ... WHERE <stealable>` (stale running lease, or succeeded on older input); on
  PostgreSQL a concurrent winner's update makes this re-check the row it wrote and match nothing;
- only when both matched nothing is the row read, to say why the claim was skipped.

Finish, fail and renew are guarded by `status = 'running' AND ownership_token = :token`.

The statements are `Prepared` and run in the Session's transaction; the affected-row count is
the CAS verdict.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Text, and_, bindparam, literal, select, update

from codex_state.arguments import check_count, check_epoch, check_owner_id, check_texts
from codex_state.dialect import dialect_insert
from codex_state.models import Phase1ClaimKind, Phase1JobClaimOutcome, parse_thread_id
from codex_state.orm import Int64, memory_phase1_jobs
from codex_state.repositories.base import Repository, translated
from codex_state.repositories.lock_waits import lock_timeout_answers
from codex_state.repositories.memories import (
    JOB_RUNNING,
    THREAD_CWD_LOCKED,
    job_key_clause,
    job_owned_clause,
    key_params,
    key_values,
    thread_cwd,
)
from codex_state.statements import Prepared

JOB_SUCCEEDED = "succeeded"
JOB_FAILED = "failed"

_jobs = memory_phase1_jobs.c


def _build_insert_claim(dialect: str) -> Any:
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
    return (
        dialect_insert(dialect, memory_phase1_jobs)
        .from_select(list(values), select(*values.values()).where(THREAD_CWD_LOCKED.exists()))
        .on_conflict_do_nothing(index_elements=["thread_id", "scope_kind", "scope_key"])
    )


_insert_claim = Prepared(_build_insert_claim)

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

_steal_claim = Prepared(
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

_select_job = Prepared(select(_jobs.status, _jobs.source_updated_at).where(job_key_clause()))


def _owned_update(**values: Any) -> Prepared:
    """A write that only the current owner of a running job can make."""
    return Prepared(update(memory_phase1_jobs).where(job_owned_clause()).values(**values))


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


class Phase1JobRepository(Repository):
    """Claims and finishes of phase-1 jobs, keyed by (thread, scope kind, scope key)."""

    __slots__ = ()

    @translated
    # Another transaction held the row past lock_timeout (PostgreSQL): it is running elsewhere.
    @lock_timeout_answers(lambda: Phase1JobClaimOutcome(kind=Phase1ClaimKind.SKIPPED_RUNNING))
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
        claimer is `skipped_running`, never an error, and so is a row another transaction
        holds for longer than PostgreSQL's `lock_timeout` (the caller's transaction stays
        usable: see `codex_state.repositories.lock_waits`).

        Raises:
            ThreadNotFoundError: no thread has this id.
            InvalidInputError: `lease_seconds` is negative (the seed clamped it to 0).
        """
        key = str(parse_thread_id(thread_id))
        owner = check_owner_id("owner_session_id", owner_session_id)
        check_texts(scope_kind=scope_kind, scope_key=scope_key)
        check_epoch("source_updated_at", source_updated_at)
        lease = check_count("lease_seconds", lease_seconds)
        now = self._now()
        token = str(uuid.uuid4())
        params = key_params(
            key,
            scope_kind,
            scope_key,
            p_owner=owner,
            p_now=now,
            p_source_updated_at=source_updated_at,
            p_token=token,
            p_stale_cutoff=now - lease,
        )
        session = self._session
        if _insert_claim.rowcount(session, params) or _steal_claim.rowcount(session, params):
            return Phase1JobClaimOutcome(kind=Phase1ClaimKind.CLAIMED, ownership_token=token)
        row = _select_job.first(session, params)
        if row is None:
            # No job and nothing inserted: the thread is unknown (raises), or the row vanished
            # under a concurrent delete, which is a race we lost.
            thread_cwd(session, key)
            return Phase1JobClaimOutcome(kind=Phase1ClaimKind.SKIPPED_RUNNING)
        status, stored_source_updated_at = row
        if status == JOB_FAILED:
            return Phase1JobClaimOutcome(kind=Phase1ClaimKind.SKIPPED_TERMINAL_FAILURE)
        if status == JOB_SUCCEEDED and stored_source_updated_at >= source_updated_at:
            return Phase1JobClaimOutcome(kind=Phase1ClaimKind.SKIPPED_UP_TO_DATE)
        return Phase1JobClaimOutcome(kind=Phase1ClaimKind.SKIPPED_RUNNING)

    @translated
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
        check_texts(raw_memory_path=raw_memory_path, summary_hash=summary_hash)
        return self._owned_write(
            _succeed,
            thread_id,
            scope_kind,
            scope_key,
            ownership_token,
            p_raw_memory_path=raw_memory_path,
            p_summary_hash=summary_hash,
        )

    @translated
    def mark_phase1_job_failed(
        self,
        thread_id: uuid.UUID | str,
        scope_kind: str,
        scope_key: str,
        ownership_token: str,
        failure_reason: str,
    ) -> bool:
        """Finish the job as failed (terminal); False when `ownership_token` no longer owns it."""
        check_texts(failure_reason=failure_reason)
        return self._owned_write(
            _fail,
            thread_id,
            scope_kind,
            scope_key,
            ownership_token,
            p_failure_reason=failure_reason,
        )

    @translated
    def renew_phase1_job_lease(
        self,
        thread_id: uuid.UUID | str,
        scope_kind: str,
        scope_key: str,
        ownership_token: str,
    ) -> bool:
        """Restart the job's lease from now; False when `ownership_token` no longer owns it."""
        return self._owned_write(_renew, thread_id, scope_kind, scope_key, ownership_token)

    def _owned_write(
        self,
        statement: Prepared,
        thread_id: uuid.UUID | str,
        scope_kind: str,
        scope_key: str,
        ownership_token: str,
        **more: Any,
    ) -> bool:
        key = str(parse_thread_id(thread_id))
        check_texts(scope_kind=scope_kind, scope_key=scope_key, ownership_token=ownership_token)
        params = key_params(key, scope_kind, scope_key, p_token=ownership_token, **more)
        params["p_now"] = self._now()
        return statement.rowcount(self._session, params) > 0
