"""The single `backfill_state` row: status, resume watermark and last success."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Update, bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from codex_state.clock import from_epoch_seconds
from codex_state.dialect import PerDialect, dialect_insert
from codex_state.errors import StateError
from codex_state.models import BackfillState, BackfillStatus
from codex_state.orm import backfill_state

_ROW_ID = 1

_ensure_row = PerDialect(
    lambda dialect: dialect_insert(dialect, backfill_state)
    .values(
        id=_ROW_ID,
        status=BackfillStatus.PENDING.value,
        updated_at=bindparam("now"),
    )
    .on_conflict_do_nothing(index_elements=["id"])
)

_select_state = select(
    backfill_state.c.status, backfill_state.c.last_watermark, backfill_state.c.last_success_at
).where(backfill_state.c.id == _ROW_ID)

_set_running = (
    update(backfill_state)
    .where(backfill_state.c.id == _ROW_ID)
    .values(status=BackfillStatus.RUNNING.value, updated_at=bindparam("now"))
)

_checkpoint = (
    update(backfill_state)
    .where(backfill_state.c.id == _ROW_ID)
    .values(
        status=BackfillStatus.RUNNING.value,
        last_watermark=bindparam("watermark"),
        updated_at=bindparam("now"),
    )
)

_complete = (
    update(backfill_state)
    .where(backfill_state.c.id == _ROW_ID)
    .values(
        status=BackfillStatus.COMPLETE.value,
        last_watermark=func.coalesce(bindparam("watermark"), backfill_state.c.last_watermark),
        last_success_at=bindparam("now"),
        updated_at=bindparam("now"),
    )
)

# The lease: `lease_owner` holds it and `updated_at` is its heartbeat, so a backfill whose
# process died is claimable once `updated_at` is older than the lease. A resumed claim keeps
# the watermark; a re-index claim clears it, so that a killed re-index resumes from its own
# checkpoints rather than from the end of the previous run.
_claimable = or_(
    backfill_state.c.status != BackfillStatus.RUNNING.value,
    backfill_state.c.lease_owner == bindparam("owner"),
    backfill_state.c.updated_at <= bindparam("stale_before"),
)
_claim = {
    reindex: update(backfill_state)
    .where(
        backfill_state.c.id == _ROW_ID,
        _claimable,
        *(() if reindex else (backfill_state.c.status != BackfillStatus.COMPLETE.value,)),
    )
    .values(
        status=BackfillStatus.RUNNING.value,
        lease_owner=bindparam("owner"),
        updated_at=bindparam("now"),
        **({"last_watermark": None} if reindex else {}),
    )
    for reindex in (False, True)
}

_owned = (
    backfill_state.c.id == _ROW_ID,
    backfill_state.c.lease_owner == bindparam("owner"),
    backfill_state.c.status == BackfillStatus.RUNNING.value,
)

_checkpoint_owned = (
    update(backfill_state)
    .where(*_owned)
    .values(
        last_watermark=func.coalesce(bindparam("watermark"), backfill_state.c.last_watermark),
        updated_at=bindparam("now"),
    )
)

_complete_owned = (
    update(backfill_state)
    .where(*_owned)
    .values(
        status=BackfillStatus.COMPLETE.value,
        last_watermark=func.coalesce(bindparam("watermark"), backfill_state.c.last_watermark),
        last_success_at=bindparam("now"),
        updated_at=bindparam("now"),
        lease_owner=None,
    )
)

# Back to pending, watermark kept: the next run resumes at once instead of waiting out a lease.
_release = (
    update(backfill_state)
    .where(*_owned)
    .values(status=BackfillStatus.PENDING.value, lease_owner=None, updated_at=bindparam("now"))
)


class BackfillRepository:
    """Progress of the rollout backfill, kept in one row so a restart can resume."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self) -> BackfillState:
        row = self._session.execute(_select_state).one_or_none()
        if row is None:
            return BackfillState()
        try:
            status = BackfillStatus(row.status)
        except ValueError as err:
            raise StateError(f"invalid backfill status stored: {row.status!r}") from err
        last_success = None if row.last_success_at is None else row.last_success_at
        return BackfillState(
            status=status,
            last_watermark=row.last_watermark,
            last_success_at=None if last_success is None else from_epoch_seconds(last_success),
        )

    def ensure_row(self, now: int) -> None:
        self._session.execute(_ensure_row(self._session), {"now": now})

    def mark_running(self, now: int) -> None:
        self.ensure_row(now)
        self._session.execute(_set_running, {"now": now})

    def checkpoint(self, watermark: str, now: int) -> None:
        self.ensure_row(now)
        self._session.execute(_checkpoint, {"watermark": watermark, "now": now})

    def mark_complete(self, last_watermark: str | None, now: int) -> None:
        self.ensure_row(now)
        self._session.execute(_complete, {"watermark": last_watermark, "now": now})

    def try_claim(self, owner: str, lease_seconds: int, now: int, *, reindex: bool) -> bool:
        """Take the backfill lease unless a live owner holds it (or it is complete, unless
        `reindex`). Judged by the affected row count, so two claimers never both win."""
        self.ensure_row(now)
        params = {"owner": owner, "stale_before": now - lease_seconds, "now": now}
        return self._changed(_claim[reindex], params)

    def checkpoint_owned(self, owner: str, watermark: str | None, now: int) -> bool:
        """Advance the watermark (None keeps it) and renew the lease, if `owner` still holds it."""
        params = {"owner": owner, "watermark": watermark, "now": now}
        return self._changed(_checkpoint_owned, params)

    def complete_owned(self, owner: str, watermark: str | None, now: int) -> bool:
        """Mark the backfill complete and free the lease, if `owner` still holds it."""
        params = {"owner": owner, "watermark": watermark, "now": now}
        return self._changed(_complete_owned, params)

    def release(self, owner: str, now: int) -> bool:
        """Give the lease up early (failure or interrupt), leaving the watermark to resume from."""
        return self._changed(_release, {"owner": owner, "now": now})

    def _changed(self, statement: Update, params: Mapping[str, object]) -> bool:
        # A Connection's CursorResult carries `rowcount`; the row is the singleton, so 1 = won.
        return self._session.connection().execute(statement, params).rowcount == 1
