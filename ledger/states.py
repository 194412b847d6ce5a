"""The task and run state machine, in one place.

A task is the governed request; a run is one attempt at it. Each status says which
transition enters it and who moves it out. `TRANSITIONS` below is the single list of
what is legal: every guarded UPDATE in `queries/*.sql` receives its action's statuses
from it as parameters (`WHERE status = ANY($n::text[])`), and `api/` and the worker ask
`may()` instead of comparing statuses themselves.

A few statements keep a status literal, because Postgres can use a partial index only
when the query repeats the index's predicate, or because the status is what a fence
means (`hold`: a fence holds only a `running` run), or because a new run is always
`queued`. `tests/ledger/test_state_machine.py` checks
every such literal against this table and every CHECK constraint against the enums.
"""

from dataclasses import dataclass
from enum import StrEnum


class TaskStatus(StrEnum):
    AWAITING_APPROVAL = "awaiting_approval"
    """Entered when the policy verdict is `require_approval` (or break glass is asked
    for), or when a running agent pauses at a tool call that needs approval. An
    operator moves it to `queued` (approve) or `denied` (reject); anyone with the
    operator role may cancel it."""

    DENIED = "denied"
    """Entered when the verdict is `deny`, or an operator rejects. Terminal: the row
    stays so the refusal is auditable."""

    QUEUED = "queued"
    """Entered when allowed at creation, approved, retried, released, or when the next
    attempt is scheduled; a run for the attempt exists. The dispatcher moves it to
    `dispatched`; a claim (HTTP claim-next, `run`) to `running`; an operator may cancel
    it."""

    DISPATCHED = "dispatched"
    """Entered when the dispatcher sent the run to its lane. A worker's claim moves it
    to `running`; the reaper moves it back to `queued` if never claimed in time."""

    RUNNING = "running"
    """Entered when a worker (or `run`) claimed the run. The worker holding the claim
    moves it to `succeeded`, `failed`, `blocked`, `awaiting_approval` (a paused tool
    call) or `queued` (release, or a retry after a failed attempt); the reaper to
    `queued` or `failed` when the lease expires; an operator may cancel it."""

    BLOCKED = "blocked"
    """Entered when execution is impossible as configured (agents SDK missing, provider
    not configured). An operator retries it after the fix, or cancels it."""

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
    """Entered when the run is created (the task allowed, approved, retried, or its next
    attempt scheduled), released by a draining worker, resumed after an operator decided
    its paused tool call, or sent back by the reaper after a dispatch nobody claimed.
    The dispatcher moves it to `dispatched`; a claim (HTTP claim-next, `run`) to
    `running`; cancel to `cancelled`."""

    DISPATCHED = "dispatched"
    """Entered when the dispatcher sent its hint to the lane. A worker's claim moves it
    to `running`; the reaper back to `queued` when nobody claimed it in time; cancel to
    `cancelled`."""

    RUNNING = "running"
    """Entered when a worker claimed it; only the holder of its claim token writes to it.
    That worker moves it to `succeeded`, `failed`, `blocked`, `paused` or `queued`
    (release); the reaper to `lost` when the lease expires; cancel to `cancelled`."""

    PAUSED = "paused"
    """Entered when the agent stopped at a tool call that needs approval; the SDK state
    is kept in `saved_state` and the claim ended. An operator's approve or reject of the
    call moves it to `queued` (same attempt); cancel to `cancelled`."""

    BLOCKED = "blocked"
    """Terminal: execution was impossible as configured. An operator's retry of the task
    makes a new run."""

    SUCCEEDED = "succeeded"
    """Terminal: the attempt finished."""

    FAILED = "failed"
    """Terminal: the attempt failed; the task was retried (a new run) or failed."""

    CANCELLED = "cancelled"
    """Terminal: an operator cancelled the task while the run had not finished."""

    LOST = "lost"
    """Terminal: its lease expired; the reaper scheduled the next attempt (a new run) or
    failed the task."""


@dataclass(frozen=True)
class Rule:
    """What one action may do: the statuses the task leaves from and the one it enters,
    and the same for the run it acts on (none when the action leaves the run alone; no
    `run_from` but a `run_to` when it makes a new run)."""

    task_from: tuple[TaskStatus, ...]
    task_to: TaskStatus | None
    run_from: tuple[RunStatus, ...] = ()
    run_to: RunStatus | None = None

    @property
    def task_guard(self) -> list[str]:
        """`task_from` as the text array the SQL guard takes."""
        return [str(status) for status in self.task_from]

    @property
    def run_guard(self) -> list[str]:
        """`run_from` as the text array the SQL guard takes."""
        return [str(status) for status in self.run_from]


_T, _R = TaskStatus, RunStatus
_FINISHED = (_T.SUCCEEDED, _T.FAILED, _T.CANCELLED)

TRANSITIONS: dict[str, Rule] = {
    # A new task: its status is the verdict's (queued, awaiting_approval or denied); a
    # queued one gets its first run.
    "create": Rule((), None, run_to=_R.QUEUED),
    # An operator's decisions.
    "approve": Rule((_T.AWAITING_APPROVAL,), _T.QUEUED, run_to=_R.QUEUED),
    "reject": Rule((_T.AWAITING_APPROVAL,), _T.DENIED),
    # Approve or reject of the tool call a paused run waits on: the same run goes on.
    "decide_tool_call": Rule((_T.AWAITING_APPROVAL,), _T.QUEUED, (_R.PAUSED,), _R.QUEUED),
    "cancel": Rule(
        (_T.AWAITING_APPROVAL, _T.QUEUED, _T.DISPATCHED, _T.RUNNING, _T.BLOCKED),
        _T.CANCELLED,
        (_R.QUEUED, _R.DISPATCHED, _R.RUNNING, _R.PAUSED),
        _R.CANCELLED,
    ),
    "retry": Rule((*_FINISHED, _T.BLOCKED), _T.QUEUED, run_to=_R.QUEUED),
    "rollback": Rule(_FINISHED, _T.ROLLBACK_REQUESTED),
    # The pipeline.
    "dispatch": Rule((_T.QUEUED,), _T.DISPATCHED, (_R.QUEUED,), _R.DISPATCHED),
    "claim": Rule((_T.QUEUED, _T.DISPATCHED), _T.RUNNING, (_R.QUEUED, _R.DISPATCHED), _R.RUNNING),
    # `run` found the agents SDK missing before it could claim.
    "block": Rule((_T.QUEUED, _T.DISPATCHED), _T.BLOCKED, (_R.QUEUED, _R.DISPATCHED), _R.BLOCKED),
    # The worker holding the run: outcomes, a pause, a hand-back.
    "block_running": Rule((_T.RUNNING,), _T.BLOCKED, (_R.RUNNING,), _R.BLOCKED),
    "complete": Rule((_T.RUNNING,), _T.SUCCEEDED, (_R.RUNNING,), _R.SUCCEEDED),
    "fail": Rule((_T.RUNNING,), _T.FAILED, (_R.RUNNING,), _R.FAILED),
    "pause": Rule((_T.RUNNING,), _T.AWAITING_APPROVAL, (_R.RUNNING,), _R.PAUSED),
    "release": Rule((_T.RUNNING,), _T.QUEUED, (_R.RUNNING,), _R.QUEUED),
    # After a failed or lost attempt, while attempts remain: a new run, due after the
    # backoff (otherwise the task takes `fail`'s task half).
    "schedule_retry": Rule((_T.RUNNING,), _T.QUEUED, run_to=_R.QUEUED),
    # The reaper: an expired lease ends the attempt (then `schedule_retry` or `fail`),
    # and a dispatch nobody claimed in time goes back to be sent again.
    "reap": Rule((_T.RUNNING,), None, (_R.RUNNING,), _R.LOST),
    "dispatch_timeout": Rule((_T.DISPATCHED,), _T.QUEUED, (_R.DISPATCHED,), _R.QUEUED),
    # The outbox marked the run dispatched, then could not send its hint.
    "unsent": Rule((_T.DISPATCHED,), _T.QUEUED, (_R.DISPATCHED,), _R.QUEUED),
    # Not transitions: the statuses in which a fenced write is accepted from the holder
    # of the claim token (a heartbeat, an artifact, usage, a tool call's trace event)...
    "hold": Rule((_T.RUNNING,), None, (_R.RUNNING,)),
    # ...and SDK spans, which are accepted from the last holder of a run an operator
    # cancelled too: they still belong in its trace.
    "record_spans": Rule((_T.RUNNING, _T.CANCELLED), None, (_R.RUNNING, _R.CANCELLED)),
}

# Who may decide an approval request (a task's or a tool call's): the roles that may
# approve and reject.
APPROVAL_DECIDERS = ("operator", "owner")

TERMINAL = frozenset({TaskStatus.DENIED, TaskStatus.ROLLBACK_REQUESTED, *_FINISHED})


def allowed_from(action: str) -> list[str]:
    """The statuses `action` may move a task from, as the text array the SQL guard takes."""
    return TRANSITIONS[action].task_guard


def may(action: str, status: TaskStatus) -> bool:
    """Whether a task in `status` may take `action` (a caller deciding what to try)."""
    return status in TRANSITIONS[action].task_from
