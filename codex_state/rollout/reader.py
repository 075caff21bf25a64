"""Reading rollout JSONL files line by line, tolerating what a live, old or newer file may hold.

Line policy (the seed's `load_rollout_items`, plus the half-written last line and the line
types of newer Codex versions):
- blank lines are skipped silently;
- a *broken* line counts as one parse error and is skipped: not UTF-8, not JSON, not a JSON
  object, no string `timestamp`, no string `type`, or a payload Codex would reject (an invalid
  session_meta, turn_context, compacted, `user_message`, `token_count` or user-message
  `item_completed` payload; a response_item or event_msg payload that is not an object with a
  string `type`; an `item_completed` whose `item` is not an object with a string `type`); a
  session_meta's dynamic tools are judged apart from it (`codex_state.rollout.tools`);
- a well-formed line of a type this version does not know (a line type other than the five,
  such as `world_state`, or an event type outside `KNOWN_EVENT_TYPES`, such as
  `guardian_assessment`) is skipped and counted in `unknown_types`, keyed by the line type or
  by `event_msg:<event type>`; it is not an error;
- fields a line carries beyond the ones read (a top-level `ordinal`, newer payload fields) are
  ignored;
- the text after the last newline that is not JSON is a line still being written, not an
  error; a complete line without a final newline is read normally.

`rollout-*.jsonl.zst` files are decompressed first (the optional `zstandard` package, extra
`codex-state[zstd]`).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
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
    is_user_message_item,
)

_decode_json = json.JSONDecoder().decode

# The text after the last newline that is not JSON yet: a line still being written.
_HALF_WRITTEN: Final = object()

_ZSTD_SUFFIX: Final = ".zst"
_ZSTD_EXTRA_HINT: Final = "pip install 'codex-state[zstd]'"

# The wire names of Codex's `EventMsg` at the seed: openai/codex 1d5eba0090 (#11300,
# 2026-02-10), codex-rs/protocol/src/protocol.rs, in declaration order. That enum has 70
# variants (`#[serde(tag = "type", rename_all = "snake_case")]`); `TurnStarted` and
# `TurnComplete` are renamed `task_started` / `task_complete` and also accept the aliases
# `turn_started` / `turn_complete`, which makes 72 names. Any other event type is one a newer
# Codex added: counted in `unknown_types`, never an error.
KNOWN_EVENT_TYPES: Final = frozenset(
    {
        "error",
        "warning",
        "context_compacted",
        "thread_rolled_back",
        "task_started",
        "turn_started",
        "task_complete",
        "turn_complete",
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
        "thread_name_updated",
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
        "request_user_input",
        "dynamic_tool_call_request",
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
        "list_remote_skills_response",
        "remote_skill_downloaded",
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
        "plan_delta",
        "reasoning_content_delta",
        "reasoning_raw_content_delta",
        "collab_agent_spawn_begin",
        "collab_agent_spawn_end",
        "collab_agent_interaction_begin",
        "collab_agent_interaction_end",
        "collab_waiting_begin",
        "collab_waiting_end",
        "collab_close_begin",
        "collab_close_end",
        "collab_resume_begin",
        "collab_resume_end",
    }
)


class _InvalidLine(ValueError):
    """A line the seed's types would reject; counted, never raised to callers."""


class _UnknownType(Exception):
    """A well-formed line of a type this version does not know; `key` names it."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


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
    if kind == "item_completed":
        payload = line["payload"]
        item = payload.get("item")
        if type(item) is not dict or type(item.get("type")) is not str:
            raise _InvalidLine("item_completed without an item")
        if is_user_message_item(payload):
            return EventMsgItem.model_validate(line)
    elif kind not in KNOWN_EVENT_TYPES:
        raise _UnknownType(f"event_msg:{kind}")
    if not keep_all:
        return _SKIPPED
    return EventMsgItem.model_construct(timestamp=line["timestamp"], payload=line["payload"])


_HANDLERS: Final[dict[str, _Handler]] = {
    "session_meta": _session_meta,
    "response_item": _response_item,
    "compacted": _compacted,
    "turn_context": _turn_context,
    "event_msg": _event_msg,
}


def _parse_object(line: object, keep_all: bool) -> RolloutItem | None:
    """A decoded line as an item (None for a valid no-op line when not `keep_all`).

    Raises:
        _InvalidLine | ValidationError: a broken line (both are ValueErrors).
        _UnknownType: a well-formed line of a type this version does not know.
    """
    if type(line) is not dict:
        raise _InvalidLine("line is not a JSON object")
    kind = line.get("type")
    if type(kind) is not str or type(line.get("timestamp")) is not str:
        raise _InvalidLine("no string type or timestamp")
    handler = _HANDLERS.get(kind)
    if handler is None:
        raise _UnknownType(kind)
    return handler(line, keep_all)


@dataclass(slots=True)
class RolloutLoadResult:
    """The items of one rollout file and what could not be read of it.

    Attributes:
        items: the typed items, in file order.
        thread_id: the id of the first session_meta, None without one.
        parse_errors: broken lines skipped.
        unknown_types: lines skipped because this version does not know their type, per type
            (`world_state`, `event_msg:guardian_assessment`, ...).
        skipped_tools: dynamic tools of the first session_meta that cannot be stored.
    """

    items: list[RolloutItem]
    thread_id: uuid.UUID | None
    parse_errors: int
    unknown_types: dict[str, int] = field(default_factory=dict)
    skipped_tools: int = 0


def read_rollout_bytes(path: str | os.PathLike[str]) -> bytes:
    """The whole file, decompressed if it ends in `.zst`.

    Raises:
        RolloutReadError: the file is missing or unreadable, is not valid zstd, or is
            compressed and the `zstandard` package (extra `codex-state[zstd]`) is missing.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise RolloutReadError(f"cannot read rollout file {os.fspath(path)}: {err}") from err
    if os.fspath(path).endswith(_ZSTD_SUFFIX):
        return _decompress_zstd(data, path)
    return data


def _decompress_zstd(data: bytes, path: str | os.PathLike[str]) -> bytes:
    try:
        import zstandard
    except ImportError as err:
        raise RolloutReadError(
            f"cannot read compressed rollout file {os.fspath(path)}: reading .zst rollouts "
            f"needs the zstandard package ({_ZSTD_EXTRA_HINT})"
        ) from err
    try:
        # Every frame, and whatever a frame still being written already holds.
        with zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True) as reader:
            return reader.read()
    except zstandard.ZstdError as err:
        raise RolloutReadError(f"cannot decompress rollout file {os.fspath(path)}: {err}") from err


@dataclass(slots=True)
class ParsedRollout:
    items: list[RolloutItem]
    valid_lines: int
    parse_errors: int
    unknown_types: dict[str, int]


def parse_rollout_bytes(data: bytes, *, keep_all: bool = True) -> ParsedRollout:
    """Items and line counts of a rollout's content (see the module's policy).

    `valid_lines` counts the well-formed lines, unknown types included. `keep_all=False` drops
    lines that never change metadata (response items, compacted, opaque events) after checking
    them, which is what extraction needs and much cheaper.
    """
    # Split as bytes, decode line by line: only a line that is not UTF-8 fails, and one wide
    # character does not widen the text of the whole file (decoding the file at once measured
    # 40% slower on current rollouts, which carry non-ASCII text, and no faster on ASCII ones).
    *complete, tail = data.split(b"\n")
    items: list[RolloutItem] = []
    append = items.append
    unknown: dict[str, int] = {}
    errors = blank = 0
    for raw in complete:
        if not raw or raw.isspace():
            blank += 1
            continue
        try:
            item = _parse_object(_decode_json(raw.decode()), keep_all)
        except ValueError:  # not UTF-8, not JSON, _InvalidLine, or pydantic's ValidationError
            errors += 1
            continue
        except _UnknownType as skipped:
            unknown[skipped.key] = unknown.get(skipped.key, 0) + 1
            continue
        if item is not None:
            append(item)
    valid = len(complete) - blank - errors
    if tail and not tail.isspace():
        try:
            line = _decode_json(tail.decode())
        except ValueError:
            line = _HALF_WRITTEN
        if line is not _HALF_WRITTEN:
            try:
                item = _parse_object(line, keep_all)
            except ValueError:
                errors += 1
            except _UnknownType as skipped:
                unknown[skipped.key] = unknown.get(skipped.key, 0) + 1
                valid += 1
            else:
                valid += 1
                if item is not None:
                    append(item)
    return ParsedRollout(items, valid, errors, unknown)


def first_session_meta(items: Iterable[RolloutItem]) -> SessionMeta | None:
    """The payload of the first session_meta line: the thread's own meta."""
    for item in items:
        if type(item) is SessionMetaItem:
            return item.payload
    return None


def load_rollout_items(path: str | os.PathLike[str]) -> RolloutLoadResult:
    """Every item of a rollout file (plain or `.zst`), with the thread id of its first session_meta.

    Raises:
        RolloutReadError: the file is missing, unreadable or not decompressible. Bad lines are
            never fatal.
    """
    parsed = parse_rollout_bytes(read_rollout_bytes(path))
    meta = first_session_meta(parsed.items)
    return RolloutLoadResult(
        items=parsed.items,
        thread_id=meta.id if meta is not None else None,
        parse_errors=parsed.parse_errors,
        unknown_types=parsed.unknown_types,
        skipped_tools=meta.skipped_tools if meta is not None else 0,
    )
