"""Agent sessions: the tenant's sessions (state, agent, model, task, lineage depth,
parent, TTL, last activity), filtered by state in the URL, a page at a time; and one
session with its lineage as a tree, its permissions, its spawn budget and what a new
spawn would be counted against, its leases (its task's runs) and the channels it sees.
Read from `ledger/runtime_overview.py`, in the agent routes' shapes; both follow the
tenant's changes live."""

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from api.errors import ApiError
from console.auth import Me, signed_view
from console.render import PREFIX, is_fragment, page
from console.views.task_detail import task_id_of
from ledger.runtime_overview import SESSION_STATES

PAGE_SIZE = 50
_LIST_PARAMS = frozenset({"state", "cursor"})


def list_params(request: Request, allowed: frozenset[str]) -> dict[str, str]:
    """The query's non-empty values; a parameter the screen does not take is a 400, as
    the REST lists answer one."""
    params = {key: value for key, value in request.query_params.items() if value != ""}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ApiError(
            400, "invalid_request", f"unknown query parameters: {', '.join(unknown)}", {}
        )
    if any("\x00" in value for value in params.values()):
        raise ApiError(400, "invalid_request", "the request contains a NUL character")
    return params


async def _list_context(request: Request, me: Me) -> dict[str, Any]:
    params = list_params(request, _LIST_PARAMS)
    state = params.get("state")
    listing = await request.app.state.ledger.agent_sessions(
        me.tenant, state=state, limit=PAGE_SIZE, cursor=params.get("cursor")
    )
    kept = {"state": state} if state else {}
    return {
        "sessions": listing.sessions,
        "state": state,
        "states": SESSION_STATES,
        "rows_url": f"{PREFIX}/sessions/rows?{urlencode(params)}",
        "next_link": f"?{urlencode({**kept, 'cursor': listing.next_cursor})}"
        if listing.next_cursor
        else None,
        "first_link": f"?{urlencode(kept)}" if "cursor" in params else None,
        # A filtered page stops reading after a bound: it may be short with more after.
        "cut": bool(state and listing.next_cursor and len(listing.sessions) < PAGE_SIZE),
    }


@signed_view
async def session_list(request: Request, me: Me) -> Response:
    context = await _list_context(request, me)
    name = "_session_rows.html" if is_fragment(request) else "sessions.html"
    return page(request, name, context)


@signed_view
async def session_rows(request: Request, me: Me) -> Response:
    return page(request, "_session_rows.html", await _list_context(request, me))


async def _detail_context(request: Request, me: Me) -> dict[str, Any]:
    ledger = request.app.state.ledger
    detail = await ledger.agent_session(me.tenant, task_id_of(request, "session_id"))
    session = detail.summary.session
    return {
        "detail": detail,
        "s": session,
        "task": detail.summary.task,
        "runs": await ledger.task_runs(me.tenant, session.task_id),
    }


@signed_view
async def session_page(request: Request, me: Me) -> Response:
    return page(request, "session.html", await _detail_context(request, me))


@signed_view
async def session_body(request: Request, me: Me) -> Response:
    return page(request, "_session_body.html", await _detail_context(request, me))
