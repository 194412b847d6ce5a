"""`/api/changes`: change requests, the gates agents and people pass before acting on a
target. Who may approve follows the risk level (the lanes file's `change_approval`);
the requester never approves its own change."""

from uuid import UUID

from api.endpoints import Call, Endpoint, endpoint
from api.ticket_schemas import (
    ChangeListResponse,
    ChangeResponse,
    ChangeStats,
    ChangeStatsResponse,
    ChangeStatusResponse,
)
from ledger.change_models import (
    ApproveChangeRequest,
    ChangeCreateRequest,
    ChangeListQuery,
    CompleteChangeRequest,
    RejectChangeRequest,
)

CHANGES = "/api/changes"
ONE_CHANGE = CHANGES + "/{change_id:uuid}"
_READ = (200, 401, 403, 404)
_DECIDE = (200, 400, 401, 403, 404, 409)
_TAG = "changes"


def _change_id(call: Call) -> UUID:
    return call.request.path_params["change_id"]


@endpoint(
    "GET",
    CHANGES,
    summary="Lists change requests newest first (status, agent_id, ticket_id, risk_level).",
    role="viewer",
    response=ChangeListResponse,
    statuses=(200, 400, 401, 403),
    query=ChangeListQuery,
    tag=_TAG,
)
async def list_changes(call: Call[None, ChangeListQuery]) -> tuple[int, ChangeListResponse]:
    return 200, ChangeListResponse(
        changes=await call.ledger.list_changes(call.actor.tenant_id, call.query)
    )


@endpoint(
    "GET",
    CHANGES + "/pending",
    summary="Lists the changes waiting for a decision and not expired, soonest expiry first.",
    role="viewer",
    response=ChangeListResponse,
    statuses=(200, 401, 403),
    tag=_TAG,
)
async def pending_changes(call: Call) -> tuple[int, ChangeListResponse]:
    return 200, ChangeListResponse(changes=await call.ledger.pending_changes(call.actor.tenant_id))


@endpoint(
    "GET",
    CHANGES + "/stats",
    summary="Counts change requests by status and risk level.",
    role="viewer",
    response=ChangeStatsResponse,
    statuses=(200, 401, 403),
    tag=_TAG,
)
async def change_stats(call: Call) -> tuple[int, ChangeStatsResponse]:
    stats = await call.ledger.change_stats(call.actor.tenant_id)
    return 200, ChangeStatsResponse(stats=ChangeStats.model_validate(stats))


@endpoint(
    "GET",
    ONE_CHANGE,
    summary="Returns a change request with its approvals.",
    role="viewer",
    response=ChangeResponse,
    statuses=_READ,
    tag=_TAG,
)
async def get_change(call: Call) -> tuple[int, ChangeResponse]:
    return 200, ChangeResponse(
        change=await call.ledger.get_change(call.actor.tenant_id, _change_id(call))
    )


@endpoint(
    "GET",
    ONE_CHANGE + "/status",
    summary="A change's status in brief, for agents to poll.",
    role="viewer",
    response=ChangeStatusResponse,
    statuses=_READ,
    tag=_TAG,
)
async def change_status(call: Call) -> tuple[int, ChangeStatusResponse]:
    return 200, ChangeStatusResponse(
        change=await call.ledger.change_status(call.actor.tenant_id, _change_id(call))
    )


@endpoint(
    "POST",
    CHANGES + "/request",
    summary="Requests a change on a ticket: pending until approved as its risk level's "
    "rule requires, rejected, or expired.",
    role="operator",
    response=ChangeResponse,
    statuses=(201, 400, 401, 403, 404),
    body=ChangeCreateRequest,
    tag=_TAG,
)
async def request_change(call: Call[ChangeCreateRequest, None]) -> tuple[int, ChangeResponse]:
    return 201, ChangeResponse(change=await call.ledger.request_change(call.actor, call.body))


@endpoint(
    "POST",
    ONE_CHANGE + "/approve",
    summary="Approves a pending change (403 for its requester, for the person who put the "
    "requesting agent on the ticket, or for a role its risk level's rule does not name; 409 "
    "with the current status once expired or decided).",
    role="operator",
    response=ChangeResponse,
    statuses=_DECIDE,
    body=ApproveChangeRequest,
    tag=_TAG,
)
async def approve_change(call: Call[ApproveChangeRequest, None]) -> tuple[int, ChangeResponse]:
    change = await call.ledger.approve_change(call.actor, _change_id(call), call.body)
    return 200, ChangeResponse(change=change)


@endpoint(
    "POST",
    ONE_CHANGE + "/reject",
    summary="Rejects a pending change (409 with the current status once expired or decided).",
    role="operator",
    response=ChangeResponse,
    statuses=_DECIDE,
    body=RejectChangeRequest,
    tag=_TAG,
)
async def reject_change(call: Call[RejectChangeRequest, None]) -> tuple[int, ChangeResponse]:
    change = await call.ledger.reject_change(call.actor, _change_id(call), call.body)
    return 200, ChangeResponse(change=change)


@endpoint(
    "POST",
    ONE_CHANGE + "/complete",
    summary="Records that an approved change was carried out, with its result (409 "
    "unless approved).",
    role="operator",
    response=ChangeResponse,
    statuses=_DECIDE,
    body=CompleteChangeRequest,
    tag=_TAG,
)
async def complete_change(call: Call[CompleteChangeRequest, None]) -> tuple[int, ChangeResponse]:
    change = await call.ledger.complete_change(call.actor, _change_id(call), call.body)
    return 200, ChangeResponse(change=change)


ENDPOINTS: list[Endpoint] = [
    list_changes,
    pending_changes,
    change_stats,
    get_change,
    change_status,
    request_change,
    approve_change,
    reject_change,
    complete_change,
]
