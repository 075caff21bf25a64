"""The single `backfill_state` row: status, resume watermark and last success."""

from __future__ import annotations

from sqlalchemy import bindparam, func, select, update
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
