"""`/api/search/global`: full-text search over what the tenant works with."""

from api.audit_schemas import GlobalSearchQuery
from api.endpoints import Call, Endpoint, endpoint
from ledger.global_search import SearchResults


@endpoint(
    "GET",
    "/api/search/global",
    summary="Searches the tenant's tickets, notes, agents, change requests and audit "
    "records (Postgres full-text search, websearch syntax), best matches first; what "
    "is searched depends on the caller's role (`searched` lists it). Results show only "
    "text redacted when stored: never a secret.",
    role="viewer",
    response=SearchResults,
    statuses=(200, 400, 401, 403),
    query=GlobalSearchQuery,
    tag="audit",
)
async def search_global(call: Call[None, GlobalSearchQuery]) -> tuple[int, SearchResults]:
    return 200, await call.ledger.search_global(
        call.actor.tenant_id, call.actor.role, call.query.q.strip(), limit=call.query.limit
    )


ENDPOINTS: list[Endpoint] = [search_global]
