"""`/api/agents/tasks`: the governed task ledger."""

import asyncio
from typing import Any
from uuid import UUID

from starlette.responses import Response

from api.endpoints import Call, Endpoint, Parameter, endpoint
from api.errors import ApiError
from api.schemas import (
    ArtifactsResponse,
    DispatchInfo,
    DispatchResponse,
    RunResponse,
    TaskCreatedResponse,
    TaskFromITResponse,
    TaskListQuery,
    TaskListResponse,
    TaskResponse,
    TraceListQuery,
    TracesResponse,
    TransitionResponse,
)
from ledger.errors import InvalidTransition
from ledger.models import (
    ApproveRequest,
    ReasonRequest,
    RollbackRequest,
    TaskCreateRequest,
    TaskFromITRequest,
)
from ledger.states import allowed_from, may
from worker.inprocess import run_in_process
from worker.runtime_access import RuntimeAccess

TASKS = "/api/agents/tasks"
ONE_TASK = TASKS + "/{task_id:uuid}"
_READ = (200, 401, 403, 404)
_CHANGE = (200, 400, 401, 403, 404, 409)


def _task_id(call: Call) -> UUID:
    return call.request.path_params["task_id"]


@endpoint(
    "GET",
    TASKS,
    summary="Lists agent task ledger records, newest first.",
    role="viewer",
    response=TaskListResponse,
    statuses=(200, 400, 401, 403),
    query=TaskListQuery,
)
async def list_tasks(call: Call[None, TaskListQuery]) -> tuple[int, TaskListResponse]:
    page = await call.ledger.list_tasks(
        call.actor.tenant_id,
        status=call.query.status,
        lane=call.query.lane,
        limit=call.query.limit,
        cursor=call.query.cursor,
    )
    return 200, TaskListResponse(tasks=page.tasks, next_cursor=page.next_cursor)


IDEMPOTENCY_KEY = Parameter(
    "Idempotency-Key",
    "header",
    "Sending the same request again with the same key returns the first answer "
    "(200) instead of creating twice; the same key with a different body is a 409.",
    {"type": "string", "minLength": 1, "maxLength": 200},
)


def _idempotency_key(call: Call) -> str | None:
    key = call.request.headers.get("idempotency-key")
    if key is not None and not 1 <= len(key) <= 200:
        raise ApiError(400, "invalid_request", "Idempotency-Key must be 1 to 200 characters")
    return key


@endpoint(
    "POST",
    TASKS,
    summary="Creates a governed agent task; the policy verdict is "
    "returned and stored. A denied task is recorded too (201, status denied).",
    role="operator",
    response=TaskCreatedResponse,
    statuses=(200, 201, 400, 401, 403, 409),
    body=TaskCreateRequest,
    reads=(IDEMPOTENCY_KEY,),
)
async def create_task(call: Call[TaskCreateRequest, None]) -> tuple[int, TaskCreatedResponse]:
    created = await call.ledger.create_task(
        call.actor, call.body, idempotency_key=_idempotency_key(call)
    )
    return (201 if created.created else 200), TaskCreatedResponse(
        task=created.task, policy_verdict=created.verdict
    )


@endpoint(
    "POST",
    TASKS + "/from-it-request/{request_number}",
    summary="Creates an agent task seeded from a registered IT request; the request is "
    "copied into scope.source_request, and the task is worked for the request's ticket.",
    role="operator",
    response=TaskFromITResponse,
    statuses=(200, 201, 400, 401, 403, 404, 409),
    body=TaskFromITRequest,
    reads=(IDEMPOTENCY_KEY,),
)
async def create_task_from_it_request(
    call: Call[TaskFromITRequest, None],
) -> tuple[int, TaskFromITResponse]:
    itr = await call.ledger.get_it_request(call.actor.tenant_id, call.path_param("request_number"))
    request = TaskCreateRequest(
        lane=call.body.lane,
        title=call.body.title or f"{itr.request_number}: {itr.title}",
        instructions=call.body.instructions or itr.description or itr.title,
        source_systems=[itr.source_system] if itr.source_system else [],
        mutation_level=call.body.mutation_level,
        model_provider=call.body.model_provider,
    )
    ticket = await call.ledger.ticket_for_it_request(call.actor.tenant_id, itr.request_number)
    lineage = {"source_request": itr.model_dump(mode="json"), "ticket_id": str(ticket.id)}

    async def worked_for_ticket(connection: Any, task_id: UUID, status: str) -> None:
        await call.ledger.link_ticket_task(connection, call.actor.tenant_id, ticket.id, task_id)

    created = await call.ledger.create_task(
        call.actor,
        request,
        idempotency_key=_idempotency_key(call),
        lineage=lineage,
        with_task=worked_for_ticket,
    )
    return (201 if created.created else 200), TaskFromITResponse(
        task=created.task, policy_verdict=created.verdict, itr_context=itr, ticket_id=ticket.id
    )


@endpoint(
    "GET",
    ONE_TASK,
    summary="Returns one task record with its policy verdict and terminal reason.",
    role="viewer",
    response=TaskResponse,
    statuses=_READ,
)
async def get_task(call: Call) -> tuple[int, TaskResponse]:
    return 200, TaskResponse(task=await call.ledger.get_task(call.actor.tenant_id, _task_id(call)))


@endpoint(
    "POST",
    ONE_TASK + "/approve",
    summary="Approves a task awaiting operator review. "
    "Past a deny only an owner may approve, with break_glass_acknowledged: true.",
    role="operator",
    response=TransitionResponse,
    statuses=_CHANGE,
    body=ApproveRequest,
)
async def approve_task(call: Call[ApproveRequest, None]) -> tuple[int, TransitionResponse]:
    moved = await call.ledger.approve(
        call.actor,
        _task_id(call),
        reason=call.body.reason,
        break_glass_acknowledged=call.body.break_glass_acknowledged,
    )
    return 200, TransitionResponse(task=moved.task, trace=moved.trace)


@endpoint(
    "POST",
    ONE_TASK + "/reject",
    summary="Rejects a task awaiting approval; it becomes denied.",
    role="operator",
    response=TransitionResponse,
    statuses=_CHANGE,
    body=ReasonRequest,
)
async def reject_task(call: Call[ReasonRequest, None]) -> tuple[int, TransitionResponse]:
    moved = await call.ledger.reject(call.actor, _task_id(call), reason=call.body.reason)
    return 200, TransitionResponse(task=moved.task, trace=moved.trace)


@endpoint(
    "POST",
    ONE_TASK + "/cancel",
    summary="Cancels a task that has not finished.",
    role="operator",
    response=TransitionResponse,
    statuses=_CHANGE,
    body=ReasonRequest,
)
async def cancel_task(call: Call[ReasonRequest, None]) -> tuple[int, TransitionResponse]:
    moved = await call.ledger.cancel(call.actor, _task_id(call), reason=call.body.reason)
    return 200, TransitionResponse(task=moved.task, trace=moved.trace)


@endpoint(
    "POST",
    ONE_TASK + "/retry",
    summary="Queues the next attempt of a finished or "
    "blocked task; earlier runs, traces and artifacts are kept.",
    role="operator",
    response=TransitionResponse,
    statuses=_CHANGE,
    body=ReasonRequest,
)
async def retry_task(call: Call[ReasonRequest, None]) -> tuple[int, TransitionResponse]:
    moved = await call.ledger.retry(call.actor, _task_id(call), reason=call.body.reason)
    return 200, TransitionResponse(task=moved.task, trace=moved.trace)


@endpoint(
    "POST",
    ONE_TASK + "/rollback",
    summary="Requests rollback or remediation of a "
    "finished task; reason and remediation are required.",
    role="operator",
    response=TransitionResponse,
    statuses=_CHANGE,
    body=RollbackRequest,
)
async def rollback_task(call: Call[RollbackRequest, None]) -> tuple[int, TransitionResponse]:
    moved = await call.ledger.rollback(
        call.actor, _task_id(call), reason=call.body.reason, remediation=call.body.remediation
    )
    return 200, TransitionResponse(task=moved.task, trace=moved.trace)


@endpoint(
    "POST",
    ONE_TASK + "/dispatch",
    summary="Dispatches a queued task to its lane now (the dispatcher also does this by "
    "itself). Without a lane transport configured: status not_configured, recorded as a trace.",
    role="operator",
    response=DispatchResponse,
    statuses=(*_CHANGE, 503),
)
async def dispatch_task(call: Call) -> tuple[int, DispatchResponse]:
    task = await call.ledger.get_task(call.actor.tenant_id, _task_id(call))
    if not may("dispatch", task.status):
        raise InvalidTransition("dispatch", task.status, allowed_from("dispatch"))
    transport = call.ledger.policy.lanes[task.lane].transport
    run_id = str(task.current_run_id) if task.current_run_id else None
    if transport is None:
        reason = f"lane {task.lane} has no transport configured"
        await call.ledger.note(
            call.actor,
            task.id,
            "dispatch_not_configured",
            reason,
            data={"lane": task.lane},
            run_id=task.current_run_id,
        )
        info = DispatchInfo(lane=task.lane, transport=None, run_id=run_id, reason=reason)
        return 200, DispatchResponse(status="not_configured", dispatch=info, task=task)
    result = await call.request.app.state.outbox.dispatch_once(1, task_id=task.id)
    if task.lane in result.failed_lanes:
        raise ApiError(
            503,
            "lane_unavailable",
            f"sending to lane {task.lane} failed; the dispatcher will retry",
            {"lane": task.lane},
        )
    after = await call.ledger.get_task(call.actor.tenant_id, task.id)
    if result.sent == 0 and may("dispatch", after.status):  # held by a dispatcher right now
        raise InvalidTransition("dispatch", after.status, allowed_from("dispatch"))
    info = DispatchInfo(
        lane=task.lane,
        transport=transport.kind,
        run_id=run_id,
        reason="sent to the lane" if result.sent else "the dispatcher had already sent it",
    )
    return 200, DispatchResponse(status="dispatched", dispatch=info, task=after)


@endpoint(
    "POST",
    ONE_TASK + "/run",
    summary="Runs the task in this process through the "
    "OpenAI Agents SDK executor. A missing SDK records an explicit blocked state.",
    role="operator",
    response=RunResponse,
    statuses=_CHANGE,
)
async def run_task(call: Call) -> tuple[int, RunResponse]:
    state = call.request.app.state
    outcome = await run_in_process(
        call.ledger,
        state.leases,
        state.artifacts,
        call.actor,
        _task_id(call),
        RuntimeAccess(state.runtime, state.channel_waits, state.trace_feed, call.ledger),
    )
    task_id = _task_id(call)
    return 200, RunResponse(
        status=outcome.task.status,
        task=outcome.task,
        sdk_available=outcome.sdk_available,
        artifacts=await call.ledger.list_artifacts(call.actor.tenant_id, task_id),
        traces=await call.ledger.list_traces(call.actor.tenant_id, task_id),
    )


@endpoint(
    "GET",
    ONE_TASK + "/traces",
    summary="Returns a task's trace events in order.",
    role="viewer",
    response=TracesResponse,
    statuses=_READ,
    query=TraceListQuery,
)
async def list_traces(call: Call[None, TraceListQuery]) -> tuple[int, TracesResponse]:
    traces = await call.ledger.list_traces(
        call.actor.tenant_id,
        _task_id(call),
        after_seq=call.query.after_seq,
        limit=call.query.limit,
    )
    return 200, TracesResponse(traces=traces)


@endpoint(
    "GET",
    ONE_TASK + "/artifacts",
    summary="Returns a task's artifact records: "
    "metadata and a download route, never a storage key or secret.",
    role="viewer",
    response=ArtifactsResponse,
    statuses=_READ,
)
async def list_artifacts(call: Call) -> tuple[int, ArtifactsResponse]:
    artifacts = await call.ledger.list_artifacts(call.actor.tenant_id, _task_id(call))
    return 200, ArtifactsResponse(artifacts=artifacts)


@endpoint(
    "GET",
    ONE_TASK + "/artifacts/{artifact_id:uuid}/content",
    summary="Downloads one artifact's content.",
    role="viewer",
    response=None,
    statuses=_READ,
    raw_media_type="*/*",
)
async def download_artifact(call: Call) -> Response:
    artifact, storage_ref = await call.ledger.get_artifact(
        call.actor.tenant_id, _task_id(call), call.request.path_params["artifact_id"]
    )
    content = await asyncio.to_thread(call.request.app.state.artifacts.get, storage_ref)
    return Response(
        content,
        media_type=artifact.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{artifact.name}"',
            "X-Content-SHA256": artifact.sha256,
        },
    )


ENDPOINTS: list[Endpoint] = [
    list_tasks,
    create_task,
    create_task_from_it_request,
    get_task,
    approve_task,
    reject_task,
    cancel_task,
    retry_task,
    rollback_task,
    dispatch_task,
    run_task,
    list_traces,
    list_artifacts,
    download_artifact,
]
