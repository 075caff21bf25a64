"""Checks of public API arguments: bad input raises `InvalidInputError` before any write.

Arguments are checked up front so a wrong value never reaches a statement, where it would
either fail as a driver error (an `OverflowError` or `UnicodeEncodeError` that is not even a
database error), differ between backends (SQLite stores NUL characters, PostgreSQL refuses
them), or, worst, be stored as given. Every check is a pure function: the repositories call
them, and so can anyone who wants the same rules. The rules are listed in docs/errors.md.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from pathlib import Path

from codex_state.errors import InvalidInputError, InvalidThreadIdError
from codex_state.models import (
    INT64_MAX,
    INT64_MIN,
    Anchor,
    LogEntry,
    LogQuery,
    SortKey,
    ThreadMetadata,
    canonical_uuid_text,
    text_problem,
)

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "as_path",
    "check_anchor",
    "check_count",
    "check_epoch",
    "check_int64",
    "check_limit",
    "check_log_entries",
    "check_log_entry",
    "check_log_query",
    "check_optional_text",
    "check_owner_id",
    "check_sort_key",
    "check_strings",
    "check_text",
    "check_texts",
    "check_thread_metadata",
    "check_watermark",
]

_SORT_KEYS = frozenset(key.value for key in SortKey)
_SHOWN_CHARS = 80


def _shown(value: object) -> str:
    """`value` for an error message: a bounded repr (never the whole of a huge argument)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        # repr of a very large int is slow, and beyond 4300 digits it raises ValueError.
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def _range_text(minimum: int, maximum: int) -> str:
    if maximum == INT64_MAX:
        if minimum == 0:
            return "a non-negative integer below 2**63"
        if minimum == 1:
            return "a positive integer below 2**63"
        if minimum == INT64_MIN:
            return "a 64-bit signed integer"
    return f"an integer from {minimum} to {maximum}"


def check_int64(
    name: str, value: object, *, minimum: int = INT64_MIN, maximum: int = INT64_MAX
) -> int:
    """An `int` (not a `bool`) within `[minimum, maximum]`, which lie in signed 64 bits.

    Every integer column is 64-bit: a larger value would fail in the driver (SQLite's
    `OverflowError`, PostgreSQL's out-of-range error) instead of as bad input.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise InvalidInputError(
            f"{name} must be {_range_text(minimum, maximum)}, got {_shown(value)}"
        )
    return value


def check_count(name: str, value: object) -> int:
    """A count, size or amount (page size, lease seconds, tokens used): a non-negative int64."""
    return check_int64(name, value, minimum=0)


def check_epoch(name: str, value: object) -> int:
    """Epoch seconds given as an argument: a non-negative int64 (not a float or a datetime)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{name} must be epoch seconds (int), got {_shown(value)}")
    return check_int64(name, value, minimum=0)


def check_limit(limit: object, *, name: str = "limit") -> int | None:
    """An optional row limit: None, or a positive int64."""
    if limit is None:
        return None
    return check_int64(name, limit, minimum=1)


def check_text(name: str, value: object) -> str:
    """A `str` that every backend stores as given: no NUL character, no lone surrogate.

    SQLite would store a NUL but PostgreSQL refuses it, and a lone surrogate (as from
    `surrogateescape` decoding) cannot be encoded as UTF-8 by either driver.
    """
    if not isinstance(value, str):
        raise InvalidInputError(f"{name} must be a str, got {type(value).__name__}")
    problem = text_problem(value)
    if problem is not None:
        raise InvalidInputError(f"{name} must be storable text: it {problem}")
    return value


def check_optional_text(name: str, value: object) -> str | None:
    """None, or text as `check_text` accepts it."""
    return None if value is None else check_text(name, value)


def check_texts(**values: object) -> None:
    """`check_text` for each keyword argument (`check_texts(scope_kind=..., scope_key=...)`)."""
    for name, value in values.items():
        check_text(name, value)


def check_watermark(value: object, *, name: str = "watermark") -> str | None:
    """A backfill watermark: None, or text (a rollout path relative to the codex home)."""
    return check_optional_text(name, value)


def check_sort_key(value: object) -> SortKey:
    if isinstance(value, str) and value in _SORT_KEYS:
        return SortKey(value)
    choices = ", ".join(sorted(_SORT_KEYS))
    raise InvalidInputError(f"sort_key must be one of {choices}, got {_shown(value)}")


def check_strings(name: str, values: Iterable[str] | None) -> tuple[str, ...]:
    """A filter list; a bare string is refused rather than read as its characters."""
    if values is None:
        return ()
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise InvalidInputError(f"{name} must be a sequence of strings, got {_shown(values)}")
    result = tuple(values)
    if not all(isinstance(value, str) for value in result):
        raise InvalidInputError(f"{name} must contain only strings, got {_shown(result)}")
    for value in result:
        check_text(name, value)
    return result


def check_anchor(anchor: object) -> Anchor | None:
    if anchor is None or isinstance(anchor, Anchor):
        return anchor
    raise InvalidInputError(f"anchor must be an Anchor or None, got {_shown(anchor)}")


def as_path(name: str, value: object) -> Path:
    """A `str` or `os.PathLike` as a `Path` whose text can be stored (see `check_text`)."""
    if isinstance(value, str | os.PathLike):
        try:
            path = Path(value)
        except TypeError:  # a PathLike whose __fspath__ returns bytes
            pass
        else:
            check_text(name, str(path))
            return path
    raise InvalidInputError(f"{name} must be a path, got {_shown(value)}")


def check_owner_id(name: str, value: object) -> str:
    """An owner that is a thread id (`owner_session_id`, `working_thread_id`), as stored.

    Returns the canonical lowercase UUID text, so any spelling of one id names one owner.
    """
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str):
        canonical = canonical_uuid_text(value)
        if canonical is not None:
            return canonical
    raise InvalidThreadIdError(f"invalid {name} (a thread id): {_shown(value)}")


def check_thread_metadata(value: object) -> ThreadMetadata:
    """A `ThreadMetadata` whose fields fit the columns.

    A validated model can still hold values no column takes: `model_copy(update=...)` skips
    validation, and pydantic's `int` and `str` allow any size and any code point.
    """
    if not isinstance(value, ThreadMetadata):
        raise InvalidInputError(f"expected ThreadMetadata, got {type(value).__name__}")
    check_count("tokens_used", value.tokens_used)
    for field in ("source", "model_provider", "cli_version", "title", "sandbox_policy"):
        check_text(field, getattr(value, field))
    check_text("approval_mode", value.approval_mode)
    for field in ("first_user_message", "git_sha", "git_branch", "git_origin_url"):
        check_optional_text(field, getattr(value, field))
    check_text("rollout_path", str(value.rollout_path))
    check_text("cwd", str(value.cwd))
    return value


def check_log_entry(entry: object) -> LogEntry:
    """A `LogEntry` (not a dict or a string); its fields were checked when it was built."""
    if not isinstance(entry, LogEntry):
        raise InvalidInputError(f"expected a LogEntry, got {type(entry).__name__}")
    return entry


def check_log_entries(entries: object) -> list[LogEntry]:
    """An iterable of `LogEntry`, as a list; a single entry, a str or a dict is refused."""
    if isinstance(entries, str | bytes | dict | LogEntry) or not isinstance(entries, Iterable):
        raise InvalidInputError(
            f"entries must be an iterable of LogEntry, got {type(entries).__name__}"
        )
    batch = list(entries)
    for entry in batch:
        check_log_entry(entry)
    return batch


def check_log_query(query: object, *, allow_none: bool = False) -> LogQuery:
    """A `LogQuery` whose integers fit 64 bits; None gives `LogQuery()` when `allow_none`.

    The integers are checked again because `model_copy(update=...)` skips validation, and
    a query is cheap to check next to the read it makes.
    """
    if query is None and allow_none:
        return LogQuery()
    if not isinstance(query, LogQuery):
        raise InvalidInputError(f"expected a LogQuery, got {type(query).__name__}")
    for field in ("from_ts", "to_ts", "after_id"):
        value = getattr(query, field)
        if value is not None:
            check_int64(field, value)
    if query.limit is not None:
        check_int64("limit", query.limit, minimum=0)
    return query
