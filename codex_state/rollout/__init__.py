"""Codex rollout files: typed lines, tolerant reading, and thread metadata extraction.

See docs/rollouts.md for the format, the extraction rules and the parse-error policy.
"""

from codex_state.errors import RolloutReadError
from codex_state.rollout.extract import (
    IMAGE_ONLY_PREVIEW,
    USER_MESSAGE_BEGIN,
    DynamicToolsLookup,
    ExtractionOutcome,
    apply_rollout_item,
    apply_rollout_items,
    builder_from_items,
    builder_from_session_meta,
    dynamic_tools_from_items,
    extract_metadata_from_rollout,
    parse_rollout_timestamp,
)
from codex_state.rollout.items import (
    BaseInstructions,
    CompactedItem,
    CompactedPayload,
    EventMsgItem,
    GitInfo,
    ResponseItem,
    RolloutItem,
    SessionMeta,
    SessionMetaItem,
    TokenCountEvent,
    TokenUsage,
    TokenUsageInfo,
    TurnContext,
    TurnContextItem,
    UserMessageEvent,
    enum_to_string,
)
from codex_state.rollout.reader import KNOWN_EVENT_TYPES, RolloutLoadResult, load_rollout_items

__all__ = [
    "IMAGE_ONLY_PREVIEW",
    "KNOWN_EVENT_TYPES",
    "USER_MESSAGE_BEGIN",
    "BaseInstructions",
    "CompactedItem",
    "CompactedPayload",
    "DynamicToolsLookup",
    "EventMsgItem",
    "ExtractionOutcome",
    "GitInfo",
    "ResponseItem",
    "RolloutItem",
    "RolloutLoadResult",
    "RolloutReadError",
    "SessionMeta",
    "SessionMetaItem",
    "TokenCountEvent",
    "TokenUsage",
    "TokenUsageInfo",
    "TurnContext",
    "TurnContextItem",
    "UserMessageEvent",
    "apply_rollout_item",
    "apply_rollout_items",
    "builder_from_items",
    "builder_from_session_meta",
    "dynamic_tools_from_items",
    "enum_to_string",
    "extract_metadata_from_rollout",
    "load_rollout_items",
    "parse_rollout_timestamp",
]
