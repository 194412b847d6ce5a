"""`/api/dashboard/*`: the audit feed and the overview."""

from api.audit_schemas import AuditFeedQuery
from api.endpoints import Call, Endpoint, endpoint
from ledger.audit_feed import FeedFilters, FeedPage
from ledger.dashboard import DashboardStats


@endpoint(
    "GET",
    "/api/dashboard/audit",
    summary="The tenant's audit feed, newest first: audit records, the trace events of "
    "its runs and its ticket notes (source audit, event or note), filtered by actor, "
    "action, source, category, level, target, ticket_id, agent_id and q (full-text "
    "search); next_cursor pages on. A viewer sees a ticket's public notes, an operator "
    "or owner its internal ones too.",
    role="viewer",
    response=FeedPage,
    statuses=(200, 400, 401, 403),
    query=AuditFeedQuery,
    tag="audit",
)
async def audit_feed(call: Call[None, AuditFeedQuery]) -> tuple[int, FeedPage]:
    given = call.query.model_dump(exclude={"limit", "cursor"})
    return 200, await call.ledger.audit_feed(
        call.actor,
        FeedFilters(**given),
        limit=call.query.limit,
        cursor=call.query.cursor,
    )


@endpoint(
    "GET",
    "/api/dashboard/stats",
    summary="The tenant's overview: task counts per status, approvals waiting, active "
    "agent sessions and the audit chain's length; a week of daily trends; the latest "
    "activity from the audit feed.",
    role="viewer",
    response=DashboardStats,
    statuses=(200, 401, 403),
    tag="audit",
)
async def dashboard_stats(call: Call) -> tuple[int, DashboardStats]:
    return 200, await call.ledger.dashboard_stats(call.actor)


ENDPOINTS: list[Endpoint] = [audit_feed, dashboard_stats]
