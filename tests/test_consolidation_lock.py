"""Consolidation locks and scope dirty flags on every backend."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from codex_state import InvalidInputError, InvalidThreadIdError, ManualClock, StateRuntime
from codex_state.orm import memory_consolidation_locks, memory_scope_dirty
from tests.conftest import Backend
from tests.memory_support import T0

LEASE = 600
ROOT = Path("/codex/memories/0123456789abcdef/memory")


def test_lock_enforces_owner_and_release(runtime: StateRuntime) -> None:
    owner_a, owner_b = uuid.uuid4(), uuid.uuid4()
    assert runtime.try_acquire_memory_consolidation_lock(ROOT, owner_a, LEASE)
    assert not runtime.try_acquire_memory_consolidation_lock(ROOT, owner_b, LEASE)
    assert runtime.try_acquire_memory_consolidation_lock(ROOT, owner_a, LEASE)
    assert not runtime.release_memory_consolidation_lock(ROOT, owner_b)
    assert runtime.release_memory_consolidation_lock(ROOT, owner_a)
    assert not runtime.release_memory_consolidation_lock(ROOT, owner_a)
    assert runtime.try_acquire_memory_consolidation_lock(ROOT, owner_b, LEASE)


def test_lock_can_be_stolen_when_lease_expired(runtime: StateRuntime) -> None:
    owner_a, owner_b = uuid.uuid4(), uuid.uuid4()
    assert runtime.try_acquire_memory_consolidation_lock(ROOT, owner_a, LEASE)
    assert runtime.try_acquire_memory_consolidation_lock(ROOT, owner_b, 0)
    assert not runtime.release_memory_consolidation_lock(ROOT, owner_a)
    assert runtime.release_memory_consolidation_lock(ROOT, owner_b)


def test_lock_lease_ages_with_the_clock_and_renewal_restarts_it(backend: Backend) -> None:
    clock = ManualClock(T0)
    runtime = backend.runtime(clock=clock)
    owner_a, owner_b = uuid.uuid4(), uuid.uuid4()
    assert runtime.try_acquire_memory_consolidation_lock(ROOT, owner_a, LEASE)
    clock.advance(LEASE - 1)
    assert runtime.try_acquire_memory_consolidation_lock(ROOT, owner_a, LEASE)  # renew
    clock.advance(LEASE - 1)
    assert not runtime.try_acquire_memory_consolidation_lock(ROOT, owner_b, LEASE)
    clock.advance(1)
    assert runtime.try_acquire_memory_consolidation_lock(ROOT, owner_b, LEASE)
    with runtime.engine.connect() as conn:
        row = conn.execute(select(memory_consolidation_locks)).one()
    assert (row.cwd, row.working_thread_id, row.updated_at) == (
        str(ROOT),
        str(owner_b),
        clock.current,
    )


def test_locks_are_per_path_and_owner_ids_compare_canonically(runtime: StateRuntime) -> None:
    owner = uuid.uuid4()
    assert runtime.try_acquire_memory_consolidation_lock(str(ROOT), str(owner).upper(), LEASE)
    assert runtime.try_acquire_memory_consolidation_lock(ROOT, owner, LEASE)
    other_owner, third_owner = uuid.uuid4(), uuid.uuid4()
    assert runtime.try_acquire_memory_consolidation_lock("/codex/other", other_owner, LEASE)
    assert not runtime.try_acquire_memory_consolidation_lock("/codex/other", third_owner, LEASE)
    assert runtime.release_memory_consolidation_lock(ROOT, str(owner))


def test_lock_rejects_bad_arguments(runtime: StateRuntime) -> None:
    with pytest.raises(InvalidInputError, match="lease_seconds"):
        runtime.try_acquire_memory_consolidation_lock(ROOT, uuid.uuid4(), -1)
    with pytest.raises(InvalidThreadIdError, match="working_thread_id"):
        runtime.try_acquire_memory_consolidation_lock(ROOT, 42, LEASE)  # type: ignore[arg-type]
    with pytest.raises(InvalidThreadIdError, match="working_thread_id"):
        runtime.try_acquire_memory_consolidation_lock(ROOT, "host-b:42", LEASE)
    with pytest.raises(InvalidInputError, match="cwd must be a path"):
        runtime.release_memory_consolidation_lock(None, uuid.uuid4())  # type: ignore[arg-type]
    assert runtime.try_acquire_memory_consolidation_lock(ROOT, uuid.uuid4(), LEASE)


def test_mark_memory_scope_dirty_upserts_the_flag(backend: Backend) -> None:
    clock = ManualClock(T0)
    runtime = backend.runtime(clock=clock)
    runtime.mark_memory_scope_dirty("cwd", "/codex/a", True)
    clock.advance(5)
    runtime.mark_memory_scope_dirty("user", "user", True)
    runtime.mark_memory_scope_dirty("cwd", "/codex/a", False)
    with runtime.engine.connect() as conn:
        rows = conn.execute(
            select(memory_scope_dirty).order_by(memory_scope_dirty.c.scope_kind)
        ).all()
    assert [tuple(row) for row in rows] == [
        ("cwd", "/codex/a", 0, T0 + 5),
        ("user", "user", 1, T0 + 5),
    ]
    with pytest.raises(InvalidInputError, match="dirty must be a bool"):
        runtime.mark_memory_scope_dirty("cwd", "/codex/a", 1)  # type: ignore[arg-type]
