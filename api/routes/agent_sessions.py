"""`/api/v1/agents/{process,stream,status,approve}`: a conversation the client names by
its `session_id`.

A session is a thread (`threads.session_key`, unique in the tenant), opened by its first
message. Each message is a thread run, a governed task executed by a worker through its
lane; this process only starts it, waits for it, and reads what it wrote: the thread
messages of the run (written with its completion) and its trace events (written as it
goes, so also for a run paused at a tool call that waits for an operator).
"""

import json
from typing import Any
from uuid import UUID

from pydantic import BaseModel
from starlette.responses import StreamingResponse

from api.endpoints import Call, Endpoint, Parameter, endpoint
from api.errors import ApiError
from api.routes.events import (
    EVENT_SCHEMA,
    EVENT_TYPES,
    RESUME_PARAMETERS,
    STREAM_ENDS,
    resume_from,
    trace_stream,
)
from api.schemas import (
    ProcessAcceptedResponse,
    ProcessRequest,
    ProcessResponse,
    SessionApproveRequest,
    SessionApproveResponse,
    SessionState,
    SessionStatusResponse,
    ToolCallInfo,
    ToolResultInfo,
)
from api.waiting import refuse_unanswered, stopped
from ledger.errors import Conflict, NotFound
from ledger.models import Run, Task, Thread, ThreadMessage, TraceEvent
from ledger.run_steps import HandoffStep, RunStep, ToolCallStep, run_steps, thread_run
from ledger.states import TaskStatus

AGENTS = "/api/v1/agents"
STREAM = AGENTS + "/stream/{session_id}"
# A run's statuses on its way to an answer, and those of a run that answered.
_ACTIVE = {TaskStatus.QUEUED, TaskStatus.DISPATCHED, TaskStatus.RUNNING}
_ANSWERED = {TaskStatus.SUCCEEDED, TaskStatus.ROLLBACK_REQUESTED}
# The tool calls of a paused run that have a result: their function span arrived.
_RAN = {"completed", "failed", "interrupted"}
RUN_PARAMETER = Parameter(
    "run_id",
    "query",
    "The session's run to follow (default: its latest). Trace ids count per run, so a "
    "client that resumes with Last-Event-ID must pin the run it followed.",
    {"type": "string", "format": "uuid"},
)


def _known(thread: Thread | None, session_id: str) -> Thread:
    if thread is None:
        raise NotFound("session not found", session_id=session_id)
    return thread


async def _session(call: Call, session_id: str) -> Thread:
    return _known(await call.ledger.thread_by_session(call.actor, session_id), session_id)


def _same_caller(call: Call[ProcessRequest, None]) -> None:
    """The body names who is asking; it must be who the token says, not anyone else."""
    for field, claimed, actual in (
        ("tenant_id", call.body.tenant_id, call.actor.tenant_id),
        ("user_id", call.body.user_id, call.actor.subject),
    ):
        if claimed != actual:
            raise ApiError(403, "forbidden", f"{field} is not the token's", {"field": field})


def _agent_for_new_session(call: Call[ProcessRequest, None]) -> str:
    agents = call.ledger.agents
    if call.body.agent_type is not None:
        if call.body.agent_type not in agents:
            raise ApiError(
                400,
                "invalid_request",
                f"unknown agent_type {call.body.agent_type!r}",
                {"field": "agent_type", "allowed": agents.ids()},
            )
        return call.body.agent_type
    return next(agent.id for agent in agents.all() if agent.type == "router")


async def _open(call: Call[ProcessRequest, None]) -> Thread:
    """The session's thread, opened on its first message."""
    session_id = call.body.session_id
    agent_type = _agent_for_new_session(call)
    thread = await call.ledger.thread_by_session(call.actor, session_id)
    if thread is not None:
        return thread
    try:
        return await call.ledger.create_thread(call.actor, agent_type, session_id=session_id)
    except Conflict:
        # Another request opened it since it was looked up.
        return _known(await call.ledger.thread_by_session(call.actor, session_id), session_id)


@endpoint(
    "POST",
    AGENTS + "/process",
    summary="Sends a message to the session's agents (the session is opened on its first "
    "message, with agent_type or the router) and waits for the run a worker executes. "
    "200: the answer, or the tool call waiting for approval (requires_approval; its "
    "approval_id is on the call). 202: still running after the wait "
    "(WORKBENCH_PROCESS_WAIT_SECONDS, default 20): follow `stream`. A run that stopped "
    "without an answer is an error: 403 denied, 409 cancelled, 502 failed or blocked. "
    "tenant_id and user_id must be the token's (403 naming the field); 409 while the "
    "session's previous run is active.",
    role="operator",
    response=ProcessResponse,
    other_responses=((202, ProcessAcceptedResponse),),
    statuses=(200, 202, 400, 401, 403, 404, 409, 502),
    body=ProcessRequest,
    tag="conversations",
)
async def process_message(call: Call[ProcessRequest, None]) -> tuple[int, BaseModel]:
    _same_caller(call)
    thread = await _open(call)
    created = await call.ledger.start_run(
        call.actor, thread.id, call.body.message, call.body.agent_config
    )
    task = await stopped(
        call, created.task.id, call.request.app.state.settings.process_wait_seconds
    )
    if task.status not in STREAM_ENDS:
        return 202, ProcessAcceptedResponse(
            run_id=task.id,
            session_id=thread.session_id,
            status=task.status,
            stream=f"{AGENTS}/stream/{thread.session_id}?run_id={task.id}",
        )
    return 200, await _answer(call, thread, task)


async def _answer(call: Call, thread: Thread, task: Task) -> ProcessResponse:
    refuse_unanswered(task)
    tenant = call.actor.tenant_id
    traces = await call.ledger.run_trace(task)
    steps = run_steps(traces)
    approvals = {
        request.call_id: request
        for request in await call.ledger.approval_requests(call.actor, task.id)
    }
    if task.status in _ANSWERED:
        history = await call.ledger.messages(call.actor, thread.id)
        content, calls, results, reasons = _from_messages(
            [message for message in history if message.task_id == task.id]
        )
    else:  # awaiting approval: the messages are written with the completion, not yet
        content = ""
        calls, results, reasons = _from_steps(steps)
    for each in calls:
        if each.call_id in approvals:
            each.approval_id = approvals[each.call_id].id
    run = await call.ledger.get_run(tenant, task.current_run_id) if task.current_run_id else None
    return ProcessResponse(
        id=task.id,
        content=content,
        tool_calls=calls,
        tool_results=results,
        reasoning="\n".join(reason for reason in reasons if reason),
        requires_approval=task.status == TaskStatus.AWAITING_APPROVAL,
        execution_time_ms=_elapsed_ms(run, task),
        tokens_used=thread_run(task, traces, steps).usage.total_tokens,
    )


def _from_messages(
    messages: list[ThreadMessage],
) -> tuple[str, list[ToolCallInfo], list[ToolResultInfo], list[str]]:
    """What a finished run wrote to the history: its last assistant text, its tool
    calls and their results, each handoff's reason."""
    content = ""
    calls: list[ToolCallInfo] = []
    results: list[ToolResultInfo] = []
    reasons: list[str] = []
    tools: dict[str, str] = {}
    for message in messages:
        data = message.data
        if message.role == "assistant":
            content = message.content
        elif message.role == "tool_call":
            call_id = str(data.get("call_id", ""))
            tools[call_id] = str(data.get("tool", message.content))
            calls.append(
                ToolCallInfo(call_id=call_id, tool=tools[call_id], arguments=data.get("arguments"))
            )
        elif message.role == "tool_result":
            call_id = str(data.get("call_id", ""))
            results.append(
                ToolResultInfo(call_id=call_id, tool=tools.get(call_id, ""), output=message.content)
            )
        elif message.role == "handoff":
            reasons.append(str(data.get("reason", "")))
    return content, calls, results, reasons


def _from_steps(
    steps: list[RunStep],
) -> tuple[list[ToolCallInfo], list[ToolResultInfo], list[str]]:
    """The same from the steps of a run paused at a tool call (its messages are
    written with its completion): its tool calls, the results of those that ran, and
    each handoff's reason."""
    calls = [step for step in steps if isinstance(step, ToolCallStep)]
    return (
        [ToolCallInfo(call_id=c.call_id, tool=c.tool, arguments=c.arguments) for c in calls],
        [
            ToolResultInfo(call_id=c.call_id, tool=c.tool, output=_text(c.output))
            for c in calls
            if c.status in _RAN
        ],
        [step.reason or "" for step in steps if isinstance(step, HandoffStep)],
    )


def _text(output: Any) -> str:
    return output if isinstance(output, str) else json.dumps(output)


def _elapsed_ms(run: Run | None, task: Task) -> int:
    """From the worker's claim to the run's end (to its pause, for a paused run: the
    task's last change); 0 for a run no worker started."""
    if run is None or run.started_at is None:
        return 0
    ended = run.finished_at or task.updated_at
    return max(0, round((ended - run.started_at).total_seconds() * 1000))


@endpoint(
    "GET",
    STREAM,
    summary="Streams the session's run (run_id, else its latest) as Server-Sent Events ("
    + ", ".join(EVENT_TYPES)
    + "), ending with `done` once it stops. The first event, a `status` of kind "
    "session_run, names the run; ids are its trace sequence numbers, so resuming with "
    "Last-Event-ID needs the run pinned with run_id.",
    role="viewer",
    response=None,
    statuses=(200, 400, 401, 403, 404),
    raw_media_type="text/event-stream",
    raw_schema=EVENT_SCHEMA,
    reads=(RUN_PARAMETER, *RESUME_PARAMETERS),
    tag="conversations",
)
async def stream_session(call: Call) -> StreamingResponse:
    session_id = call.path_param("session_id")
    thread = await _session(call, session_id)
    after = resume_from(call, also=frozenset({RUN_PARAMETER.name}))
    run_id = await _run_of(call, thread, call.request.query_params.get(RUN_PARAMETER.name))
    named = {
        "type": "status",
        "seq": after,
        "content": str(run_id),
        "data": {"kind": "session_run", "message": f"run {run_id} of session {session_id}"},
    }
    first = f"event: status\ndata: {json.dumps(named)}\n\n"
    return trace_stream(call, run_id, after, first=first)


async def _run_of(call: Call, thread: Thread, pinned: str | None) -> UUID:
    """The pinned run, which must be one of the session's, else the latest."""
    if pinned is None:
        if thread.last_run_id is None:
            raise NotFound("the session has no run yet", session_id=thread.session_id)
        return thread.last_run_id
    try:
        run_id = UUID(pinned)
    except ValueError as error:
        raise ApiError(400, "invalid_request", "run_id must be a UUID") from error
    task = await call.ledger.get_task(call.actor.tenant_id, run_id)
    if task.thread_id != thread.id:
        raise NotFound("run not found in this session", run_id=str(run_id))
    return run_id


@endpoint(
    "GET",
    AGENTS + "/status/{session_id}",
    summary="The session's state: idle (no active run), thinking (its run is queued or "
    "the model is at work), executing (a tool call is under way), awaiting_approval; the "
    "agents its active run involved so far, its message count and last activity.",
    role="viewer",
    response=SessionStatusResponse,
    statuses=(200, 401, 403, 404),
    tag="conversations",
)
async def session_status(call: Call) -> tuple[int, SessionStatusResponse]:
    thread = await _session(call, call.path_param("session_id"))
    state: SessionState = "idle"
    agents: list[str] = []
    last_activity = thread.updated_at
    if thread.last_run_id is not None:
        tenant = call.actor.tenant_id
        task = await call.ledger.get_task(tenant, thread.last_run_id)
        last_activity = max(last_activity, task.updated_at)
        if task.status in _ACTIVE or task.status == TaskStatus.AWAITING_APPROVAL:
            traces = await call.ledger.run_trace(task)
            agents = _agents(thread, traces)
            state = (
                "awaiting_approval"
                if task.status == TaskStatus.AWAITING_APPROVAL
                else _activity(traces)
            )
    return 200, SessionStatusResponse(
        session_id=thread.session_id,
        status=state,
        active_agents=agents,
        message_count=thread.message_count,
        last_activity=last_activity,
    )


def _activity(traces: list[TraceEvent]) -> SessionState:
    """An active run's state: its latest `agent.status` event's when it writes them,
    else executing while a tool has started (its verdict is written as it starts) and
    its function span (written when it ends) has not arrived."""
    statuses = [event for event in traces if event.kind == "agent.status"]
    if statuses:
        return "executing" if statuses[-1].data.get("state") == "executing" else "thinking"
    started = {e.data.get("call_id") for e in traces if e.kind == "tool_verdict"}
    ended = {e.data.get("call_id") for e in traces if e.kind == "span.function"}
    return "executing" if started - ended - {None} else "thinking"


def _agents(thread: Thread, traces: list[TraceEvent]) -> list[str]:
    """The thread's agent and each agent the run handed to, in the order they joined."""
    agents = [thread.agent_type]
    for event in traces:
        joined = (
            event.data.get("to_agent")
            if event.kind == "span.handoff"
            else event.data.get("agent")
            if event.kind == "agent.status"
            else None
        )
        if isinstance(joined, str) and joined and joined not in agents:
            agents.append(joined)
    return agents


@endpoint(
    "POST",
    AGENTS + "/approve",
    summary="Decides a tool call that waits for approval in the session's run: the "
    "approval request must be of this session (else 404). The run is queued again "
    "(resumed) and continues on a worker; an approval already decided is 409.",
    role="operator",
    response=SessionApproveResponse,
    statuses=(200, 400, 401, 403, 404, 409),
    body=SessionApproveRequest,
    tag="conversations",
)
async def approve_tool_call(
    call: Call[SessionApproveRequest, None],
) -> tuple[int, SessionApproveResponse]:
    body = call.body
    thread = await _session(call, body.session_id)
    request = await call.ledger.get_approval(call.actor, body.approval_id)
    task = await call.ledger.get_task(call.actor.tenant_id, request.task_id)
    if task.thread_id != thread.id:
        raise NotFound("approval request not found", approval_id=str(body.approval_id))
    settled, transition = await call.ledger.resolve_approval(
        call.actor, body.approval_id, body.decision, reason=body.comment
    )
    return 200, SessionApproveResponse(
        success=True,
        approval_id=settled.id,
        status=settled.status,
        resumed=transition.task.status == TaskStatus.QUEUED,
    )


ENDPOINTS: list[Endpoint] = [process_message, stream_session, session_status, approve_tool_call]
