"""The log repository through `StateRuntime`, on every backend."""

from __future__ import annotations

import uuid

import pytest

from codex_state import InvalidInputError, LogEntry, LogQuery, StateRuntime

T1 = "0193c5a0-0000-7000-8000-000000000001"
T2 = "0193c5a0-0000-7000-8000-000000000002"


def entry(
    ts: int = 1_700_000_000,
    *,
    level: str = "INFO",
    message: str = "m",
    thread_id: str | None = None,
    module_path: str | None = "codex_core::codex",
    file: str | None = "core/src/codex.rs",
) -> LogEntry:
    return LogEntry(
        ts=ts,
        ts_nanos=123,
        level=level,
        target="codex_core::codex",
        message=message,
        thread_id=thread_id,
        module_path=module_path,
        file=file,
        line=7,
    )


def messages(runtime: StateRuntime, query: LogQuery) -> list[str | None]:
    return [row.message for row in runtime.query_logs(query)]


def test_insert_and_read_back_every_column(runtime: StateRuntime) -> None:
    runtime.insert_log(entry(message="hello", thread_id=T1.upper()))
    (row,) = runtime.query_logs(LogQuery())
    assert row.model_dump() == {
        "id": row.id,
        "ts": 1_700_000_000,
        "ts_nanos": 123,
        "level": "INFO",
        "target": "codex_core::codex",
        "message": "hello",
        "thread_id": T1,
        "file": "core/src/codex.rs",
        "line": 7,
    }
    runtime.insert_logs([])  # an empty batch is a no-op
    assert len(runtime.query_logs(LogQuery())) == 1


def test_order_limit_and_after_id(runtime: StateRuntime) -> None:
    runtime.insert_logs([entry(message=str(i)) for i in range(5)])
    assert messages(runtime, LogQuery()) == ["0", "1", "2", "3", "4"]
    assert messages(runtime, LogQuery(descending=True, limit=2)) == ["4", "3"]
    ids = [row.id for row in runtime.query_logs(LogQuery())]
    assert messages(runtime, LogQuery(after_id=ids[2])) == ["3", "4"]
    assert messages(runtime, LogQuery(after_id=ids[0], limit=2)) == ["1", "2"]
    assert messages(runtime, LogQuery(limit=0)) == []


def test_level_is_case_insensitive(runtime: StateRuntime) -> None:
    runtime.insert_logs(
        [entry(level="INFO", message="a"), entry(level="warn", message="b"), entry(level="WARN")]
    )
    assert messages(runtime, LogQuery(level_upper="WARN")) == ["b", "m"]
    assert messages(runtime, LogQuery(level_upper="info")) == ["a"]


def test_time_range_in_epoch_seconds(runtime: StateRuntime) -> None:
    runtime.insert_logs([entry(ts=100 + i, message=str(i)) for i in range(5)])
    assert messages(runtime, LogQuery(from_ts=102)) == ["2", "3", "4"]
    assert messages(runtime, LogQuery(to_ts=101)) == ["0", "1"]
    assert messages(runtime, LogQuery(from_ts=101, to_ts=103)) == ["1", "2", "3"]


def test_module_and_file_substrings_match_literally(runtime: StateRuntime) -> None:
    runtime.insert_logs(
        [
            entry(message="pct", module_path="a%b", file="x_y.rs"),
            entry(message="plain", module_path="axxb", file="xzy.rs"),
            entry(message="slash", module_path="a\\b", file="p/q.rs"),
            entry(message="none", module_path=None, file=None),
            entry(message="upper", module_path="CODEX_CORE", file="Main.RS"),
        ]
    )
    assert messages(runtime, LogQuery(module_like=("%",))) == ["pct"]
    assert messages(runtime, LogQuery(module_like=("a%b",))) == ["pct"]
    assert messages(runtime, LogQuery(file_like=("x_y",))) == ["pct"]
    assert messages(runtime, LogQuery(file_like=("_",))) == ["pct"]
    assert messages(runtime, LogQuery(module_like=("\\",))) == ["slash"]
    assert messages(runtime, LogQuery(file_like=("p/q",))) == ["slash"]
    # Several substrings widen the filter; matching ignores case, as the seed's LIKE did.
    assert messages(runtime, LogQuery(module_like=("xx", "%"))) == ["pct", "plain"]
    assert messages(runtime, LogQuery(module_like=("codex_core",), file_like=("main.rs",))) == [
        "upper"
    ]


def test_thread_ids_and_threadless_form_one_or_group(runtime: StateRuntime) -> None:
    runtime.insert_logs(
        [
            entry(message="t1", thread_id=T1),
            entry(message="t2", thread_id=T2),
            entry(message="none"),
            entry(message="text", thread_id="not-a-uuid"),
        ]
    )
    assert messages(runtime, LogQuery(thread_ids=(T1,))) == ["t1"]
    assert messages(runtime, LogQuery(thread_ids=(T1.upper(), T2))) == ["t1", "t2"]
    assert messages(runtime, LogQuery(include_threadless=True)) == ["none"]
    assert messages(runtime, LogQuery(thread_ids=(T2,), include_threadless=True)) == ["t2", "none"]
    assert messages(runtime, LogQuery(thread_ids=("not-a-uuid",))) == ["text"]
    unknown = str(uuid.uuid4())
    assert messages(runtime, LogQuery(thread_ids=(unknown,))) == []


def test_filters_combine(runtime: StateRuntime) -> None:
    runtime.insert_logs(
        [
            entry(ts=10, level="ERROR", message="hit", thread_id=T1, module_path="core::a"),
            entry(ts=10, level="INFO", message="level", thread_id=T1, module_path="core::a"),
            entry(ts=99, level="ERROR", message="late", thread_id=T1, module_path="core::a"),
            entry(ts=10, level="ERROR", message="thread", thread_id=T2, module_path="core::a"),
            entry(ts=10, level="ERROR", message="module", thread_id=T1, module_path="tui::b"),
            entry(ts=10, level="ERROR", message="hit2", module_path="core::c"),
        ]
    )
    query = LogQuery(
        level_upper="error",
        from_ts=5,
        to_ts=50,
        module_like=("core",),
        file_like=("codex",),
        thread_ids=(T1,),
        include_threadless=True,
    )
    assert messages(runtime, query) == ["hit", "hit2"]
    assert messages(runtime, query.model_copy(update={"descending": True, "limit": 1})) == ["hit2"]
    first = runtime.query_logs(query)[0].id
    assert messages(runtime, query.model_copy(update={"after_id": first})) == ["hit2"]
    assert runtime.max_log_id(query) == runtime.query_logs(query)[-1].id


def test_max_log_id(runtime: StateRuntime) -> None:
    assert runtime.max_log_id(LogQuery()) == 0
    assert runtime.max_log_id() == 0
    runtime.insert_logs([entry(thread_id=T1), entry(thread_id=T2), entry()])
    ids = [row.id for row in runtime.query_logs(LogQuery())]
    assert runtime.max_log_id(LogQuery()) == ids[2]
    assert runtime.max_log_id(LogQuery(thread_ids=(T1,))) == ids[0]
    assert runtime.max_log_id(LogQuery(thread_ids=(T1,), limit=0, descending=True)) == ids[0]
    assert runtime.max_log_id(LogQuery(level_upper="ERROR")) == 0


def test_delete_logs_before_counts_rows(runtime: StateRuntime) -> None:
    runtime.insert_logs([entry(ts=ts) for ts in (10, 20, 20, 30, 40)])
    assert runtime.delete_logs_before(20) == 1
    assert runtime.delete_logs_before(35, limit=2) == 2
    assert runtime.delete_logs_before(35, limit=2) == 1
    assert runtime.delete_logs_before(35) == 0
    assert [row.ts for row in runtime.query_logs(LogQuery())] == [40]


def test_trim_logs_keeps_the_newest_rows(runtime: StateRuntime) -> None:
    runtime.insert_logs([entry(message=str(i)) for i in range(10)])
    assert runtime.trim_logs(7, limit=2) == 2
    assert runtime.trim_logs(7, limit=2) == 1
    assert runtime.trim_logs(7) == 0
    assert messages(runtime, LogQuery()) == [str(i) for i in range(3, 10)]
    assert runtime.trim_logs(0) == 7
    assert runtime.query_logs(LogQuery()) == []


def test_bad_arguments_raise_and_change_nothing(runtime: StateRuntime) -> None:
    runtime.insert_log(entry(ts=1))
    with pytest.raises(InvalidInputError):
        runtime.delete_logs_before(10, limit=0)
    with pytest.raises(InvalidInputError):
        runtime.trim_logs(-1)
    with pytest.raises(ValueError):
        LogQuery(limit=-1)
    assert len(runtime.query_logs(LogQuery())) == 1


def test_a_batch_is_one_transaction(runtime: StateRuntime) -> None:
    good = entry(message="good")
    bad = LogEntry.model_construct(**{**good.model_dump(), "level": None})  # NOT NULL violated
    with pytest.raises(Exception, match="insert_logs"):
        runtime.insert_logs([good, bad])
    assert runtime.query_logs(LogQuery()) == []
