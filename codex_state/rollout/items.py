"""Typed rollout lines: `{"timestamp", "type", "payload"}` and the five item kinds.

Only the payloads that change thread metadata are typed (session_meta, turn_context, the
`user_message` and `token_count` events, compacted); response items and the other event types
stay the JSON objects they were read as, because backfill reads every line of every file and
validating payloads nobody looks at would cost more than parsing them.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    JsonValue,
    SkipValidation,
    Tag,
)

from codex_state.models import DEFAULT_SOURCE, DynamicToolSpec, ThreadId


def enum_to_string(value: object) -> str:
    """The seed's `enum_to_string`: a JSON string bare, any other value as compact JSON text.

    Key order is kept as written, which is the Rust declaration order Codex serialised.
    """
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


EnumString = Annotated[str, BeforeValidator(enum_to_string)]
"""A serde enum in its stored form (`vscode`, `{"subagent":"review"}`, `on-request`)."""

DecodedJson = SkipValidation[JsonValue]
"""JSON that `json.loads` produced: checking it value by value again costs more than parsing."""


class _Payload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class GitInfo(_Payload):
    commit_hash: str | None = None
    branch: str | None = None
    repository_url: str | None = None


class BaseInstructions(_Payload):
    text: str


class SessionMeta(_Payload):
    """The session_meta payload (the seed's `SessionMetaLine`: the meta plus `git`).

    `cwd` stays a string: the seed applies it only when non-empty, and `Path("")` is `"."`.
    """

    id: ThreadId
    forked_from_id: ThreadId | None = None
    timestamp: str
    cwd: str
    originator: str
    cli_version: str
    source: EnumString = DEFAULT_SOURCE
    model_provider: str | None = None
    base_instructions: BaseInstructions | None = None
    dynamic_tools: list[DynamicToolSpec] | None = None
    git: GitInfo | None = None


class TurnContext(_Payload):
    """The turn_context fields that metadata uses; the rest of the payload is ignored."""

    cwd: str
    approval_policy: EnumString
    sandbox_policy: dict[str, DecodedJson]
    model: str | None = None


class CompactedPayload(_Payload):
    message: str
    replacement_history: list[dict[str, DecodedJson]] | None = None


class UserMessageEvent(_Payload):
    type: Literal["user_message"] = "user_message"
    message: str
    images: list[str] | None = None
    local_images: list[str] = []


class TokenUsage(_Payload):
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_output_tokens: int = 0
    total_tokens: int


class TokenUsageInfo(_Payload):
    total_token_usage: TokenUsage
    last_token_usage: TokenUsage | None = None
    model_context_window: int | None = None


class TokenCountEvent(_Payload):
    """`info` is null until the model has reported usage; such events change nothing."""

    type: Literal["token_count"] = "token_count"
    info: TokenUsageInfo | None = None


class _Line(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    timestamp: str


class SessionMetaItem(_Line):
    type: Literal["session_meta"] = "session_meta"
    payload: SessionMeta


class ResponseItem(_Line):
    """A model input/output item; opaque here (metadata never reads it)."""

    type: Literal["response_item"] = "response_item"
    payload: dict[str, JsonValue]


class CompactedItem(_Line):
    type: Literal["compacted"] = "compacted"
    payload: CompactedPayload


class TurnContextItem(_Line):
    type: Literal["turn_context"] = "turn_context"
    payload: TurnContext


TYPED_EVENT_TYPES = frozenset({"user_message", "token_count"})
"""Event types whose payload is typed (they change metadata); other known events are opaque."""


def _event_tag(payload: object) -> str:
    kind = payload.get("type") if isinstance(payload, dict) else getattr(payload, "type", None)
    return kind if kind in TYPED_EVENT_TYPES else "other"


# Dispatching on the event's `type` validates each payload once instead of trying every member.
EventPayload = Annotated[
    Annotated[UserMessageEvent, Tag("user_message")]
    | Annotated[TokenCountEvent, Tag("token_count")]
    | Annotated[dict[str, JsonValue], Tag("other")],
    Discriminator(_event_tag),
]


class EventMsgItem(_Line):
    """An event; `user_message` and `token_count` typed, other known events as plain JSON."""

    type: Literal["event_msg"] = "event_msg"
    payload: EventPayload


RolloutItem = SessionMetaItem | ResponseItem | CompactedItem | TurnContextItem | EventMsgItem
