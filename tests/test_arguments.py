"""The argument checks of `codex_state.arguments` and the value rules of the pydantic models."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from codex_state.arguments import (
    INT64_MAX,
    INT64_MIN,
    as_path,
    check_count,
    check_epoch,
    check_int64,
    check_limit,
    check_log_entries,
    check_log_entry,
    check_log_query,
    check_optional_text,
    check_owner_id,
    check_strings,
    check_text,
    check_texts,
    check_thread_metadata,
    check_watermark,
)
from codex_state.errors import InvalidInputError, InvalidThreadIdError
from codex_state.models import (
    LogEntry,
    LogQuery,
    ThreadMetadata,
    canonical_log_thread_id,
    parse_thread_id,
)

ID = "0193c5a0-0000-7000-8000-0000000000a1"


@pytest.mark.parametrize("value", [0, 1, -1, INT64_MIN, INT64_MAX])
def test_int64_accepts_the_whole_signed_range(value: int) -> None:
    assert check_int64("n", value) == value


@pytest.mark.parametrize(
    "value", [INT64_MAX + 1, INT64_MIN - 1, 10**100, True, False, 1.0, "5", None, b"1"]
)
def test_int64_refuses_other_values(value: object) -> None:
    with pytest.raises(InvalidInputError, match=r"^n must be a 64-bit signed integer, got "):
        check_int64("n", value)


def test_a_huge_integer_is_described_not_printed() -> None:
    # repr() of an int beyond 4300 digits raises ValueError, and would be useless anyway.
    with pytest.raises(InvalidInputError, match="got an integer of 33220 bits"):
        check_int64("n", 10**10_000)


def test_int64_bounds_are_inclusive_and_named() -> None:
    assert check_int64("n", 3, minimum=3, maximum=5) == 3
    assert check_int64("n", 5, minimum=3, maximum=5) == 5
    with pytest.raises(InvalidInputError, match="n must be an integer from 3 to 5, got 6"):
        check_int64("n", 6, minimum=3, maximum=5)


def test_counts_epochs_and_limits() -> None:
    assert check_count("tokens_used", 0) == 0
    assert check_count("tokens_used", INT64_MAX) == INT64_MAX
    for bad in (-1, INT64_MAX + 1, True, 2.0):
        with pytest.raises(InvalidInputError, match="tokens_used must be a non-negative integer"):
            check_count("tokens_used", bad)

    assert check_epoch("cutoff_ts", 1_770_000_000) == 1_770_000_000
    with pytest.raises(InvalidInputError, match="cutoff_ts must be epoch seconds"):
        check_epoch("cutoff_ts", 1.5)
    with pytest.raises(InvalidInputError, match="cutoff_ts must be a non-negative integer"):
        check_epoch("cutoff_ts", -1)
    with pytest.raises(InvalidInputError, match="cutoff_ts must be a non-negative integer"):
        check_epoch("cutoff_ts", 2**63)

    assert check_limit(None) is None
    assert check_limit(1) == 1
    for bad in (0, -5, "5", 5.0, True, 2**63):
        with pytest.raises(InvalidInputError, match="limit must be a positive integer"):
            check_limit(bad)
    with pytest.raises(InvalidInputError, match=r"^batch must"):
        check_limit(0, name="batch")


@pytest.mark.parametrize("value", ["", "plain ascii", "naïve — 日本語 🎉", "tab\tand\nnewline"])
def test_text_accepts_any_storable_string(value: str) -> None:
    assert check_text("title", value) is value


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("nul\x00inside", "contains a NUL character"),
        ("\x00", "contains a NUL character"),
        ("lone \udcff surrogate", "contains a lone surrogate"),
        ("\ud83d", "contains a lone surrogate"),  # half of a pair, as from a bad JSON \\u escape
        (b"\xff".decode("utf-8", "surrogateescape"), "contains a lone surrogate"),
    ],
)
def test_text_refuses_what_a_backend_cannot_store(value: str, problem: str) -> None:
    with pytest.raises(InvalidInputError, match=rf"^title must be storable text: it {problem}"):
        check_text("title", value)


@pytest.mark.parametrize("value", [None, b"bytes", 1, Path("/p")])
def test_text_must_be_a_str(value: object) -> None:
    with pytest.raises(InvalidInputError, match=r"^title must be a str, got "):
        check_text("title", value)


def test_optional_texts_watermarks_and_keyword_texts() -> None:
    assert check_optional_text("git_sha", None) is None
    assert check_optional_text("git_sha", "abc") == "abc"
    assert check_watermark(None) is None
    assert check_watermark("sessions/2026/02/01/rollout-x.jsonl") is not None
    with pytest.raises(InvalidInputError, match=r"^watermark must be a str"):
        check_watermark(17)
    with pytest.raises(InvalidInputError, match=r"^last_watermark must be storable"):
        check_watermark("a\x00b", name="last_watermark")
    check_texts(scope_kind="cwd", scope_key="/w")
    with pytest.raises(InvalidInputError, match=r"^raw_memory must be a str"):
        check_texts(scope_kind="cwd", raw_memory=None)
    with pytest.raises(InvalidInputError, match=r"^scope_key must be storable"):
        check_texts(scope_kind="cwd", scope_key="\udc80")


def test_string_lists_and_paths_check_their_text() -> None:
    assert check_strings("allowed_sources", ["cli", "exec"]) == ("cli", "exec")
    with pytest.raises(InvalidInputError, match="allowed_sources must be storable text"):
        check_strings("allowed_sources", ["cli", "e\x00xec"])
    assert as_path("cwd", "/w") == Path("/w")
    with pytest.raises(InvalidInputError, match="cwd must be storable text"):
        as_path("cwd", "/w\udcff")

    class BytesPath:
        def __fspath__(self) -> bytes:
            return b"/w"

    with pytest.raises(InvalidInputError, match="cwd must be a path"):
        as_path("cwd", BytesPath())


@pytest.mark.parametrize("text", [ID, ID.upper(), "0193C5a0-0000-7000-8000-0000000000A1"])
def test_thread_ids_in_the_canonical_form_any_case(text: str) -> None:
    assert parse_thread_id(text) == uuid.UUID(ID)
    assert check_owner_id("owner_session_id", text) == ID
    assert canonical_log_thread_id(text) == ID


@pytest.mark.parametrize(
    "text",
    [
        "{" + ID + "}",
        "urn:uuid:" + ID,
        ID.replace("-", ""),  # uuid.UUID takes 32 bare hex digits
        "0193c5a00000-7000-8000-0000-000000a1",  # hyphens in the wrong places
        ID + "\n",
        " " + ID,
        ID[:-1] + "g",
        ID[:-1] + "\uff11",  # a fullwidth digit: \d would match it, [0-9] does not
        "",
        "not-a-uuid",
    ],
)
def test_other_spellings_are_not_thread_ids(text: str) -> None:
    with pytest.raises(InvalidThreadIdError, match=r"^invalid thread id: "):
        parse_thread_id(text)
    with pytest.raises(InvalidThreadIdError, match=r"^invalid owner_session_id \(a thread id\)"):
        check_owner_id("owner_session_id", text)
    assert canonical_log_thread_id(text) == text  # log thread ids may be any text, kept as is


def test_spellings_the_uuid_module_takes_are_refused() -> None:
    for text in ("{" + ID + "}", "urn:uuid:" + ID, ID.replace("-", "")):
        assert uuid.UUID(text) == uuid.UUID(ID)  # what parse_thread_id used to accept
        with pytest.raises(InvalidThreadIdError):
            parse_thread_id(text)


@pytest.mark.parametrize("value", [None, 42, b"0193c5a0", uuid.UUID(ID).bytes])
def test_thread_ids_of_other_types_are_refused(value: object) -> None:
    with pytest.raises(InvalidThreadIdError):
        parse_thread_id(value)  # type: ignore[arg-type]
    with pytest.raises(InvalidThreadIdError):
        check_owner_id("working_thread_id", value)


def test_uuid_objects_pass_through_and_errors_are_bad_input() -> None:
    value = uuid.UUID(ID)
    assert parse_thread_id(value) is value
    assert check_owner_id("working_thread_id", value) == ID
    assert issubclass(InvalidThreadIdError, InvalidInputError)
    assert issubclass(InvalidThreadIdError, ValueError)
    with pytest.raises(InvalidThreadIdError) as raised:
        parse_thread_id("x" * 10_000)
    assert len(str(raised.value)) < 120  # a huge argument is not echoed whole


def _thread(**fields: Any) -> ThreadMetadata:
    values: dict[str, Any] = {
        "id": ID,
        "rollout_path": Path("/r.jsonl"),
        "created_at": datetime(2026, 2, 1, tzinfo=UTC),
        "updated_at": datetime(2026, 2, 1, tzinfo=UTC),
        "source": "cli",
        "model_provider": "openai",
        "cwd": Path("/w"),
    }
    values.update(fields)
    return ThreadMetadata.model_validate(values)


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"tokens_used": -1}, "tokens_used must be a non-negative integer"),
        ({"tokens_used": 2**63}, "tokens_used must be a non-negative integer"),
        ({"title": "a\x00b"}, "title must be storable text"),
        ({"first_user_message": "\udcff"}, "first_user_message must be storable text"),
        ({"git_branch": "main\x00"}, "git_branch must be storable text"),
        ({"cwd": Path("/w\x00")}, "cwd must be storable text"),
        ({"rollout_path": Path("/r\udcff.jsonl")}, "rollout_path must be storable text"),
    ],
)
def test_thread_metadata_fields_must_fit_their_columns(
    update: dict[str, Any], message: str
) -> None:
    # model_copy(update=...) skips validation, which is how rollout items update a thread.
    with pytest.raises(InvalidInputError, match=message):
        check_thread_metadata(_thread().model_copy(update=update))


def test_thread_metadata_passes_and_other_types_do_not() -> None:
    thread = _thread(tokens_used=INT64_MAX, first_user_message="héllo")
    assert check_thread_metadata(thread) is thread
    with pytest.raises(InvalidInputError, match="expected ThreadMetadata, got dict"):
        check_thread_metadata({"id": ID})


def test_log_entries_must_be_log_entries() -> None:
    entry = LogEntry(ts=1, level="INFO", target="t")
    assert check_log_entry(entry) is entry
    assert check_log_entries([entry, entry]) == [entry, entry]
    assert check_log_entries(iter([entry])) == [entry]
    assert check_log_entries(()) == []
    for bad in ("x", {"ts": 1}, None, 7):
        with pytest.raises(InvalidInputError, match="expected a LogEntry"):
            check_log_entry(bad)
    for bad_batch in (None, "x", b"x", {"ts": 1}, entry, 7):
        with pytest.raises(InvalidInputError, match="entries must be an iterable of LogEntry"):
            check_log_entries(bad_batch)
    with pytest.raises(InvalidInputError, match="expected a LogEntry, got dict"):
        check_log_entries([entry, {"ts": 1, "level": "INFO", "target": "t"}])


@pytest.mark.parametrize(
    "fields",
    [
        {"ts": 2**63},
        {"ts": -(2**63) - 1},
        {"ts_nanos": 2**64},
        {"line": 2**63},
        {"message": "nul \x00"},
        {"target": "\udcff"},
        {"level": "INFO\x00"},
        {"thread_id": "t\x00"},
        {"module_path": "m\udc80"},
        {"file": "f\x00"},
    ],
)
def test_log_entry_fields_are_checked_when_built(fields: dict[str, Any]) -> None:
    values: dict[str, Any] = {"ts": 1, "level": "INFO", "target": "t", **fields}
    with pytest.raises(ValidationError):
        LogEntry.model_validate(values)


def test_log_entry_keeps_the_whole_64_bit_range() -> None:
    entry = LogEntry(ts=INT64_MIN, ts_nanos=INT64_MAX, level="I", target="t", line=INT64_MAX)
    assert (entry.ts, entry.ts_nanos, entry.line) == (INT64_MIN, INT64_MAX, INT64_MAX)


@pytest.mark.parametrize(
    "fields",
    [
        {"from_ts": 2**63},
        {"to_ts": -(2**63) - 1},
        {"after_id": 2**63},
        {"limit": 2**63},
        {"limit": -1},
        {"module_like": ("a\x00",)},
        {"file_like": ("\udcff",)},
        {"level_upper": "\x00"},
        {"thread_ids": ("\x00",)},
    ],
)
def test_log_query_fields_are_checked_when_built(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        LogQuery.model_validate(fields)


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"from_ts": 2**63}, "from_ts must be a 64-bit"),
        ({"to_ts": "5"}, "to_ts must be a 64-bit"),
        ({"after_id": -(2**64)}, "after_id must be a 64-bit"),
        ({"limit": 10**20}, "limit must be a non-negative integer"),
        ({"limit": -1}, "limit must be a non-negative integer"),
    ],
)
def test_log_query_integers_are_checked_again(update: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        check_log_query(LogQuery().model_copy(update=update))


def test_log_query_type() -> None:
    query = LogQuery(limit=0, from_ts=INT64_MIN, to_ts=INT64_MAX, after_id=INT64_MAX)
    assert check_log_query(query) is query
    assert check_log_query(None, allow_none=True) == LogQuery()
    for bad in (None, {"limit": 5}, "x"):
        with pytest.raises(InvalidInputError, match="expected a LogQuery"):
            check_log_query(bad)
