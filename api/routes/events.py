"""`GET /api/agents/tasks/{id}/events`: the task's trace as a live Server-Sent Events
stream. Each event's id is its trace sequence number, so a client reconnecting with
`Last-Event-ID` resumes exactly where it stopped. The stream ends with a `done` event
when the task reaches a terminal or waiting state."""

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import StreamingResponse

from api.endpoints import Call, Endpoint, Parameter, endpoint
from api.errors import ApiError
from api.schemas import MAX_SEQ
from ledger.models import TraceEvent
from ledger.notify import wait_any
from ledger.states import TERMINAL, TaskStatus

# The stream closes once the task is here: nothing more happens without a new decision.
STREAM_ENDS = TERMINAL | {TaskStatus.BLOCKED, TaskStatus.AWAITING_APPROVAL}
POLL_SECONDS = 2.0  # catches up if a notification was missed
KEEPALIVE_SECONDS = 15.0
_ERRORS = {"failed", "blocked", "fence_refused", "lease_expired"}
# Each event as the stream carries it: its name, its id (the trace sequence number) and
# its data, a JSON object {type, content?, data?, seq} serialised as text.
EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "event": {"enum": ["status", "text", "tool_call", "tool_result", "error", "done"]},
        "id": {"type": "string", "pattern": "^[0-9]+$"},
        "data": {"type": "string", "contentMediaType": "application/json"},
    },
}


def sse_event(event: TraceEvent) -> str:
    """One trace event in the stream's vocabulary: status, text, tool_call, tool_result,
    error."""
    data = event.data
    body: dict[str, Any]
    if event.kind == "span.generation":
        body = {
            "type": "text",
            "content": data.get("output") or "",
            "data": {"model": data.get("model"), "usage": data.get("usage")},
        }
    elif event.kind == "tool_call":
        body = {"type": "tool_call", "data": data}
    elif event.kind == "span.function":
        body = {
            "type": "tool_result",
            "data": {"tool": data.get("name"), "output": data.get("output")},
        }
    elif event.kind in _ERRORS or data.get("error"):
        body = {"type": "error", "content": event.message, "data": {"kind": event.kind}}
    else:
        body = {
            "type": "status",
            "content": event.to_status or event.kind,
            "data": {"kind": event.kind, "message": event.message},
        }
    body["seq"] = event.seq
    return f"id: {event.seq}\nevent: {body['type']}\ndata: {json.dumps(body)}\n\n"


def _resume_from(call: Call) -> int:
    raw = call.request.headers.get("last-event-id") or call.request.query_params.get("after_seq")
    if raw is None:
        return 0
    if not (raw.isascii() and raw.isdigit() and int(raw) <= MAX_SEQ):
        raise ApiError(400, "invalid_request", "Last-Event-ID must be a trace sequence number")
    return int(raw)


@endpoint(
    "GET",
    "/api/agents/tasks/{task_id:uuid}/events",
    summary="Streams the task's "
    "trace events live (Server-Sent Events: status, text, tool_call, tool_result, "
    "error, done); resumable with Last-Event-ID.",
    role="viewer",
    response=None,
    statuses=(200, 400, 401, 403, 404),
    raw_media_type="text/event-stream",
    raw_schema=EVENT_SCHEMA,
    reads=(
        Parameter(
            "Last-Event-ID",
            "header",
            "Resume after this trace sequence number (the id of the last event seen).",
            {"type": "string", "pattern": "^[0-9]+$"},
        ),
        Parameter(
            "after_seq",
            "query",
            "The same as Last-Event-ID, for clients that cannot set headers.",
            {"type": "string", "pattern": "^[0-9]+$"},
        ),
    ),
)
async def stream_events(call: Call) -> StreamingResponse:
    task_id = call.request.path_params["task_id"]
    tenant = call.actor.tenant_id
    await call.ledger.get_task(tenant, task_id)  # 404 before the stream starts
    after = _resume_from(call)
    feed = call.request.app.state.trace_feed

    async def events() -> AsyncIterator[str]:
        seq = after
        await feed.listener.ensure()
        with feed.subscribe(str(task_id)) as grew:
            idle = 0.0
            while True:
                grew.clear()
                batch = await call.ledger.list_traces(tenant, task_id, after_seq=seq, limit=500)
                for event in batch:
                    yield sse_event(event)
                    seq = event.seq
                if batch:
                    idle = 0.0
                    continue
                task = await call.ledger.get_task(tenant, task_id)
                if task.status in STREAM_ENDS:
                    done = {"type": "done", "content": task.status, "seq": seq}
                    yield f"event: done\ndata: {json.dumps(done)}\n\n"
                    return
                await wait_any(grew, seconds=POLL_SECONDS)
                idle += POLL_SECONDS
                if idle >= KEEPALIVE_SECONDS:  # keeps proxies from closing a quiet stream
                    idle = 0.0
                    yield ": keep-alive\n\n"

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


ENDPOINTS: list[Endpoint] = [stream_events]
