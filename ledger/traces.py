"""Appending to a task's trace: the one way an event is written, one at a time. (Bulk
transitions in `queries/pipeline.sql` write their events in the same statement.)"""

from typing import Any
from uuid import UUID

import asyncpg
import structlog

from ledger.models import TraceEvent
from ledger.redaction import Redactor
from ledger.sql import query

log = structlog.get_logger(__name__)


async def append_trace(
    connection: asyncpg.Connection,
    redactor: Redactor,
    task_id: UUID,
    kind: str,
    *,
    actor: str,
    message: str,
    data: dict[str, Any] | None = None,
    from_status: str | None = None,
    to_status: str | None = None,
    run_id: UUID | None = None,
) -> TraceEvent:
    """Append one event with the task's next sequence number. Call it inside the
    transaction that made the change it records."""
    row = await connection.fetchrow(
        query("append_trace"),
        task_id,
        run_id,
        kind,
        from_status,
        to_status,
        actor,
        redactor.text(message),
        redactor.value(data or {}),
    )
    event = TraceEvent.model_validate(dict(row))
    if to_status is not None:  # one log line per state change, beside its trace event
        log.info(
            "state_change",
            task_id=str(task_id),
            run_id=str(run_id) if run_id else None,
            kind=kind,
            from_status=from_status,
            to_status=to_status,
            actor=actor,
        )
    return event
