"""Rollout parsing and metadata extraction (pure: no database).

Synthetic rollouts cover every extraction rule of seed-notes section 3 and every malformed case;
the six real rollouts in the nearest `shared/data/codex-rollouts` above the repository (or
`$CODEX_STATE_ROLLOUT_DATA`) are checked against metadata read out of them by hand, and skipped
when absent.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from codex_state import RolloutReadError, StateError, ThreadMetadata
from codex_state.models import DynamicToolSpec
from codex_state.rollout import (
    CompactedItem,
    EventMsgItem,
    ResponseItem,
    SessionMetaItem,
    TokenCountEvent,
    TurnContextItem,
    UserMessageEvent,
    apply_rollout_item,
    apply_rollout_items,
    builder_from_items,
    dynamic_tools_from_items,
    enum_to_string,
    extract_metadata_from_rollout,
    load_rollout_items,
    parse_rollout_timestamp,
)
from tests.rollout_files import (
    FILE_NAME,
    OMIT,
    OTHER,
    THREAD,
    TS,
    WORKSPACE_WRITE,
    WORKSPACE_WRITE_TEXT,
    agent_message,
    extract,
    line,
    meta,
    real_data_dir,
    response,
    tokens,
    turn,
    user,
    write,
)

# --- reading and the parse-error policy -------------------------------------------------------


def test_load_types_every_item_kind(tmp_path: Path) -> None:
    compacted = line("compacted", {"message": "summary", "replacement_history": None})
    path = write(
        tmp_path, [meta(), turn(), user("hi"), response(), agent_message(), tokens(7), compacted]
    )

    result = load_rollout_items(path)

    assert result.parse_errors == 0
    assert result.thread_id == THREAD
    kinds = [type(item) for item in result.items]
    assert kinds == [
        SessionMetaItem,
        TurnContextItem,
        EventMsgItem,
        ResponseItem,
        EventMsgItem,
        EventMsgItem,
        CompactedItem,
    ]
    session, context, message, reply, agent, count, _ = result.items
    assert isinstance(session, SessionMetaItem) and session.payload.cli_version == "0.99.0"
    assert session.timestamp == TS
    assert (
        isinstance(context, TurnContextItem) and context.payload.sandbox_policy == WORKSPACE_WRITE
    )
    assert isinstance(message, EventMsgItem) and message.payload == UserMessageEvent(message="hi")
    assert isinstance(reply, ResponseItem) and reply.payload["role"] == "assistant"
    assert isinstance(agent, EventMsgItem) and agent.payload == {
        "type": "agent_message",
        "message": "done",
    }
    assert isinstance(count, EventMsgItem) and isinstance(count.payload, TokenCountEvent)
    assert count.payload.info is not None
    assert count.payload.info.total_token_usage.total_tokens == 7


def test_blank_lines_are_skipped_not_counted(tmp_path: Path) -> None:
    path = write(tmp_path, ["", meta(), "   ", "\t", user("hi"), ""])

    result = load_rollout_items(path)

    assert result.parse_errors == 0
    assert len(result.items) == 2


@pytest.mark.parametrize(
    "bad_line",
    [
        pytest.param("{not json", id="bad-json"),
        pytest.param('["a", "list"]', id="not-an-object"),
        pytest.param("42", id="scalar"),
        pytest.param(json.dumps({"type": "event_msg", "payload": {}}), id="no-timestamp"),
        pytest.param(json.dumps({"timestamp": TS, "payload": {}}), id="no-type"),
        pytest.param(
            json.dumps({"timestamp": TS, "type": ["event_msg"], "payload": {}}), id="type-list"
        ),
        pytest.param(json.dumps({"timestamp": 5, "type": "world_state"}), id="number-timestamp"),
        pytest.param(line("event_msg", {"message": "no type"}), id="event-without-type"),
        pytest.param(line("event_msg", "text"), id="event-payload-not-object"),
        pytest.param(line("response_item", ["x"]), id="response-payload-not-object"),
        pytest.param(json.dumps({"timestamp": TS, "type": "response_item"}), id="no-payload"),
        pytest.param(line("turn_context", {"approval_policy": "never"}), id="turn-without-cwd"),
        pytest.param(line("session_meta", {"id": "not-a-uuid"}), id="meta-bad-id"),
        pytest.param(
            line("event_msg", {"type": "user_message", "images": None}), id="user-no-message"
        ),
        pytest.param(
            line("event_msg", {"type": "token_count", "info": {"total_token_usage": 5}}),
            id="token-count-bad-info",
        ),
        pytest.param(line("compacted", {"replacement_history": None}), id="compacted-no-message"),
    ],
)
def test_invalid_line_is_counted_and_skipped(tmp_path: Path, bad_line: str) -> None:
    path = write(tmp_path, [meta(), bad_line, user("still read"), tokens(3)])

    result = load_rollout_items(path)

    assert result.parse_errors == 1
    assert [type(item) for item in result.items] == [SessionMetaItem, EventMsgItem, EventMsgItem]
    outcome = extract_metadata_from_rollout(path, "p")
    assert outcome.parse_errors == 1
    assert outcome.metadata.first_user_message == "still read"
    assert outcome.metadata.tokens_used == 3


def test_known_uninteresting_event_types_are_opaque_not_errors(tmp_path: Path) -> None:
    events = ["agent_reasoning", "task_started", "task_complete", "turn_aborted"]
    path = write(tmp_path, [meta(), *(line("event_msg", {"type": kind}) for kind in events)])

    result = load_rollout_items(path)

    assert result.parse_errors == 0
    assert [item.payload for item in result.items[1:]] == [{"type": kind} for kind in events]


def test_invalid_utf8_line_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    path.write_bytes(
        (meta() + "\n").encode() + b'{"bad": "\xff\xfe"}\n' + (user("ok") + "\n").encode()
    )

    result = load_rollout_items(path)

    assert result.parse_errors == 1
    assert len(result.items) == 2


def test_crlf_line_endings_are_read(tmp_path: Path) -> None:
    path = write(tmp_path, [meta(), user("hi")], end="\r\n")
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))

    result = load_rollout_items(path)

    assert result.parse_errors == 0
    assert len(result.items) == 2


def test_half_written_last_line_is_not_an_error(tmp_path: Path) -> None:
    complete = [meta(), user("hi")]
    path = write(tmp_path, complete, end="\n" + tokens(5)[:25])

    result = load_rollout_items(path)

    assert result.parse_errors == 0
    assert len(result.items) == 2
    assert extract_metadata_from_rollout(path, "p").parse_errors == 0


def test_complete_last_line_without_newline_is_read(tmp_path: Path) -> None:
    path = write(tmp_path, [meta(), tokens(5)], end="")

    result = load_rollout_items(path)

    assert result.parse_errors == 0
    assert len(result.items) == 2
    assert extract(path).tokens_used == 5


def test_unterminated_last_line_that_is_json_but_invalid_is_counted(tmp_path: Path) -> None:
    path = write(tmp_path, [meta(), line("event_msg", {"message": "no type"})], end="")

    assert load_rollout_items(path).parse_errors == 1


def test_missing_file_is_a_package_error(tmp_path: Path) -> None:
    missing = tmp_path / FILE_NAME
    with pytest.raises(RolloutReadError, match="cannot read rollout file"):
        load_rollout_items(missing)
    with pytest.raises(StateError):
        extract_metadata_from_rollout(missing, "p")


def test_directory_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(RolloutReadError):
        load_rollout_items(tmp_path)


@pytest.mark.parametrize(
    "content", ["", "\n\n  \n", "{broken\n[1]\n"], ids=["empty", "blank", "all-bad"]
)
def test_file_without_valid_lines_cannot_be_extracted(tmp_path: Path, content: str) -> None:
    path = tmp_path / FILE_NAME
    path.write_text(content)

    assert load_rollout_items(path).items == []
    with pytest.raises(RolloutReadError, match="empty session file"):
        extract_metadata_from_rollout(path, "p")


# --- builder -----------------------------------------------------------------------------------


def test_builder_from_session_meta(tmp_path: Path) -> None:
    path = write(tmp_path, [meta(model_provider=None)])
    builder = builder_from_items(load_rollout_items(path).items, path)

    assert builder is not None
    assert builder.id == THREAD
    assert builder.rollout_path == path
    assert builder.created_at == datetime(2026, 2, 10, 8, 15, 30, tzinfo=UTC)
    assert builder.source == "cli"
    assert builder.model_provider is None
    assert builder.cwd == Path("/work/repo")
    assert builder.cli_version == "0.99.0"
    assert builder.sandbox_policy == '{"type":"read-only"}'
    assert builder.approval_mode == "on-request"
    assert (builder.git_sha, builder.git_branch, builder.git_origin_url) == (
        "abc123",
        "main",
        "git@x:y.git",
    )


def test_without_session_meta_the_file_name_gives_the_thread(tmp_path: Path) -> None:
    path = write(tmp_path, [turn(), user("hello"), tokens(9)])

    result = load_rollout_items(path)
    metadata = extract(path)

    assert result.thread_id is None
    assert metadata.id == THREAD
    # The name's time is local in Codex; like the seed we take it as UTC.
    assert metadata.created_at == datetime(2026, 2, 10, 9, 15, 30, tzinfo=UTC)
    assert metadata.source == "vscode"
    assert metadata.model_provider == "default-provider"
    assert metadata.cli_version == ""
    assert metadata.cwd == Path("/work/repo")  # from the turn context
    assert metadata.title == "hello"
    assert metadata.tokens_used == 9


def test_unparsable_meta_timestamp_falls_back_to_the_file_name(tmp_path: Path) -> None:
    path = write(tmp_path, [meta(timestamp="yesterday")])

    builder = builder_from_items(load_rollout_items(path).items, path)

    assert builder is not None
    assert builder.created_at == datetime(2026, 2, 10, 9, 15, 30, tzinfo=UTC)
    assert builder.source == "vscode"


@pytest.mark.parametrize(
    "name",
    [
        "session.jsonl",
        "rollout-2026-02-10T09-15-30.jsonl",
        "rollout-2026-02-10T09-15-30-not-a-uuid.jsonl",
        f"rollout-2026-02-10 09:15:30-{THREAD}.jsonl",
        f"rollout-2026-02-10T09-15-30-{THREAD}.json",
    ],
)
def test_no_meta_and_no_usable_name_is_an_error(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, [user("hello")], name=name)

    assert builder_from_items(load_rollout_items(path).items, path) is None
    with pytest.raises(RolloutReadError, match="no session_meta"):
        extract_metadata_from_rollout(path, "p")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-02-10T09-15-30", datetime(2026, 2, 10, 9, 15, 30, tzinfo=UTC)),
        ("2026-02-10T08:15:30.999Z", datetime(2026, 2, 10, 8, 15, 30, tzinfo=UTC)),
        ("2026-02-10T10:15:30.5+02:00", datetime(2026, 2, 10, 8, 15, 30, tzinfo=UTC)),
        ("2026-02-10T08:15:30", None),  # RFC 3339 needs an offset
        ("not a time", None),
    ],
)
def test_parse_rollout_timestamp(text: str, expected: datetime | None) -> None:
    assert parse_rollout_timestamp(text) == expected


# --- applying items ----------------------------------------------------------------------------


def test_turn_context_last_wins_and_sandbox_is_compact_json(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [
            meta(),
            turn(cwd="/first", approval="never", sandbox={"type": "danger-full-access"}),
            turn(cwd="relative/dir/", approval="untrusted", sandbox=WORKSPACE_WRITE),
        ],
    )

    metadata = extract(path)

    assert metadata.sandbox_policy == WORKSPACE_WRITE_TEXT
    assert metadata.approval_mode == "untrusted"
    assert metadata.cwd == Path("relative/dir/")  # the turn cwd is not normalized


def test_sandbox_key_order_is_kept_as_written(tmp_path: Path) -> None:
    sandbox = {"type": "external-sandbox", "network_access": "restricted"}
    path = write(tmp_path, [meta(), turn(sandbox=sandbox)])

    assert (
        extract(path).sandbox_policy == '{"type":"external-sandbox","network_access":"restricted"}'
    )


def test_without_turn_context_sandbox_and_approval_keep_defaults(tmp_path: Path) -> None:
    metadata = extract(write(tmp_path, [meta(), user("x")]))

    assert metadata.sandbox_policy == '{"type":"read-only"}'
    assert metadata.approval_mode == "on-request"


def test_session_meta_after_turn_context_keeps_seed_order(tmp_path: Path) -> None:
    # The meta's non-empty cwd overrides the earlier turn; the later turn overrides the meta.
    first = write(tmp_path, [turn(cwd="/turn"), meta(cwd="/meta")], name="a-" + FILE_NAME)
    second = write(tmp_path, [meta(cwd="/meta"), turn(cwd="/turn")], name="b-" + FILE_NAME)

    assert extract(first).cwd == Path("/meta")
    assert extract(second).cwd == Path("/turn")


@pytest.mark.parametrize(
    ("source", "stored"),
    [
        ("exec", "exec"),
        ({"subagent": "review"}, '{"subagent":"review"}'),
        (
            {"subagent": {"thread_spawn": {"parent_thread_id": str(OTHER), "depth": 1}}},
            '{"subagent":{"thread_spawn":{"parent_thread_id":"' + str(OTHER) + '","depth":1}}}',
        ),
        (
            {"subagent": {"other": "memory_consolidation"}},
            '{"subagent":{"other":"memory_consolidation"}}',
        ),
    ],
)
def test_source_is_stored_in_its_enum_string_form(
    tmp_path: Path, source: object, stored: str
) -> None:
    metadata = extract(write(tmp_path, [meta(source=source)]))

    assert metadata.source == stored


def test_missing_source_is_vscode(tmp_path: Path) -> None:
    assert extract(write(tmp_path, [meta(source=OMIT)])).source == "vscode"


def test_forked_rollout_ignores_the_parent_session_meta(tmp_path: Path) -> None:
    parent = meta(
        OTHER,
        source="exec",
        model_provider="azure",
        cwd="/parent",
        cli_version="0.1.0",
        git={"commit_hash": "parent-sha"},
        dynamic_tools=[{"name": "p", "description": "", "inputSchema": {}}],
    )
    path = write(tmp_path, [meta(forked_from_id=str(OTHER)), parent, user("child")])

    result = load_rollout_items(path)
    outcome = extract_metadata_from_rollout(path, "p")

    assert result.thread_id == THREAD
    metadata = outcome.metadata
    assert metadata.id == THREAD
    assert (metadata.source, metadata.model_provider, metadata.cwd) == (
        "cli",
        "openai",
        Path("/work/repo"),
    )
    assert metadata.cli_version == "0.99.0"
    assert metadata.git_sha == "abc123"
    assert outcome.dynamic_tools is None


def test_session_meta_applies_only_non_empty_cwd_and_cli_version(tmp_path: Path) -> None:
    base = extract(write(tmp_path, [meta()]))
    item = load_rollout_items(
        write(tmp_path, [meta(cwd="", cli_version="", git=None, model_provider="azure")], "m.jsonl")
    ).items[0]

    updated = apply_rollout_item(base, item, "p")

    assert updated.cwd == base.cwd
    assert updated.cli_version == base.cli_version
    assert updated.model_provider == "azure"
    assert (updated.git_sha, updated.git_branch) == ("abc123", "main")  # no git: left alone


def test_session_meta_git_overwrites_each_field_even_with_none(tmp_path: Path) -> None:
    base = extract(write(tmp_path, [meta()]))
    item = load_rollout_items(write(tmp_path, [meta(git={"branch": "dev"})], "m.jsonl")).items[0]

    updated = apply_rollout_item(base, item, "p")

    assert (updated.git_sha, updated.git_branch, updated.git_origin_url) == (None, "dev", None)


def test_first_user_message_and_title(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [
            meta(),
            user("Context here\n## My request for Codex:\n  fix the bug  \n"),
            user("second message"),
        ],
    )

    metadata = extract(path)

    assert metadata.first_user_message == "fix the bug"
    assert metadata.title == "fix the bug"


def test_message_without_marker_is_trimmed(tmp_path: Path) -> None:
    metadata = extract(write(tmp_path, [meta(), user("  \n plain request \n")]))

    assert metadata.first_user_message == "plain request"


@pytest.mark.parametrize(
    ("images", "local_images"),
    [(["data:image/png;base64,AAAA"], ()), (None, ("/tmp/shot.png",))],
    ids=["images", "local-images"],
)
def test_image_only_message(
    tmp_path: Path, images: list[str] | None, local_images: tuple[str, ...]
) -> None:
    path = write(
        tmp_path,
        [meta(), user("## My request for Codex:  ", images, local_images), user("now text")],
    )

    metadata = extract(path)

    assert metadata.first_user_message == "[Image]"
    assert metadata.title == "now text"  # the image-only message left the title empty


def test_empty_message_without_images_sets_nothing(tmp_path: Path) -> None:
    metadata = extract(write(tmp_path, [meta(), user("   ", []), user("later")]))

    assert metadata.first_user_message == "later"
    assert metadata.title == "later"


def test_no_user_message_leaves_first_message_none(tmp_path: Path) -> None:
    metadata = extract(write(tmp_path, [meta(), response(), agent_message()]))

    assert metadata.first_user_message is None
    assert metadata.title == ""


def test_token_counts(tmp_path: Path) -> None:
    assert (
        extract(write(tmp_path, [meta(), tokens(10), tokens(25), tokens(None)])).tokens_used == 25
    )
    assert extract(write(tmp_path, [meta(), tokens(10), tokens(-5)], "n.jsonl")).tokens_used == 0
    assert extract(write(tmp_path, [meta(), tokens(None)], "z.jsonl")).tokens_used == 0


@pytest.mark.parametrize("provider", [None, ""], ids=["null", "empty"])
def test_empty_provider_becomes_the_default(tmp_path: Path, provider: str | None) -> None:
    metadata = extract(write(tmp_path, [meta(model_provider=provider)]), "fallback")

    assert metadata.model_provider == "fallback"


def test_response_items_and_compacted_are_no_ops(tmp_path: Path) -> None:
    compacted = line("compacted", {"message": "## My request for Codex: x"})
    path = write(tmp_path, [meta(), response("## My request for Codex: hi"), compacted])
    items = load_rollout_items(path).items
    base = extract(write(tmp_path, [meta()], "base.jsonl"))

    assert apply_rollout_item(base, items[1], "p") is base
    assert apply_rollout_item(base, items[2], "p") is base


def test_apply_rollout_item_returns_a_copy_and_leaves_the_input(tmp_path: Path) -> None:
    base = extract(write(tmp_path, [meta()]))
    item = load_rollout_items(write(tmp_path, [tokens(42)], "t.jsonl")).items[0]

    updated = apply_rollout_item(base, item, "p")

    assert updated.tokens_used == 42
    assert base.tokens_used == 0
    assert updated.diff_fields(base) == ["tokens_used"]


def test_apply_rollout_items_matches_item_by_item(tmp_path: Path) -> None:
    lines = [
        turn(cwd="/t1"),
        meta(model_provider=""),
        user("", ["img"]),
        turn(cwd="/t2", approval="never"),
        tokens(5),
        meta(OTHER, cwd="/other"),
        user("text"),
        turn(cwd="/t3", sandbox={"type": "read-only"}),
        meta(cwd="/m2", cli_version="1.0", model_provider=None),
        tokens(-1),
        tokens(None),
    ]
    items = load_rollout_items(write(tmp_path, lines)).items
    start = ThreadMetadata(
        id=THREAD,
        rollout_path=tmp_path,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        updated_at=datetime(2026, 1, 1, tzinfo=UTC),
        source="vscode",
        model_provider="",
        cwd=Path(),
    )

    one_by_one = start
    for item in items:
        one_by_one = apply_rollout_item(one_by_one, item, "dflt")

    assert apply_rollout_items(start, items, "dflt") == one_by_one
    assert one_by_one.cwd == Path("/m2")
    assert one_by_one.sandbox_policy == '{"type":"read-only"}'
    assert one_by_one.approval_mode == "on-request"
    assert one_by_one.model_provider == "dflt"
    assert one_by_one.first_user_message == "[Image]"
    assert one_by_one.title == "text"
    assert one_by_one.cli_version == "1.0"
    assert one_by_one.tokens_used == 0


def test_updated_at_is_the_file_mtime_in_whole_seconds(tmp_path: Path) -> None:
    path = write(tmp_path, [meta()])
    os.utime(path, ns=(1_771_000_000_750_000_000, 1_771_000_000_750_000_000))

    metadata = extract(path)

    assert metadata.updated_at == datetime.fromtimestamp(1_771_000_000, tz=UTC)
    assert metadata.created_at == datetime(2026, 2, 10, 8, 15, 30, tzinfo=UTC)


# --- dynamic tools ------------------------------------------------------------------------------


def test_dynamic_tools_of_the_first_session_meta(tmp_path: Path) -> None:
    tools = [
        {"name": "lookup", "description": "Find things", "inputSchema": {"type": "object"}},
        {"name": "noop", "description": "", "inputSchema": None},
    ]
    path = write(tmp_path, [meta(dynamic_tools=tools), meta(OTHER, dynamic_tools=[])])
    items = load_rollout_items(path).items

    found = dynamic_tools_from_items(items)

    expected = [
        DynamicToolSpec(name="lookup", description="Find things", input_schema={"type": "object"}),
        DynamicToolSpec(name="noop", description="", input_schema=None),
    ]
    assert found.has_session_meta
    assert found.tools == expected
    assert extract_metadata_from_rollout(path, "p").dynamic_tools == expected


def test_dynamic_tools_absent_or_null_or_no_meta(tmp_path: Path) -> None:
    without = load_rollout_items(write(tmp_path, [meta()])).items
    null = load_rollout_items(write(tmp_path, [meta(dynamic_tools=None)], "n.jsonl")).items
    no_meta = load_rollout_items(write(tmp_path, [user("x")], "u.jsonl")).items

    assert dynamic_tools_from_items(without).tools is None
    assert dynamic_tools_from_items(without).has_session_meta
    assert dynamic_tools_from_items(null).tools is None
    assert not dynamic_tools_from_items(no_meta).has_session_meta


def test_enum_to_string() -> None:
    assert enum_to_string("on-request") == "on-request"
    assert enum_to_string({"b": 1, "a": [True, None]}) == '{"b":1,"a":[true,null]}'
    assert enum_to_string({"subagent": "ré"}) == '{"subagent":"ré"}'


# --- the six real rollouts ----------------------------------------------------------------------


def real_rollout_dir() -> Path:
    env = os.environ.get("CODEX_STATE_ROLLOUT_DATA")
    return Path(env) if env else real_data_dir("codex-rollouts")


@dataclass(frozen=True)
class RealRollout:
    """Expected metadata, read out of the file with jq (session_meta, last turn_context, first
    user_message, last token_count with info)."""

    id: str
    created_at: datetime
    cwd: str
    tokens_used: int
    first_user_message: str
    git_sha: str
    git_origin_url: str
    items: int

    @property
    def file_name(self) -> str:
        # Codex names files by local time; these were written at UTC+1.
        local = self.created_at.astimezone(timezone(timedelta(hours=1)))
        return f"rollout-{local:%Y-%m-%dT%H-%M-%S}-{self.id}.jsonl"


REAL_ROLLOUTS = [
    RealRollout(
        id="019c8a4c-ed82-79a1-aa28-7738fc5ab61a",
        created_at=datetime(2026, 2, 23, 11, 40, 23, tzinfo=UTC),
        cwd="/redacted/path/fa3f7eaace",
        tokens_used=7_240_100,
        first_user_message="[REDACTED_MESSAGE len=516 sha=05857781]",
        git_sha="1cdfa7b17410e00cddbb7a4347336af2c6f80ee0",
        git_origin_url="redacted://url/5d14a88c6f",
        items=702,
    ),
    RealRollout(
        id="019c8a4d-8f45-7010-8b5d-7fad920aa6f9",
        created_at=datetime(2026, 2, 23, 11, 41, 4, tzinfo=UTC),
        cwd="/redacted/path/da0ba47443",
        tokens_used=1_766_028,
        first_user_message="[REDACTED_MESSAGE len=115 sha=a83ebe6f]",
        git_sha="86b4a8d9581d63089e53845daf7dd787129a9972",
        git_origin_url="redacted://url/d18f1190d0",
        items=417,
    ),
    RealRollout(
        id="019c8a53-a0dd-7130-bcd7-95445d84846a",
        created_at=datetime(2026, 2, 23, 11, 47, 42, tzinfo=UTC),
        cwd="/redacted/path/59b923df4d",
        tokens_used=6_777_923,
        first_user_message="[REDACTED_MESSAGE len=64 sha=7d538904]",
        git_sha="7078dc6b1ce5dd75a54ad14563c663530b82963b",
        git_origin_url="redacted://url/454be97b1a",
        items=837,
    ),
    RealRollout(
        id="019c8a59-e9dd-71f0-9ae3-4079fe9726a9",
        created_at=datetime(2026, 2, 23, 11, 54, 34, tzinfo=UTC),
        cwd="/redacted/path/59b923df4d",
        tokens_used=33_944_484,
        first_user_message="[REDACTED_MESSAGE len=32 sha=821fd802]",
        git_sha="7078dc6b1ce5dd75a54ad14563c663530b82963b",
        git_origin_url="redacted://url/454be97b1a",
        items=2722,
    ),
    RealRollout(
        id="019c8a70-dda7-7f33-98ea-f30553347322",
        created_at=datetime(2026, 2, 23, 12, 19, 38, tzinfo=UTC),
        cwd="/redacted/path/da0ba47443",
        tokens_used=34_900,
        first_user_message="[REDACTED_MESSAGE len=86 sha=2239bcba]",
        git_sha="86b4a8d9581d63089e53845daf7dd787129a9972",
        git_origin_url="redacted://url/d18f1190d0",
        items=19,
    ),
    RealRollout(
        id="019c8bfe-ec25-79e0-97d7-bda6a9c575ff",
        created_at=datetime(2026, 2, 23, 19, 34, 25, tzinfo=UTC),
        cwd="/redacted/path/ea96e59ed9",
        tokens_used=299_496,
        first_user_message="[REDACTED_MESSAGE len=98 sha=c002ff99]",
        git_sha="19f8748648146d82ee1ad92387fc9d93613f022b",
        git_origin_url="redacted://url/4eecca0551",
        items=63,
    ),
]


@pytest.mark.parametrize("expected", REAL_ROLLOUTS, ids=lambda rollout: rollout.id[:13])
def test_real_rollout(expected: RealRollout) -> None:
    path = real_rollout_dir() / expected.file_name
    if not path.is_file():
        pytest.skip(f"real rollout data not present: {path}")

    loaded = load_rollout_items(path)
    outcome = extract_metadata_from_rollout(path, "unused-default")

    assert loaded.thread_id == uuid.UUID(expected.id)
    assert loaded.parse_errors == 0
    assert len(loaded.items) == expected.items
    assert outcome.parse_errors == 0
    assert outcome.dynamic_tools is None  # "dynamic_tools": null in every file
    mtime = path.stat().st_mtime_ns // 1_000_000_000
    assert outcome.metadata == ThreadMetadata(
        id=uuid.UUID(expected.id),
        rollout_path=path,
        created_at=expected.created_at,
        updated_at=datetime.fromtimestamp(mtime, tz=UTC),
        source="vscode",
        model_provider="openai",
        cwd=Path(expected.cwd),
        cli_version="0.104.0-alpha.1",
        title=expected.first_user_message,
        sandbox_policy=(
            '{"type":"workspace-write","writable_roots":["' + expected.cwd + '"],'
            '"network_access":false,"exclude_tmpdir_env_var":false,"exclude_slash_tmp":false}'
        ),
        approval_mode="on-request",
        tokens_used=expected.tokens_used,
        first_user_message=expected.first_user_message,
        archived_at=None,
        git_sha=expected.git_sha,
        git_branch="main",
        git_origin_url=expected.git_origin_url,
    )
