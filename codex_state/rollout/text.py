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

# Every text column of `threads` that a rollout fills (rollout_path comes from the file system).
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


def storable_json(value: JsonValue) -> tuple[JsonValue, int]:
    """A JSON value with every string (object keys too) made storable."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, list):
        items = [storable_json(item) for item in value]
        replaced = sum(count for _, count in items)
        return ([item for item, _ in items] if replaced else value), replaced
    if isinstance(value, dict):
        replaced = 0
        cleaned: dict[str, JsonValue] = {}
        for key, item in value.items():
            new_key, key_count = storable_text(key)
            new_item, item_count = storable_json(item)
            cleaned[new_key] = new_item
            replaced += key_count + item_count
        return (cleaned if replaced else value), replaced
    return value, 0


def storable_changes(changes: dict[str, object]) -> tuple[dict[str, object], int]:
    """Metadata field values (strings and paths) made storable; other values are left alone."""
    replaced = 0
    cleaned: dict[str, object] | None = None
    for name, value in changes.items():
        new: object
        if isinstance(value, str):
            new, count = storable_text(value)
        elif isinstance(value, Path):
            text, count = storable_text(str(value))
            new = Path(text)
        else:
            continue
        if count:
            if cleaned is None:
                cleaned = dict(changes)
            cleaned[name] = new
            replaced += count
    return (changes if cleaned is None else cleaned), replaced


def storable_metadata(metadata: ThreadMetadata) -> tuple[ThreadMetadata, int]:
    """The metadata with every text field storable (the same object when it already is)."""
    fields: dict[str, object] = {name: getattr(metadata, name) for name in _TEXT_FIELDS}
    fields["cwd"] = metadata.cwd
    cleaned, replaced = storable_changes(fields)
    if not replaced:
        return metadata, 0
    update = {name: value for name, value in cleaned.items() if value is not fields[name]}
    return metadata.model_copy(update=update), replaced


def storable_tools(tools: Iterable[DynamicToolSpec]) -> tuple[list[DynamicToolSpec], int]:
    """Tools with storable names, descriptions and schemas."""
    cleaned: list[DynamicToolSpec] = []
    replaced = 0
    for tool in tools:
        name, name_count = storable_text(tool.name)
        description, description_count = storable_text(tool.description)
        schema, schema_count = storable_json(tool.input_schema)
        count = name_count + description_count + schema_count
        if count:
            tool = tool.model_copy(
                update={"name": name, "description": description, "input_schema": schema}
            )
            replaced += count
        cleaned.append(tool)
    return cleaned, replaced
