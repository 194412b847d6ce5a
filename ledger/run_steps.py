"""A thread run as a conversation reads it: its status, its timing, its usage and its
steps, all derived from the run's trace events (migration 0009: steps are not stored).

Pure functions over `TraceEvent`s, so what a client sees is exactly what the trace says,
whatever wrote it. The events this reads, as the worker writes them:

- `span.generation` / `span.response`: a model turn, with `model`, `text`, `usage`,
  `tool_calls` ([{call_id, tool, arguments}]) and the span's `started_at`/`ended_at`;
- `span.function`: a tool ran, with `call_id`, `output`, `error` (a function span without
  a `call_id` is the SDK's span of a call that stopped for approval: nothing ran);
- `span.handoff`: `from_agent`, `to_agent`; the reason is in the handoff's tool call;
- `span.custom` with `data.sdk_span_type == "turn"` (its `agent_name`) and `span.agent`
  (its `name`): spans end innermost first, so the first of these after a model turn
  names the agent that took it;
- `approval_requested`, then `tool_call_approved` / `tool_call_rejected`, or the task's
  `cancelled` (which settles a pending request);
- status transitions (`to_status`): `running` when claimed, the terminal one at the end.

Steps are numbered in the order the trace opened them, and a step's index never changes
as the run goes on: a tool call is placed right after the model turn that asked for it
and its result is joined to it later by `call_id`.
"""

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from ledger.models import ApprovalStatus, Task, TraceEvent
from ledger.states import TERMINAL, TaskStatus

_MODEL_TURNS = ("span.generation", "span.response")
# The SDK names a handoff's tool `transfer_to_<agent>` (`Handoff.default_tool_name`);
# no agent here overrides it, and no built-in tool starts so.
HANDOFF_TOOL_PREFIX = "transfer_to_"
# The events that settle the pending approval request: an operator's decision on the
# call, or the task's cancellation (`ledger/decisions.py`).
_SETTLED_AS: dict[str, ApprovalStatus] = {
    "tool_call_approved": "approved",
    "tool_call_rejected": "rejected",
    "cancelled": "cancelled",
}

# A run's status in the conversation vocabulary, from its task's status.
ConversationStatus = Literal[
    "queued",
    "running",
    "awaiting_approval",
    "completed",
    "failed",
    "cancelled",
    "denied",
    "blocked",
    "rollback_requested",
]
CONVERSATION_STATUS: dict[TaskStatus, ConversationStatus] = {
    # Waiting for a worker: in the outbox or sent to the lane, not claimed yet.
    TaskStatus.QUEUED: "queued",
    TaskStatus.DISPATCHED: "queued",
    TaskStatus.RUNNING: "running",
    # The policy asked for an operator at creation, or a tool call waits for one.
    TaskStatus.AWAITING_APPROVAL: "awaiting_approval",
    TaskStatus.SUCCEEDED: "completed",
    TaskStatus.FAILED: "failed",
    TaskStatus.CANCELLED: "cancelled",
    TaskStatus.DENIED: "denied",
    TaskStatus.BLOCKED: "blocked",
    TaskStatus.ROLLBACK_REQUESTED: "rollback_requested",
}


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TokenUsage(_Shape):
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0


class _Step(_Shape):
    step_index: int
    # The trace event that opened the step.
    seq: int


class ModelTurnStep(_Step):
    kind: Literal["model_turn"]
    agent: str | None
    model: str | None
    text: str | None
    usage: TokenUsage
    started_at: datetime | None
    ended_at: datetime | None
    duration_ms: int | None


class ToolCallStep(_Step):
    kind: Literal["tool_call"]
    call_id: str
    tool: str
    agent: str | None
    # As the trace holds them: redacted before they were stored.
    arguments: Any
    # pending until its function span arrives (it may be waiting for an approval);
    # interrupted when the span ended with neither output nor error: the run stopped
    # (cancelled, its worker gone) while the tool was under way; rejected or cancelled
    # when the approval it waited on was, so it never ran.
    status: Literal["pending", "completed", "failed", "interrupted", "rejected", "cancelled"] = (
        "pending"
    )
    output: Any = None
    error: dict[str, Any] | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_ms: int | None = None


class HandoffStep(_Step):
    kind: Literal["handoff"]
    call_id: str | None
    from_agent: str | None
    to_agent: str | None
    reason: str | None


class ApprovalStep(_Step):
    kind: Literal["approval"]
    approval_id: UUID | None
    call_id: str | None
    tool: str | None
    arguments_sha256: str | None
    status: ApprovalStatus = "pending"
    by: str | None = None
    reason: str | None = None
    requested_at: datetime
    decided_at: datetime | None = None


RunStep = Annotated[
    ModelTurnStep | ToolCallStep | HandoffStep | ApprovalStep, Field(discriminator="kind")
]


class ThreadRun(_Shape):
    """A run of a thread: the task that answers one message, as a conversation sees it."""

    id: UUID
    thread_id: UUID
    agent_type: str | None
    status: ConversationStatus
    task_status: TaskStatus
    terminal_reason: str | None
    attempt: int
    created_by: str
    created_at: datetime
    # When a worker first claimed it, and when it reached its terminal status (None
    # while it can still move: a retry clears it).
    started_at: datetime | None
    completed_at: datetime | None
    # The model turns' tokens over every attempt, as their spans recorded them (so a
    # cancelled run's partial work counts).
    usage: TokenUsage


def thread_run(task: Task, events: Sequence[TraceEvent], steps: Sequence[RunStep]) -> ThreadRun:
    """`task` (a thread run) with its timing from `events` and usage from `steps`."""
    if task.thread_id is None:
        raise ValueError(f"task {task.id} is not a thread run")
    started = next((e.created_at for e in events if e.to_status == TaskStatus.RUNNING), None)
    completed = None
    if task.status in TERMINAL:
        completed = next(
            (e.created_at for e in reversed(events) if e.to_status == task.status), None
        )
    usage = TokenUsage()
    for step in steps:
        if isinstance(step, ModelTurnStep):
            usage.input_tokens += step.usage.input_tokens
            usage.output_tokens += step.usage.output_tokens
    usage.total_tokens = usage.input_tokens + usage.output_tokens
    return ThreadRun(
        id=task.id,
        thread_id=task.thread_id,
        agent_type=task.agent_type,
        status=CONVERSATION_STATUS[task.status],
        task_status=task.status,
        terminal_reason=task.terminal_reason,
        attempt=task.attempt,
        created_by=task.created_by,
        created_at=task.created_at,
        started_at=started,
        completed_at=completed,
        usage=usage,
    )


def run_steps(events: Sequence[TraceEvent]) -> list[RunStep]:
    """The run's steps in the order its trace opened them (see the module's docstring)."""
    agents = _turn_agents(events)
    steps: list[RunStep] = []
    calls: dict[str, ToolCallStep] = {}
    # Opened by a handoff call (by its tool's name), waiting for the handoff's span.
    handoffs: list[tuple[str, HandoffStep]] = []
    approval: ApprovalStep | None = None  # the one still pending, if any

    for index, event in enumerate(events):
        data = event.data
        if event.kind in _MODEL_TURNS:
            agent = agents[index]
            steps.append(_model_turn(len(steps), event, agent))
            for call in data.get("tool_calls") or []:
                call_id, tool = call.get("call_id"), call.get("tool")
                if not (isinstance(call_id, str) and isinstance(tool, str)):
                    continue
                if tool.startswith(HANDOFF_TOOL_PREFIX):
                    handoff = HandoffStep(
                        kind="handoff",
                        step_index=len(steps),
                        seq=event.seq,
                        call_id=call_id,
                        from_agent=agent,
                        to_agent=None,
                        reason=_reason(call.get("arguments")),
                    )
                    handoffs.append((tool, handoff))
                    steps.append(handoff)
                    continue
                step = ToolCallStep(
                    kind="tool_call",
                    step_index=len(steps),
                    seq=event.seq,
                    call_id=call_id,
                    tool=tool,
                    agent=agent,
                    arguments=call.get("arguments"),
                )
                calls[call_id] = step
                steps.append(step)
        elif event.kind == "span.function" and data.get("call_id") in calls:
            _finish_call(calls[data["call_id"]], data)
        elif event.kind == "span.handoff":
            _finish_handoff(handoffs, event, steps)
        elif event.kind == "approval_requested":
            approval = ApprovalStep(
                kind="approval",
                step_index=len(steps),
                seq=event.seq,
                approval_id=_uuid(data.get("approval_id")),
                call_id=data.get("call_id"),
                tool=data.get("tool"),
                arguments_sha256=data.get("arguments_sha256"),
                requested_at=event.created_at,
            )
            steps.append(approval)
        elif approval is not None and event.kind in _SETTLED_AS:
            approval.status = _SETTLED_AS[event.kind]
            approval.by = data.get("by") or event.actor
            approval.reason = data.get("reason") or None
            approval.decided_at = event.created_at
            waiting = calls.get(approval.call_id or "")
            if approval.status != "approved" and waiting and waiting.status == "pending":
                waiting.status = approval.status
            approval = None
    return steps


def _turn_agents(events: Sequence[TraceEvent]) -> list[str | None]:
    """For each event, the agent named by the first turn (else agent) span after it."""
    named: list[str | None] = [None] * len(events)
    turn: str | None = None
    agent: str | None = None
    for index in range(len(events) - 1, -1, -1):
        event = events[index]
        inner = event.data.get("data")
        if event.kind == "span.custom" and isinstance(inner, dict):
            if inner.get("sdk_span_type") == "turn" and isinstance(inner.get("agent_name"), str):
                turn = inner["agent_name"]
        elif event.kind == "span.agent" and isinstance(event.data.get("name"), str):
            agent = event.data["name"]
            turn = None  # a turn span after this agent's span belongs to a later agent
        named[index] = turn or agent
    return named


def _model_turn(index: int, event: TraceEvent, agent: str | None) -> ModelTurnStep:
    data = event.data
    started, ended = _time(data.get("started_at")), _time(data.get("ended_at"))
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    tokens = TokenUsage(
        input_tokens=_count(usage.get("input_tokens")),
        output_tokens=_count(usage.get("output_tokens")),
    )
    tokens.total_tokens = tokens.input_tokens + tokens.output_tokens
    text = data.get("text")
    model = data.get("model")
    return ModelTurnStep(
        kind="model_turn",
        step_index=index,
        seq=event.seq,
        agent=agent,
        model=model if isinstance(model, str) else None,
        text=text if isinstance(text, str) else None,
        usage=tokens,
        started_at=started,
        ended_at=ended,
        duration_ms=_duration_ms(started, ended),
    )


def _finish_call(step: ToolCallStep, data: dict[str, Any]) -> None:
    error = data.get("error")
    step.output = data.get("output")
    step.error = error if isinstance(error, dict) else None
    step.status = "failed" if error else "interrupted" if step.output is None else "completed"
    step.started_at, step.ended_at = _time(data.get("started_at")), _time(data.get("ended_at"))
    step.duration_ms = _duration_ms(step.started_at, step.ended_at)


def _finish_handoff(
    handoffs: list[tuple[str, HandoffStep]], event: TraceEvent, steps: list[RunStep]
) -> None:
    """A handoff span names both agents: it completes the step its call opened, or, when
    no call was seen (a model that hands over some other way), is a step of its own."""
    data = event.data
    source = data.get("from_agent") if isinstance(data.get("from_agent"), str) else None
    target = data.get("to_agent") if isinstance(data.get("to_agent"), str) else None
    tool = HANDOFF_TOOL_PREFIX + _function_style(target) if target else None
    for called, handoff in handoffs:
        if handoff.to_agent is None and called == tool:
            handoff.from_agent = source or handoff.from_agent
            handoff.to_agent = target
            return
    steps.append(
        HandoffStep(
            kind="handoff",
            step_index=len(steps),
            seq=event.seq,
            call_id=None,
            from_agent=source,
            to_agent=target,
            reason=None,
        )
    )


def _function_style(name: str) -> str:
    # As the SDK turns an agent's name into a tool name (`transform_string_function_style`).
    return re.sub(r"[^a-zA-Z0-9_]", "_", name).lower()


def _reason(arguments: Any) -> str | None:
    reason = arguments.get("reason") if isinstance(arguments, dict) else None
    return reason if isinstance(reason, str) and reason else None


def _uuid(value: Any) -> UUID | None:
    try:
        return UUID(str(value)) if value else None
    except ValueError:
        return None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _duration_ms(started: datetime | None, ended: datetime | None) -> int | None:
    if started is None or ended is None:
        return None
    return max(0, round((ended - started).total_seconds() * 1000))
