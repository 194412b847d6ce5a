"""`GET /api/agents/tasks/{id}/events`: the task's trace as a live Server-Sent Events
stream. Each event's id is its trace sequence number, so a client reconnecting with
`Last-Event-ID` resumes exactly where it stopped. The stream ends with a `done` event
when the task reaches a terminal or waiting state."""

import json
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

from starlette.responses import StreamingResponse

from api.endpoints import Call, Endpoint, Parameter, endpoint
from api.errors import ApiError
from api.schemas import MAX_SEQ, SEQ_PATTERN
from ledger.models import TraceEvent
from ledger.notify import wait_any
from ledger.run_steps import HANDOFF_TOOL_PREFIX
from ledger.states import TERMINAL, TaskStatus

# The stream closes once the task is here: nothing more happens without a new decision.
STREAM_ENDS = TERMINAL | {TaskStatus.BLOCKED, TaskStatus.AWAITING_APPROVAL}
POLL_SECONDS = 2.0  # how soon a lost LISTEN connection is noticed and made again
STREAM_BATCH = 500  # trace events read at once
KEEPALIVE_SECONDS = 15.0
_ERRORS = {"failed", "blocked", "fence_refused", "lease_expired"}
_MODEL_TURNS = {"span.generation", "span.response"}


def _event_schema(name: str, required: list[str], fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"const": name},
            "id": {"type": "string", "pattern": "^[0-9]+$"},
            # On the wire `data` is a line of JSON text: the object it holds is its
            # contentSchema (JSON Schema 2020-12, as OpenAPI 3.2 describes SSE data).
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {
                    "type": "object",
                    "required": ["type", "seq", *required],
                    "properties": {
                        "type": {"const": name},
                        "seq": {"type": "integer", "minimum": 0},
                        **fields,
                    },
                    "additionalProperties": False,
                },
            },
        },
        "additionalProperties": False,
    }


_TEXT = {"type": "string"}
_CALL = {"call_id": {"type": "string", "minLength": 1}, "tool": {"type": "string"}}
# Each type of event: its name, the fields its data must have, and their schemas.
_EVENT_SHAPES: tuple[tuple[str, list[str], dict[str, Any]], ...] = (
    (
        "status",
        ["content", "data"],
        {
            "content": _TEXT,
            "data": {
                "type": "object",
                "required": ["kind", "message"],
                "properties": {"kind": _TEXT, "message": _TEXT},
                "additionalProperties": False,
            },
        },
    ),
    (
        # The agent's text: streamed in chunks as the model writes it (`is_final` on the
        # last chunk of a model turn, which may be empty when all was sent before), or a
        # whole turn's text at once (`is_final` true) when it was not streamed.
        "text",
        ["content", "is_final", "data"],
        {
            "content": _TEXT,
            "is_final": {"type": "boolean"},
            "data": {
                "type": "object",
                "properties": {
                    "agent": _TEXT,
                    "model": {"type": ["string", "null"]},
                    "usage": {"type": ["object", "null"]},
                },
                "additionalProperties": False,
            },
        },
    ),
    (
        "tool_call",
        ["call_id", "tool", "data"],
        {
            **_CALL,
            "data": {
                "type": "object",
                "required": ["arguments"],
                "properties": {"arguments": {}},
                "additionalProperties": False,
            },
        },
    ),
    (
        "tool_verdict",
        ["call_id", "tool", "content", "data"],
        {**_CALL, "content": _TEXT, "data": {"type": "object"}},
    ),
    (
        "tool_result",
        ["call_id", "tool", "content", "data"],
        {
            **_CALL,
            "content": _TEXT,
            "data": {
                "type": "object",
                "properties": {"error": {"type": "object"}},
                "additionalProperties": False,
            },
        },
    ),
    (
        "error",
        ["content", "data"],
        {
            "content": _TEXT,
            "data": {
                "type": "object",
                "required": ["kind"],
                "properties": {"kind": _TEXT},
                "additionalProperties": False,
            },
        },
    ),
    ("done", ["content"], {"content": _TEXT}),
)
EVENT_TYPES = tuple(name for name, _, _ in _EVENT_SHAPES)
# One event of the stream: its name, its id (the trace sequence number; only the last of
# the events one trace event becomes carries it) and its data, a JSON object.
EVENT_SCHEMA: dict[str, Any] = {"oneOf": [_event_schema(*shape) for shape in _EVENT_SHAPES]}


def sse_event(event: TraceEvent) -> str:
    """One trace event in the stream's vocabulary; a model turn may become several (its
    text, then each call). Only the last carries the id: a client that resumes from it has
    seen them all, one that dropped before it gets them again."""
    bodies = _bodies(event)
    frames = []
    for index, body in enumerate(bodies):
        body["seq"] = event.seq
        id_line = f"id: {event.seq}\n" if index == len(bodies) - 1 else ""
        frames.append(f"{id_line}event: {body['type']}\ndata: {json.dumps(body)}\n\n")
    return "".join(frames)


def _bodies(event: TraceEvent) -> list[dict[str, Any]]:
    data = event.data
    if event.kind == "text.delta" and isinstance(data.get("text"), str):
        return [
            {
                "type": "text",
                "content": data["text"],
                "is_final": data.get("is_final") is True,
                "data": {"agent": str(data.get("agent") or "")},
            }
        ]
    if event.kind == "agent.status" and isinstance(data.get("state"), str):
        return [
            {
                "type": "status",
                "content": data["state"],
                "data": {"kind": event.kind, "message": event.message},
            }
        ]
    if event.kind in _MODEL_TURNS:
        bodies: list[dict[str, Any]] = []
        # A streamed turn's text went out as `text.delta` events already: the turn then
        # adds only its tool calls (or, with none, a status, so that its id is on the
        # stream as every trace event's is), and a client does not show the text twice.
        if data.get("text") and not data.get("streamed"):
            details = {"model": data.get("model"), "usage": data.get("usage")}
            bodies.append(
                {"type": "text", "content": data["text"], "is_final": True, "data": details}
            )
        bodies.extend(
            {
                "type": "tool_call",
                "call_id": call["call_id"],
                "tool": call["tool"],
                "data": {"arguments": call.get("arguments")},
            }
            for call in data.get("tool_calls") or []
            if call.get("call_id")
            and call.get("tool")
            # A handoff is no call whose result to wait for: it is shown as a status.
            and not str(call["tool"]).startswith(HANDOFF_TOOL_PREFIX)
        )
        if bodies:
            return bodies
    elif event.kind == "span.handoff":
        route = f"{data.get('from_agent') or '?'} -> {data.get('to_agent') or '?'}"
        return [
            {"type": "status", "content": "handoff", "data": {"kind": event.kind, "message": route}}
        ]
    elif event.kind == "span.function":
        if not data.get("call_id"):
            # No tool call started in this span: it waits for an operator (the stream says
            # so with `approval_requested`) or was refused before it ran.
            return []
        output = data.get("output")
        return [
            {
                "type": "tool_result",
                "call_id": data["call_id"],
                "tool": data.get("name") or "",
                "content": output if isinstance(output, str) else json.dumps(output),
                "data": {"error": data["error"]} if data.get("error") else {},
            }
        ]
    elif event.kind == "tool_verdict" and data.get("call_id"):
        return [
            {
                "type": "tool_verdict",
                "call_id": data["call_id"],
                "tool": data.get("tool") or "",
                "content": data.get("decision") or "",
                "data": data,
            }
        ]
    if event.kind in _ERRORS or data.get("error"):
        return [{"type": "error", "content": event.message, "data": {"kind": event.kind}}]
    return [
        {
            "type": "status",
            "content": event.to_status or event.kind,
            "data": {"kind": event.kind, "message": event.message},
        }
    ]


def resume_from(call: Call, *, also: frozenset[str] = frozenset()) -> int:
    """Where a reconnecting client left off: Last-Event-ID, else after_seq, else 0.
    `also`: the route's own query parameters, read by it."""
    unknown = sorted(set(call.request.query_params) - {"after_seq", *also})
    if unknown:
        raise ApiError(400, "invalid_request", "unknown query parameters", {"unknown": unknown})
    # Both are checked, though the header wins: a malformed after_seq is a mistake to
    # report even when a reconnect's Last-Event-ID makes it moot.
    header = _sequence(call.request.headers.get("last-event-id"), "Last-Event-ID")
    query = _sequence(call.request.query_params.get("after_seq"), "after_seq")
    return header if header is not None else query or 0


def _sequence(raw: str | None, name: str) -> int | None:
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit() and int(raw) <= MAX_SEQ):
        raise ApiError(400, "invalid_request", f"{name} must be a trace sequence number")
    return int(raw)


# How any stream of trace events is resumed (see `resume_from`).
RESUME_PARAMETERS = (
    Parameter(
        "Last-Event-ID",
        "header",
        "Resume after this trace sequence number (the id of the last event seen).",
        {"type": "string", "pattern": SEQ_PATTERN},
    ),
    Parameter(
        "after_seq",
        "query",
        "The same as Last-Event-ID, for clients that cannot set headers.",
        {"type": "string", "pattern": SEQ_PATTERN},
    ),
)


@endpoint(
    "GET",
    "/api/agents/tasks/{task_id:uuid}/events",
    summary="Streams the task's trace events live (Server-Sent Events: "
    + ", ".join(EVENT_TYPES)
    + "); resumable with Last-Event-ID.",
    role="viewer",
    response=None,
    statuses=(200, 400, 401, 403, 404),
    raw_media_type="text/event-stream",
    raw_schema=EVENT_SCHEMA,
    reads=RESUME_PARAMETERS,
)
async def stream_events(call: Call) -> StreamingResponse:
    task_id = call.request.path_params["task_id"]
    await call.ledger.get_task(call.actor.tenant_id, task_id)  # 404 before the stream starts
    return trace_stream(call, task_id, resume_from(call))


def trace_stream(call: Call, task_id: UUID, after: int, *, first: str = "") -> StreamingResponse:
    """Task `task_id`'s trace after sequence number `after` as a live stream that ends
    with `done` once the task stops (`first`, already formatted, goes before it all).
    Every stream of a run's events is this one: task events, thread runs, sessions."""
    return StreamingResponse(
        _follow(call, task_id, after, first),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _follow(call: Call, task_id: UUID, after: int, first: str) -> AsyncIterator[str]:
    """Every status change writes its trace event in the same transaction, so the
    events alone say when the task stopped; the task row is read to confirm that, and
    at each keep-alive in case. A woken stream costs one query, an idle one nothing
    between keep-alives."""
    tenant = call.actor.tenant_id
    feed = call.request.app.state.trace_feed
    if first:
        yield first
    seq = after
    await feed.ensure()
    with feed.subscribe(str(task_id)) as grew:
        status = (await call.ledger.get_task(tenant, task_id)).status
        idle = 0.0
        while True:
            grew.clear()
            batch = await call.ledger.traces_after(
                tenant, task_id, after_seq=seq, limit=STREAM_BATCH
            )
            for event in batch:
                yield sse_event(event)
                seq = event.seq
                status = event.to_status or status
            if batch:
                idle = 0.0
            if len(batch) == STREAM_BATCH:
                continue
            if status in STREAM_ENDS or idle >= KEEPALIVE_SECONDS:
                status = (await call.ledger.get_task(tenant, task_id)).status
            if status in STREAM_ENDS:
                done = {"type": "done", "content": status, "seq": seq}
                yield f"event: done\ndata: {json.dumps(done)}\n\n"
                return
            if idle >= KEEPALIVE_SECONDS:  # keeps proxies from closing a quiet stream
                idle = 0.0
                yield ": keep-alive\n\n"
            while not grew.is_set() and idle < KEEPALIVE_SECONDS:
                await wait_any(grew, seconds=POLL_SECONDS)
                if not grew.is_set():
                    idle += POLL_SECONDS
                    await feed.ensure()  # a lost LISTEN connection is made again


ENDPOINTS: list[Endpoint] = [stream_events]
