"""The audit feed: the tenant's audit records, the trace events of its runs and its
ticket notes (source audit, event or note) newest first, filtered as the REST feed is
(`GET /api/dashboard/audit`: actor, action, source, category, level, q, ticket_id, and
target and agent_id from a link) in the URL, a page at a time by cursor; notes as the
person's role may read them. "Verify chain" checks the tenant's hash chain
(`GET /api/audit/verify`) and shows that it holds, or the first record where it breaks
with that record as it is stored now."""

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from api.audit_schemas import AuditFeedQuery
from api.endpoints import validate_query
from console.auth import Me, signed_view
from console.render import is_fragment, page
from console.views.sessions import list_params
from ledger.audit import AUDIT_LEVELS
from ledger.audit_feed import SOURCES, FeedFilters

PAGE_SIZE = 50
_FILTERS = (
    "actor",
    "action",
    "source",
    "category",
    "level",
    "q",
    "ticket_id",
    "target",
    "agent_id",
)
_LIST_PARAMS = frozenset({*_FILTERS, "cursor"})


async def _feed_context(request: Request, me: Me) -> dict[str, Any]:
    params = list_params(request, _LIST_PARAMS)
    query = validate_query(AuditFeedQuery, {**params, "limit": str(PAGE_SIZE)})
    given = query.model_dump(exclude={"limit", "cursor"})
    feed = await request.app.state.ledger.audit_feed(
        me.principal.actor_for("viewer"), FeedFilters(**given), limit=PAGE_SIZE, cursor=query.cursor
    )
    kept = {key: value for key, value in params.items() if key != "cursor"}
    return {
        "entries": feed.entries,
        "filters": query,
        "sources": SOURCES,
        "levels": AUDIT_LEVELS,
        "filtered": bool(kept),
        "next_link": f"?{urlencode({**kept, 'cursor': feed.next_cursor})}"
        if feed.next_cursor
        else None,
        "first_link": f"?{urlencode(kept)}" if "cursor" in params else None,
    }


@signed_view
async def audit_feed(request: Request, me: Me) -> Response:
    context = await _feed_context(request, me)
    name = "_audit_rows.html" if is_fragment(request) else "audit.html"
    return page(request, name, context)


@signed_view
async def verify(request: Request, me: Me) -> Response:
    list_params(request, frozenset())
    ledger = request.app.state.ledger
    verification = await ledger.verify_audit(me.tenant)
    broken = verification.first_break
    context = {
        "verification": verification,
        "record": await ledger.audit_record(me.tenant, broken.seq) if broken else None,
    }
    name = "_verification.html" if is_fragment(request) else "audit_verify.html"
    return page(request, name, context)
