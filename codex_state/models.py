"""pydantic values that cross the public API; ORM rows never leave the repositories."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StrictInt,
    model_validator,
)

from codex_state.clock import utc_whole_seconds
from codex_state.errors import InvalidThreadIdError

DEFAULT_SOURCE = "vscode"
DEFAULT_SANDBOX_POLICY = '{"type":"read-only"}'
DEFAULT_APPROVAL_MODE = "on-request"


INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# The canonical 8-4-4-4-12 form only: `uuid.UUID` also takes braces, a `urn:uuid:` prefix and
# hyphens anywhere, which would let one thread be named by many different strings.
_UUID_TEXT = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def canonical_uuid_text(value: str) -> str | None:
    """`value` as a lowercase UUID when it is one in the 8-4-4-4-12 form (any case), else None."""
    if _UUID_TEXT.fullmatch(value) is None:
        return None
    return value.lower()


def parse_thread_id(value: uuid.UUID | str) -> uuid.UUID:
    """A thread id as a UUID: a `uuid.UUID`, or its 8-4-4-4-12 hex text in any case."""
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str) and _UUID_TEXT.fullmatch(value) is not None:
        return uuid.UUID(value)
    shown = repr(value)
    if len(shown) > 80:  # a huge argument is not worth echoing whole
        shown = shown[:77] + "..."
    raise InvalidThreadIdError(f"invalid thread id: {shown}")


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored on every backend (a NUL, a lone surrogate), or None.

    ASCII text, by far the most common, costs one `isascii` scan and one `in`.
    """
    if "\x00" in value:
        return "contains a NUL character"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "contains a lone surrogate, which is not valid UTF-8"
    return None


def _storable_text(value: str) -> str:
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(f"text {problem}")
    return value


Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
"""An integer that fits the 64-bit columns."""

Text = Annotated[str, AfterValidator(_storable_text)]
"""Text that every backend stores as given (see `text_problem`)."""


def path_text(path: Path) -> str:
    """A path as stored: its text, with the empty path as '' (Rust's `PathBuf::new()`), not '.'.

    pathlib cannot tell `Path("")` from `Path(".")`; Codex only ever stores absolute paths.
    """
    return "" if path == Path() else str(path)


def _thread_id_field(value: Any) -> uuid.UUID:
    return parse_thread_id(value)


ThreadId = Annotated[uuid.UUID, BeforeValidator(_thread_id_field)]
"""A UUID field that also takes the string form."""

UtcSeconds = Annotated[datetime, AfterValidator(utc_whole_seconds)]
"""An aware UTC datetime truncated to whole seconds (naive input is taken as UTC)."""


def canonical_log_thread_id(value: Any) -> Any:
    """A UUID (object or any-case 8-4-4-4-12 text) in its stored lowercase form; other text as is.

    The seed's log layer stores whatever `thread_id` an event carried, so non-UUID text stays
    valid, but a UUID must match however it was spelled when logged or queried.
    """
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str):
        canonical = canonical_uuid_text(value)
        return value if canonical is None else canonical
    return value


LogThreadId = Annotated[
    str, BeforeValidator(canonical_log_thread_id), AfterValidator(_storable_text)
]


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SortKey(StrEnum):
    CREATED_AT = "created_at"
    UPDATED_AT = "updated_at"


class BackfillStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETE = "complete"


class Phase1ClaimKind(StrEnum):
    CLAIMED = "claimed"
    SKIPPED_TERMINAL_FAILURE = "skipped_terminal_failure"
    SKIPPED_UP_TO_DATE = "skipped_up_to_date"
    SKIPPED_RUNNING = "skipped_running"


class Phase2ClaimKind(StrEnum):
    CLAIMED = "claimed"
    SKIPPED_NOT_DIRTY = "skipped_not_dirty"
    SKIPPED_RUNNING = "skipped_running"


class ThreadMetadata(_Value):
    """One row of `threads`, as the seed's `ThreadMetadata`."""

    id: ThreadId
    rollout_path: Path
    created_at: UtcSeconds
    updated_at: UtcSeconds
    source: str
    model_provider: str
    cwd: Path
    cli_version: str = ""
    title: str = ""
    sandbox_policy: str = DEFAULT_SANDBOX_POLICY
    approval_mode: str = DEFAULT_APPROVAL_MODE
    tokens_used: int = 0
    first_user_message: str | None = None
    archived_at: UtcSeconds | None = None
    git_sha: str | None = None
    git_branch: str | None = None
    git_origin_url: str | None = None

    @property
    def archived(self) -> bool:
        return self.archived_at is not None

    def diff_fields(self, other: ThreadMetadata) -> list[str]:
        """Names of the fields that differ from `other`, in declaration order."""
        return [
            name for name in type(self).model_fields if getattr(self, name) != getattr(other, name)
        ]


class ThreadMetadataBuilder(BaseModel):
    """What is known of a thread before its items are applied (the seed's builder)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    id: ThreadId
    rollout_path: Path
    created_at: datetime
    updated_at: datetime | None = None
    source: str = DEFAULT_SOURCE
    model_provider: str | None = None
    cwd: Path = Path()
    cli_version: str | None = None
    sandbox_policy: str = DEFAULT_SANDBOX_POLICY
    approval_mode: str = DEFAULT_APPROVAL_MODE
    archived_at: datetime | None = None
    git_sha: str | None = None
    git_branch: str | None = None
    git_origin_url: str | None = None

    def build(self, default_provider: str) -> ThreadMetadata:
        """Metadata with the seed's defaults: no title, no tokens, no first message yet."""
        return ThreadMetadata(
            id=self.id,
            rollout_path=self.rollout_path,
            created_at=self.created_at,
            updated_at=self.updated_at if self.updated_at is not None else self.created_at,
            source=self.source,
            model_provider=self.model_provider or default_provider,
            cwd=self.cwd,
            cli_version=self.cli_version or "",
            sandbox_policy=self.sandbox_policy,
            approval_mode=self.approval_mode,
            archived_at=self.archived_at,
            git_sha=self.git_sha,
            git_branch=self.git_branch,
            git_origin_url=self.git_origin_url,
        )


class Anchor(_Value):
    """Keyset position: the sort column's time and the id of the last item of a page."""

    ts: UtcSeconds
    id: ThreadId


class ThreadsPage(_Value):
    items: list[ThreadMetadata]
    next_anchor: Anchor | None = None
    num_scanned_rows: int = 0


class DynamicToolSpec(_Value):
    """A tool the client declared at thread start; `inputSchema` in rollout JSON."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    name: str
    description: str
    input_schema: JsonValue = Field(alias="inputSchema")


class ThreadMemory(_Value):
    thread_id: ThreadId
    scope_kind: str
    scope_key: str
    raw_memory: str
    memory_summary: str
    updated_at: UtcSeconds
    last_used_at: UtcSeconds | None = None
    used_count: int = 0
    invalidated_at: UtcSeconds | None = None
    invalid_reason: str | None = None


class Phase1JobClaimOutcome(_Value):
    """Result of `try_claim_phase1_job`; `ownership_token` is set exactly when claimed."""

    kind: Phase1ClaimKind
    ownership_token: str | None = None

    @model_validator(mode="after")
    def _token_iff_claimed(self) -> Phase1JobClaimOutcome:
        if (self.kind is Phase1ClaimKind.CLAIMED) != (self.ownership_token is not None):
            raise ValueError("ownership_token is set exactly when the job was claimed")
        return self

    @property
    def claimed(self) -> bool:
        return self.kind is Phase1ClaimKind.CLAIMED


class Phase1Candidate(_Value):
    """One phase-1 job to claim: a thread, a scope, and the input version it is claimed for.

    `list_phase1_candidates` returns these (`source_updated_at` is the thread's `updated_at`
    in epoch seconds) and `try_claim_phase1_jobs` takes them.
    """

    thread_id: ThreadId
    scope_kind: str
    scope_key: str
    source_updated_at: StrictInt


class MemoryScope(_Value):
    """A memory scope marked dirty (needing phase-2 consolidation), and when it was marked."""

    scope_kind: str
    scope_key: str
    updated_at: UtcSeconds


class Phase2JobClaimOutcome(_Value):
    """Result of `try_claim_phase2_job`; `ownership_token` is set exactly when claimed."""

    kind: Phase2ClaimKind
    ownership_token: str | None = None

    @model_validator(mode="after")
    def _token_iff_claimed(self) -> Phase2JobClaimOutcome:
        if (self.kind is Phase2ClaimKind.CLAIMED) != (self.ownership_token is not None):
            raise ValueError("ownership_token is set exactly when the job was claimed")
        return self

    @property
    def claimed(self) -> bool:
        return self.kind is Phase2ClaimKind.CLAIMED


class BackfillState(_Value):
    status: BackfillStatus = BackfillStatus.PENDING
    last_watermark: str | None = None
    last_success_at: UtcSeconds | None = None


class BackfillStats(_Value):
    """What a backfill, sync or watch did.

    `scanned` files were considered: `upserted` of them were read into a thread row,
    `failed` could not be read or parsed (or their path cannot be stored), and `unchanged`
    were not read because their size and mtime match what was last read. `appended` counts
    reads of only the lines appended to a file (`--watch`), `removed` the records dropped for
    files that are gone (their threads stay). The last four are totals over the files read:
    broken lines skipped, lines of types this version does not know, dynamic tools that
    cannot be stored, and NUL or lone-surrogate characters replaced by U+FFFD.
    """

    scanned: int = 0
    upserted: int = 0
    failed: int = 0
    unchanged: int = 0
    appended: int = 0
    removed: int = 0
    parse_errors: int = 0
    unknown_types: int = 0
    skipped_tools: int = 0
    replaced_characters: int = 0


class LogEntry(_Value):
    """A log record to insert; `ts` is epoch seconds and `ts_nanos` the sub-second part."""

    ts: Int64
    ts_nanos: Int64 = 0
    level: Text
    target: Text
    message: Text | None = None
    thread_id: LogThreadId | None = None
    module_path: Text | None = None
    file: Text | None = None
    line: Int64 | None = None


class LogRow(_Value):
    """A stored log record, as the seed's `LogRow` (which has no module_path)."""

    id: int
    ts: int
    ts_nanos: int
    level: str
    target: str
    message: str | None = None
    thread_id: str | None = None
    file: str | None = None
    line: int | None = None


class LogQuery(_Value):
    """Filters for `query_logs` and `max_log_id`; every field is optional."""

    level_upper: Text | None = None
    from_ts: Int64 | None = None
    to_ts: Int64 | None = None
    module_like: tuple[Text, ...] = ()
    file_like: tuple[Text, ...] = ()
    thread_ids: tuple[LogThreadId, ...] = ()
    include_threadless: bool = False
    after_id: Int64 | None = None
    limit: int | None = Field(default=None, ge=0, le=INT64_MAX)
    descending: bool = False
