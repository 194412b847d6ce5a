"""Change requests: the tenant's changes, the ones waiting for a decision first (the
soonest to expire first), filtered by status and risk level in the URL; and one change
with its approvals and, for an operator, the forms to approve or reject it.

The decision is the REST route's (`POST /api/changes/{id}/approve|reject`): the same
request model and the same ledger method, which alone says who may decide. When it
refuses (the requester approving their own change, a role the risk level's rule does
not name, a change expired or decided already), the change's page is shown again with
the refusal in words and the API's status and code, not an error page."""

from typing import Any, get_args
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from api.endpoints import validate_body, validate_query
from api.errors import ApiError, ledger_status
from console.auth import Me, signed_view
from console.render import PREFIX, is_fragment, page
from console.views.sessions import list_params
from console.views.task_detail import task_id_of
from ledger.change_models import (
    ApproveChangeRequest,
    ChangeListQuery,
    ChangeStatus,
    RejectChangeRequest,
)
from ledger.errors import Conflict, PolicyError
from ledger.policy import RISK_LEVELS

PAGE_SIZE = 50
_LIST_PARAMS = frozenset({"status", "risk_level", "offset"})
CHANGE_STATUSES: tuple[str, ...] = get_args(ChangeStatus)


async def _list_context(request: Request, me: Me) -> dict[str, Any]:
    params = list_params(request, _LIST_PARAMS)
    filters = validate_query(ChangeListQuery, {**params, "limit": str(PAGE_SIZE)})
    changes = await request.app.state.ledger.changes_pending_first(
        me.tenant,
        status=filters.status,
        risk_level=filters.risk_level,
        limit=PAGE_SIZE,
        offset=filters.offset,
    )
    kept = {key: value for key, value in params.items() if key != "offset"}
    return {
        "changes": changes,
        "filters": filters,
        "statuses": CHANGE_STATUSES,
        "risk_levels": RISK_LEVELS,
        "filtered": bool(kept),
        "rows_url": f"{PREFIX}/changes/rows?{urlencode(params)}",
        "next_link": f"?{urlencode({**kept, 'offset': filters.offset + PAGE_SIZE})}"
        if len(changes) == PAGE_SIZE
        else None,
        "first_link": f"?{urlencode(kept)}" if filters.offset else None,
    }


@signed_view
async def change_list(request: Request, me: Me) -> Response:
    context = await _list_context(request, me)
    name = "_change_rows.html" if is_fragment(request) else "changes.html"
    return page(request, name, context)


@signed_view
async def change_rows(request: Request, me: Me) -> Response:
    return page(request, "_change_rows.html", await _list_context(request, me))


async def _detail_context(request: Request, me: Me) -> dict[str, Any]:
    ledger = request.app.state.ledger
    change = await ledger.get_change(me.tenant, task_id_of(request, "change_id"))
    return {
        "change": change,
        "ticket": await ledger.get_ticket(me.tenant, change.ticket_id),
        "own": change.requested_by == me.subject,
    }


@signed_view
async def change_page(request: Request, me: Me) -> Response:
    context = await _detail_context(request, me)
    context["done"] = request.query_params.get("done")
    return page(request, "change.html", context)


@signed_view
async def decide(request: Request, me: Me) -> Response:
    """approve or reject, as `POST /api/changes/{id}/<decision>`."""
    actor = me.principal.actor_for("operator")
    change_id = task_id_of(request, "change_id")
    decision = str(request.path_params["decision"])
    if decision not in ("approve", "reject"):
        raise ApiError(404, "not_found", "no such route")
    form = await request.form()
    reason = str(form.get("reason") or "")
    ledger = request.app.state.ledger
    try:
        if decision == "approve":
            await ledger.approve_change(
                actor, change_id, validate_body(ApproveChangeRequest, {"reason": reason})
            )
        else:
            await ledger.reject_change(
                actor, change_id, validate_body(RejectChangeRequest, {"reason": reason})
            )
    except (PolicyError, Conflict) as refused:
        # A refusal is an answer about this change: its page again, saying why.
        context = await _detail_context(request, me)
        context["refused"] = {
            "decision": decision,
            "status_code": ledger_status(refused),
            "code": refused.code,
            "message": refused.message,
        }
        return page(request, "change.html", context, status_code=ledger_status(refused))
    done = "approved" if decision == "approve" else "rejected"
    if form.get("back") == "approvals":
        return RedirectResponse(f"{PREFIX}/approvals?done=change+{done}", status_code=303)
    return RedirectResponse(f"{PREFIX}/changes/{change_id}?done={done}", status_code=303)
