"""Checks of public API arguments: bad input raises `InvalidInputError` before any write.

The runtime checks its arguments up front so a wrong type never reaches a statement, where it
would either fail as a driver error or, worse, be stored as given.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from codex_state.errors import InvalidInputError
from codex_state.models import Anchor, SortKey

_SORT_KEYS = frozenset(key.value for key in SortKey)


def check_count(name: str, value: object) -> int:
    """A page size or limit: a non-negative int (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInputError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def check_sort_key(value: object) -> SortKey:
    if isinstance(value, str) and value in _SORT_KEYS:
        return SortKey(value)
    choices = ", ".join(sorted(_SORT_KEYS))
    raise InvalidInputError(f"sort_key must be one of {choices}, got {value!r}")


def check_strings(name: str, values: Iterable[str] | None) -> tuple[str, ...]:
    """A filter list; a bare string is refused rather than read as its characters."""
    if values is None:
        return ()
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise InvalidInputError(f"{name} must be a sequence of strings, got {values!r}")
    result = tuple(values)
    if not all(isinstance(value, str) for value in result):
        raise InvalidInputError(f"{name} must contain only strings, got {result!r}")
    return result


def check_anchor(anchor: object) -> Anchor | None:
    if anchor is None or isinstance(anchor, Anchor):
        return anchor
    raise InvalidInputError(f"anchor must be an Anchor or None, got {anchor!r}")


def as_path(name: str, value: object) -> Path:
    if isinstance(value, str | os.PathLike):
        return Path(value)
    raise InvalidInputError(f"{name} must be a path, got {value!r}")


def check_limit(limit: int | None) -> None:
    if limit is not None and limit <= 0:
        raise InvalidInputError(f"limit must be > 0, got {limit}")


def check_texts(**values: object) -> None:
    """Text arguments of the memory API must be str: a None or bytes would be stored as is."""
    for name, value in values.items():
        if not isinstance(value, str):
            raise InvalidInputError(f"{name} must be a str, got {type(value).__name__}")


def check_epoch(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{name} must be epoch seconds (int), got {value!r}")
