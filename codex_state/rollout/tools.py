"""The dynamic tools of a session_meta, in every format Codex has written them.

- the seed's flat entry `{name, description, inputSchema}` (later also with `namespace`,
  `deferLoading` or `exposeToContext` beside them);
- since June 2026, tagged entries: `{"type": "function", name, description, inputSchema,
  deferLoading?}` and `{"type": "namespace", name, description, tools: [function entries]}`.

`thread_dynamic_tools` (the seed's table) has no namespace column, so a namespace is flattened
into its function tools, in order, each under its plain name: that is the name the model calls
and the one a later Codex stores in `name` (it keeps the namespace in a column of its own). The
namespace itself is not stored. An entry that is not a storable function (an unknown `type`, a
missing name, description or input schema, a value that is not an object) is skipped and
counted, and the session_meta's other fields apply all the same. Codex refuses a list that
mixes flat and tagged entries; here each entry is judged on its own.
"""

from __future__ import annotations

from pydantic import JsonValue, ValidationError

from codex_state.models import DynamicToolSpec


def storable_dynamic_tools(value: object) -> tuple[list[DynamicToolSpec] | None, int]:
    """The function tools of a `dynamic_tools` value, flattened, and how many were skipped.

    None (no tools declared) stays None; anything else gives a list, possibly empty.
    """
    if value is None:
        return None, 0
    if not isinstance(value, list):
        return [], 1
    tools: list[DynamicToolSpec] = []
    skipped = 0
    for entry in value:
        if isinstance(entry, dict) and entry.get("type") == "namespace":
            inner = entry.get("tools")
            if not isinstance(inner, list):
                skipped += 1
                continue
            entries: list[JsonValue] = inner
        else:
            entries = [entry]
        for candidate in entries:
            tool = _function_tool(candidate)
            if tool is None:
                skipped += 1
            else:
                tools.append(tool)
    return tools, skipped


def _function_tool(entry: object) -> DynamicToolSpec | None:
    if isinstance(entry, DynamicToolSpec):
        return entry
    if not isinstance(entry, dict) or entry.get("type", "function") != "function":
        return None
    try:
        return DynamicToolSpec.model_validate(entry)
    except ValidationError:
        return None
