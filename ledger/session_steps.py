"""A client-side session as its client reads it: the session, its steps, and the names
both sides (the API and the worker) give what a step leaves in the thread's history.

Every step is a thread run (a task), and writes the thread messages it leaves with its
completion, each marked `session_step` in its data:

- an inference step: its input as the user message (written with the task, with its
  `previous_response_id`), then the model's text (`assistant`) and the calls it asked
  for (`tool_call`: `call_id`, `tool`, `arguments`), each with the step's `response_id`;
  a turn with neither leaves an empty assistant message, so every answered turn has one;
- a tool-call step: the call it executed (`tool_call`) and its result (`tool_result`,
  the tool's text, with the `call_id`), and no user message.

Pure functions over rows and messages, so the API's answer is what the ledger holds.
"""

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from ledger.models import ApprovalRequest, ThreadMessage
from ledger.policy import Decision, Verdict
from ledger.run_steps import CONVERSATION_STATUS, ConversationStatus, TokenUsage
from ledger.states import TaskStatus
from ledger.tool_gateway import GatewayTool

ClientSessionStatus = Literal["running", "completed"]
SESSION_RUNNING: ClientSessionStatus = "running"
SESSION_COMPLETED: ClientSessionStatus = "completed"

StepKind = Literal["inference", "tool_call"]
# The key of a step's run options and of its messages' data that says which step it is.
SESSION_STEP = "session_step"
INFERENCE: StepKind = "inference"
TOOL_CALL: StepKind = "tool_call"

# A response id names the inference step and the attempt that answered: a step retried
# after a worker crash answers with a new id, so a context cached for an attempt whose
# completion never landed can never be asked for.
RESPONSE_ID_PATTERN = r"^resp_[0-9a-f]{32}_[1-9][0-9]{0,2}$"  # plain: JSON Schema's dialect
_RESPONSE_ID = re.compile(r"^resp_([0-9a-f]{32})_[1-9][0-9]{0,2}$")


def response_id(task_id: UUID, attempt: int) -> str:
    return f"resp_{task_id.hex}_{attempt}"


def response_task(value: str) -> UUID | None:
    """The inference step a response id names, or None for text that is not one."""
    found = _RESPONSE_ID.match(value)
    return UUID(hex=found[1]) if found else None


def arguments_text(arguments: Any) -> str:
    """A call's arguments as JSON text: messages hold them decoded (so redaction reads
    their keys), or as given when they were not JSON. Canonical (sorted keys, compact),
    because jsonb keeps no key order: the same call reads the same however it was
    stored, which the cached context of a turn relies on."""
    if isinstance(arguments, str):
        return arguments
    return json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StepApproval(_Shape):
    """The operator's decision a tool call above the lane's tool_approval_above waited
    on: resolve it at /api/v1/approvals/{id}/resolve."""

    id: UUID
    status: Literal["pending", "approved", "rejected", "cancelled"]
    resolved_by: str | None
    reason: str | None


class StepVerdict(_Shape):
    """The policy's word on the step: the verdict its task got for its mutation level
    in the session's lane (an inference's intent, a tool's own level), and the approval
    a tool call waited on."""

    decision: Decision
    reasons: list[str]
    profile: str
    policy_version: str
    mutation_level: str
    approval: StepApproval | None = None


class CallInfo(_Shape):
    call_id: str
    name: str
    # JSON text, as the model wrote it (redacted like every stored value).
    arguments: str


class InferenceInput(_Shape):
    text: str
    model: str
    previous_response_id: str | None
    intent: str | None


class InferenceOutput(_Shape):
    response_id: str
    output_text: str
    tool_calls: list[CallInfo]


class ToolCallOutput(_Shape):
    call_id: str
    name: str
    # The tool's result as JSON text (the built-in tools return text: a JSON string).
    output: str


class _Step(_Shape):
    step_index: int
    task_id: UUID  # the step's thread run: /api/v1/runs/{task_id}
    status: ConversationStatus
    task_status: TaskStatus
    terminal_reason: str | None
    created_at: datetime
    # The current attempt's claim and end (none for a step no worker started).
    started_at: datetime | None
    completed_at: datetime | None
    usage: TokenUsage
    verdict: StepVerdict


class InferenceStep(_Step):
    kind: Literal["inference"]
    input: InferenceInput
    output: InferenceOutput | None  # None until the turn is answered


class ToolCallStep(_Step):
    kind: Literal["tool_call"]
    input: CallInfo
    output: ToolCallOutput | None  # None until the call has a result


SessionStep = Annotated[InferenceStep | ToolCallStep, Field(discriminator="kind")]


class ClientSession(_Shape):
    """A client-side agent session. Its id is its thread's: GET /api/v1/threads/{id}
    has its whole history."""

    id: UUID
    status: ClientSessionStatus
    agent_type: str
    # The agent's lane: where every step is queued, executed and governed.
    lane: str
    provider: str
    # The model every inference turn must name: the one asked for at creation, else the
    # provider's default as the API's environment names it (the same variables a worker
    # reads: WORKBENCH_OPENAI_MODEL, AZURE_OPENAI_DEPLOYMENT, WORKBENCH_COMPATIBLE_MODEL;
    # "offline" for the offline model). Name it at creation when the workers are
    # configured differently from the API.
    model: str
    # The agent's instructions: the system prompt of every inference turn.
    system_prompt: str
    # The gateway: the tools a turn offers the model and a tool call may execute.
    tools: list[GatewayTool]
    # The lane's verdict for the provider at creation.
    policy_verdict: Verdict
    created_by: str
    created_at: datetime
    completed_at: datetime | None
    summary: str | None
    confidence: float | None
    # Ordered by step_index: the order the steps were taken in.
    steps: list[SessionStep]


def session_steps(
    rows: Sequence[Mapping[str, Any]],
    messages: Sequence[ThreadMessage],
    approvals: Sequence[ApprovalRequest],
) -> list[InferenceStep | ToolCallStep]:
    """The session's steps from its tasks (`client_session_steps` rows, in order), its
    thread's messages and its tasks' approval requests."""
    by_task: dict[UUID, list[ThreadMessage]] = {}
    for message in messages:
        by_task.setdefault(message.task_id, []).append(message)
    latest_approval = {request.task_id: request for request in approvals}
    steps: list[InferenceStep | ToolCallStep] = []
    for index, row in enumerate(rows):
        options = row["run_options"] or {}
        own = by_task.get(row["id"], [])
        common = _common(index, row, latest_approval.get(row["id"]))
        if options.get(SESSION_STEP) == TOOL_CALL:
            steps.append(
                ToolCallStep(
                    kind="tool_call",
                    input=CallInfo(
                        call_id=str(options.get("call_id", "")),
                        name=str(options.get("name", "")),
                        arguments=str(options.get("arguments", "")),
                    ),
                    output=_tool_output(own),
                    **common,
                )
            )
        else:
            user = next((m for m in own if m.role == "user"), None)
            steps.append(
                InferenceStep(
                    kind="inference",
                    input=InferenceInput(
                        text=user.content if user else "",
                        model=str(options.get("model", "")),
                        previous_response_id=options.get("previous_response_id"),
                        intent=options.get("intent"),
                    ),
                    output=inference_output(own),
                    **common,
                )
            )
    return steps


def _common(index: int, row: Mapping[str, Any], approval: ApprovalRequest | None) -> dict[str, Any]:
    status = TaskStatus(row["status"])
    input_tokens, output_tokens = row["input_tokens"], row["output_tokens"]
    verdict = row["policy_verdict"]
    return {
        "step_index": index,
        "task_id": row["id"],
        "status": CONVERSATION_STATUS[status],
        "task_status": status,
        "terminal_reason": row["terminal_reason"],
        "created_at": row["created_at"],
        "started_at": row["started_at"],
        "completed_at": row["finished_at"],
        "usage": TokenUsage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            total_tokens=input_tokens + output_tokens,
        ),
        "verdict": StepVerdict(
            **verdict,
            mutation_level=row["mutation_level"],
            approval=StepApproval(
                id=approval.id,
                status=approval.status,
                resolved_by=approval.resolved_by,
                reason=approval.reason,
            )
            if approval
            else None,
        ),
    }


def inference_output(messages: Sequence[ThreadMessage]) -> InferenceOutput | None:
    """An inference step's answer from its messages: those of the latest response (a
    step an operator retried after it answered has one per answering attempt)."""
    answered = [m for m in messages if isinstance(m.data.get("response_id"), str)]
    if not answered:
        return None
    latest = answered[-1].data["response_id"]
    own = [m for m in answered if m.data["response_id"] == latest]
    return InferenceOutput(
        response_id=latest,
        output_text="".join(m.content for m in own if m.role == "assistant"),
        tool_calls=[
            CallInfo(
                call_id=str(m.data.get("call_id", "")),
                name=str(m.data.get("tool", m.content)),
                arguments=arguments_text(m.data.get("arguments", {})),
            )
            for m in own
            if m.role == "tool_call"
        ],
    )


def _tool_output(messages: Sequence[ThreadMessage]) -> ToolCallOutput | None:
    result = next((m for m in reversed(messages) if m.role == "tool_result"), None)
    if result is None:
        return None
    return ToolCallOutput(
        call_id=str(result.data.get("call_id", "")),
        name=str(result.data.get("tool", "")),
        output=json.dumps(result.content),
    )
