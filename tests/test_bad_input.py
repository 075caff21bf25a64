"""Bad input at the API: a clear `InvalidInputError` (or `InvalidThreadIdError`), nothing written.

Runs on every backend and through every entry (the runtime's facade and the repositories on a
caller's Session): the checks live in the repositories, so both must refuse alike. Each case was
a raw driver error, a wrong row or a silent success before.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from codex_state import (
    InvalidInputError,
    InvalidThreadIdError,
    LogEntry,
    LogQuery,
    ThreadMetadata,
)
from tests.memory_support import SCOPE, add_thread, claim_token
from tests.test_threads import make_thread

BIG = 2**63
SMALL = -(2**63) - 1


def _snapshot(runtime: Any) -> tuple[object, ...]:
    return (
        runtime.list_threads(100, archived_only=False).items,
        runtime.query_logs(LogQuery()),
        runtime.get_backfill_state(),
    )


def _refused(runtime: Any, call: Callable[[], object], error: type[Exception], match: str) -> None:
    before = _snapshot(runtime)
    with pytest.raises(error, match=match):
        call()
    assert _snapshot(runtime) == before


@pytest.mark.parametrize("value", [BIG, SMALL, "10", True, 1.5])
def test_integers_must_be_int64_of_the_right_sign(runtime: Any, value: object) -> None:
    thread_id = add_thread(runtime)
    runtime.insert_logs([LogEntry(ts=5, level="INFO", target="t")])
    calls: dict[str, Callable[[], object]] = {
        "page_size": lambda: runtime.list_threads(value),
        "limit": lambda: runtime.list_thread_ids(value),
        "n": lambda: runtime.get_last_n_thread_memories_for_scope(*SCOPE, value),
        "source_updated_at": lambda: runtime.try_claim_phase1_job(
            thread_id, *SCOPE, uuid.uuid4(), value, 60
        ),
        "lease_seconds": lambda: runtime.try_acquire_memory_consolidation_lock(
            "/m", thread_id, value
        ),
        "cutoff_ts": lambda: runtime.delete_logs_before(value),
        "max_rows": lambda: runtime.trim_logs(value),
    }
    for name, call in calls.items():
        _refused(runtime, call, InvalidInputError, name)
    assert len(runtime.query_logs(LogQuery())) == 1  # "abc" used to delete every row on SQLite


def test_log_values_out_of_range_are_refused_when_built() -> None:
    for field in ("ts", "line", "ts_nanos"):
        with pytest.raises(ValueError):
            LogEntry(level="INFO", target="t", **{"ts": 1, field: BIG})
    for field in ("from_ts", "to_ts", "after_id", "limit"):
        with pytest.raises(ValueError):
            LogQuery(**{field: BIG})


def test_negative_tokens_and_epochs_are_refused(runtime: Any) -> None:
    thread = make_thread()
    negative = thread.model_copy(update={"tokens_used": -1})
    _refused(runtime, lambda: runtime.upsert_thread(negative), InvalidInputError, "tokens_used")
    huge = thread.model_copy(update={"tokens_used": BIG})
    _refused(runtime, lambda: runtime.upsert_thread(huge), InvalidInputError, "tokens_used")
    _refused(runtime, lambda: runtime.delete_logs_before(-1), InvalidInputError, "cutoff_ts")


@pytest.mark.parametrize("bad", ["\ud800", "nul\x00here"])
def test_text_a_database_cannot_store_is_refused(runtime: Any, bad: str) -> None:
    thread_id = add_thread(runtime)
    token = claim_token(runtime, thread_id)
    titled = make_thread(title=bad)
    calls: dict[str, Callable[[], object]] = {
        "title": lambda: runtime.upsert_thread(titled),
        "cwd": lambda: runtime.upsert_thread(make_thread(cwd=f"/w/{bad}")),
        "raw_memory": lambda: runtime.upsert_thread_memory(thread_id, bad, "s"),
        "scope_key": lambda: runtime.upsert_thread_memory_for_scope(thread_id, "k", bad, "r", "s"),
        "memory_summary": lambda: runtime.upsert_thread_memory_for_scope_if_phase1_owner(
            thread_id, *SCOPE, token, "r", bad
        ),
        "failure_reason": lambda: runtime.mark_phase1_job_failed(thread_id, *SCOPE, token, bad),
        "watermark": lambda: runtime.checkpoint_backfill(bad),
    }
    for name, call in calls.items():
        _refused(runtime, call, InvalidInputError, name)
    with pytest.raises(ValueError):
        LogEntry(ts=1, level="INFO", target="t", message=bad)
    with pytest.raises(ValueError):
        LogEntry(ts=1, level=bad, target="t")
    assert runtime.get_thread_memory(thread_id) is None


def test_wrong_types_never_reach_the_driver(runtime: Any) -> None:
    entry = LogEntry(ts=1, level="INFO", target="t")
    calls: list[Callable[[], object]] = [
        lambda: runtime.insert_logs([{"ts": 1, "level": "INFO", "target": "t"}]),
        lambda: runtime.insert_logs(None),
        lambda: runtime.insert_logs(entry),
        lambda: runtime.insert_log("x"),
        lambda: runtime.query_logs(None),
        lambda: runtime.max_log_id("level=INFO"),
        lambda: runtime.trim_logs("5"),
        lambda: runtime.delete_logs_before("abc"),
        lambda: runtime.checkpoint_backfill(123),
        lambda: runtime.mark_backfill_complete(123),
        lambda: runtime.upsert_thread({"id": str(uuid.uuid4())}),
        lambda: runtime.mark_memory_scope_dirty(*SCOPE, 1),
    ]
    for call in calls:
        _refused(runtime, call, InvalidInputError, ".")


@pytest.mark.parametrize(
    "spelling",
    [
        "{12345678-1234-5678-1234-567812345678}",
        "urn:uuid:12345678-1234-5678-1234-567812345678",
        "12345678123456781234567812345678",
        "1234-5678-12345678-1234-567812345678",
        "worker-7",
        "",
    ],
)
def test_thread_and_owner_ids_take_only_the_canonical_form(runtime: Any, spelling: str) -> None:
    thread_id = add_thread(runtime)
    calls: dict[str, Callable[[], object]] = {
        "thread id": lambda: runtime.get_thread(spelling),
        "owner_session_id": lambda: runtime.try_claim_phase1_job(
            thread_id, *SCOPE, spelling, 100, 60
        ),
        "working_thread_id": lambda: runtime.try_acquire_memory_consolidation_lock(
            "/m", spelling, 60
        ),
    }
    for name, call in calls.items():
        _refused(runtime, call, InvalidThreadIdError, name)


def test_canonical_ids_in_any_case_are_one_id(runtime: Any) -> None:
    thread = make_thread()
    runtime.upsert_thread(thread)
    assert runtime.get_thread(str(thread.id).upper()) == thread
    owner = uuid.uuid4()
    assert runtime.try_acquire_memory_consolidation_lock("/m", str(owner).upper(), 60)
    assert runtime.release_memory_consolidation_lock("/m", owner)
    assert isinstance(thread, ThreadMetadata)
