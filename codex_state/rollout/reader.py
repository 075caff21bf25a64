"""Reading rollout JSONL files line by line, tolerating what a live or old file may hold.

Parse-error policy (the seed's `load_rollout_items`, plus the half-written last line):
- blank lines are skipped silently;
- a line counts as one parse error and is skipped when it is not JSON, not a JSON object, has
  no string `timestamp`, has a `type` that is not one of the five item kinds, or has a payload
  that the seed's types would reject (an invalid session_meta, turn_context, compacted,
  `user_message` or `token_count` payload; a response_item or event_msg payload that is not an
  object with a string `type`; an event type Codex's `EventMsg` does not have);
- the text after the last newline that is not JSON is a line still being written, not an
  error; a complete line without a final newline is read normally.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from codex_state.errors import RolloutReadError
from codex_state.rollout.items import (
    TYPED_EVENT_TYPES,
    CompactedItem,
    EventMsgItem,
    ResponseItem,
    RolloutItem,
    SessionMeta,
    SessionMetaItem,
    TurnContextItem,
)

_decode_json = json.JSONDecoder().decode

# The text after the last newline that is not JSON yet: a line still being written.
_HALF_WRITTEN: Final = object()

# Codex's `EventMsg` variants around the seed (codex-rs/protocol). The seed fails to deserialize
# a line with any other event type, so such lines are counted as parse errors here too.
KNOWN_EVENT_TYPES: Final = frozenset(
    {
        "error",
        "warning",
        "context_compacted",
        "thread_rolled_back",
        "task_started",
        "task_complete",
        "token_count",
        "agent_message",
        "user_message",
        "agent_message_delta",
        "agent_reasoning",
        "agent_reasoning_delta",
        "agent_reasoning_raw_content",
        "agent_reasoning_raw_content_delta",
        "agent_reasoning_section_break",
        "session_configured",
        "mcp_startup_update",
        "mcp_startup_complete",
        "mcp_tool_call_begin",
        "mcp_tool_call_end",
        "web_search_begin",
        "web_search_end",
        "exec_command_begin",
        "exec_command_output_delta",
        "terminal_interaction",
        "exec_command_end",
        "view_image_tool_call",
        "exec_approval_request",
        "elicitation_request",
        "apply_patch_approval_request",
        "deprecation_notice",
        "background_event",
        "undo_started",
        "undo_completed",
        "stream_error",
        "patch_apply_begin",
        "patch_apply_end",
        "turn_diff",
        "get_history_entry_response",
        "mcp_list_tools_response",
        "list_custom_prompts_response",
        "list_skills_response",
        "skills_update_available",
        "plan_update",
        "turn_aborted",
        "shutdown_complete",
        "entered_review_mode",
        "exited_review_mode",
        "raw_response_item",
        "item_started",
        "item_completed",
        "agent_message_content_delta",
        "reasoning_content_delta",
        "reasoning_raw_content_delta",
    }
)


class _InvalidLine(ValueError):
    """A line the seed's types would reject; counted, never raised to callers."""


# What a handler returns for a valid line the caller asked not to keep (a metadata no-op).
_SKIPPED: Final = None

_Line = dict[str, Any]  # a decoded JSON line: its values are JSON values by construction
_Handler = Callable[[_Line, bool], RolloutItem | None]


def _payload_type(line: _Line) -> str:
    payload = line.get("payload")
    kind = payload.get("type") if type(payload) is dict else None
    if type(kind) is not str:
        raise _InvalidLine("payload is not an object with a string type")
    return kind


def _session_meta(line: _Line, keep_all: bool) -> RolloutItem | None:
    return SessionMetaItem.model_validate(line)


def _turn_context(line: _Line, keep_all: bool) -> RolloutItem | None:
    return TurnContextItem.model_validate(line)


def _compacted(line: _Line, keep_all: bool) -> RolloutItem | None:
    item = CompactedItem.model_validate(line)
    return item if keep_all else _SKIPPED


def _response_item(line: _Line, keep_all: bool) -> RolloutItem | None:
    _payload_type(line)
    if not keep_all:
        return _SKIPPED
    # Opaque by design: json.loads produced JSON values already; validating them again is waste.
    return ResponseItem.model_construct(timestamp=line["timestamp"], payload=line["payload"])


def _event_msg(line: _Line, keep_all: bool) -> RolloutItem | None:
    kind = _payload_type(line)
    if kind in TYPED_EVENT_TYPES:
        return EventMsgItem.model_validate(line)
    if kind not in KNOWN_EVENT_TYPES:
        raise _InvalidLine(f"unknown event type {kind!r}")
    if not keep_all:
        return _SKIPPED
    return EventMsgItem.model_construct(timestamp=line["timestamp"], payload=line["payload"])


_HANDLERS: Final[dict[object, _Handler]] = {
    "session_meta": _session_meta,
    "response_item": _response_item,
    "compacted": _compacted,
    "turn_context": _turn_context,
    "event_msg": _event_msg,
}


def _parse_object(line: object, keep_all: bool) -> RolloutItem | None:
    """A decoded line as an item (None for a valid no-op line when not `keep_all`).

    Raises:
        _InvalidLine | ValidationError: not a valid rollout line (both are ValueErrors).
    """
    if type(line) is not dict:
        raise _InvalidLine("line is not a JSON object")
    kind = line.get("type")
    handler = _HANDLERS.get(kind) if type(kind) is str else None
    if handler is None or type(line.get("timestamp")) is not str:
        raise _InvalidLine(f"unknown line type {kind!r} or no timestamp")
    return handler(line, keep_all)


@dataclass(slots=True)
class RolloutLoadResult:
    """The items of one rollout file, its thread id (first session_meta) and bad-line count."""

    items: list[RolloutItem]
    thread_id: uuid.UUID | None
    parse_errors: int


def read_rollout_bytes(path: str | os.PathLike[str]) -> bytes:
    """The whole file; a missing or unreadable file is a `RolloutReadError`."""
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise RolloutReadError(f"cannot read rollout file {os.fspath(path)}: {err}") from err


@dataclass(slots=True)
class ParsedRollout:
    items: list[RolloutItem]
    valid_lines: int
    parse_errors: int


def parse_rollout_bytes(data: bytes, *, keep_all: bool = True) -> ParsedRollout:
    """Items, valid-line and parse-error counts of a rollout's content (see the module's policy).

    `keep_all=False` drops lines that never change metadata (response items, compacted, opaque
    events) after checking them, which is what extraction needs and much cheaper.
    """
    try:
        text = data.decode()
    except UnicodeDecodeError:
        # Only the lines that are not UTF-8 should fail, so decode line by line.
        return _parse_lines(data.split(b"\n"), json.loads, keep_all)
    # One decode of the whole file is cheaper than json.loads detecting each line's encoding.
    return _parse_lines(text.split("\n"), _decode_json, keep_all)


def _parse_lines(
    lines: list[str] | list[bytes], decode: Callable[[Any], object], keep_all: bool
) -> ParsedRollout:
    *complete, tail = lines
    items: list[RolloutItem] = []
    append = items.append
    errors = blank = 0
    for raw in complete:
        if not raw or raw.isspace():
            blank += 1
            continue
        try:
            item = _parse_object(decode(raw), keep_all)
        except ValueError:  # not JSON, _InvalidLine, or pydantic's ValidationError
            errors += 1
            continue
        if item is not None:
            append(item)
    valid = len(complete) - blank - errors
    if tail and not tail.isspace():
        try:
            line = decode(tail)
        except ValueError:
            line = _HALF_WRITTEN
        if line is not _HALF_WRITTEN:
            try:
                item = _parse_object(line, keep_all)
            except ValueError:
                errors += 1
            else:
                valid += 1
                if item is not None:
                    append(item)
    return ParsedRollout(items, valid, errors)


def first_session_meta(items: Iterable[RolloutItem]) -> SessionMeta | None:
    """The payload of the first session_meta line: the thread's own meta."""
    for item in items:
        if type(item) is SessionMetaItem:
            return item.payload
    return None


def load_rollout_items(path: str | os.PathLike[str]) -> RolloutLoadResult:
    """Every item of a rollout file, with the thread id of its first session_meta.

    Raises:
        RolloutReadError: the file is missing or unreadable. Bad lines are never fatal.
    """
    parsed = parse_rollout_bytes(read_rollout_bytes(path))
    meta = first_session_meta(parsed.items)
    return RolloutLoadResult(
        items=parsed.items,
        thread_id=meta.id if meta is not None else None,
        parse_errors=parsed.parse_errors,
    )
