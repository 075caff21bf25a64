"""Making rollout text storable: no NUL characters, no lone surrogates.

JSON may spell both (`"\\u0000"`, an unpaired `"\\ud800"`) and Python decodes them faithfully,
but neither database can hold them: PostgreSQL rejects NUL in `text`, and a lone surrogate
cannot be encoded as UTF-8 (sqlite3 and psycopg both raise). So every text that extraction
stores (metadata fields and dynamic tools, schemas included) has each such character replaced
by U+FFFD, and extraction reports how many it replaced. Valid surrogate pairs in JSON decode to
one astral character, so any surrogate left in a Python string is a lone one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from pydantic import JsonValue

from codex_state.models import DynamicToolSpec, ThreadMetadata

REPLACEMENT_CHARACTER: Final = "\ufffd"

_UNSTORABLE: Final = re.compile("[\x00\ud800-\udfff]")

# The text columns of `threads` that a rollout fills, cwd aside (a Path); rollout_path comes
# from the file system, not from the rollout.
_TEXT_FIELDS: Final = (
    "source",
    "model_provider",
    "cli_version",
    "title",
    "sandbox_policy",
    "approval_mode",
    "first_user_message",
    "git_sha",
    "git_branch",
    "git_origin_url",
)


def storable_text(text: str) -> tuple[str, int]:
    """`text` with NUL and lone surrogates replaced by U+FFFD, and how many were replaced."""
    if _UNSTORABLE.search(text) is None:
        return text, 0
    return _UNSTORABLE.subn(REPLACEMENT_CHARACTER, text)


def _storable_json(value: JsonValue) -> tuple[JsonValue, int]:
    """A JSON value with every string (object keys too) made storable."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, list):
        items = [_storable_json(item) for item in value]
        replaced = sum(count for _, count in items)
        return ([item for item, _ in items] if replaced else value), replaced
    if isinstance(value, dict):
        replaced = 0
        cleaned: dict[str, JsonValue] = {}
        for key, item in value.items():
            new_key, key_count = storable_text(key)
            new_item, item_count = _storable_json(item)
            cleaned[new_key] = new_item
            replaced += key_count + item_count
        return (cleaned if replaced else value), replaced
    return value, 0


def storable_metadata(metadata: ThreadMetadata) -> tuple[ThreadMetadata, int]:
    """The metadata with every text field storable (the same object when it already is)."""
    update: dict[str, object] = {}
    replaced = 0
    for name in _TEXT_FIELDS:
        value = getattr(metadata, name)
        if value is not None:
            text, count = storable_text(value)
            if count:
                update[name] = text
                replaced += count
    cwd, count = storable_text(str(metadata.cwd))
    if count:
        update["cwd"] = Path(cwd)
        replaced += count
    return (metadata.model_copy(update=update) if update else metadata), replaced


def storable_tools(tools: Iterable[DynamicToolSpec]) -> tuple[list[DynamicToolSpec], int]:
    """Tools with storable names, descriptions and schemas."""
    cleaned: list[DynamicToolSpec] = []
    replaced = 0
    for tool in tools:
        name, name_count = storable_text(tool.name)
        description, description_count = storable_text(tool.description)
        schema, schema_count = _storable_json(tool.input_schema)
        count = name_count + description_count + schema_count
        if count:
            tool = tool.model_copy(
                update={"name": name, "description": description, "input_schema": schema}
            )
            replaced += count
        cleaned.append(tool)
    return cleaned, replaced
