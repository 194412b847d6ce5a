"""Everything waiting for a decision, the longest waiting first: tasks the policy held
for an operator (approve, reject, or break glass for an owner past a deny), tool calls
a paused run waits on, with their exact arguments and sha256, and change requests not
yet decided nor expired. A task decision posts to the task's own action
(`views/task_detail.py`); a tool call's is the REST
`POST /api/v1/approvals/{id}/resolve`: `Ledger.resolve_approval`; a change's is the
change's own (`views/changes.py`)."""

from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from api.endpoints import validate_body
from console.auth import Me, signed_view
from console.render import PREFIX, is_fragment, page
from console.views.task_detail import task_id_of
from ledger.models import ApprovalResolveRequest


async def _context(request: Request, me: Me) -> dict[str, Any]:
    ledger = request.app.state.ledger
    calls = await ledger.pending_tool_calls(me.tenant)
    held_by_call = {call.task_id for call in calls}
    tasks = [
        task
        for task in await ledger.waiting_tasks(me.tenant)
        if task.id not in held_by_call and not task.pending_approval
    ]
    titles = {}
    for call in calls:
        if call.task_id not in titles:
            titles[call.task_id] = (await ledger.get_task(me.tenant, call.task_id)).title
    changes = await ledger.pending_changes(me.tenant)
    waiting: list[tuple[datetime, str, Any]] = [
        *((task.updated_at, "task", task) for task in tasks),
        *((call.created_at, "tool_call", call) for call in calls),
        *((change.created_at, "change", change) for change in changes),
    ]
    waiting.sort(key=lambda item: item[0])
    return {"waiting": waiting, "titles": titles}


@signed_view
async def approvals(request: Request, me: Me) -> Response:
    name = "_approvals_list.html" if is_fragment(request) else "approvals.html"
    return page(request, name, await _context(request, me))


@signed_view
async def approvals_rows(request: Request, me: Me) -> Response:
    return page(request, "_approvals_list.html", await _context(request, me))


@signed_view
async def resolve(request: Request, me: Me) -> Response:
    actor = me.principal.actor_for("operator")
    approval_id = task_id_of(request, "approval_id")
    form = await request.form()
    body = validate_body(
        ApprovalResolveRequest,
        {"status": str(form.get("decision") or ""), "reason": str(form.get("reason") or "")},
    )
    await request.app.state.ledger.resolve_approval(
        actor, approval_id, body.status, reason=body.reason
    )
    return RedirectResponse(f"{PREFIX}/approvals?done={body.status}", status_code=303)
