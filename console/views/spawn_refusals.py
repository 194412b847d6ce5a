"""Refused spawns: each `spawn_refused` event the spawn wrote in its parent's trace,
newest first: when, the diagnostic code and message, the parent session and its task,
and what was asked (the order's settings, and the diagnostic's evidence: the widened
permissions, the budget and its count). A refusal is final: nothing waits for a
decision, so they are listed here and not under Approvals."""

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from console.auth import Me, signed_view
from console.render import is_fragment, page
from console.views.sessions import list_params


async def _context(request: Request, me: Me) -> dict[str, Any]:
    list_params(request, frozenset())
    return {"refusals": await request.app.state.ledger.spawn_refusals(me.tenant)}


@signed_view
async def spawn_refusals(request: Request, me: Me) -> Response:
    name = "_refusal_rows.html" if is_fragment(request) else "spawn_refusals.html"
    return page(request, name, await _context(request, me))
