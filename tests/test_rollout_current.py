"""Rollouts as current codex homes hold them (issue 9).

The seed's whole event list; line and event types of later Codex versions (counted, never
errors); user messages persisted only as completed items (paginated history); namespaced
dynamic tools; text no database can store; compressed rollouts and their discovery. Synthetic
files spell out every case; the real newer rollouts in `shared/data/codex-rollouts-newer` are
checked against metadata read out of them by hand, and skipped when absent.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import codex_state.backfill
from codex_state import DynamicToolSpec, RolloutReadError, ThreadMetadata
from codex_state.backfill import backfill_codex_home
from codex_state.rollout import (
    ARCHIVED_SESSIONS_SUBDIR,
    KNOWN_EVENT_TYPES,
    SESSIONS_SUBDIR,
    EventMsgItem,
    ImageInput,
    ItemCompletedEvent,
    LocalImageInput,
    RolloutFile,
    SessionMetaItem,
    TextInput,
    UserMessageEvent,
    UserMessageItem,
    apply_rollout_item,
    apply_rollout_items,
    builder_from_items,
    dynamic_tools_from_items,
    extract_metadata_from_rollout,
    find_rollout_files,
    load_rollout_items,
)
from tests.conftest import Backend
from tests.rollout_files import (
    FILE_NAME,
    THREAD,
    extract,
    line,
    meta,
    real_data_dir,
    tokens,
    turn,
    user,
    write,
    write_rollout,
)

# --- the seed's event list ---------------------------------------------------------------------

# Codex's `EventMsg` at the seed (openai/codex 1d5eba0090, codex-rs/protocol/src/protocol.rs),
# variant by variant in declaration order, as snake_case wire names.
SEED_EVENT_VARIANTS = [
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
]
# `#[serde(rename = "task_started", alias = "turn_started")]` and the same for task_complete.
SEED_EVENT_ALIASES = ["turn_started", "turn_complete"]
# Event types of Codex after the seed, seen in newer rollouts.
NEWER_EVENT_TYPES = [
    "guardian_assessment",
    "image_generation_begin",
    "image_generation_end",
    "thread_goal_updated",
    "thread_settings_applied",
    "sub_agent_activity",
    "dynamic_tool_call_response",
]


def test_known_event_types_are_the_seeds_72_wire_names() -> None:
    assert len(set(SEED_EVENT_VARIANTS)) == 70

    assert frozenset(SEED_EVENT_VARIANTS + SEED_EVENT_ALIASES) == KNOWN_EVENT_TYPES
    assert len(KNOWN_EVENT_TYPES) == 72
    assert KNOWN_EVENT_TYPES.isdisjoint(NEWER_EVENT_TYPES)


def test_every_known_event_type_is_read_as_an_opaque_event(tmp_path: Path) -> None:
    opaque = sorted(KNOWN_EVENT_TYPES - {"user_message", "token_count", "item_completed"})
    path = write(tmp_path, [meta(), *(line("event_msg", {"type": kind}) for kind in opaque)])

    result = load_rollout_items(path)

    assert (result.parse_errors, result.unknown_types) == (0, {})
    assert [item.payload for item in result.items[1:]] == [{"type": kind} for kind in opaque]


# --- types this version does not know ----------------------------------------------------------


def test_newer_line_and_event_types_are_counted_apart_from_errors(tmp_path: Path) -> None:
    newer = [
        line("world_state", {"full": True, "state": {"model": "gpt-5.6"}}),
        line("inter_agent_communication", {"from": "parent", "text": "## My request for Codex: x"}),
        line("inter_agent_communication_metadata", {"agent": "child"}),
        line("world_state", {"full": False, "state": {}}),
        line("event_msg", {"type": "guardian_assessment", "status": "approved"}),
        line("event_msg", {"type": "thread_goal_updated", "goal": "ship it"}),
        line("event_msg", {"type": "guardian_assessment", "status": "denied"}),
    ]
    broken = ["{not json", line("event_msg", {"type": "user_message"})]
    path = write(tmp_path, [meta(), newer[0], user("hello"), *newer[1:], *broken, tokens(5)])
    expected = {
        "world_state": 2,
        "inter_agent_communication": 1,
        "inter_agent_communication_metadata": 1,
        "event_msg:guardian_assessment": 2,
        "event_msg:thread_goal_updated": 1,
    }

    loaded = load_rollout_items(path)
    outcome = extract_metadata_from_rollout(path, "p")

    assert (loaded.parse_errors, loaded.unknown_types) == (2, expected)
    assert [type(item) for item in loaded.items] == [SessionMetaItem, EventMsgItem, EventMsgItem]
    assert (outcome.parse_errors, outcome.unknown_types) == (2, expected)
    assert outcome.metadata.title == "hello"
    assert outcome.metadata.tokens_used == 5


@pytest.mark.parametrize("kind", NEWER_EVENT_TYPES)
def test_each_newer_event_type_is_unknown_under_its_key(tmp_path: Path, kind: str) -> None:
    path = write(tmp_path, [meta(), line("event_msg", {"type": kind, "call_id": "c1"})])

    outcome = extract_metadata_from_rollout(path, "p")

    assert (outcome.parse_errors, outcome.unknown_types) == (0, {f"event_msg:{kind}": 1})


def test_unknown_last_line_counts_whether_complete_or_half_written(tmp_path: Path) -> None:
    complete = write(tmp_path, [meta(), line("world_state", {})], "a-" + FILE_NAME, end="")
    half = write(tmp_path, [meta()], "b-" + FILE_NAME, end="\n" + line("world_state", {})[:20])

    assert load_rollout_items(complete).unknown_types == {"world_state": 1}
    assert load_rollout_items(complete).parse_errors == 0
    assert load_rollout_items(half).unknown_types == {}
    assert load_rollout_items(half).parse_errors == 0


def test_top_level_ordinal_and_newer_payload_fields_are_ignored(tmp_path: Path) -> None:
    def numbered(text: str, ordinal: int) -> str:
        return json.dumps({**json.loads(text), "ordinal": ordinal})

    newer_meta = meta(session_id=str(THREAD), thread_source="user", history_mode="paginated")
    path = write(tmp_path, [numbered(newer_meta, 0), numbered(user("hi"), 7)])

    result = load_rollout_items(path)

    assert (result.parse_errors, result.unknown_types, len(result.items)) == (0, {}, 2)
    assert extract(path).title == "hi"


def test_a_file_of_unknown_lines_is_extracted_from_its_name(tmp_path: Path) -> None:
    path = write(
        tmp_path, [line("world_state", {}), line("event_msg", {"type": "sub_agent_activity"})]
    )

    outcome = extract_metadata_from_rollout(path, "p")

    assert outcome.metadata.id == THREAD
    assert outcome.metadata.created_at == datetime(2026, 2, 10, 9, 15, 30, tzinfo=UTC)
    assert outcome.unknown_types == {"world_state": 1, "event_msg:sub_agent_activity": 1}


# --- user messages as completed items (paginated history) --------------------------------------


def text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text, "text_elements": []}


def user_item(*content: object, item_type: str = "UserMessage") -> str:
    payload = {
        "type": "item_completed",
        "thread_id": str(THREAD),
        "turn_id": "turn-1",
        "item": {"type": item_type, "id": "item-1", "content": list(content)},
        "started_at_ms": 1788627006518,
        "completed_at_ms": 1788627006518,
    }
    return line("event_msg", payload)


def test_user_message_item_sets_title_and_first_message(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [
            meta(),
            line("event_msg", {"type": "task_started", "turn_id": "turn-1"}),
            user_item(text_part("Context\n## My request for Codex:\n  fix the bug  \n")),
            user_item(text_part("second message")),
        ],
    )

    metadata = extract(path)

    assert metadata.first_user_message == "fix the bug"
    assert metadata.title == "fix the bug"


def test_user_message_item_joins_text_parts_and_ignores_other_parts(tmp_path: Path) -> None:
    skill = {"type": "skill", "name": "review", "path": "/skills/review/SKILL.md"}
    mention = {"type": "mention", "name": "Drive", "path": "app://drive"}
    path = write(
        tmp_path,
        [
            meta(),
            user_item(
                text_part("## My request for Codex:\n fix "), skill, text_part("the bug "), mention
            ),
        ],
    )

    assert extract(path).title == "fix the bug"


@pytest.mark.parametrize(
    "image",
    [
        {"type": "image", "image_url": "data:image/png;base64,AAAA"},
        {"type": "local_image", "path": "/tmp/shot.png"},
    ],
    ids=["image", "local-image"],
)
def test_image_only_user_message_item(tmp_path: Path, image: dict[str, str]) -> None:
    path = write(
        tmp_path, [meta(), user_item(text_part("  "), image), user_item(text_part("now text"))]
    )

    metadata = extract(path)

    assert metadata.first_user_message == "[Image]"
    assert metadata.title == "now text"


def test_user_message_item_is_typed_and_other_items_stay_plain(tmp_path: Path) -> None:
    agent = {"type": "AgentMessage", "id": "msg-1", "content": [{"type": "Text", "text": "hi"}]}
    command = {"type": "CommandExecution", "id": "call-1", "command": ["date"], "exit_code": 0}
    completed = [
        line("event_msg", {"type": "item_completed", "item": item}) for item in (agent, command)
    ]
    parts = [
        text_part("look at "),
        {"type": "image", "image_url": "https://x/y.png"},
        {"type": "local_image", "path": "/tmp/a.png"},
        {"type": "audio", "data": "AAAA"},
        text_part("this"),
    ]
    path = write(tmp_path, [meta(), user_item(*parts), *completed])

    result = load_rollout_items(path)

    assert (result.parse_errors, result.unknown_types) == (0, {})
    event = result.items[1]
    assert isinstance(event, EventMsgItem) and isinstance(event.payload, ItemCompletedEvent)
    item = event.payload.item
    assert isinstance(item, UserMessageItem)
    assert item.content[:3] == [
        TextInput(text="look at "),
        ImageInput(image_url="https://x/y.png"),
        LocalImageInput(path="/tmp/a.png"),
    ]
    assert item.content[3] == {"type": "audio", "data": "AAAA"}
    assert item.as_user_message() == UserMessageEvent(
        message="look at this", images=["https://x/y.png"], local_images=["/tmp/a.png"]
    )
    assert [other.payload for other in result.items[2:]] == [
        {"type": "item_completed", "item": agent},
        {"type": "item_completed", "item": command},
    ]
    base = extract(write(tmp_path, [meta()], "base.jsonl"))
    for other in result.items[2:]:
        assert apply_rollout_item(base, other, "p") is base


def test_user_message_item_applies_as_the_user_message_event(tmp_path: Path) -> None:
    as_item = load_rollout_items(write(tmp_path, [user_item(text_part("  hi  "))], "i.jsonl"))
    as_event = load_rollout_items(write(tmp_path, [user("  hi  ")], "e.jsonl"))
    base = extract(write(tmp_path, [meta()]))

    via_item = apply_rollout_item(base, as_item.items[0], "p")

    assert via_item == apply_rollout_item(base, as_event.items[0], "p")
    assert (via_item.title, via_item.first_user_message) == ("hi", "hi")


def test_event_and_item_for_the_same_message_agree(tmp_path: Path) -> None:
    path = write(
        tmp_path, [meta(), user("first"), user_item(text_part("first")), user_item(text_part("x"))]
    )

    metadata = extract(path)

    assert (metadata.title, metadata.first_user_message) == ("first", "first")


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"type": "item_completed", "turn_id": "t"}, id="no-item"),
        pytest.param({"type": "item_completed", "item": "UserMessage"}, id="item-not-object"),
        pytest.param({"type": "item_completed", "item": {"type": 3}}, id="item-type-not-string"),
        pytest.param(
            {"type": "item_completed", "item": {"type": "UserMessage", "content": "hi"}},
            id="content-not-list",
        ),
        pytest.param(
            {
                "type": "item_completed",
                "item": {"type": "UserMessage", "content": [{"type": "text"}]},
            },
            id="text-part-without-text",
        ),
        pytest.param(
            {
                "type": "item_completed",
                "item": {"type": "UserMessage", "content": [{"type": "image", "url": "x"}]},
            },
            id="image-part-without-url",
        ),
    ],
)
def test_broken_item_completed_is_a_parse_error(tmp_path: Path, payload: dict[str, Any]) -> None:
    path = write(tmp_path, [meta(), line("event_msg", payload), user_item(text_part("ok"))])

    for result in (load_rollout_items(path), extract_metadata_from_rollout(path, "p")):
        assert (result.parse_errors, result.unknown_types) == (1, {})
    assert extract(path).title == "ok"


# --- dynamic tools -------------------------------------------------------------------------------

LOOKUP = {"name": "lookup", "description": "Find things", "inputSchema": {"type": "object"}}


def tool(name: str, **fields: Any) -> dict[str, Any]:
    return {"type": "function", "name": name, "description": f"{name} tool", **fields}


def spec(name: str, schema: Any = None, description: str | None = None) -> DynamicToolSpec:
    return DynamicToolSpec(
        name=name, description=description or f"{name} tool", input_schema=schema or {}
    )


def assert_meta_applied(metadata: ThreadMetadata) -> None:
    """The session_meta's fields, not the file-name fallback's (source vscode, name's time)."""
    assert metadata.source == "cli"
    assert metadata.created_at == datetime(2026, 2, 10, 8, 15, 30, tzinfo=UTC)
    assert metadata.cli_version == "0.99.0"
    assert metadata.cwd == Path("/work/repo")
    assert (metadata.git_sha, metadata.git_branch) == ("abc123", "main")


def test_namespaced_tools_are_flattened_under_their_plain_names(tmp_path: Path) -> None:
    tools = [
        tool("lookup", inputSchema={"type": "object"}, deferLoading=False),
        {
            "type": "namespace",
            "name": "codex_app",
            "description": "Desktop app tools",
            "tools": [
                tool("automation_update", inputSchema={"properties": {}}),
                tool("read_thread_terminal", inputSchema={}, deferLoading=True),
            ],
        },
        tool("open", inputSchema=None),
    ]
    path = write(tmp_path, [meta(dynamic_tools=tools)])
    expected = [
        spec("lookup", {"type": "object"}),
        spec("automation_update", {"properties": {}}),
        spec("read_thread_terminal"),
        DynamicToolSpec(name="open", description="open tool", input_schema=None),
    ]

    loaded = load_rollout_items(path)
    outcome = extract_metadata_from_rollout(path, "p")

    assert outcome.parse_errors == 0
    assert_meta_applied(outcome.metadata)
    assert outcome.dynamic_tools == expected
    assert (outcome.skipped_tools, loaded.skipped_tools) == (0, 0)
    assert dynamic_tools_from_items(loaded.items).tools == expected


def test_flat_tools_with_a_namespace_field_keep_their_plain_name(tmp_path: Path) -> None:
    tools = [
        {"namespace": "codex_app", "deferLoading": False, **LOOKUP},
        {"exposeToContext": False, "name": "noop", "description": "", "inputSchema": {}},
    ]
    path = write(tmp_path, [meta(dynamic_tools=tools)])

    outcome = extract_metadata_from_rollout(path, "p")

    assert outcome.dynamic_tools == [
        DynamicToolSpec(name="lookup", description="Find things", input_schema={"type": "object"}),
        DynamicToolSpec(name="noop", description="", input_schema={}),
    ]
    assert outcome.skipped_tools == 0


@pytest.mark.parametrize(
    ("declared", "stored", "skipped"),
    [
        pytest.param([{"type": "mcp", "name": "x"}, LOOKUP], ["lookup"], 1, id="unknown-type"),
        pytest.param([tool("f", deferLoading=True)], [], 1, id="function-without-schema"),
        pytest.param([{"name": "f", "inputSchema": {}}], [], 1, id="flat-without-description"),
        pytest.param(
            [{"type": "namespace", "name": "ns", "description": "d"}],
            [],
            1,
            id="namespace-no-tools",
        ),
        pytest.param(
            [
                {
                    "type": "namespace",
                    "name": "ns",
                    "description": "d",
                    "tools": [
                        tool("good", inputSchema={}),
                        {"type": "namespace", "name": "inner", "tools": []},
                        "text",
                    ],
                }
            ],
            ["good"],
            2,
            id="namespace-with-bad-tools",
        ),
        pytest.param(["lookup", 42, None, LOOKUP], ["lookup"], 3, id="not-objects"),
        pytest.param([{**LOOKUP, "type": ["function"]}], [], 1, id="type-not-a-string"),
        pytest.param(
            {"type": "dynamic", "name": "example", "tools": [tool("t", inputSchema={})]},
            [],
            1,
            id="an-object-not-a-list",
        ),
    ],
)
def test_tools_that_cannot_be_stored_are_skipped_and_the_meta_still_applies(
    tmp_path: Path, declared: object, stored: list[str], skipped: int
) -> None:
    path = write(tmp_path, [meta(dynamic_tools=declared), user("hi")])

    loaded = load_rollout_items(path)
    outcome = extract_metadata_from_rollout(path, "p")

    assert outcome.parse_errors == 0
    assert_meta_applied(outcome.metadata)
    assert outcome.dynamic_tools is not None
    assert [stored_tool.name for stored_tool in outcome.dynamic_tools] == stored
    assert outcome.skipped_tools == skipped
    assert loaded.skipped_tools == skipped
    assert dynamic_tools_from_items(loaded.items).skipped_tools == skipped


def test_namespaced_tools_reach_the_database(backend: Backend, codex_home: Path) -> None:
    runtime = backend.runtime()
    thread_id = uuid.uuid4()
    namespace = {
        "type": "namespace",
        "name": "codex_app",
        "description": "",
        "tools": [tool("a", inputSchema={"type": "object"})],
    }
    write_rollout(
        codex_home, thread_id, tools=[tool("b", inputSchema={}), namespace, {"type": "x"}]
    )

    stats = backfill_codex_home(runtime, codex_home)

    assert (stats.upserted, stats.failed) == (1, 0)
    assert runtime.get_dynamic_tools(thread_id) == [spec("b"), spec("a", {"type": "object"})]
    thread = runtime.get_thread(thread_id)
    assert thread is not None and thread.source == "cli" and thread.git_sha == "abc123"


# --- text the databases cannot store ------------------------------------------------------------

DIRTY_TOOL = {
    "name": "look\x00up",
    "description": "Fi\ud800nd",
    "inputSchema": {"ty\x00pe": "obj\udc00ect", "enum": ["a\x00", 1, None]},
}


def dirty_rollout(tmp_path: Path) -> Path:
    return write(
        tmp_path,
        [
            meta(
                cwd="/work/\x00repo",
                cli_version="0.1\ud800",
                model_provider="open\x00ai",
                source={"subagent": "re\udc00view"},
                git={
                    "commit_hash": "ab\x00c",
                    "branch": "ma\ud800in",
                    "repository_url": "x:\udfff",
                },
                dynamic_tools=[DIRTY_TOOL],
            ),
            turn(
                cwd="/turn\x00",
                approval="on-\x00request",
                sandbox={"type": "w", "roots": ["/r\ud800"]},
            ),
            user("fix \x00 it \ud800 \ud83d\ude00"),
        ],
    )


def test_nul_and_lone_surrogates_are_replaced_and_counted(tmp_path: Path) -> None:
    path = dirty_rollout(tmp_path)

    outcome = extract_metadata_from_rollout(path, "p")

    metadata = outcome.metadata
    assert metadata.cwd == Path("/turn\ufffd")
    assert metadata.cli_version == "0.1\ufffd"
    assert metadata.model_provider == "open\ufffdai"
    assert metadata.source == '{"subagent":"re\ufffdview"}'
    assert (metadata.git_sha, metadata.git_branch, metadata.git_origin_url) == (
        "ab\ufffdc",
        "ma\ufffdin",
        "x:\ufffd",
    )
    assert metadata.approval_mode == "on-\ufffdrequest"
    assert metadata.sandbox_policy == '{"type":"w","roots":["/r\ufffd"]}'
    # A valid surrogate pair (the escaped emoji) is one character, and kept.
    assert metadata.title == "fix \ufffd it \ufffd \U0001f600"
    assert metadata.first_user_message == metadata.title
    assert outcome.dynamic_tools == [
        DynamicToolSpec(
            name="look\ufffdup",
            description="Fi\ufffdnd",
            input_schema={"ty\ufffdpe": "obj\ufffdect", "enum": ["a\ufffd", 1, None]},
        )
    ]
    # cwd 1, cli_version 1, provider 1, source 1, git 3, approval 1, sandbox 1, title 2,
    # first message 2, tool name 1, description 1, schema 3.
    assert outcome.replaced_characters == 18


def test_applying_items_hands_out_storable_text(tmp_path: Path) -> None:
    path = dirty_rollout(tmp_path)
    items = load_rollout_items(path).items
    builder = builder_from_items(items, path)
    assert builder is not None
    expected = extract_metadata_from_rollout(path, "p").metadata

    folded = apply_rollout_items(builder.build("p"), items, "p")
    one_by_one = builder.build("p")
    for item in items:
        one_by_one = apply_rollout_item(one_by_one, item, "p")

    assert folded.model_copy(update={"updated_at": expected.updated_at}) == expected
    assert (folded.cwd, folded.git_sha) == (Path("/turn\ufffd"), "ab\ufffdc")
    assert one_by_one == folded
    assert (
        dynamic_tools_from_items(items).tools
        == extract_metadata_from_rollout(path, "p").dynamic_tools
    )


def test_clean_text_is_not_counted(tmp_path: Path) -> None:
    path = write(tmp_path, [meta(dynamic_tools=[LOOKUP]), user("ünïcödé \U0001f600")])

    outcome = extract_metadata_from_rollout(path, "p")

    assert outcome.replaced_characters == 0
    assert outcome.metadata.title == "ünïcödé \U0001f600"


def test_replaced_text_reaches_the_database(backend: Backend, tmp_path: Path) -> None:
    runtime = backend.runtime()
    outcome = extract_metadata_from_rollout(dirty_rollout(tmp_path), "p")
    assert outcome.dynamic_tools is not None

    runtime.upsert_thread(outcome.metadata)
    runtime.persist_dynamic_tools(THREAD, outcome.dynamic_tools)

    assert runtime.get_thread(THREAD) == outcome.metadata
    assert runtime.get_dynamic_tools(THREAD) == outcome.dynamic_tools


# --- compressed rollouts -------------------------------------------------------------------------


def compress(path: Path, *, frames: int = 1, finish: bool = True) -> Path:
    """`path` zstd-compressed beside it (`….jsonl.zst`), in `frames` frames; the plain file stays.

    `finish=False` leaves the last frame open after a flushed block, as a writer still at work.
    """
    zstandard = pytest.importorskip("zstandard")
    data = path.read_bytes()
    cut = len(data) // frames
    chunks = [data[i * cut : (i + 1) * cut if i < frames - 1 else len(data)] for i in range(frames)]
    out = b""
    for index, chunk in enumerate(chunks):
        compressor = zstandard.ZstdCompressor().compressobj()
        out += compressor.compress(chunk)
        last = index == frames - 1
        out += compressor.flush(
            zstandard.COMPRESSOBJ_FLUSH_BLOCK
            if last and not finish
            else zstandard.COMPRESSOBJ_FLUSH_FINISH
        )
    target = path.with_name(path.name + ".zst")
    target.write_bytes(out)
    stat = path.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    return target


ROLLOUT = [meta(), turn(), user("compressed"), tokens(12), line("world_state", {})]


@pytest.mark.parametrize(("frames", "finish"), [(1, True), (3, True), (2, False)])
def test_compressed_rollout_reads_like_the_plain_one(
    tmp_path: Path, frames: int, finish: bool
) -> None:
    plain = write(tmp_path, ROLLOUT)
    compressed = compress(plain, frames=frames, finish=finish)

    loaded = load_rollout_items(compressed)
    outcome = extract_metadata_from_rollout(compressed, "p")

    assert loaded == load_rollout_items(plain)
    expected = extract_metadata_from_rollout(plain, "p")
    assert outcome.metadata == expected.metadata.model_copy(update={"rollout_path": compressed})
    assert (outcome.parse_errors, outcome.unknown_types) == (0, {"world_state": 1})


def test_compressed_rollout_without_meta_takes_the_thread_from_its_name(tmp_path: Path) -> None:
    compressed = compress(write(tmp_path, [user("hello")]))

    metadata = extract(compressed)

    assert (metadata.id, metadata.title) == (THREAD, "hello")
    assert metadata.created_at == datetime(2026, 2, 10, 9, 15, 30, tzinfo=UTC)


def test_corrupt_compressed_rollout_is_a_read_error(tmp_path: Path) -> None:
    pytest.importorskip("zstandard")
    path = tmp_path / (FILE_NAME + ".zst")
    path.write_bytes(b"this is not zstd")

    with pytest.raises(RolloutReadError, match="cannot decompress"):
        load_rollout_items(path)


def test_without_zstandard_a_compressed_rollout_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = write(tmp_path, ROLLOUT)
    compressed = tmp_path / (FILE_NAME + ".zst")
    compressed.write_bytes(b"\x28\xb5\x2f\xfd")  # never decompressed: the import fails first
    monkeypatch.setitem(sys.modules, "zstandard", None)  # `import zstandard` raises ImportError

    with pytest.raises(RolloutReadError, match=r"zstandard.*codex-state\[zstd\]"):
        load_rollout_items(compressed)
    with pytest.raises(RolloutReadError, match=r"codex-state\[zstd\]"):
        extract_metadata_from_rollout(compressed, "p")
    assert extract(plain).title == "compressed"


# --- discovery -----------------------------------------------------------------------------------


def touch(home: Path, relative: str) -> Path:
    path = home / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    return path


def test_find_rollout_files_lists_plain_and_compressed_rollouts(tmp_path: Path) -> None:
    for relative in [
        "sessions/2026/02/11/rollout-c.jsonl",
        "sessions/2026/02/11/rollout-c.jsonl.zst",  # the plain twin wins
        "sessions/2026/02/10/rollout-b.jsonl.zst",
        "sessions/2026/02/10/rollout-a.jsonl",
        "archived_sessions/rollout-d.jsonl.zst",
        "archived_sessions/rollout-e.jsonl",
        "sessions/2026/02/10/rollout-f.json",
        "sessions/2026/02/10/rollout-g.jsonl.gz",
        "sessions/2026/02/10/rollout-h.zst",
        "sessions/2026/02/10/session-i.jsonl",
        "sessions/notes.txt",
        "elsewhere/rollout-j.jsonl",
    ]:
        touch(tmp_path, relative)
    (tmp_path / "sessions/2026/02/12/rollout-dir.jsonl").mkdir(parents=True)

    found = find_rollout_files(tmp_path)

    assert [(rollout.watermark, rollout.archived) for rollout in found] == [
        ("archived_sessions/rollout-d.jsonl.zst", True),
        ("archived_sessions/rollout-e.jsonl", True),
        ("sessions/2026/02/10/rollout-a.jsonl", False),
        ("sessions/2026/02/10/rollout-b.jsonl.zst", False),
        ("sessions/2026/02/11/rollout-c.jsonl", False),
    ]
    assert all(rollout.path == tmp_path / rollout.watermark for rollout in found)


def test_compressed_twin_appears_once_its_plain_file_is_gone(tmp_path: Path) -> None:
    plain = touch(tmp_path, "sessions/2026/02/11/rollout-c.jsonl")
    touch(tmp_path, "sessions/2026/02/11/rollout-c.jsonl.zst")
    before = find_rollout_files(tmp_path)

    plain.unlink()
    after = find_rollout_files(tmp_path)

    assert [rollout.watermark for rollout in before] == ["sessions/2026/02/11/rollout-c.jsonl"]
    assert [rollout.watermark for rollout in after] == ["sessions/2026/02/11/rollout-c.jsonl.zst"]
    # A backfill resumed at the plain file's watermark still picks the compressed one up.
    assert after[0].watermark > before[0].watermark


def test_discovery_moved_but_backfill_still_exports_it() -> None:
    assert codex_state.backfill.find_rollout_files is find_rollout_files
    assert codex_state.backfill.RolloutFile is RolloutFile
    assert (codex_state.backfill.SESSIONS_SUBDIR, SESSIONS_SUBDIR) == ("sessions", "sessions")
    assert codex_state.backfill.ARCHIVED_SESSIONS_SUBDIR == ARCHIVED_SESSIONS_SUBDIR
    assert ARCHIVED_SESSIONS_SUBDIR == "archived_sessions"


def test_backfill_indexes_a_compressed_rollout(backend: Backend, codex_home: Path) -> None:
    runtime = backend.runtime()
    thread_id = uuid.uuid4()
    plain = write_rollout(codex_home, thread_id, message="## My request for Codex: zipped")
    compressed = compress(plain)
    plain.unlink()

    stats = backfill_codex_home(runtime, codex_home)

    assert (stats.upserted, stats.failed) == (1, 0)
    thread = runtime.get_thread(thread_id)
    assert thread is not None
    assert (thread.rollout_path, thread.title) == (compressed, "zipped")


# --- the real newer rollouts ---------------------------------------------------------------------


@dataclass(frozen=True)
class NewerRollout:
    """Expected metadata, read out of the file by hand (session_meta, last turn_context, first
    user message, last token_count with info)."""

    file_name: str
    created_at: datetime
    source: str
    cwd: str
    cli_version: str
    title: str
    items: int
    tokens_used: int = 0
    sandbox_policy: str = '{"type":"read-only"}'
    git: tuple[str | None, str | None, str | None] = (None, None, None)
    tools: tuple[str, ...] | None = None

    @property
    def id(self) -> uuid.UUID:
        return uuid.UUID(self.file_name.removesuffix(".jsonl")[-36:])


NEWER_ROLLOUTS = [
    NewerRollout(
        file_name="rollout-2026-05-11T11-26-55-019e1625-789d-76c0-80ab-3724b5ddb799.jsonl",
        created_at=datetime(2026, 5, 11, 8, 26, 55, tzinfo=UTC),
        source="cli",
        cwd="/Users/Sample_User/repos/codemie-ai/codemie-code",
        cli_version="0.125.0",
        title="show tools",
        items=386,
        tokens_used=6_064_954,
        sandbox_policy=(
            '{"type":"workspace-write","writable_roots":["/Users/Sample_User/.codex/memories"],'
            '"network_access":false,"exclude_tmpdir_env_var":false,"exclude_slash_tmp":false}'
        ),
        git=(
            "c8c252acd853de59c54b5c31374fec6028ee812e",
            "feat/codex-agent-plugin",
            "git@github.com:codemie-ai/codemie-code.git",
        ),
    ),
    NewerRollout(
        # Flat dynamic tools, one with a `namespace` field; the request after the legacy marker.
        file_name="rollout-2026-05-11T13-28-45-019e1695-0522-7c83-8b39-0dd379793f80.jsonl",
        created_at=datetime(2026, 5, 11, 10, 28, 45, tzinfo=UTC),
        source="vscode",
        cwd="/Users/Sample_User/naya",
        cli_version="0.128.0-alpha.1",
        title=(
            "analyze trascript and summarzie action items related to codemie and demo "
            "preapration, specifically focus on demo, User and Vadym"
        ),
        items=99,
        tools=("automation_update", "read_thread_terminal", "load_workspace_dependencies"),
    ),
    NewerRollout(
        file_name="rollout-2026-08-30T16-47-52-01a054db-9963-7dd0-ac5b-c82ea702c983.jsonl",
        created_at=datetime(2026, 8, 30, 22, 47, 52, tzinfo=UTC),
        source="vscode",
        cwd="/Users/dev/src/api-service",
        cli_version="0.148.0-alpha.9",
        title="how do we sever the import link",
        items=8,
    ),
    NewerRollout(
        # Paginated history: the only user text is an item_completed UserMessage; `git: {}`.
        file_name="rollout-2026-09-05T10-46-13-01a07276-a69c-7282-8e89-6bab77f2da3a.jsonl",
        created_at=datetime(2026, 9, 5, 16, 46, 13, tzinfo=UTC),
        source="cli",
        cwd="/Users/dev/src/scratch",
        cli_version="0.153.4",
        title="what time is i?",
        items=8,
    ),
]


@pytest.mark.parametrize("expected", NEWER_ROLLOUTS, ids=lambda rollout: rollout.cli_version)
def test_real_newer_rollout(expected: NewerRollout) -> None:
    path = real_data_dir("codex-rollouts-newer") / expected.file_name
    if not path.is_file():
        pytest.skip(f"real rollout data not present: {path}")

    loaded = load_rollout_items(path)
    outcome = extract_metadata_from_rollout(path, "unused-default")

    assert loaded.thread_id == expected.id
    assert (loaded.parse_errors, loaded.unknown_types, len(loaded.items)) == (0, {}, expected.items)
    assert (outcome.parse_errors, outcome.unknown_types) == (0, {})
    assert (outcome.skipped_tools, outcome.replaced_characters) == (0, 0)
    names = None if outcome.dynamic_tools is None else tuple(t.name for t in outcome.dynamic_tools)
    assert names == expected.tools
    mtime = path.stat().st_mtime_ns // 1_000_000_000
    git_sha, git_branch, git_origin_url = expected.git
    assert outcome.metadata == ThreadMetadata(
        id=expected.id,
        rollout_path=path,
        created_at=expected.created_at,
        updated_at=datetime.fromtimestamp(mtime, tz=UTC),
        source=expected.source,
        model_provider="openai",
        cwd=Path(expected.cwd),
        cli_version=expected.cli_version,
        title=expected.title,
        sandbox_policy=expected.sandbox_policy,
        approval_mode="on-request",
        tokens_used=expected.tokens_used,
        first_user_message=expected.title,
        archived_at=None,
        git_sha=git_sha,
        git_branch=git_branch,
        git_origin_url=git_origin_url,
    )


def test_real_newer_rollouts_index_as_a_home(backend: Backend, codex_home: Path) -> None:
    source = real_data_dir("codex-rollouts-newer")
    files = sorted(source.glob("rollout-*.jsonl"))
    if not files:
        pytest.skip(f"real rollout data not present: {source}")
    day = codex_home / SESSIONS_SUBDIR / "2026" / "09" / "05"
    day.mkdir(parents=True)
    for path in files:
        shutil.copy2(path, day / path.name)
    runtime = backend.runtime()

    stats = backfill_codex_home(runtime, codex_home)

    assert (stats.scanned, stats.upserted, stats.failed) == (len(files), len(files), 0)
    titles = {thread.title for thread in runtime.list_threads(50).items}
    assert {rollout.title for rollout in NEWER_ROLLOUTS} <= titles
