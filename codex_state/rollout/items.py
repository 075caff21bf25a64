"""Typed rollout lines: `{"timestamp", "type", "payload"}` and the five item kinds.

Only the payloads that change thread metadata are typed (session_meta, turn_context, the
`user_message` and `token_count` events, an `item_completed` event whose item is a user message,
compacted); response items and the other event types stay the JSON objects they were read as,
because backfill reads every line of every file and validating payloads nobody looks at would
cost more than parsing them.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    JsonValue,
    SkipValidation,
    Tag,
    model_validator,
)

from codex_state.models import DEFAULT_SOURCE, DynamicToolSpec, ThreadId
from codex_state.rollout.tools import storable_dynamic_tools


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
    `dynamic_tools` holds the storable function tools, namespaces flattened (see
    `codex_state.rollout.tools`); `skipped_tools` counts the declared entries that are not,
    which never invalidate the rest of the meta.
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
    skipped_tools: int = 0
    git: GitInfo | None = None

    @model_validator(mode="before")
    @classmethod
    def _storable_tools(cls, data: Any) -> Any:
        # Tools are judged apart from the meta: a format this version cannot store must not
        # cost the thread its source, cwd, git and creation time.
        if not isinstance(data, dict):
            return data
        tools, skipped = storable_dynamic_tools(data.get("dynamic_tools"))
        return {**data, "dynamic_tools": tools, "skipped_tools": skipped}


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


class TextInput(_Payload):
    type: Literal["text"] = "text"
    text: str


class ImageInput(_Payload):
    type: Literal["image"] = "image"
    image_url: str


class LocalImageInput(_Payload):
    type: Literal["local_image"] = "local_image"
    path: str


_INPUT_TYPES = frozenset({"text", "image", "local_image"})


def _input_tag(value: object) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if isinstance(kind, str) and kind in _INPUT_TYPES else "other"


UserInput = Annotated[
    Annotated[TextInput, Tag("text")]
    | Annotated[ImageInput, Tag("image")]
    | Annotated[LocalImageInput, Tag("local_image")]
    | Annotated[dict[str, DecodedJson], Tag("other")],
    Discriminator(_input_tag),
]
"""One part of a user message (Codex's `UserInput`); skills, mentions and newer kinds stay JSON."""


class UserMessageItem(_Payload):
    """Codex's `TurnItem::UserMessage`: the user's input as parts."""

    type: Literal["UserMessage"] = "UserMessage"
    id: str | None = None
    content: list[UserInput]

    def as_user_message(self) -> UserMessageEvent:
        """The legacy `user_message` event Codex derives from it (`as_legacy_event`).

        The text parts joined without separator, image URLs and local image paths; other
        parts contribute nothing.
        """
        parts = self.content
        return UserMessageEvent(
            message="".join(part.text for part in parts if type(part) is TextInput),
            images=[part.image_url for part in parts if type(part) is ImageInput],
            local_images=[part.path for part in parts if type(part) is LocalImageInput],
        )


class ItemCompletedEvent(_Payload):
    """An `item_completed` event whose item is a user message.

    Codex with paginated history (mid-2026) may persist the user's text only this way, with
    no `user_message` event. Completed items of other kinds are never typed (plain JSON).
    """

    type: Literal["item_completed"] = "item_completed"
    thread_id: str | None = None
    turn_id: str | None = None
    item: UserMessageItem


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
"""Event types whose payload is always typed (they change metadata).

`item_completed` is typed only when its item is a `UserMessage`; other known events are opaque.
"""

USER_MESSAGE_ITEM_TYPE = "UserMessage"


def is_user_message_item(payload: dict[str, object]) -> bool:
    """Whether an `item_completed` payload carries a user message (the one item typed)."""
    item = payload.get("item")
    return isinstance(item, dict) and item.get("type") == USER_MESSAGE_ITEM_TYPE


def _event_tag(payload: object) -> str:
    # Called for every typed event (a third of real lines): the common cases first.
    if type(payload) is dict:
        kind = payload.get("type")
        if kind == "token_count":
            return "token_count"
        if kind == "user_message":
            return "user_message"
        if kind == "item_completed" and is_user_message_item(payload):
            return "item_completed"
        return "other"
    if isinstance(payload, TokenCountEvent | UserMessageEvent | ItemCompletedEvent):
        return payload.type
    return "other"


# Dispatching on the event's `type` validates each payload once instead of trying every member.
EventPayload = Annotated[
    Annotated[UserMessageEvent, Tag("user_message")]
    | Annotated[TokenCountEvent, Tag("token_count")]
    | Annotated[ItemCompletedEvent, Tag("item_completed")]
    | Annotated[dict[str, JsonValue], Tag("other")],
    Discriminator(_event_tag),
]


class EventMsgItem(_Line):
    """An event: `user_message`, `token_count` and user-message `item_completed` are typed.

    Other known events are kept as plain JSON.
    """

    type: Literal["event_msg"] = "event_msg"
    payload: EventPayload


RolloutItem = SessionMetaItem | ResponseItem | CompactedItem | TurnContextItem | EventMsgItem
