"""Moving tasks the caller has locked, and ending an attempt that failed or was lost:
the steps the worker's outcomes (`ledger/outcomes.py`) and the reaper
(`dispatcher/reaper.py`) share.

Each move is guarded by the statuses its rule in `ledger/states.py` leaves from, in
the statement itself, so a task that is no longer where the caller expects it is not
moved (and gets no trace event) even if the caller's lock was not what it thought.
"""

from collections.abc import Mapping
from typing import Any
from uuid import uuid4

import asyncpg
import structlog

from ledger.policy import Lane
from ledger.redaction import Redactor
from ledger.sql import query
from ledger.states import TRANSITIONS, Rule
from ledger.traces import append_trace
from metrics import RETRIES

log = structlog.get_logger(__name__)


def log_transition(
    task: Mapping[str, Any], kind: str, from_status: str, to_status: str, actor: str
) -> None:
    """The `state_change` line every transition logs."""
    log.info(
        "state_change",
        task_id=str(task["id"]),
        run_id=str(task["current_run_id"]),
        kind=kind,
        from_status=from_status,
        to_status=to_status,
        actor=actor,
    )


async def move_all_locked(
    connection: asyncpg.Connection,
    redactor: Redactor,
    tasks: list[asyncpg.Record],
    rule: Rule,
    *,
    kind: str,
    actors: list[str],
    messages: list[str],
    data: list[dict[str, Any]],
    reason: str | None = None,
) -> list[asyncpg.Record]:
    """Move tasks this transaction has locked to `rule.task_to`, each with its trace
    event, in one statement; only those still in one of `rule.task_from` move. One
    `state_change` log line per task moved, as for every transition."""
    if not tasks:
        return []
    assert rule.task_to is not None, "a rule that moves no task"
    moved = await connection.fetch(
        query("move_tasks"),
        [task["id"] for task in tasks],
        rule.task_to,
        kind,
        reason,
        [task["status"] for task in tasks],
        [task["current_run_id"] for task in tasks],
        actors,
        [redactor.text(message) for message in messages],
        [redactor.value(item) for item in data],
        rule.task_guard,
    )
    moved_ids = {row["id"] for row in moved}
    for task, actor in zip(tasks, actors, strict=True):
        if task["id"] in moved_ids:
            log_transition(task, kind, task["status"], rule.task_to, actor)
    return moved


async def move_locked(
    connection: asyncpg.Connection,
    redactor: Redactor,
    task: asyncpg.Record,
    rule: Rule,
    *,
    actor: str,
    kind: str,
    message: str,
    reason: str | None = None,
    data: dict[str, Any] | None = None,
) -> asyncpg.Record | None:
    """Move one task this transaction has locked, with its trace event; None when the
    task is not in a status the rule leaves from (nothing was written)."""
    moved = await move_all_locked(
        connection,
        redactor,
        [task],
        rule,
        kind=kind,
        actors=[actor],
        messages=[message],
        data=[data or {}],
        reason=reason,
    )
    return moved[0] if moved else None


async def after_failed_attempt(
    connection: asyncpg.Connection,
    redactor: Redactor,
    lane: Lane,
    task: asyncpg.Record,
    actor: str,
    failure_kind: str,
    error: str,
    *,
    retryable: bool,
) -> asyncpg.Record | None:
    """With the task locked and its run ended: schedule the next attempt with backoff,
    or fail the task when none remain. Returns the task after, or None when it was not
    in a status either step leaves from: then nothing was written here, and the caller
    rolls back the end of the run."""
    attempt, max_attempts = task["attempt"], task["max_attempts"]
    if retryable and attempt < max_attempts:
        rule = TRANSITIONS["schedule_retry"]
        retried = await connection.fetchrow(
            query("schedule_next_attempt"),
            uuid4(),
            task["id"],
            task["current_run_id"],
            rule.task_guard,
            lane.retry_backoff_seconds,
            lane.retry_backoff_max_seconds,
            rule.task_to,
            rule.run_to,
        )
        if retried is None:
            return None
        RETRIES.labels(task["lane"]).inc()
        await append_trace(
            connection,
            redactor,
            task["id"],
            "retry_scheduled",
            actor=actor,
            from_status=task["status"],
            to_status=rule.task_to,
            run_id=retried["current_run_id"],
            message=f"attempt {attempt} of {max_attempts} ended ({failure_kind}); "
            f"attempt {attempt + 1} due at {retried['next_available_at']}",
            data={
                "failure_kind": failure_kind,
                "error": error,
                "failed_run_id": str(task["current_run_id"]),
            },
        )
        return retried
    reason = f"{failure_kind} on attempt {attempt} of {max_attempts}: {error}"[:2000]
    return await move_locked(
        connection,
        redactor,
        task,
        TRANSITIONS["fail"],
        actor=actor,
        kind="failed",
        message=reason,
        reason=reason,
        data={"failure_kind": failure_kind},
    )
