"""Thread metadata from rollout items, as the seed's `extract.rs` and `metadata.rs` do.

Beyond the seed: a user-message `item_completed` (paginated history) counts as the
`user_message` event Codex derives from it, and every text handed out for storage is storable
(`codex_state.rollout.text`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from codex_state.clock import file_mtime, utc_whole_seconds
from codex_state.errors import RolloutReadError
from codex_state.models import DynamicToolSpec, ThreadMetadata, ThreadMetadataBuilder
from codex_state.rollout.discovery import COMPRESSED_ROLLOUT_SUFFIX, ROLLOUT_SUFFIX
from codex_state.rollout.items import (
    EventMsgItem,
    ItemCompletedEvent,
    RolloutItem,
    SessionMeta,
    SessionMetaItem,
    TokenCountEvent,
    TurnContextItem,
    UserMessageEvent,
    enum_to_string,
)
from codex_state.rollout.reader import first_session_meta, parse_rollout_bytes, read_rollout_bytes
from codex_state.rollout.text import storable_metadata, storable_tools

USER_MESSAGE_BEGIN: Final = "## My request for Codex:"
"""Legacy prefix Codex put before the user's text; the preview starts after it."""

IMAGE_ONLY_PREVIEW: Final = "[Image]"

_FILE_TIMESTAMP_FORMAT: Final = "%Y-%m-%dT%H-%M-%S"
_FILE_PREFIX: Final = "rollout-"
_FILE_TIMESTAMP_LEN: Final = len("YYYY-MM-DDThh-mm-ss")

_Changes = dict[str, object]
_NO_CHANGES: Final[Mapping[str, object]] = {}


def parse_rollout_timestamp(value: str) -> datetime | None:
    """`YYYY-MM-DDThh-mm-ss` (taken as UTC) or RFC 3339, truncated to seconds; None if neither."""
    try:
        return datetime.strptime(value, _FILE_TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:  # RFC 3339 always carries an offset
        return None
    return utc_whole_seconds(parsed)


def builder_from_session_meta(
    meta: SessionMeta, rollout_path: str | os.PathLike[str]
) -> ThreadMetadataBuilder | None:
    """The seed's `builder_from_session_meta`; None when the meta's timestamp is unparsable."""
    created_at = parse_rollout_timestamp(meta.timestamp)
    if created_at is None:
        return None
    git = meta.git
    return ThreadMetadataBuilder(
        id=meta.id,
        rollout_path=Path(rollout_path),
        created_at=created_at,
        source=meta.source,
        model_provider=meta.model_provider,
        cwd=Path(meta.cwd),
        cli_version=meta.cli_version,
        git_sha=git.commit_hash if git else None,
        git_branch=git.branch if git else None,
        git_origin_url=git.repository_url if git else None,
    )


def _builder_from_file_name(rollout_path: str | os.PathLike[str]) -> ThreadMetadataBuilder | None:
    # The name's time is the writer's local time; the seed takes it as UTC and so do we.
    name = Path(rollout_path).name
    suffix = next(
        (end for end in (ROLLOUT_SUFFIX, COMPRESSED_ROLLOUT_SUFFIX) if name.endswith(end)), None
    )
    if suffix is None or not name.startswith(_FILE_PREFIX):
        return None
    core = name[len(_FILE_PREFIX) : -len(suffix)]
    stamp, separator, id_text = (
        core[:_FILE_TIMESTAMP_LEN],
        core[_FILE_TIMESTAMP_LEN : _FILE_TIMESTAMP_LEN + 1],
        core[_FILE_TIMESTAMP_LEN + 1 :],
    )
    if separator != "-":
        return None
    try:
        created_at = datetime.strptime(stamp, _FILE_TIMESTAMP_FORMAT).replace(tzinfo=UTC)
        thread_id = uuid.UUID(id_text)
    except ValueError:
        return None
    return ThreadMetadataBuilder(
        id=thread_id, rollout_path=Path(rollout_path), created_at=created_at
    )


def builder_from_items(
    items: Iterable[RolloutItem], rollout_path: str | os.PathLike[str]
) -> ThreadMetadataBuilder | None:
    """A builder from the first session_meta, else from the file name, else None.

    The name is `rollout-<time>-<uuid>.jsonl` (or `.jsonl.zst`).

    The file-name fallback has source `vscode` (the seed's `SessionSource::default()`).
    """
    meta = first_session_meta(items)
    if meta is not None:
        builder = builder_from_session_meta(meta, rollout_path)
        if builder is not None:
            return builder
    return _builder_from_file_name(rollout_path)


def _strip_user_message_prefix(message: str) -> str:
    start = message.find(USER_MESSAGE_BEGIN)
    if start >= 0:
        message = message[start + len(USER_MESSAGE_BEGIN) :]
    return message.strip()


def _user_message_changes(current: Mapping[str, object], event: UserMessageEvent) -> _Changes:
    text = _strip_user_message_prefix(event.message)
    changes: _Changes = {}
    if current["first_user_message"] is None:
        if text:
            changes["first_user_message"] = text
        elif event.images or event.local_images:
            changes["first_user_message"] = IMAGE_ONLY_PREVIEW
    if text and not current["title"]:
        changes["title"] = text
    return changes


def _session_meta_changes(current: Mapping[str, object], meta: SessionMeta) -> _Changes:
    # A forked rollout embeds its parent's session_meta: only the thread's own meta applies.
    if meta.id != current["id"]:
        return {}
    changes: _Changes = {"source": meta.source}
    if meta.model_provider is not None:
        changes["model_provider"] = meta.model_provider
    if meta.cli_version:
        changes["cli_version"] = meta.cli_version
    if meta.cwd:
        changes["cwd"] = Path(meta.cwd)
    if meta.git is not None:
        changes["git_sha"] = meta.git.commit_hash
        changes["git_branch"] = meta.git.branch
        changes["git_origin_url"] = meta.git.repository_url
    return changes


def _item_changes(current: Mapping[str, object], item: RolloutItem) -> Mapping[str, object]:
    # Ordered by frequency in real rollouts; response items and compacted fall through.
    if type(item) is EventMsgItem:
        payload = item.payload
        if type(payload) is TokenCountEvent:
            if payload.info is None:
                return _NO_CHANGES
            return {"tokens_used": max(0, payload.info.total_token_usage.total_tokens)}
        if type(payload) is UserMessageEvent:
            return _user_message_changes(current, payload)
        if type(payload) is ItemCompletedEvent:
            return _user_message_changes(current, payload.item.as_user_message())
        return _NO_CHANGES
    if type(item) is TurnContextItem:
        context = item.payload
        # Last turn wins; the turn's cwd is applied as written (not normalized), as in the seed.
        return {
            "cwd": Path(context.cwd),
            "sandbox_policy": enum_to_string(context.sandbox_policy),
            "approval_mode": context.approval_policy,
        }
    if type(item) is SessionMetaItem:
        return _session_meta_changes(current, item.payload)
    return _NO_CHANGES


def _changes_with_provider_default(
    current: Mapping[str, object], item: RolloutItem, default_provider: str
) -> Mapping[str, object]:
    changes = _item_changes(current, item)
    if not changes.get("model_provider", current["model_provider"]):
        return {**changes, "model_provider": default_provider}
    return changes


def apply_rollout_item(
    metadata: ThreadMetadata, item: RolloutItem, default_provider: str
) -> ThreadMetadata:
    """The metadata after one item (the seed's `apply_rollout_item`); the input is unchanged.

    The result's text is storable. Returns the same object when the item changes nothing and
    the text already was (most items).
    """
    changes = _changes_with_provider_default(metadata.__dict__, item, default_provider)
    updated = metadata.model_copy(update=changes) if changes else metadata
    return storable_metadata(updated)[0]


def apply_rollout_items(
    metadata: ThreadMetadata, items: Iterable[RolloutItem], default_provider: str
) -> ThreadMetadata:
    """`apply_rollout_item` over `items` in order, copying the metadata once at the end."""
    return storable_metadata(_fold_items(metadata, items, default_provider))[0]


def _fold_items(
    metadata: ThreadMetadata, items: Iterable[RolloutItem], default_provider: str
) -> ThreadMetadata:
    """The items applied in order, text as found (storing it is the caller's concern)."""
    current = dict(metadata.__dict__)
    changed: _Changes = {}

    def apply(item: RolloutItem) -> None:
        changes = _changes_with_provider_default(current, item, default_provider)
        if changes:
            current.update(changes)
            changed.update(changes)

    # A turn context overwrites cwd, sandbox and approval whatever they were, and only a
    # session_meta touches those fields too: so only the last turn context before each
    # session_meta (and at the end) matters, which spares a JSON dump per turn.
    pending_turn: RolloutItem | None = None
    for item in items:
        if type(item) is TurnContextItem:
            pending_turn = item
            continue
        if pending_turn is not None and type(item) is SessionMetaItem:
            apply(pending_turn)
            pending_turn = None
        apply(item)
    if pending_turn is not None:
        apply(pending_turn)
    return metadata.model_copy(update=changed) if changed else metadata


@dataclass(frozen=True, slots=True)
class DynamicToolsLookup:
    """Dynamic tools of a rollout's first session_meta.

    `has_session_meta` is False when there is no session_meta at all (the seed's outer None);
    `tools` (storable, namespaces flattened) is None when that meta declares none;
    `skipped_tools` counts its entries that cannot be stored.
    """

    has_session_meta: bool
    tools: list[DynamicToolSpec] | None
    skipped_tools: int = 0


def dynamic_tools_from_items(items: Iterable[RolloutItem]) -> DynamicToolsLookup:
    """The seed's `extract_dynamic_tools`: tools of the first session_meta only."""
    meta = first_session_meta(items)
    if meta is None:
        return DynamicToolsLookup(has_session_meta=False, tools=None)
    tools = meta.dynamic_tools
    return DynamicToolsLookup(
        has_session_meta=True,
        tools=None if tools is None else storable_tools(tools)[0],
        skipped_tools=meta.skipped_tools,
    )


@dataclass(frozen=True, slots=True)
class ExtractionOutcome:
    """A rollout's thread metadata and tools, and what of the file could not be used.

    Attributes:
        metadata: the thread's metadata, every text storable.
        parse_errors: broken lines skipped.
        dynamic_tools: the first session_meta's storable tools (namespaces flattened), so a
            backfill can persist them without reading the file again; None if it declares none.
        unknown_types: lines of types this version does not know, per type (`world_state`,
            `event_msg:guardian_assessment`, ...); skipped, never errors.
        skipped_tools: the first session_meta's tool entries that cannot be stored.
        replaced_characters: NUL and lone-surrogate characters replaced by U+FFFD in
            `metadata` and `dynamic_tools`.
    """

    metadata: ThreadMetadata
    parse_errors: int
    dynamic_tools: list[DynamicToolSpec] | None
    unknown_types: dict[str, int] = field(default_factory=dict)
    skipped_tools: int = 0
    replaced_characters: int = 0


def extract_metadata_from_rollout(
    path: str | os.PathLike[str], default_provider: str
) -> ExtractionOutcome:
    """Thread metadata of a whole rollout file; `updated_at` is the file's mtime in seconds.

    Raises:
        RolloutReadError: the file is unreadable (or a `.zst` that cannot be decompressed), has
            no well-formed line, or yields no thread id (no usable session_meta and a name
            that is not `rollout-<time>-<uuid>.jsonl[.zst]`).
    """
    parsed = parse_rollout_bytes(read_rollout_bytes(path), keep_all=False)
    if parsed.valid_lines == 0:
        raise RolloutReadError(f"empty session file: {os.fspath(path)}")
    builder = builder_from_items(parsed.items, path)
    if builder is None:
        raise RolloutReadError(
            f"no session_meta and no thread id in the file name: {os.fspath(path)}"
        )
    folded = _fold_items(builder.build(default_provider), parsed.items, default_provider)
    metadata, replaced = storable_metadata(folded)
    updated_at = file_mtime(path)
    if updated_at is None:
        raise RolloutReadError(f"cannot stat rollout file {os.fspath(path)}")
    meta = first_session_meta(parsed.items)
    tools = meta.dynamic_tools if meta is not None else None
    if tools is not None:
        tools, replaced_in_tools = storable_tools(tools)
        replaced += replaced_in_tools
    return ExtractionOutcome(
        metadata=metadata.model_copy(update={"updated_at": updated_at}),
        parse_errors=parsed.parse_errors,
        dynamic_tools=tools,
        unknown_types=parsed.unknown_types,
        skipped_tools=meta.skipped_tools if meta is not None else 0,
        replaced_characters=replaced,
    )
