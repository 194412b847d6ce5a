"""Lanes and workers, as the tenant's runs show them: per lane its configuration, the
runs waiting (depth), the oldest waiting's age, scheduled, running and paused runs;
per worker the runs it holds and its last heartbeat; the dead-lettered messages."""

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from console.auth import Me, signed_view
from console.render import is_fragment, page


async def _context(request: Request, me: Me) -> dict[str, Any]:
    ledger = request.app.state.ledger
    loads = await ledger.lane_loads(me.tenant)
    return {
        "lanes": ledger.policy.lanes,
        "loads": loads,
        "workers": await ledger.worker_loads(me.tenant),
        "dead_letters": await ledger.dead_letters(me.tenant),
    }


@signed_view
async def lanes(request: Request, me: Me) -> Response:
    name = "_lanes_body.html" if is_fragment(request) else "lanes.html"
    return page(request, name, await _context(request, me))
