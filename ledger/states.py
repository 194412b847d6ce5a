"""The task state machine, in one place.

A task is the governed request; a run is one attempt at it. Each status says which
transition enters it and who moves the task out of it. The SQL in `queries/*.sql`
guards every transition with `WHERE status = ANY(<expected>)`, so the table below is
the single list of what is legal; `api/` and the worker never compare statuses
themselves.
"""

from enum import StrEnum


class TaskStatus(StrEnum):
    AWAITING_APPROVAL = "awaiting_approval"
    """Entered when the policy verdict is `require_approval` (or break glass is asked
    for). An operator moves it to `queued` (approve) or `denied` (reject); anyone with
    the operator role may cancel it."""

    DENIED = "denied"
    """Entered when the verdict is `deny`, or an operator rejects. Terminal: the row
    stays so the refusal is auditable."""

    QUEUED = "queued"
    """Entered when allowed at creation, approved, or retried; a run for the next
    attempt exists. The dispatcher moves it to `dispatched`; `run` executes it in
    process; an operator may cancel it."""

    DISPATCHED = "dispatched"
    """Entered when the dispatcher sent the run to its lane. A worker's claim moves it
    to `running`; the reaper moves it back to `queued` if never claimed in time."""

    RUNNING = "running"
    """Entered when a worker (or `run`) claimed the run. The executor moves it to
    `succeeded`/`failed`, a paused tool call to `awaiting_approval`, the reaper to
    `queued` when the lease expires."""

    BLOCKED = "blocked"
    """Entered when execution is impossible as configured (agents SDK missing, lane not
    configured). An operator retries it after the fix, or cancels it."""

    SUCCEEDED = "succeeded"
    """Terminal for the attempt. An operator may retry it or request a rollback."""

    FAILED = "failed"
    """Terminal for the attempt, `terminal_reason` says why. Retry or rollback."""

    CANCELLED = "cancelled"
    """Terminal for the attempt, cancelled by an operator. Retry or rollback."""

    ROLLBACK_REQUESTED = "rollback_requested"
    """Entered when an operator asks for rollback/remediation of a finished task, with
    the reason and remediation plan recorded. Terminal in the ledger: the remediation
    itself is new work."""


class RunStatus(StrEnum):
    QUEUED = "queued"
    DISPATCHED = "dispatched"
    RUNNING = "running"
    BLOCKED = "blocked"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"  # its lease expired; the reaper schedules the next attempt


_FINISHED = (TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED)

# action -> the statuses it may leave from. The SQL receives these lists.
TRANSITIONS: dict[str, tuple[TaskStatus, ...]] = {
    "approve": (TaskStatus.AWAITING_APPROVAL,),
    "reject": (TaskStatus.AWAITING_APPROVAL,),
    "cancel": (
        TaskStatus.AWAITING_APPROVAL,
        TaskStatus.QUEUED,
        TaskStatus.DISPATCHED,
        TaskStatus.RUNNING,
        TaskStatus.BLOCKED,
    ),
    "retry": (*_FINISHED, TaskStatus.BLOCKED),
    "rollback": _FINISHED,
    "dispatch": (TaskStatus.QUEUED,),
    "start": (TaskStatus.QUEUED, TaskStatus.DISPATCHED),
    "block": (TaskStatus.QUEUED, TaskStatus.DISPATCHED),
}

TERMINAL = frozenset({TaskStatus.DENIED, TaskStatus.ROLLBACK_REQUESTED, *_FINISHED})


def allowed_from(action: str) -> list[str]:
    """The statuses `action` may leave from, as the text array the SQL guard takes."""
    return [str(status) for status in TRANSITIONS[action]]
