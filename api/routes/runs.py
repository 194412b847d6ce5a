"""`/api/v1/threads/{id}/runs`, `/api/v1/runs` and `/api/v1/approvals`: a conversation's
runs and the tool calls they wait on.

A run is a task of the thread (`ledger/threads.py`): starting one records it and answers
with its live trace, which a worker writes as it executes the run (the API never runs
the agent). Its steps are read from that trace (`ledger/run_steps.py`).
"""

import json
from typing import Any, get_args
from uuid import UUID

from starlette.responses import StreamingResponse

from api.endpoints import Call, Endpoint, endpoint
from api.routes.events import (
    EVENT_SCHEMA,
    EVENT_TYPES,
    RESUME_PARAMETERS,
    resume_from,
    trace_stream,
)
from api.routes.threads import ONE_THREAD
from api.schemas import ApprovalResolveResponse, RunDetailResponse
from ledger.errors import InvalidTransition
from ledger.models import ApprovalResolveRequest, ReasonRequest, ThreadRunRequest
from ledger.run_steps import CONVERSATION_STATUS, ConversationStatus, run_steps, thread_run
from ledger.states import TaskStatus

ONE_RUN = "/api/v1/runs/{run_id:uuid}"
TAG = "conversations"

# The stream's first event says which run it follows. It carries no id: ids are trace
# sequence numbers, and a client resuming after it (no Last-Event-ID yet) gets the
# run's trace from its start.
RUN_CREATED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"const": "run_created"},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {
                "type": "object",
                "required": ["type", "seq", "run_id", "thread_id", "agent_type", "status"],
                "properties": {
                    "type": {"const": "run_created"},
                    "seq": {"const": 0},
                    "run_id": {"type": "string", "format": "uuid"},
                    "thread_id": {"type": "string", "format": "uuid"},
                    "agent_type": {"type": "string"},
                    "status": {"enum": list(get_args(ConversationStatus))},
                },
                "additionalProperties": False,
            },
        },
    },
    "additionalProperties": False,
}
RUN_STREAM_SCHEMA: dict[str, Any] = {"oneOf": [RUN_CREATED_SCHEMA, *EVENT_SCHEMA["oneOf"]]}


def _run_id(call: Call) -> UUID:
    return call.request.path_params["run_id"]


@endpoint(
    "POST",
    ONE_THREAD + "/runs",
    summary="Sends a message to the thread's agent: a run (a governed task in the agent's "
    "lane, executed by a worker) answering with its live events (Server-Sent Events: "
    "run_created, then " + ", ".join(EVENT_TYPES) + "). A thread takes one run at a time: "
    "another while one is queued, running or awaiting approval is 409.",
    role="operator",
    response=None,
    statuses=(200, 400, 401, 403, 404, 409),
    body=ThreadRunRequest,
    tag=TAG,
    raw_media_type="text/event-stream",
    raw_schema=RUN_STREAM_SCHEMA,
)
async def start_run(call: Call[ThreadRunRequest, None]) -> StreamingResponse:
    thread_id = call.request.path_params["thread_id"]
    # Every refusal (404, 400, 409) is raised here, before the stream starts, as JSON.
    created = await call.ledger.start_run(
        call.actor, thread_id, call.body.message, call.body.agent_config
    )
    task = created.task
    body = {
        "type": "run_created",
        "run_id": str(task.id),
        "thread_id": str(thread_id),
        "agent_type": task.agent_type,
        "status": CONVERSATION_STATUS[task.status],
        "seq": 0,
    }
    first = f"event: run_created\ndata: {json.dumps(body)}\n\n"
    return trace_stream(call, task.id, 0, first=first)


@endpoint(
    "GET",
    ONE_RUN + "/stream",
    summary="Follows a thread run's events again (Server-Sent Events: "
    + ", ".join(EVENT_TYPES)
    + "): from the start, or after Last-Event-ID / after_seq, whatever its age.",
    role="viewer",
    response=None,
    statuses=(200, 400, 401, 403, 404),
    tag=TAG,
    raw_media_type="text/event-stream",
    raw_schema=EVENT_SCHEMA,
    reads=RESUME_PARAMETERS,
)
async def stream_run(call: Call) -> StreamingResponse:
    after = resume_from(call)
    task = await call.ledger.get_thread_run(call.actor, _run_id(call))
    return trace_stream(call, task.id, after)


async def _detail(call: Call, run_id: UUID) -> RunDetailResponse:
    task = await call.ledger.get_thread_run(call.actor, run_id)
    events = await call.ledger.run_trace(task)
    steps = run_steps(events)
    pending = await call.ledger.approval_requests(call.actor, task.id, pending_only=True)
    return RunDetailResponse(
        run=thread_run(task, events, steps), steps=steps, approval_requests=pending
    )


@endpoint(
    "GET",
    ONE_RUN,
    summary="Returns a thread run: its status (queued, running, awaiting_approval, "
    "completed, failed, cancelled, denied, blocked, rollback_requested; task_status is "
    "the task's own), timing, token usage, its steps by step_index (model turns, tool "
    "calls with their results, handoffs, approvals) and its pending approval requests.",
    role="viewer",
    response=RunDetailResponse,
    statuses=(200, 401, 403, 404),
    tag=TAG,
)
async def get_run(call: Call) -> tuple[int, RunDetailResponse]:
    return 200, await _detail(call, _run_id(call))


@endpoint(
    "POST",
    ONE_RUN + "/cancel",
    summary="Cancels a thread run that is queued, running or awaiting approval (its "
    "pending approval requests are cancelled with it; a worker executing it stops). "
    "Cancelling a cancelled run again answers it unchanged; a finished run is 409.",
    role="operator",
    response=RunDetailResponse,
    statuses=(200, 400, 401, 403, 404, 409),
    body=ReasonRequest,
    tag=TAG,
)
async def cancel_run(call: Call[ReasonRequest, None]) -> tuple[int, RunDetailResponse]:
    task = await call.ledger.get_thread_run(call.actor, _run_id(call))
    try:
        await call.ledger.cancel(call.actor, task.id, reason=call.body.reason)
    except InvalidTransition as refused:
        # Already cancelled (by this request's twin, too): the outcome asked for holds.
        if refused.current_status != TaskStatus.CANCELLED:
            raise
    return 200, await _detail(call, task.id)


@endpoint(
    "POST",
    "/api/v1/approvals/{approval_id:uuid}/resolve",
    summary="Approves or rejects the tool call an approval request holds: the run "
    "resumes on a worker (a rejected call's result tells the agent it was refused). "
    "A request already settled is 409.",
    role="operator",
    response=ApprovalResolveResponse,
    statuses=(200, 400, 401, 403, 404, 409),
    body=ApprovalResolveRequest,
    tag=TAG,
)
async def resolve_approval(
    call: Call[ApprovalResolveRequest, None],
) -> tuple[int, ApprovalResolveResponse]:
    request, _ = await call.ledger.resolve_approval(
        call.actor,
        call.request.path_params["approval_id"],
        call.body.status,
        reason=call.body.reason,
    )
    return 200, ApprovalResolveResponse(approval_request=request)


ENDPOINTS: list[Endpoint] = [start_run, stream_run, get_run, cancel_run, resolve_approval]
