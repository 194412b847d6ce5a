"""Tickets: the tenant's tickets filtered as the REST list is (status, priority,
assignee, agent_only; in the URL), a page at a time; and one ticket with its fields,
its current agent, its notes as a timeline (source and visibility), attachments'
metadata, change requests, access requests, the tasks worked for it and the steering
events of its agents. A person adds a note (which is how they steer the ticket's agent),
moves the ticket to another status of its workflow, asks the requester a question and
records their answer, and stops, wakes or restarts the ticket's agent; each action is
the REST route's: the same request model, the same ledger method, the same role.

A refusal because the ticket or its agent is not in a state the action leaves from (the
API's 409) is an answer about this ticket: its page again with the refusal in the API's
words, status and code, as a change's page answers one."""

from collections.abc import Awaitable
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from api.endpoints import validate_body, validate_query
from api.errors import ApiError, ledger_status
from console.auth import Me, signed_view
from console.render import PREFIX, is_fragment, page
from console.views.sessions import list_params
from console.views.task_detail import task_id_of
from ledger.errors import Conflict, InvalidTransition
from ledger.states import TERMINAL
from ledger.ticket_agent_models import AgentActionRequest
from ledger.ticket_models import (
    STEERING_SOURCES,
    NoteRequest,
    RequestInfoRequest,
    TicketListQuery,
    TicketStatusRequest,
    UserResponseRequest,
)
from ledger.ticket_workflow import AWAITING_USER_RESPONSE, TERMINAL_STATUSES, TICKET_STATUSES

PAGE_SIZE = 50
_LIST_PARAMS = frozenset({"status", "priority", "assignee", "agent_only", "offset"})
_FINISHED = frozenset(str(status) for status in TERMINAL)
# What the page says when the ledger refuses each action.
_REFUSED = {
    "note": "Note not added",
    "status": "Status not changed",
    "request-info": "Question not sent",
    "user-response": "Answer not recorded",
    "stop": "Agent not stopped",
    "wake": "Agent not woken",
    "restart": "Agent not restarted",
}


def _agent_actions(assignment: dict[str, Any] | None, task_status: str | None) -> list[str]:
    """The lifecycle actions the ledger would take for the ticket's agent now: stop and
    restart while it is assigned, wake only once its last task has finished."""
    if assignment is None or assignment["state"] != "assigned":
        return []
    return ["wake", "restart", "stop"] if task_status in _FINISHED else ["restart", "stop"]


async def _list_context(request: Request, me: Me) -> dict[str, Any]:
    params = list_params(request, _LIST_PARAMS)
    filters = validate_query(TicketListQuery, {**params, "limit": str(PAGE_SIZE)})
    tickets = await request.app.state.ledger.list_tickets(me.tenant, filters)
    kept = {key: value for key, value in params.items() if key != "offset"}
    more = len(tickets) == PAGE_SIZE
    return {
        "tickets": tickets,
        "filters": filters,
        "statuses": TICKET_STATUSES,
        "filtered": bool(kept),
        "rows_url": f"{PREFIX}/tickets/rows?{urlencode(params)}",
        "next_link": f"?{urlencode({**kept, 'offset': filters.offset + PAGE_SIZE})}"
        if more
        else None,
        "first_link": f"?{urlencode(kept)}" if filters.offset else None,
    }


@signed_view
async def ticket_list(request: Request, me: Me) -> Response:
    context = await _list_context(request, me)
    name = "_ticket_rows.html" if is_fragment(request) else "tickets.html"
    return page(request, name, context)


@signed_view
async def ticket_rows(request: Request, me: Me) -> Response:
    return page(request, "_ticket_rows.html", await _list_context(request, me))


async def _detail_context(request: Request, me: Me) -> dict[str, Any]:
    ledger = request.app.state.ledger
    ticket_id = task_id_of(request, "ticket_id")
    context = await ledger.ticket_context(me.tenant, ticket_id)
    assignment = (
        await ledger.ticket_agent(me.tenant, context.agent.agent_id)
        if context.agent.agent_id
        else None
    )
    return {
        "c": context,
        "ticket": context.ticket,
        "steering": await ledger.ticket_steering(me.tenant, ticket_id),
        "assignment": assignment,
        # As steering decides: a note reaches an assigned agent whose task has not ended.
        "agent_active": context.agent.agent_id is not None
        and context.agent.task_status not in (None, *_FINISHED),
        "agent_actions": _agent_actions(assignment, context.agent.task_status),
        "terminal": context.ticket.status in TERMINAL_STATUSES,
        "awaiting_answer": context.ticket.status == AWAITING_USER_RESPONSE,
        "other_statuses": [s for s in TICKET_STATUSES if s != context.ticket.status],
        "steering_sources": STEERING_SOURCES,
    }


@signed_view
async def ticket_page(request: Request, me: Me) -> Response:
    context = await _detail_context(request, me)
    context["done"] = request.query_params.get("done")
    return page(request, "ticket.html", context)


@signed_view
async def ticket_body(request: Request, me: Me) -> Response:
    return page(request, "_ticket_body.html", await _detail_context(request, me))


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str)}


async def _act(
    request: Request, me: Me, ticket_id: UUID, action: str, work: Awaitable[object]
) -> Response:
    """Run one action of the ticket's page, then show the page again: after a redirect
    saying what was done, or at once with the ledger's refusal."""
    try:
        await work
    except (Conflict, InvalidTransition) as refused:
        context = await _detail_context(request, me)
        context["refused"] = {
            "what": _REFUSED[action],
            "status_code": ledger_status(refused),
            "code": refused.code,
            "message": refused.message,
        }
        return page(request, "ticket.html", context, status_code=ledger_status(refused))
    return RedirectResponse(f"{PREFIX}/tickets/{ticket_id}?done={action}", status_code=303)


@signed_view
async def add_note(request: Request, me: Me) -> Response:
    """`POST /api/tickets/{id}/notes` from the console: a person's note (source
    `dashboard`), which steers the ticket's active agent."""
    actor = me.principal.actor_for("operator")
    ticket_id = task_id_of(request, "ticket_id")
    form = await _form(request)
    body = validate_body(
        NoteRequest,
        {
            "body": form.get("body", "").strip(),
            "visibility": form.get("visibility", "internal"),
            "source": "dashboard",
        },
    )
    ledger = request.app.state.ledger
    return await _act(request, me, ticket_id, "note", ledger.add_note(actor, ticket_id, body))


@signed_view
async def set_status(request: Request, me: Me) -> Response:
    """`POST /api/tickets/{id}/status` from the console."""
    actor = me.principal.actor_for("operator")
    ticket_id = task_id_of(request, "ticket_id")
    form = await _form(request)
    body = validate_body(
        TicketStatusRequest, {"status": form.get("status", ""), "reason": form.get("reason", "")}
    )
    moved = request.app.state.ledger.set_ticket_status(actor, ticket_id, body)
    return await _act(request, me, ticket_id, "status", moved)


@signed_view
async def request_info(request: Request, me: Me) -> Response:
    """`POST /api/tickets/{id}/request-info` from the console: a question to the
    requester (a public note); the ticket awaits their answer."""
    actor = me.principal.actor_for("operator")
    ticket_id = task_id_of(request, "ticket_id")
    form = await _form(request)
    body = validate_body(RequestInfoRequest, {"question": form.get("question", "").strip()})
    asked = request.app.state.ledger.request_info(actor, ticket_id, body)
    return await _act(request, me, ticket_id, "request-info", asked)


@signed_view
async def user_response(request: Request, me: Me) -> Response:
    """`POST /api/tickets/{id}/user-response` from the console: the requester's answer,
    which restores the status before the question and resumes the ticket's agent."""
    actor = me.principal.actor_for("operator")
    ticket_id = task_id_of(request, "ticket_id")
    form = await _form(request)
    # Left empty, the answer is recorded as the signed-in person's, as the API does.
    author = form.get("author", "").strip()
    body = validate_body(
        UserResponseRequest,
        {"body": form.get("body", "").strip(), **({"author": author} if author else {})},
    )
    answered = request.app.state.ledger.user_response(actor, ticket_id, body)
    return await _act(request, me, ticket_id, "user-response", answered)


@signed_view
async def agent_action(request: Request, me: Me) -> Response:
    """stop, wake, restart the ticket's agent: as `POST /api/agents/{id}/<action>`."""
    actor = me.principal.actor_for("operator")
    ticket_id = task_id_of(request, "ticket_id")
    agent_id = task_id_of(request, "agent_id")
    action = str(request.path_params["action"])
    ledger = request.app.state.ledger
    lifecycle = {
        "stop": ledger.stop_agent,
        "wake": ledger.wake_agent,
        "restart": ledger.restart_agent,
    }.get(action)
    if lifecycle is None:
        raise ApiError(404, "not_found", "no such route")
    agent = await ledger.get_agent(me.tenant, agent_id)
    if agent.ticket_id != ticket_id:
        raise ApiError(404, "not_found", "this ticket has no such agent")
    form = await _form(request)
    body = validate_body(AgentActionRequest, {"reason": form.get("reason", "").strip()})
    return await _act(request, me, ticket_id, action, lifecycle(actor, agent_id, body.reason))
