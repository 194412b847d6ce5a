"""`/api/tickets`: tickets, their status and assignment, notes, attachment metadata, a
request for information and the requester's answer, the context bundle and access
requests."""

from uuid import UUID

from api.endpoints import Call, Endpoint, endpoint
from api.ticket_schemas import (
    AccessRequestResponse,
    AccessRequestsResponse,
    AttachmentResponse,
    AttachmentsResponse,
    NoteResponse,
    NotesResponse,
    TicketContextResponse,
    TicketCreatedResponse,
    TicketDetailResponse,
    TicketListResponse,
    TicketNoteResponse,
)
from ledger.change_models import AccessRequestCreate
from ledger.ticket_models import (
    AssignmentRequest,
    AttachmentRequest,
    NoteRequest,
    RequestInfoRequest,
    TicketCreateRequest,
    TicketListQuery,
    TicketStatusRequest,
    UserResponseRequest,
)

TICKETS = "/api/tickets"
ONE_TICKET = TICKETS + "/{ticket_id:uuid}"
_READ = (200, 401, 403, 404)
_CHANGE = (200, 400, 401, 403, 404, 409)
_TAG = "tickets"


def ticket_id(call: Call) -> UUID:
    return call.request.path_params["ticket_id"]


@endpoint(
    "GET",
    TICKETS,
    summary="Lists the tenant's tickets, newest first.",
    role="viewer",
    response=TicketListResponse,
    statuses=(200, 400, 401, 403),
    query=TicketListQuery,
    tag=_TAG,
)
async def list_tickets(call: Call[None, TicketListQuery]) -> tuple[int, TicketListResponse]:
    tickets = await call.ledger.list_tickets(call.actor.tenant_id, call.query)
    return 200, TicketListResponse(
        tickets=tickets, limit=call.query.limit, offset=call.query.offset
    )


@endpoint(
    "POST",
    TICKETS,
    summary=(
        "Creates a ticket; its status must be one of its class's workflow. With "
        "auto_assign, an agent starts on it when the agent settings route its class to a "
        "profile with auto_assign; `auto_assign` in the answer says whether one did."
    ),
    role="operator",
    response=TicketCreatedResponse,
    statuses=(201, 400, 401, 403),
    body=TicketCreateRequest,
    tag=_TAG,
)
async def create_ticket(
    call: Call[TicketCreateRequest, None],
) -> tuple[int, TicketCreatedResponse]:
    ticket, auto_assign = await call.ledger.open_ticket(call.actor, call.body)
    return 201, TicketCreatedResponse(ticket=ticket, auto_assign=auto_assign)


@endpoint(
    "GET",
    ONE_TICKET,
    summary="Returns a ticket with its current agent and its change requests.",
    role="viewer",
    response=TicketDetailResponse,
    statuses=_READ,
    tag=_TAG,
)
async def get_ticket(call: Call) -> tuple[int, TicketDetailResponse]:
    tenant, ticket = call.actor.tenant_id, ticket_id(call)
    return 200, TicketDetailResponse(
        ticket=await call.ledger.get_ticket(tenant, ticket),
        agent=await call.ledger.current_agent(tenant, ticket),
        change_requests=await call.ledger.ticket_changes(tenant, ticket),
    )


_STATUS_SUMMARY = (
    "Sets the ticket's status (one of its workflow's; 400 names the allowed ones, 409 "
    "from a closed or cancelled ticket), with a note and an audit record."
)


def _status_endpoint(method: str, path: str, name: str, summary: str) -> Endpoint:
    async def handler(call: Call[TicketStatusRequest, None]) -> tuple[int, TicketNoteResponse]:
        ticket, note = await call.ledger.set_ticket_status(call.actor, ticket_id(call), call.body)
        return 200, TicketNoteResponse(ticket=ticket, note=note)

    handler.__name__ = name  # the route's name and its operationId
    declared = endpoint(
        method,
        path,
        summary=summary,
        role="operator",
        response=TicketNoteResponse,
        statuses=_CHANGE,
        body=TicketStatusRequest,
        tag=_TAG,
    )
    return declared(handler)


set_ticket_status = _status_endpoint(
    "POST", ONE_TICKET + "/status", "set_ticket_status", _STATUS_SUMMARY
)
# The same payload on the ticket itself, for clients that update the resource directly.
compatible_status = [
    _status_endpoint(
        method,
        ONE_TICKET,
        f"{method.lower()}_ticket_status",
        _STATUS_SUMMARY + " The same as POST .../status.",
    )
    for method in ("POST", "PUT", "PATCH")
]


@endpoint(
    "POST",
    ONE_TICKET + "/assignment",
    summary="Reassigns or escalates the ticket (team, owning group, assignee, escalation "
    "tier, priority P1-P4 or 1-4), with an assignment note.",
    role="operator",
    response=TicketNoteResponse,
    statuses=_CHANGE,
    body=AssignmentRequest,
    tag=_TAG,
)
async def assign_ticket(call: Call[AssignmentRequest, None]) -> tuple[int, TicketNoteResponse]:
    ticket, note = await call.ledger.assign_ticket(call.actor, ticket_id(call), call.body)
    return 200, TicketNoteResponse(ticket=ticket, note=note)


@endpoint(
    "POST",
    ONE_TICKET + "/notes",
    summary="Adds a note to the ticket's timeline.",
    role="operator",
    response=NoteResponse,
    statuses=(201, 400, 401, 403, 404),
    body=NoteRequest,
    tag=_TAG,
)
async def add_note(call: Call[NoteRequest, None]) -> tuple[int, NoteResponse]:
    return 201, NoteResponse(
        note=await call.ledger.add_note(call.actor, ticket_id(call), call.body)
    )


@endpoint(
    "GET",
    ONE_TICKET + "/notes",
    summary="Returns the ticket's notes, oldest first.",
    role="viewer",
    response=NotesResponse,
    statuses=_READ,
    tag=_TAG,
)
async def list_notes(call: Call) -> tuple[int, NotesResponse]:
    notes = await call.ledger.list_notes(call.actor.tenant_id, ticket_id(call))
    return 200, NotesResponse(notes=notes)


@endpoint(
    "POST",
    ONE_TICKET + "/attachments",
    summary="Records an attachment's metadata; the content is stored elsewhere.",
    role="operator",
    response=AttachmentResponse,
    statuses=(201, 400, 401, 403, 404),
    body=AttachmentRequest,
    tag=_TAG,
)
async def add_attachment(call: Call[AttachmentRequest, None]) -> tuple[int, AttachmentResponse]:
    attachment = await call.ledger.add_attachment(call.actor, ticket_id(call), call.body)
    return 201, AttachmentResponse(attachment=attachment)


@endpoint(
    "GET",
    ONE_TICKET + "/attachments",
    summary="Returns the ticket's attachments' metadata.",
    role="viewer",
    response=AttachmentsResponse,
    statuses=_READ,
    tag=_TAG,
)
async def list_attachments(call: Call) -> tuple[int, AttachmentsResponse]:
    attachments = await call.ledger.list_attachments(call.actor.tenant_id, ticket_id(call))
    return 200, AttachmentsResponse(attachments=attachments)


@endpoint(
    "POST",
    ONE_TICKET + "/request-info",
    summary="Asks the requester a question (a public note); the ticket waits in "
    "awaiting_user_response for the answer.",
    role="operator",
    response=TicketNoteResponse,
    statuses=_CHANGE,
    body=RequestInfoRequest,
    tag=_TAG,
)
async def request_info(call: Call[RequestInfoRequest, None]) -> tuple[int, TicketNoteResponse]:
    ticket, note = await call.ledger.request_info(call.actor, ticket_id(call), call.body)
    return 200, TicketNoteResponse(ticket=ticket, note=note)


@endpoint(
    "POST",
    ONE_TICKET + "/user-response",
    summary="Records the requester's answer and restores the status the ticket had before "
    "the question (409 when it awaits no answer).",
    role="operator",
    response=TicketNoteResponse,
    statuses=_CHANGE,
    body=UserResponseRequest,
    tag=_TAG,
)
async def user_response(call: Call[UserResponseRequest, None]) -> tuple[int, TicketNoteResponse]:
    ticket, note = await call.ledger.user_response(call.actor, ticket_id(call), call.body)
    return 200, TicketNoteResponse(ticket=ticket, note=note)


@endpoint(
    "GET",
    ONE_TICKET + "/context",
    summary="Returns the ticket's context bundle for the agent working it: the ticket, "
    "notes, attachments, change requests, recent tasks, related tickets, access requests.",
    role="viewer",
    response=TicketContextResponse,
    statuses=_READ,
    tag=_TAG,
)
async def ticket_context(call: Call) -> tuple[int, TicketContextResponse]:
    context = await call.ledger.ticket_context(call.actor.tenant_id, ticket_id(call))
    return 200, TicketContextResponse(context=context)


@endpoint(
    "POST",
    ONE_TICKET + "/access-request",
    summary="Raises an access request: a child ticket for the owning group and a change "
    "gate on this ticket and its agent, which decides the grant.",
    role="operator",
    response=AccessRequestResponse,
    statuses=(201, 400, 401, 403, 404),
    body=AccessRequestCreate,
    tag=_TAG,
)
async def request_access(
    call: Call[AccessRequestCreate, None],
) -> tuple[int, AccessRequestResponse]:
    access = await call.ledger.request_access(call.actor, ticket_id(call), call.body)
    return 201, AccessRequestResponse(access_request=access)


@endpoint(
    "GET",
    ONE_TICKET + "/access-requests",
    summary="Lists the access requests raised for the ticket (or the one it is the child "
    "ticket of), with their child ticket, gate and grant status.",
    role="viewer",
    response=AccessRequestsResponse,
    statuses=_READ,
    tag=_TAG,
)
async def list_access_requests(call: Call) -> tuple[int, AccessRequestsResponse]:
    listed = await call.ledger.list_access_requests(call.actor.tenant_id, ticket_id(call))
    return 200, AccessRequestsResponse(access_requests=listed)


ENDPOINTS: list[Endpoint] = [
    list_tickets,
    create_ticket,
    get_ticket,
    set_ticket_status,
    *compatible_status,
    assign_ticket,
    add_note,
    list_notes,
    add_attachment,
    list_attachments,
    request_info,
    user_response,
    ticket_context,
    request_access,
    list_access_requests,
]
