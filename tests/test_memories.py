"""Thread memories on every backend: the seed's memory tests, ordering, guards and cascades."""

from __future__ import annotations

import uuid
from pathlib import Path, PurePosixPath

import pytest
from sqlalchemy import Table, func, select, update

from codex_state import (
    DynamicToolSpec,
    InvalidInputError,
    InvalidThreadIdError,
    ManualClock,
    StateRuntime,
    ThreadNotFoundError,
)
from codex_state.clock import from_epoch_seconds
from codex_state.orm import memory_phase1_jobs, thread_dynamic_tools, thread_memory, threads
from tests.conftest import Backend
from tests.memory_support import SCOPE, T0, add_thread, claim_token


def count_rows(runtime: StateRuntime, table: Table, thread_id: uuid.UUID) -> int:
    statement = select(func.count()).where(table.c.thread_id == str(thread_id))
    with runtime.engine.connect() as conn:
        return int(conn.execute(statement).scalar_one())


def test_upsert_and_get_thread_memory(runtime: StateRuntime) -> None:
    thread_id = add_thread(runtime, "/codex/a")
    assert runtime.get_thread_memory(thread_id) is None

    inserted = runtime.upsert_thread_memory(thread_id, "trace one", "memory one")
    assert (inserted.thread_id, inserted.raw_memory, inserted.memory_summary) == (
        thread_id,
        "trace one",
        "memory one",
    )
    assert (inserted.scope_kind, inserted.scope_key) == ("cwd", "/codex/a")
    assert inserted.used_count == 0 and inserted.last_used_at is None

    updated = runtime.upsert_thread_memory(thread_id, "trace two", "memory two")
    assert (updated.raw_memory, updated.memory_summary) == ("trace two", "memory two")
    assert updated.updated_at > inserted.updated_at
    assert runtime.get_thread_memory(str(thread_id).upper()) == updated


def test_updated_at_strictly_increases_when_the_clock_stands_still_or_goes_back(
    backend: Backend,
) -> None:
    clock = ManualClock(T0)
    runtime = backend.runtime(clock=clock)
    thread_id = add_thread(runtime)
    stamps = [
        runtime.upsert_thread_memory_for_scope(thread_id, "user", "user", "r", f"s{i}").updated_at
        for i in range(3)
    ]
    assert stamps == [from_epoch_seconds(T0 + i) for i in range(3)]

    clock.current = T0 - 100
    back = runtime.upsert_thread_memory_for_scope(thread_id, "user", "user", "r", "back")
    assert back.updated_at == from_epoch_seconds(T0 + 3)

    clock.current = T0 + 50
    ahead = runtime.upsert_thread_memory_for_scope(thread_id, "user", "user", "r", "ahead")
    assert ahead.updated_at == from_epoch_seconds(T0 + 50)


def test_get_thread_memory_returns_newest_across_scopes(backend: Backend) -> None:
    clock = ManualClock(T0)
    runtime = backend.runtime(clock=clock)
    thread_id = add_thread(runtime)
    runtime.upsert_thread_memory_for_scope(thread_id, "cwd", "/a", "old", "old")
    clock.advance(10)
    runtime.upsert_thread_memory_for_scope(thread_id, "user", "user", "new", "new")
    newest = runtime.get_thread_memory(thread_id)
    assert newest is not None and newest.scope_kind == "user"

    # Same second: the seed breaks ties by scope_kind, then scope_key, descending.
    runtime.upsert_thread_memory_for_scope(thread_id, "agent", "x", "tie", "tie")
    runtime.upsert_thread_memory_for_scope(thread_id, "zeta", "k", "tie", "tie")
    newest = runtime.get_thread_memory(thread_id)
    assert newest is not None and newest.scope_kind == "zeta"


def test_get_last_n_thread_memories_for_cwd_matches_exactly(backend: Backend) -> None:
    runtime = backend.runtime(clock=ManualClock(T0))  # every write in the same second
    cwd_a, cwd_b = Path("/codex/workspace-a"), Path("/codex/workspace-b")
    t1, t2, t3 = add_thread(runtime, cwd_a), add_thread(runtime, cwd_a), add_thread(runtime, cwd_b)
    first = runtime.upsert_thread_memory(t1, "trace-1", "memory-1")
    runtime.upsert_thread_memory(t2, "trace-2", "memory-2")
    runtime.upsert_thread_memory(t3, "trace-3", "memory-3")
    runtime.upsert_thread_memory(t1, "trace-1b", "memory-1b")

    cwd_a_memories = runtime.get_last_n_thread_memories_for_cwd(cwd_a, 2)
    assert [m.thread_id for m in cwd_a_memories] == [t1, t2]
    assert (cwd_a_memories[0].raw_memory, cwd_a_memories[0].memory_summary) == (
        "trace-1b",
        "memory-1b",
    )
    assert cwd_a_memories[0].updated_at > first.updated_at

    assert [m.thread_id for m in runtime.get_last_n_thread_memories_for_cwd(cwd_b, 10)] == [t3]
    # Keys are `str(Path(cwd))`, the form thread cwds are stored in.
    assert runtime.get_last_n_thread_memories_for_cwd(f"{cwd_b}/", 10)[0].thread_id == t3
    assert runtime.get_last_n_thread_memories_for_cwd(PurePosixPath("/codex/missing"), 10) == []


def test_empty_cwd_scope_matches_the_stored_empty_cwd(runtime: StateRuntime) -> None:
    thread_id = add_thread(runtime, "")
    memory = runtime.upsert_thread_memory(thread_id, "r", "s")
    assert memory.scope_key == ""
    assert runtime.get_last_n_thread_memories_for_cwd("", 5) == [memory]
    assert runtime.get_last_n_thread_memories_for_cwd(Path(), 5) == [memory]


def test_last_n_ties_break_by_thread_id_descending(backend: Backend) -> None:
    runtime = backend.runtime(clock=ManualClock(T0))
    ids = [add_thread(runtime) for _ in range(4)]
    for thread_id in ids:
        runtime.upsert_thread_memory_for_scope(thread_id, "user", "user", "r", "s")
    got = runtime.get_last_n_thread_memories_for_scope("user", "user", 10)
    assert [m.thread_id for m in got] == sorted(ids, key=str, reverse=True)
    assert len(runtime.get_last_n_thread_memories_for_scope("user", "user", 3)) == 3


def test_last_n_excludes_invalidated_memories(runtime: StateRuntime) -> None:
    kept, dropped = add_thread(runtime), add_thread(runtime)
    for thread_id in (kept, dropped):
        runtime.upsert_thread_memory_for_scope(thread_id, "user", "user", "r", "s")
    with runtime.engine.begin() as conn:
        conn.execute(
            update(thread_memory)
            .where(thread_memory.c.thread_id == str(dropped))
            .values(invalidated_at=T0, invalid_reason="stale")
        )
    assert [
        m.thread_id for m in runtime.get_last_n_thread_memories_for_scope("user", "user", 5)
    ] == [kept]
    invalidated = runtime.get_thread_memory(dropped)  # the seed's point read does not filter
    assert invalidated is not None
    assert invalidated.invalidated_at == from_epoch_seconds(T0)
    assert invalidated.invalid_reason == "stale"


def test_get_last_n_thread_memories_for_cwd_zero_returns_empty(runtime: StateRuntime) -> None:
    thread_id = add_thread(runtime, "/codex/workspace")
    runtime.upsert_thread_memory(thread_id, "trace", "memory")
    assert runtime.get_last_n_thread_memories_for_cwd("/codex/workspace", 0) == []
    with pytest.raises(InvalidInputError, match="n must be a non-negative integer"):
        runtime.get_last_n_thread_memories_for_cwd("/codex/workspace", -1)


def test_get_last_n_thread_memories_for_cwd_does_not_prefix_match(runtime: StateRuntime) -> None:
    exact = add_thread(runtime, "/codex/workspace")
    prefix = add_thread(runtime, "/codex/workspace-child")
    runtime.upsert_thread_memory(exact, "trace-exact", "memory-exact")
    runtime.upsert_thread_memory(prefix, "trace-prefix", "memory-prefix")
    only = runtime.get_last_n_thread_memories_for_cwd("/codex/workspace", 10)
    assert [(m.thread_id, m.memory_summary) for m in only] == [(exact, "memory-exact")]


def test_unknown_thread_raises_thread_not_found_and_writes_nothing(runtime: StateRuntime) -> None:
    unknown = uuid.uuid4()
    writes = [
        lambda: runtime.upsert_thread_memory(unknown, "trace", "memory"),
        lambda: runtime.upsert_thread_memory_for_scope(unknown, "user", "user", "r", "s"),
        lambda: runtime.upsert_thread_memory_for_scope_if_phase1_owner(
            unknown, *SCOPE, "token", "r", "s"
        ),
        lambda: runtime.try_claim_phase1_job(unknown, *SCOPE, uuid.uuid4(), 100, 3600),
    ]
    for write in writes:
        with pytest.raises(ThreadNotFoundError, match=f"thread not found: {unknown}"):
            write()
    assert count_rows(runtime, thread_memory, unknown) == 0
    assert count_rows(runtime, memory_phase1_jobs, unknown) == 0
    assert runtime.get_thread_memory(unknown) is None


def test_bad_arguments_are_rejected(runtime: StateRuntime) -> None:
    thread_id = add_thread(runtime)
    with pytest.raises(InvalidThreadIdError):
        runtime.upsert_thread_memory("not-a-uuid", "r", "s")
    with pytest.raises(InvalidInputError, match="raw_memory must be a str"):
        runtime.upsert_thread_memory(thread_id, None, "s")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="cwd must be a path"):
        runtime.get_last_n_thread_memories_for_cwd(b"/codex", 1)  # type: ignore[arg-type]
    assert runtime.get_thread_memory(thread_id) is None


def test_deleting_a_thread_cascades_to_memories_jobs_and_tools(runtime: StateRuntime) -> None:
    thread_id = add_thread(runtime, "/codex/workspace")
    runtime.upsert_thread_memory(thread_id, "trace", "memory")
    claim_token(runtime, thread_id)
    runtime.persist_dynamic_tools(
        thread_id, [DynamicToolSpec(name="t", description="d", inputSchema={"type": "object"})]
    )
    tables = (thread_memory, memory_phase1_jobs, thread_dynamic_tools)
    assert [count_rows(runtime, table, thread_id) for table in tables] == [1, 1, 1]

    with runtime.engine.begin() as conn:
        conn.execute(threads.delete().where(threads.c.id == str(thread_id)))

    assert [count_rows(runtime, table, thread_id) for table in tables] == [0, 0, 0]
    assert runtime.get_thread_memory(thread_id) is None
