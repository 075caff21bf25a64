"""Phase-1 candidate selection and batch claims on every backend, cross-checked with the claim.

Whatever `list_phase1_candidates` lists, `try_claim_phase1_job` must claim, and nothing else it
would claim may be missing; `try_claim_phase1_jobs` must give each candidate the outcome the
single claim gives it.
"""

from __future__ import annotations

import itertools
import random
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from codex_state import (
    InvalidInputError,
    ManualClock,
    Phase1Candidate,
    Phase1ClaimKind,
    StateRuntime,
    ThreadMetadata,
    ThreadNotFoundError,
)
from codex_state.engine import write_session
from codex_state.orm import memory_phase1_jobs
from codex_state.repositories import Phase1JobRepository
from codex_state.repositories.jobs import MAX_PHASE1_BATCH
from tests.conftest import Backend
from tests.memory_support import T0

LEASE = 3600
DAY = 86_400
NOW = T0 + 40 * DAY
USER = ("user", "user")
STATES = ["none", "fresh", "stale", "no_start", "done", "outdated", "failed"]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def timed(backend: Backend, clock: ManualClock) -> Any:
    return backend.runtime(clock=clock)


def thread(
    *,
    updated_at: int,
    source: str = "cli",
    cwd: str = "/work/a",
    archived: bool = False,
    message: str | None = "hello",
    thread_id: uuid.UUID | None = None,
) -> ThreadMetadata:
    when = datetime.fromtimestamp(updated_at, tz=UTC)
    return ThreadMetadata(
        id=thread_id or uuid.uuid4(),
        rollout_path=Path(f"/r/{uuid.uuid4()}.jsonl"),
        created_at=when,
        updated_at=when,
        source=source,
        model_provider="p",
        cwd=Path(cwd),
        first_user_message=message,
        archived_at=when if archived else None,
    )


def put_job(runtime: StateRuntime, t: ThreadMetadata, scope: tuple[str, str], state: str) -> None:
    """A phase-1 job of `t` in `scope` in one of `STATES` (relative to the thread's input)."""
    if state == "none":
        return
    source = int(t.updated_at.timestamp())
    row: dict[str, Any] = {
        "thread_id": str(t.id),
        "scope_kind": scope[0],
        "scope_key": scope[1],
        "status": "running",
        "owner_session_id": str(uuid.uuid4()),
        "started_at": NOW - 10,
        "source_updated_at": source,
        "ownership_token": str(uuid.uuid4()),
    }
    if state == "stale":
        row["started_at"] = NOW - LEASE
    elif state == "no_start":
        row["started_at"] = None
    elif state in ("done", "outdated"):
        row["status"] = "succeeded"
        row["source_updated_at"] = source if state == "done" else source - 1
    elif state == "failed":
        row["status"] = "failed"
    with runtime.engine.begin() as conn:
        conn.execute(memory_phase1_jobs.insert().values(row))


def would_claim(runtime: StateRuntime, candidate: Phase1Candidate, lease: int = LEASE) -> Any:
    """What `try_claim_phase1_job` answers now, rolled back so nothing changes."""
    with write_session(runtime.engine) as session:
        jobs = runtime.repository(Phase1JobRepository, session)
        outcome = jobs.try_claim_phase1_job(
            candidate.thread_id,
            candidate.scope_kind,
            candidate.scope_key,
            uuid.uuid4(),
            candidate.source_updated_at,
            lease,
        )
        session.rollback()
    return outcome.kind


def candidate(t: ThreadMetadata, scope: tuple[str, str] | None = None) -> Phase1Candidate:
    kind, key = scope or ("cwd", str(t.cwd))
    return Phase1Candidate(
        thread_id=t.id,
        scope_kind=kind,
        scope_key=key,
        source_updated_at=int(t.updated_at.timestamp()),
    )


def listed(runtime: StateRuntime, scope: tuple[str, str | None], **kwargs: Any) -> list[Any]:
    arguments: dict[str, Any] = {
        "max_age_seconds": 30 * DAY,
        "sources": ["cli", "vscode"],
        "limit": 1000,
        "lease_seconds": LEASE,
    }
    arguments.update(kwargs)
    result: list[Any] = runtime.list_phase1_candidates(*scope, **arguments)
    return result


@pytest.fixture
def world(timed: StateRuntime) -> list[ThreadMetadata]:
    """Threads of every kind, each with a job in every state in the user scope and its cwd."""
    rng = random.Random(7)
    threads: list[ThreadMetadata] = []
    # Eligible threads (recent, interactive), every job state in both scopes, some time ties.
    for n, (user_state, cwd_state) in enumerate(itertools.product(STATES, STATES)):
        t = thread(
            updated_at=NOW - (n // 3) * 100,
            source=("cli", "vscode")[n % 2],
            cwd=("/work/a", "/work/b")[n % 3 == 0],
        )
        threads.append(t)
        timed.upsert_thread(t)
        put_job(timed, t, USER, user_state)
        put_job(timed, t, ("cwd", str(t.cwd)), cwd_state)
    # Threads no selection may list, whatever their jobs.
    for t in [
        thread(updated_at=NOW - 31 * DAY),  # too old
        thread(updated_at=NOW - 5, source="exec"),  # not interactive
        thread(updated_at=NOW - 5, archived=True),
        thread(updated_at=NOW - 5, message=None),  # no first user message
    ]:
        threads.append(t)
        timed.upsert_thread(t)
        put_job(timed, t, USER, rng.choice(["none", "stale", "outdated"]))
    return threads


def eligible(t: ThreadMetadata) -> bool:
    return (
        t.source in ("cli", "vscode")
        and t.archived_at is None
        and t.first_user_message is not None
        and t.updated_at.timestamp() >= NOW - 30 * DAY
    )


def newest_first(threads: list[ThreadMetadata]) -> list[ThreadMetadata]:
    return sorted(threads, key=lambda t: (t.updated_at, str(t.id)), reverse=True)


@pytest.mark.parametrize("scope", [USER, ("cwd", None)], ids=["fixed scope", "thread cwd"])
def test_candidates_are_exactly_what_a_claim_would_claim(
    timed: StateRuntime, world: list[ThreadMetadata], scope: tuple[str, str | None]
) -> None:
    found = listed(timed, scope)
    expected = []
    for t in newest_first(world):
        probe = candidate(t, None if scope[1] is None else (scope[0], scope[1]))
        claimable = would_claim(timed, probe) is Phase1ClaimKind.CLAIMED
        if eligible(t) and claimable:
            expected.append(probe)
    assert found == expected
    # Every job state was seen, and all of those that a claim takes over are listed.
    assert len(found) == 4 * len(STATES)  # none, stale, no_start, outdated x the other scope


def test_listed_candidates_are_claimed_by_a_batch_and_then_no_longer_listed(
    timed: StateRuntime, world: list[ThreadMetadata]
) -> None:
    found = listed(timed, USER, limit=10)
    assert len(found) == 10
    outcomes = timed.try_claim_phase1_jobs(found, uuid.uuid4(), LEASE)
    assert [o.kind for o in outcomes] == [Phase1ClaimKind.CLAIMED] * 10
    remaining = listed(timed, USER)
    assert not {c.thread_id for c in found} & {c.thread_id for c in remaining}
    assert len(remaining) == 4 * len(STATES) - 10


def test_candidate_filters(timed: StateRuntime, clock: ManualClock) -> None:
    a = thread(updated_at=NOW - 10, source="cli")
    b = thread(updated_at=NOW - 10, source="vscode")
    c = thread(updated_at=NOW - 20, source="exec")
    old = thread(updated_at=NOW - 100)
    for t in (a, b, c, old):
        timed.upsert_thread(t)
    ids = lambda found: [x.thread_id for x in found]  # noqa: E731
    tie = [t.id for t in newest_first([a, b])]
    assert ids(listed(timed, USER)) == [*tie, old.id]
    assert ids(listed(timed, USER, sources=[])) == [*tie, c.id, old.id]  # empty: any source
    assert ids(listed(timed, USER, sources=["exec"])) == [c.id]
    assert ids(listed(timed, USER, max_age_seconds=50)) == tie
    assert ids(listed(timed, USER, max_age_seconds=10)) == tie  # updated exactly at the bound
    assert ids(listed(timed, USER, max_age_seconds=9)) == []
    assert ids(listed(timed, USER, limit=1)) == tie[:1]
    assert listed(timed, USER, limit=0) == []
    assert ids(listed(timed, USER, exclude_thread_id=str(a.id).upper())) == [
        t for t in [*tie, old.id] if t != a.id
    ]
    # Codex's thread scan window: only the newest scan_limit threads passing the filters.
    assert ids(listed(timed, USER, scan_limit=1)) == tie  # ties with the last one included
    assert ids(listed(timed, USER, scan_limit=3)) == [*tie, old.id]
    assert ids(listed(timed, USER, scan_limit=3, sources=[])) == [*tie, c.id]
    assert listed(timed, USER, scan_limit=0) == []
    clock.advance(100)  # everything ages
    assert ids(listed(timed, USER, max_age_seconds=200)) == [*tie, old.id]
    assert ids(listed(timed, USER, max_age_seconds=110)) == tie
    assert ids(listed(timed, USER, max_age_seconds=109)) == []


def test_a_running_lease_is_judged_by_the_given_lease(
    timed: StateRuntime, clock: ManualClock
) -> None:
    t = thread(updated_at=NOW)
    timed.upsert_thread(t)
    assert timed.try_claim_phase1_job(t.id, *USER, uuid.uuid4(), 100, LEASE).claimed
    assert listed(timed, USER) == []
    clock.advance(100)
    assert listed(timed, USER, lease_seconds=101) == []
    assert [c.thread_id for c in listed(timed, USER, lease_seconds=100)] == [t.id]


def test_the_per_thread_cwd_scope_keys_each_thread_by_its_cwd(timed: StateRuntime) -> None:
    a = thread(updated_at=NOW - 1, cwd="/work/a/")
    b = thread(updated_at=NOW - 2, cwd="/work/b")
    for t in (a, b):
        timed.upsert_thread(t)
    found = listed(timed, ("cwd", None))
    assert [(c.scope_kind, c.scope_key) for c in found] == [("cwd", "/work/a"), ("cwd", "/work/b")]
    # The job of a's cwd scope blocks a only; a fixed cwd key lists every thread.
    token = timed.try_claim_phase1_job(a.id, "cwd", "/work/a", uuid.uuid4(), 1, LEASE)
    assert token.claimed
    assert [c.thread_id for c in listed(timed, ("cwd", None))] == [b.id]
    assert [c.thread_id for c in listed(timed, ("cwd", "/work/b"))] == [a.id, b.id]
    with pytest.raises(InvalidInputError, match="scope_kind"):
        listed(timed, ("user", None))


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("max_age_seconds", -1),
        ("limit", -1),
        ("lease_seconds", -1),
        ("scan_limit", -5),
        ("sources", "cli"),
    ],
)
def test_bad_selection_arguments(timed: StateRuntime, argument: str, value: Any) -> None:
    with pytest.raises(InvalidInputError, match=argument):
        listed(timed, USER, **{argument: value})


# ------------------------------------------------------------------------------- batch claims


def test_a_batch_gives_each_candidate_the_single_claims_outcome(
    timed: StateRuntime, world: list[ThreadMetadata], clock: ManualClock
) -> None:
    rng = random.Random(3)
    batch = [candidate(t, USER) for t in world] + [candidate(t) for t in world]
    rng.shuffle(batch)
    expected = [would_claim(timed, c) for c in batch]
    assert set(expected) == set(Phase1ClaimKind)
    owner = uuid.uuid4()
    outcomes = timed.try_claim_phase1_jobs(batch, owner, LEASE)
    assert [o.kind for o in outcomes] == expected
    tokens = [o.ownership_token for o in outcomes if o.claimed]
    assert len(set(tokens)) == len(tokens) and all(tokens)
    with timed.engine.connect() as conn:
        for c, outcome in zip(batch, outcomes, strict=True):
            if not outcome.claimed:
                continue
            row = conn.execute(
                select(memory_phase1_jobs).where(
                    memory_phase1_jobs.c.thread_id == str(c.thread_id),
                    memory_phase1_jobs.c.scope_kind == c.scope_kind,
                    memory_phase1_jobs.c.scope_key == c.scope_key,
                )
            ).one()
            assert (row.status, row.owner_session_id, row.ownership_token) == (
                "running",
                str(owner),
                outcome.ownership_token,
            )
            assert (row.started_at, row.source_updated_at) == (clock.current, c.source_updated_at)
            assert (row.finished_at, row.raw_memory_path, row.summary_hash) == (None,) * 3
    # The claimed tokens own their jobs; the batch again finds every one of them running.
    first = next(c for c, o in zip(batch, outcomes, strict=True) if o.claimed)
    token = next(o.ownership_token for o in outcomes if o.claimed)
    assert timed.renew_phase1_job_lease(first.thread_id, first.scope_kind, first.scope_key, token)
    again = timed.try_claim_phase1_jobs(batch, owner, LEASE)
    assert all(not o.claimed for o in again)


def test_batch_claims_take_over_stale_leases_and_newer_input(
    timed: StateRuntime, clock: ManualClock
) -> None:
    a, b = thread(updated_at=NOW), thread(updated_at=NOW)
    for t in (a, b):
        timed.upsert_thread(t)
    owner = uuid.uuid4()
    first = timed.try_claim_phase1_jobs([candidate(a), candidate(b)], owner, LEASE)
    assert all(o.claimed for o in first)
    assert timed.mark_phase1_job_succeeded(
        a.id, "cwd", str(a.cwd), str(first[0].ownership_token), "/p", "h"
    )
    clock.advance(LEASE)
    newer = candidate(a).model_copy(update={"source_updated_at": NOW + 1})
    second = timed.try_claim_phase1_jobs([newer, candidate(b)], owner, LEASE)
    assert [o.kind for o in second] == [Phase1ClaimKind.CLAIMED] * 2
    assert {o.ownership_token for o in second}.isdisjoint({o.ownership_token for o in first})
    assert not timed.renew_phase1_job_lease(b.id, "cwd", str(b.cwd), str(first[1].ownership_token))
    same = timed.try_claim_phase1_jobs([newer], owner, 0)  # lease 0: any running job is stale
    assert same[0].claimed


def test_batch_input_forms_and_errors(timed: StateRuntime) -> None:
    a = thread(updated_at=NOW)
    timed.upsert_thread(a)
    owner = uuid.uuid4()
    assert timed.try_claim_phase1_jobs([], owner, LEASE) == []
    outcome = timed.try_claim_phase1_jobs([(str(a.id).upper(), *USER, 5)], owner, LEASE)
    assert outcome[0].claimed
    for bad in (
        [(a.id, "user")],
        [(a.id, *USER, "5")],
        [(a.id, *USER, True)],
        [("nope", *USER, 5)],
        "abc",
        [candidate(a), candidate(a)],
    ):
        with pytest.raises(InvalidInputError):
            timed.try_claim_phase1_jobs(bad, owner, LEASE)
    many = [(a.id, "user", str(n), 5) for n in range(MAX_PHASE1_BATCH + 1)]
    with pytest.raises(InvalidInputError, match="at most"):
        timed.try_claim_phase1_jobs(many, owner, LEASE)
    with pytest.raises(InvalidInputError, match="lease_seconds"):
        timed.try_claim_phase1_jobs([candidate(a)], owner, -1)
    # An unknown thread fails the batch before anything is claimed.
    unknown = uuid.uuid4()
    with pytest.raises(ThreadNotFoundError, match=str(unknown)):
        timed.try_claim_phase1_jobs([candidate(a), (unknown, *USER, 5)], owner, LEASE)
    with timed.engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(memory_phase1_jobs)).scalar()
    assert count == 1  # only the tuple claim above
