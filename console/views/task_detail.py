"""One task: its verdict and reasons, runs and attempts, its agent session, the trace
as a timeline that grows live, its artifacts, and the actions its status allows. Each
action is the REST route's: the same request model, the same ledger method, the same
role."""

import asyncio
from typing import Any
from uuid import UUID

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from api.endpoints import validate_body
from api.errors import ApiError
from api.schemas import MAX_SEQ
from console import live
from console.auth import Me, signed_view
from console.render import PREFIX, SECURITY_HEADERS, page
from ledger.models import ApproveRequest, ReasonRequest, RollbackRequest, Task
from ledger.states import TaskStatus, may

INITIAL_EVENTS = 1000
# Where an action may send the person back to, besides the task itself.
_BACK = {"approvals": f"{PREFIX}/approvals"}
# Artifacts a browser may show inline (as plain text, or the image it is); any other is
# downloaded. Shown under `sandbox`, so nothing in one can run as the console.
_INLINE_IMAGES = {"image/png", "image/jpeg", "image/gif", "image/webp"}


def task_id_of(request: Request, name: str = "task_id") -> UUID:
    """A path id; not a uuid is the API's 404 (its routes match only uuids)."""
    try:
        return UUID(str(request.path_params[name]))
    except ValueError as error:
        raise ApiError(404, "not_found", "no such route") from error


def tool_call_waiting(task: Task) -> bool:
    pending = task.pending_approval
    return (
        task.status == TaskStatus.AWAITING_APPROVAL
        and pending is not None
        and "decision" not in pending
    )


async def _summary_context(request: Request, me: Me, task_id: UUID) -> dict[str, Any]:
    ledger = request.app.state.ledger
    task = await ledger.get_task(me.tenant, task_id)
    runs, artifacts, session = await asyncio.gather(
        ledger.task_runs(me.tenant, task_id),
        ledger.list_artifacts(me.tenant, task_id),
        ledger.task_session(me.tenant, task_id),
    )
    lane = ledger.policy.lanes.get(task.lane)
    return {
        "task": task,
        "runs": runs,
        "artifacts": artifacts,
        "session": session,
        "may": may,
        "tool_call": tool_call_waiting(task),
        "break_glass": task.policy_verdict.decision == "deny",
        "lane_config": lane,
    }


@signed_view
async def task_page(request: Request, me: Me) -> Response:
    task_id = task_id_of(request)
    context = await _summary_context(request, me, task_id)
    events = await request.app.state.ledger.list_traces(me.tenant, task_id, limit=INITIAL_EVENTS)
    context.update(
        events=events,
        after_seq=events[-1].seq if events else 0,
        done=request.query_params.get("done"),
    )
    return page(request, "task.html", context)


@signed_view
async def task_summary(request: Request, me: Me) -> Response:
    context = await _summary_context(request, me, task_id_of(request))
    return page(request, "_task_summary.html", context)


def resume_point(request: Request) -> int:
    """Last-Event-ID (the browser's own reconnect), else after_seq, else 0."""
    for raw in (request.headers.get("last-event-id"), request.query_params.get("after_seq")):
        if raw is None:
            continue
        if not (raw.isascii() and raw.isdigit() and int(raw) <= MAX_SEQ):
            raise ApiError(400, "invalid_request", "after_seq must be a trace sequence number")
        return int(raw)
    return 0


@signed_view
async def task_live(request: Request, me: Me) -> Response:
    task_id = task_id_of(request)
    after = resume_point(request)
    await request.app.state.ledger.get_task(me.tenant, task_id)  # 404 before the stream
    return live.trace(request, me, task_id, after)


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str)}


@signed_view
async def task_action(request: Request, me: Me) -> Response:
    """approve, reject, cancel, retry, rollback: as `POST /api/agents/tasks/{id}/<action>`."""
    task_id = task_id_of(request)
    action = str(request.path_params["action"])
    actor = me.principal.actor_for("operator")
    form = await _form(request)
    ledger = request.app.state.ledger
    reason = form.get("reason", "")
    if action == "approve":
        body = validate_body(
            ApproveRequest,
            {"reason": reason, "break_glass_acknowledged": form.get("break_glass") == "yes"},
        )
        await ledger.approve(
            actor,
            task_id,
            reason=body.reason,
            break_glass_acknowledged=body.break_glass_acknowledged,
        )
    elif action in ("reject", "cancel", "retry"):
        body = validate_body(ReasonRequest, {"reason": reason})
        await getattr(ledger, action)(actor, task_id, reason=body.reason)
    elif action == "rollback":
        rollback = validate_body(
            RollbackRequest, {"reason": reason, "remediation": form.get("remediation", "")}
        )
        await ledger.rollback(
            actor, task_id, reason=rollback.reason, remediation=rollback.remediation
        )
    else:
        raise ApiError(404, "not_found", "no such route")
    back = _BACK.get(form.get("back", ""))
    return RedirectResponse(back or f"{PREFIX}/tasks/{task_id}?done={action}", status_code=303)


@signed_view
async def artifact(request: Request, me: Me) -> Response:
    """An artifact's content, as the REST download; `?open=1` shows text and images in
    the browser (text as text/plain, under a sandbox), anything else is downloaded."""
    task_id = task_id_of(request)
    artifact_id = task_id_of(request, "artifact_id")
    record, storage_ref = await request.app.state.ledger.get_artifact(
        me.tenant, task_id, artifact_id
    )
    content = await asyncio.to_thread(request.app.state.artifacts.get, storage_ref)
    media_type = record.media_type
    inline = request.query_params.get("open") == "1"
    if inline and media_type.startswith(("text/", "application/json", "application/x-yaml")):
        media_type = "text/plain; charset=utf-8"
    elif inline and media_type not in _INLINE_IMAGES:
        inline = False
    disposition = "inline" if inline else "attachment"
    safe_name = record.name.replace('"', "").replace("\\", "")
    headers = {
        **SECURITY_HEADERS,
        "Content-Security-Policy": "sandbox; default-src 'none'; img-src 'self'",
        "Content-Disposition": f'{disposition}; filename="{safe_name}"',
        "X-Content-SHA256": record.sha256,
    }
    return Response(content, media_type=media_type, headers=headers)
