"""`/api/v1/client-sessions`: client-side agent sessions, where the client drives the
agent loop.

The client asks for one inference turn at a time and executes the tool calls the model
asked for through the session's tool gateway, then completes the session. Each turn and
each call is a step: a thread run (`ledger/client_sessions.py`) that a worker executes
through the session's lane (`worker/client_session.py`). This process records,
authorises and waits (as process message does, WORKBENCH_PROCESS_WAIT_SECONDS); it never
calls a model or a tool.
"""

from uuid import UUID

from pydantic import BaseModel

from api.endpoints import Call, Endpoint, endpoint
from api.errors import ApiError
from api.routes.events import STREAM_ENDS
from api.routes.runs import ONE_RUN
from api.schemas import (
    ClientSessionCompleteRequest,
    ClientSessionCreateRequest,
    InferenceRequest,
    InferenceResponse,
    StepAcceptedResponse,
    ToolCallRequest,
    ToolCallResponse,
)
from api.waiting import refuse_unanswered, stopped
from ledger.models import Task
from ledger.run_steps import CONVERSATION_STATUS
from ledger.session_steps import ClientSession, InferenceStep, ToolCallStep
from ledger.states import TaskStatus
from worker.providers import default_model_name

CLIENT_SESSIONS = "/api/v1/client-sessions"
ONE_SESSION = CLIENT_SESSIONS + "/{session_id:uuid}"
TAG = "conversations"
_OWNER = (
    "Only the session's creator may take its steps (another subject of the tenant: 403; "
    "another tenant's session: 404); a completed session is 409."
)
_ONE_STEP = (
    "A session takes one step at a time: another while one is queued, running or "
    "awaiting approval is 409 (so parallel tool calls are executed one after another)."
)
_WAIT = (
    "The step is a thread run a worker executes in the session's lane; the request waits "
    "for it (WORKBENCH_PROCESS_WAIT_SECONDS, default 20). 202: still queued or running "
    "(follow `stream`), or waiting for an operator (`approve` names the route that "
    "decides it). A step that stopped without an answer: 403 denied, 409 cancelled, "
    "502 failed or blocked."
)


def _no_answer(task: Task) -> ApiError:
    """A step that succeeded without leaving what it answers with (not expected)."""
    return ApiError(502, "run_failed", "the step ended without an answer", {"run_id": str(task.id)})


def _session_id(call: Call) -> UUID:
    return call.request.path_params["session_id"]


async def _wait(
    call: Call, session_id: UUID, task: Task
) -> tuple[Task, InferenceStep | ToolCallStep]:
    settled = await stopped(call, task.id, call.request.app.state.settings.process_wait_seconds)
    return settled, await call.ledger.session_step(call.actor, session_id, task.id)


def _accepted(task: Task, step: InferenceStep | ToolCallStep) -> StepAcceptedResponse | None:
    """The 202 for a step still under way or waiting for an operator; None once it
    stopped otherwise."""
    if task.status in STREAM_ENDS and task.status != TaskStatus.AWAITING_APPROVAL:
        return None
    approval_id, approve = None, None
    if task.status == TaskStatus.AWAITING_APPROVAL:
        pending = task.pending_approval or {}
        if pending.get("approval_id"):  # a tool call above the lane's tool_approval_above
            approval_id = UUID(pending["approval_id"])
            approve = f"/api/v1/approvals/{approval_id}/resolve"
        else:  # the verdict asked for an operator (the intent gate, the lane)
            approve = f"/api/agents/tasks/{task.id}/approve"
    return StepAcceptedResponse(
        step_index=step.step_index,
        task_id=task.id,
        status=CONVERSATION_STATUS[task.status],
        stream=ONE_RUN.replace("{run_id:uuid}", str(task.id)) + "/stream",
        approval_id=approval_id,
        approve=approve,
    )


def _elapsed_ms(step: InferenceStep | ToolCallStep) -> int:
    if step.started_at is None or step.completed_at is None:
        return 0
    return max(0, round((step.completed_at - step.started_at).total_seconds() * 1000))


@endpoint(
    "POST",
    CLIENT_SESSIONS,
    summary="Opens a client-side agent session with a registered agent (agent_type): the "
    "server resolves the model, selects the agent's lane, reads its system prompt and "
    "builds its tool gateway (the tools the agent lists that the lane allows). The "
    "provider must be one the agent allows (400) and the lane's verdict for it not a deny "
    "(403). Without a model, the provider's configured default is used; where the API "
    "has none configured for the provider (azure, compatible), name the model (409). "
    "The session is a thread: its history is at /api/v1/threads/{id}.",
    role="operator",
    response=ClientSession,
    statuses=(201, 400, 401, 403, 409),
    body=ClientSessionCreateRequest,
    tag=TAG,
)
async def create_client_session(
    call: Call[ClientSessionCreateRequest, None],
) -> tuple[int, ClientSession]:
    body = call.body
    session = await call.ledger.create_client_session(
        call.actor,
        body.agent_type,
        provider=body.provider,
        model=body.model,
        default_model=default_model_name,
    )
    return 201, session


@endpoint(
    "GET",
    ONE_SESSION,
    summary="Returns a client-side session with its steps by step_index (inference "
    "turns and tool calls: each step's task, status, timing, token usage, input, output "
    "and policy verdict).",
    role="viewer",
    response=ClientSession,
    statuses=(200, 401, 403, 404),
    tag=TAG,
)
async def get_client_session(call: Call) -> tuple[int, ClientSession]:
    return 200, await call.ledger.client_session(call.actor, _session_id(call))


@endpoint(
    "POST",
    ONE_SESSION + "/inference",
    summary="Runs one inference turn: one model call with the agent's system prompt, the "
    "session's context (the turns it follows, from previous_response_id, default the "
    "latest: their inputs, answers and the results of the calls executed) and the "
    "gateway's tools, which the model may ask for and the client then executes. `model` "
    "must be the session's (409 naming it); an unknown previous_response_id is 400. "
    "intent, a mutation level, is gated by the policy's verdict for it in the session's "
    f"lane. {_OWNER} {_ONE_STEP} {_WAIT}",
    role="operator",
    response=InferenceResponse,
    other_responses=((202, StepAcceptedResponse),),
    statuses=(200, 202, 400, 401, 403, 404, 409, 502),
    body=InferenceRequest,
    tag=TAG,
)
async def run_inference(call: Call[InferenceRequest, None]) -> tuple[int, BaseModel]:
    session_id, body = _session_id(call), call.body
    created = await call.ledger.start_inference(
        call.actor,
        session_id,
        model=body.model,
        text=body.input,
        previous_response_id=body.previous_response_id,
        intent=body.intent,
    )
    task, step = await _wait(call, session_id, created.task)
    accepted = _accepted(task, step)
    if accepted is not None:
        return 202, accepted
    refuse_unanswered(task)
    if not isinstance(step, InferenceStep) or step.output is None:
        raise _no_answer(task)
    return 200, InferenceResponse(
        response_id=step.output.response_id,
        output_text=step.output.output_text,
        tool_calls=step.output.tool_calls,
        usage=step.usage,
        step_index=step.step_index,
        execution_time_ms=_elapsed_ms(step),
    )


@endpoint(
    "POST",
    ONE_SESSION + "/tool-calls",
    summary="Executes one tool call the session's model asked for (call_id; 400 when it "
    "did not, 409 when it was executed already) through the gateway: a tool not in it is "
    "400 naming `name`; arguments must be a JSON object, as text. Each call gets the "
    "policy's verdict for the tool's mutation level in the session's lane: above the "
    "lane's ceiling 403; above its tool_approval_above the call waits for an operator "
    "(202 with the approval request). The result is the tool's output as JSON text. "
    f"{_OWNER} {_ONE_STEP} {_WAIT}",
    role="operator",
    response=ToolCallResponse,
    other_responses=((202, StepAcceptedResponse),),
    statuses=(200, 202, 400, 401, 403, 404, 409, 502),
    body=ToolCallRequest,
    tag=TAG,
)
async def execute_tool_call(call: Call[ToolCallRequest, None]) -> tuple[int, BaseModel]:
    session_id, body = _session_id(call), call.body
    created = await call.ledger.start_tool_call(
        call.actor, session_id, call_id=body.call_id, name=body.name, arguments=body.arguments
    )
    task, step = await _wait(call, session_id, created.task)
    accepted = _accepted(task, step)
    if accepted is not None:
        return 202, accepted
    refuse_unanswered(task)
    if not isinstance(step, ToolCallStep) or step.output is None:
        raise _no_answer(task)
    return 200, ToolCallResponse(
        call_id=step.output.call_id,
        name=step.output.name,
        output=step.output.output,
        step_index=step.step_index,
        verdict=step.verdict,
    )


@endpoint(
    "POST",
    ONE_SESSION + "/complete",
    summary="Completes the session: status completed, with its summary, confidence "
    "(0..1) and completed_at. evidence and next_steps are accepted and not stored. "
    "Completing it again, or while a step is under way, is 409. Only the session's "
    "creator may complete it (another subject: 403; another tenant's session: 404).",
    role="operator",
    response=ClientSession,
    statuses=(200, 400, 401, 403, 404, 409),
    body=ClientSessionCompleteRequest,
    tag=TAG,
)
async def complete_client_session(
    call: Call[ClientSessionCompleteRequest, None],
) -> tuple[int, ClientSession]:
    session = await call.ledger.complete_client_session(
        call.actor,
        _session_id(call),
        summary=call.body.summary,
        confidence=call.body.confidence,
    )
    return 200, session


ENDPOINTS: list[Endpoint] = [
    create_client_session,
    get_client_session,
    run_inference,
    execute_tool_call,
    complete_client_session,
]
