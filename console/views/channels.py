"""Coordination channels: the workspaces' named channels and each task run's channel
(purpose, allowed message kinds, messages, last activity), the newest runs first; and
one channel with its messages as stored (bodies redacted before they were written),
newest last, replies shown under what they answer, new messages arriving live."""

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from console import live
from console.auth import Me, signed_view
from console.render import is_fragment, page
from console.views.sessions import list_params
from console.views.task_detail import resume_point, task_id_of

PAGE_SIZE = 50
_LIST_PARAMS = frozenset({"cursor"})


async def _list_context(request: Request, me: Me) -> dict[str, Any]:
    params = list_params(request, _LIST_PARAMS)
    listing = await request.app.state.ledger.coordination_channels(
        me.tenant, limit=PAGE_SIZE, cursor=params.get("cursor")
    )
    return {
        "listing": listing,
        "next_link": f"?{urlencode({'cursor': listing.next_cursor})}"
        if listing.next_cursor
        else None,
        "first_link": "?" if "cursor" in params else None,
        "query": urlencode(params),
    }


@signed_view
async def channel_list(request: Request, me: Me) -> Response:
    name = "_channel_rows.html" if is_fragment(request) else "channels.html"
    return page(request, name, await _list_context(request, me))


@signed_view
async def channel_page(request: Request, me: Me) -> Response:
    ledger = request.app.state.ledger
    channel_id = task_id_of(request, "channel_id")
    info = await ledger.coordination_channel(me.tenant, channel_id)
    messages = await ledger.channel_messages(me.tenant, channel_id)
    return page(
        request,
        "channel.html",
        {
            "info": info,
            "c": info.channel,
            "messages": messages,
            "after_seq": messages[-1].message.seq if messages else 0,
            "earlier": bool(messages) and messages[0].message.seq > 1,
        },
    )


@signed_view
async def channel_live(request: Request, me: Me) -> Response:
    channel_id = task_id_of(request, "channel_id")
    after = resume_point(request)
    await request.app.state.ledger.coordination_channel(me.tenant, channel_id)  # 404 first
    return live.channel(request, me, channel_id, after)
