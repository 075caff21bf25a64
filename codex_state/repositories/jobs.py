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

**Candidate selection** (`list_phase1_candidates`) is one query: a walk of the partial index
`ix_cs_threads_memory_candidates` (unarchived threads with a first user message, newest
`updated_at` first) that keeps the threads whose job in the scope is claimable now,
judged by a primary-key probe of `memory_phase1_jobs` with the same predicate a claim uses. It
stops at `limit`.

**Batch claims** (`try_claim_phase1_jobs`) are set-based: the whole batch travels as one JSON
parameter (`json_each` on SQLite, `json_to_recordset` on PostgreSQL), so a batch of any size is
at most three statements: insert the missing jobs (`INSERT ... SELECT ... ON CONFLICT DO NOTHING
RETURNING`: for new work the only one), read the current jobs of the others, and take over the
stale ones (one `UPDATE ... FROM ... WHERE <stealable> RETURNING`). A candidate is claimed
exactly when its fresh token comes back from one of the writes. On PostgreSQL concurrent batch
claimers never wait for each other: a missing job is only inserted under a
`pg_try_advisory_xact_lock` on its key (an insert racing another transaction's uncommitted
insert of the same key would wait for it), the thread row is pinned `FOR KEY SHARE SKIP
LOCKED`, and existing jobs are taken over `FOR UPDATE SKIP LOCKED`; whatever another claimer is
working on is `skipped_running`. On SQLite the write transaction (`BEGIN IMMEDIATE`)
serialises claimers.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from pydantic import ValidationError
from sqlalchemy import (
    BigInteger,
    FromClause,
    Integer,
    Text,
    and_,
    bindparam,
    cast,
    column,
    func,
    literal,
    literal_column,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql

from codex_state.arguments import (
    check_count,
    check_epoch,
    check_owner_id,
    check_strings,
    check_texts,
)
from codex_state.dialect import dialect_insert
from codex_state.errors import InvalidInputError, ThreadNotFoundError
from codex_state.models import (
    Phase1Candidate,
    Phase1ClaimKind,
    Phase1JobClaimOutcome,
    parse_thread_id,
)
from codex_state.orm import Int64, memory_phase1_jobs, threads
from codex_state.repositories.base import Repository, translated
from codex_state.repositories.lock_waits import lock_timeout_answers
from codex_state.repositories.memories import (
    JOB_RUNNING,
    SCOPE_KIND_CWD,
    THREAD_CWD_LOCKED,
    job_key_clause,
    job_owned_clause,
    key_params,
    key_values,
    thread_cwd,
)
from codex_state.statements import Prepared, in_list, in_list_params

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


# ---------------------------------------------------------------------- candidate selection

MAX_PHASE1_BATCH = 512
"""Most candidates one `try_claim_phase1_jobs` call takes (PostgreSQL holds one advisory lock
per new job until commit, from a lock table shared by every session)."""

_threads = threads.c


def _blocking_job(source_updated_at: Any) -> Any:
    """The job is not claimable for input `source_updated_at`: `_stealable`'s complement."""
    return or_(
        _jobs.status == JOB_FAILED,
        and_(_jobs.status == JOB_SUCCEEDED, _jobs.source_updated_at >= source_updated_at),
        and_(
            _jobs.status == JOB_RUNNING,
            _jobs.started_at.is_not(None),
            _jobs.started_at > bindparam("p_stale_cutoff"),
        ),
    )


# `ix_cs_threads_memory_candidates` is (archived, updated_at DESC, id DESC, source, cwd) WHERE
# first_user_message <> '': the terms are literals (not binds) so SQLite and PostgreSQL's
# generic plans can prove the query matches the partial index.
_CANDIDATE_THREADS = (
    _threads.archived == literal_column("0"),
    _threads.first_user_message != literal_column("''"),
)


@lru_cache(maxsize=128)
def _candidates_statement(per_thread_cwd: bool, sources: int, windowed: bool) -> Prepared:
    """Claimable threads of a scope, newest first; one shape per (scope form, sources, window)."""
    since = bindparam("p_min_updated_at", type_=Int64)
    conditions: list[Any] = [*_CANDIDATE_THREADS, _threads.updated_at >= since]
    if sources:
        conditions.append(in_list(_threads.source, "p_source", sources))
    if windowed:
        # Codex considers only the newest `scan_limit` threads: bound the walk by the
        # updated_at of the scan_limit-th (an index-only walk of the same partial index).
        window = threads.alias("w")
        w = window.c
        w_conditions: list[Any] = [
            w.archived == literal_column("0"),
            w.first_user_message != literal_column("''"),
            w.updated_at >= since,
        ]
        if sources:
            w_conditions.append(in_list(w.source, "p_source", sources))
        bound = (
            select(w.updated_at)
            .where(*w_conditions)
            .order_by(w.updated_at.desc(), w.id.desc())
            .offset(bindparam("p_scan_offset", type_=Integer))
            .limit(1)
            .scalar_subquery()
        )
        conditions.append(_threads.updated_at >= func.coalesce(bound, since))
    scope_key = _threads.cwd if per_thread_cwd else bindparam("p_scope_key", type_=Text)
    # NOT EXISTS (an anti-join): with statistics PostgreSQL probes the primary key once per
    # thread walked and estimates the walk's cost well (a scalar-subquery form made it estimate
    # the whole index and switch JIT compilation on: 3x slower). Tables whose statistics are
    # missing can get a worse join; autovacuum's ANALYZE (on by default) provides them.
    blocking = (
        select(_jobs.thread_id)
        .where(
            _jobs.thread_id == _threads.id,
            _jobs.scope_kind == bindparam("p_scope_kind", type_=Text),
            _jobs.scope_key == scope_key,
            _blocking_job(_threads.updated_at),
        )
        .exists()
    )
    return Prepared(
        select(_threads.id, _threads.updated_at, _threads.cwd)
        .where(*conditions, _threads.id != bindparam("p_exclude", type_=Text), ~blocking)
        .order_by(_threads.updated_at.desc(), _threads.id.desc())
        .limit(bindparam("p_limit", type_=Integer))
    )


# ----------------------------------------------------------------------------- batch claims

_BATCH_COLUMNS = (
    ("ord", Integer),
    ("thread_id", Text),
    ("scope_kind", Text),
    ("scope_key", Text),
    ("source_updated_at", BigInteger),
    ("token", Text),
)
_ADVISORY_SEED = 0x7068617365315F6A  # "phase1_j": keeps these keys apart from other users'


def _batch_input(dialect: str) -> FromClause:
    """The batch parameter `p_batch` (a JSON array of objects) as a relation `i`."""
    payload = bindparam("p_batch", type_=Text)
    if dialect == "postgresql":
        return (
            func.json_to_recordset(cast(payload, postgresql.JSON))
            .table_valued(*(column(name, type_()) for name, type_ in _BATCH_COLUMNS))
            .render_derived(name="i", with_types=True)
        )
    each = func.json_each(payload).table_valued("value", name="je")
    return select(
        *(
            func.json_extract(each.c.value, f"$.{name}", type_=type_()).label(name)
            for name, type_ in _BATCH_COLUMNS
        )
    ).subquery("i")


def _same_job(table: Any, i: Any) -> Any:
    return and_(
        table.c.thread_id == i.c.thread_id,
        table.c.scope_kind == i.c.scope_kind,
        table.c.scope_key == i.c.scope_key,
    )


def _probe_job(table: Any, i: Any) -> Any:
    """`_same_job` for a per-row probe on PostgreSQL: the scope columns as expressions, so
    the planner cannot read the job through `idx_memory_phase1_jobs_scope` (every job of the
    scope) and takes the primary key's `thread_id` prefix, whatever its statistics say."""
    empty: Any = literal_column("''")
    return and_(
        table.c.thread_id == i.c.thread_id,
        table.c.scope_kind.concat(empty) == i.c.scope_kind,
        table.c.scope_key.concat(empty) == i.c.scope_key,
    )


# On PostgreSQL every per-candidate lookup is a LATERAL subquery with LIMIT 1 (never pulled
# up into a join): a parameterized index probe per candidate. With plain joins, a table whose
# statistics are missing or stale (a fresh database filling fast) got hash joins over every
# job and every thread per batch. SQLite's planner already probes the indexes per row.


def _thread_probe(i: Any, *, lock: bool) -> Any:
    probe = select(threads.c.id).where(threads.c.id == i.c.thread_id).limit(1)
    if lock:
        probe = probe.with_for_update(read=True, key_share=True, skip_locked=True)
    return probe.lateral("t")


def _build_batch_read(dialect: str) -> Any:
    """Per candidate: its order, whether its thread exists, and its job's current state."""
    i = _batch_input(dialect)
    if dialect == "postgresql":
        thread = _thread_probe(i, lock=False)
        job = (
            select(_jobs.status, _jobs.source_updated_at, _jobs.started_at)
            .where(_probe_job(memory_phase1_jobs, i))
            .limit(1)
            .lateral("j")
        )
        return select(
            i.c.ord, thread.c.id, job.c.status, job.c.source_updated_at, job.c.started_at
        ).select_from(i.outerjoin(thread, true()).outerjoin(job, true()))
    return select(
        i.c.ord,
        threads.c.id,
        _jobs.status,
        _jobs.source_updated_at,
        _jobs.started_at,
    ).select_from(
        i.outerjoin(threads, threads.c.id == i.c.thread_id).outerjoin(
            memory_phase1_jobs, _same_job(memory_phase1_jobs, i)
        )
    )


def _build_batch_insert(dialect: str) -> Any:
    i = _batch_input(dialect)
    values = (
        i.c.thread_id,
        i.c.scope_kind,
        i.c.scope_key,
        literal(JOB_RUNNING, Text),
        bindparam("p_owner", type_=Text),
        bindparam("p_now", type_=Int64),
        i.c.source_updated_at,
        i.c.token,
    )
    if dialect == "postgresql":
        key = i.c.thread_id + ":" + i.c.scope_kind + ":" + i.c.scope_key
        seed = literal(_ADVISORY_SEED, BigInteger)
        # The thread row is pinned FOR KEY SHARE (as the foreign key needs) unless a writer
        # holds it: then the candidate is skipped, not waited for.
        selected = (
            select(*values)
            .select_from(i.join(_thread_probe(i, lock=True), true()))
            .where(func.pg_try_advisory_xact_lock(func.hashtextextended(key, seed)))
        )
    else:
        selected = (
            select(*values)
            .select_from(i.join(threads, threads.c.id == i.c.thread_id))
            .where(true())  # SQLite: a WHERE keeps ON CONFLICT unambiguous
        )
    columns = [
        "thread_id",
        "scope_kind",
        "scope_key",
        "status",
        "owner_session_id",
        "started_at",
        "source_updated_at",
        "ownership_token",
    ]
    return (
        dialect_insert(dialect, memory_phase1_jobs)
        .from_select(columns, selected)
        .on_conflict_do_nothing(index_elements=["thread_id", "scope_kind", "scope_key"])
        .returning(_jobs.ownership_token)
    )


def _build_batch_steal(dialect: str) -> Any:
    i = _batch_input(dialect)
    job = memory_phase1_jobs.alias("j")
    j = job.c
    stealable = and_(
        j.status != JOB_FAILED,
        ~and_(j.status == JOB_SUCCEEDED, j.source_updated_at >= i.c.source_updated_at),
        ~and_(
            j.status == JOB_RUNNING,
            j.started_at.is_not(None),
            j.started_at > bindparam("p_stale_cutoff", type_=Int64),
        ),
    )
    key = (j.thread_id, j.scope_kind, j.scope_key)
    if dialect == "postgresql":
        # FOR UPDATE SKIP LOCKED: a job another transaction is writing is skipped, not waited
        # for (and re-checked against `stealable` if it changed before we locked it).
        stale_job = (
            select(*key)
            .select_from(job)
            .where(_probe_job(job, i), stealable)
            .limit(1)
            .with_for_update(of=job, skip_locked=True)
            .lateral("sj")
        )
        stale = select(*stale_job.c, i.c.source_updated_at, i.c.token).select_from(
            i.join(stale_job, true())
        )
    else:
        stale = (
            select(*key, i.c.source_updated_at, i.c.token)
            .select_from(i.join(job, _same_job(job, i)))
            .where(stealable)
        )
    s = stale.subquery("s")
    return (
        update(memory_phase1_jobs)
        .where(
            _jobs.thread_id == s.c.thread_id,
            _jobs.scope_kind == s.c.scope_kind,
            _jobs.scope_key == s.c.scope_key,
        )
        .values(
            status=JOB_RUNNING,
            owner_session_id=bindparam("p_owner", type_=Text),
            started_at=bindparam("p_now", type_=Int64),
            finished_at=None,
            failure_reason=None,
            source_updated_at=s.c.source_updated_at,
            raw_memory_path=None,
            summary_hash=None,
            ownership_token=s.c.token,
        )
        .returning(_jobs.ownership_token)
    )


_batch_read = Prepared(_build_batch_read)
_batch_insert = Prepared(_build_batch_insert)
_batch_steal = Prepared(_build_batch_steal)

_SKIPPED = {
    kind: Phase1JobClaimOutcome(kind=kind)
    for kind in Phase1ClaimKind
    if kind is not Phase1ClaimKind.CLAIMED
}


def _claimed(token: str) -> Phase1JobClaimOutcome:
    # Built without re-validation: the kind and token agree by construction.
    return Phase1JobClaimOutcome.model_construct(
        kind=Phase1ClaimKind.CLAIMED, ownership_token=token
    )


def _check_candidates(candidates: object) -> list[Phase1Candidate]:
    if isinstance(candidates, str | bytes) or not isinstance(candidates, Sequence):
        raise InvalidInputError(f"candidates must be a sequence, got {candidates!r}")
    checked: list[Phase1Candidate] = []
    for candidate in candidates:
        if isinstance(candidate, Phase1Candidate):
            checked.append(candidate)
            continue
        try:
            thread_id, scope_kind, scope_key, source_updated_at = candidate
            checked.append(
                Phase1Candidate(
                    thread_id=thread_id,
                    scope_kind=scope_kind,
                    scope_key=scope_key,
                    source_updated_at=source_updated_at,
                )
            )
        except (TypeError, ValueError, ValidationError) as err:
            raise InvalidInputError(
                "candidates must be Phase1Candidate values or "
                f"(thread_id, scope_kind, scope_key, source_updated_at) tuples, got {candidate!r}"
            ) from err
    if len(checked) > MAX_PHASE1_BATCH:
        raise InvalidInputError(
            f"at most {MAX_PHASE1_BATCH} candidates per batch, got {len(checked)}"
        )
    keys = {(c.thread_id, c.scope_kind, c.scope_key) for c in checked}
    if len(keys) != len(checked):
        raise InvalidInputError("candidates name the same (thread, scope) job more than once")
    return checked


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

    @translated
    def list_phase1_candidates(
        self,
        scope_kind: str,
        scope_key: str | None,
        *,
        max_age_seconds: int,
        sources: Sequence[str],
        limit: int,
        lease_seconds: int,
        exclude_thread_id: uuid.UUID | str | None = None,
        scan_limit: int | None = None,
    ) -> list[Phase1Candidate]:
        """Threads whose phase-1 job in a scope `try_claim_phase1_job` would claim now.

        Codex's start-up selection as one indexed query: unarchived threads with a first user
        message, whose `source` is in `sources` (empty: any source), updated within the last
        `max_age_seconds`, other than `exclude_thread_id` (the current thread), whose job has
        no row, runs under a lease at least `lease_seconds` old (or with no start time), or
        succeeded on input older than the thread's `updated_at`. Failed jobs are never
        candidates. Newest first (`updated_at` desc, then id desc), at most `limit`.

        Args:
            scope_kind, scope_key: the scope. `scope_key=None` means each thread's own scope
                of kind `"cwd"`, keyed by the thread's cwd as stored (as `upsert_thread_memory`
                keys it); then `scope_kind` must be `"cwd"`.
            scan_limit: like Codex's 5,000-thread listing, consider only the newest
                `scan_limit` threads that pass the thread filters (threads tied with the last
                one's `updated_at` included); None for no bound but the age.

        Each result is a `Phase1Candidate` (its `source_updated_at` is the thread's
        `updated_at`), ready for `try_claim_phase1_jobs`. A read: concurrent claimers may
        take a candidate before you do; the claim decides.

        Raises:
            InvalidInputError: a negative count, or `scope_key=None` with another kind.
        """
        check_texts(scope_kind=scope_kind)
        per_thread_cwd = scope_key is None
        if per_thread_cwd and scope_kind != SCOPE_KIND_CWD:
            raise InvalidInputError(
                f"scope_key=None (each thread's cwd) needs scope_kind {SCOPE_KIND_CWD!r}, "
                f"got {scope_kind!r}"
            )
        if not per_thread_cwd:
            check_texts(scope_key=scope_key)
        max_age = check_count("max_age_seconds", max_age_seconds)
        allowed = check_strings("sources", sources)
        size = check_count("limit", limit)
        lease = check_count("lease_seconds", lease_seconds)
        scan = None if scan_limit is None else check_count("scan_limit", scan_limit)
        exclude = "" if exclude_thread_id is None else str(parse_thread_id(exclude_thread_id))
        if size == 0 or scan == 0:
            return []
        now = self._now()
        params: dict[str, Any] = {
            "p_scope_kind": scope_kind,
            "p_min_updated_at": now - max_age,
            "p_stale_cutoff": now - lease,
            "p_exclude": exclude,
            "p_limit": size,
            **in_list_params("p_source", allowed),
        }
        if not per_thread_cwd:
            params["p_scope_key"] = scope_key
        if scan is not None:
            params["p_scan_offset"] = scan - 1
        statement = _candidates_statement(per_thread_cwd, len(allowed), scan is not None)
        rows = statement.all(self._session, params)
        construct = Phase1Candidate.model_construct
        return [
            construct(
                thread_id=uuid.UUID(thread_id),
                scope_kind=scope_kind,
                scope_key=cwd if scope_key is None else scope_key,
                source_updated_at=updated_at,
            )
            for thread_id, updated_at, cwd in rows
        ]

    @translated
    def try_claim_phase1_jobs(
        self,
        candidates: Sequence[Phase1Candidate | tuple[uuid.UUID | str, str, str, int]],
        owner_session_id: uuid.UUID | str,
        lease_seconds: int,
    ) -> list[Phase1JobClaimOutcome]:
        """Claim many phase-1 jobs at once; one outcome per candidate, in input order.

        Each candidate (a `Phase1Candidate`, or a `(thread_id, scope_kind, scope_key,
        source_updated_at)` tuple) gets exactly the outcome `try_claim_phase1_job` would give
        it, each claimed job its own token, in a few statements for the whole batch. Claimers
        racing for the same jobs never both win; on PostgreSQL they do not wait for each other
        either: a job another claimer is claiming at this moment is `skipped_running`.

        Raises:
            ThreadNotFoundError: a candidate's thread does not exist. Raised after the batch's
                first write: roll the unit of work back (`StateRuntime` does, and so does a
                Session block left by the exception), and nothing is claimed.
            InvalidInputError: a malformed candidate, the same job twice, more than
                `MAX_PHASE1_BATCH` candidates, or a negative `lease_seconds`.
        """
        batch = _check_candidates(candidates)
        owner = check_owner_id("owner_session_id", owner_session_id)
        lease = check_count("lease_seconds", lease_seconds)
        if not batch:
            return []
        now = self._now()
        cutoff = now - lease
        session = self._session
        tokens = [str(uuid.uuid4()) for _ in batch]
        rows = [
            {
                "ord": n,
                "thread_id": str(c.thread_id),
                "scope_kind": c.scope_kind,
                "scope_key": c.scope_key,
                "source_updated_at": c.source_updated_at,
                "token": tokens[n],
            }
            for n, c in enumerate(batch)
        ]
        outcomes: list[Phase1JobClaimOutcome | None] = [None] * len(batch)
        params: dict[str, Any] = {
            "p_owner": owner,
            "p_now": now,
            "p_stale_cutoff": cutoff,
            "p_batch": json.dumps(rows),
        }
        # 1. Jobs that do not exist yet are claimed by one insert: for new work, the batch's
        # only statement.
        won = {token for (token,) in _batch_insert.all(session, params)}
        rest = [row for row in rows if row["token"] not in won]
        # 2. The others' current state says which could be taken over, and why not otherwise.
        to_steal: list[dict[str, Any]] = []
        if rest:
            read = _batch_read.all(session, {"p_batch": json.dumps(rest)})
            for ord_, known, status, stored_source, started_at in read:
                row = rows[ord_]
                if known is None:
                    raise ThreadNotFoundError(row["thread_id"])
                if status is None:
                    # Not inserted, yet no job: another claimer's insert is under way.
                    outcomes[ord_] = _SKIPPED[Phase1ClaimKind.SKIPPED_RUNNING]
                elif status == JOB_FAILED:
                    outcomes[ord_] = _SKIPPED[Phase1ClaimKind.SKIPPED_TERMINAL_FAILURE]
                elif status == JOB_SUCCEEDED and stored_source >= row["source_updated_at"]:
                    outcomes[ord_] = _SKIPPED[Phase1ClaimKind.SKIPPED_UP_TO_DATE]
                elif status == JOB_RUNNING and started_at is not None and started_at > cutoff:
                    outcomes[ord_] = _SKIPPED[Phase1ClaimKind.SKIPPED_RUNNING]
                else:
                    to_steal.append(row)
        # 3. One compare-and-swap update takes over the stale ones.
        if to_steal:
            params["p_batch"] = json.dumps(to_steal)
            won.update(token for (token,) in _batch_steal.all(session, params))
        running = _SKIPPED[Phase1ClaimKind.SKIPPED_RUNNING]
        for n, token in enumerate(tokens):
            if outcomes[n] is None:
                # Not won: another claimer took it between our read and our write.
                outcomes[n] = _claimed(token) if token in won else running
        return outcomes  # type: ignore[return-value]

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
