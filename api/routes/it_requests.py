"""`/api/it-requests`: IT requests that tasks can be seeded from, each registered as a
ticket."""

from api.endpoints import Call, Endpoint, endpoint
from api.schemas import ITRequestResponse
from ledger.models import ITRequestCreate


@endpoint(
    "POST",
    "/api/it-requests",
    summary="Registers an IT request so tasks can be created from it, and the ticket "
    "it is worked as.",
    role="operator",
    response=ITRequestResponse,
    statuses=(201, 400, 401, 403, 409),
    body=ITRequestCreate,
    tag="it-requests",
)
async def create_it_request(call: Call[ITRequestCreate, None]) -> tuple[int, ITRequestResponse]:
    it_request, ticket = await call.ledger.create_it_request(call.actor, call.body)
    return 201, ITRequestResponse(it_request=it_request, ticket=ticket)


@endpoint(
    "GET",
    "/api/it-requests/{request_number}",
    summary="Returns one IT request and its ticket.",
    role="viewer",
    response=ITRequestResponse,
    statuses=(200, 401, 403, 404),
    tag="it-requests",
)
async def get_it_request(call: Call) -> tuple[int, ITRequestResponse]:
    tenant, number = call.actor.tenant_id, call.path_param("request_number")
    return 200, ITRequestResponse(
        it_request=await call.ledger.get_it_request(tenant, number),
        ticket=await call.ledger.ticket_for_it_request(tenant, number),
    )


ENDPOINTS: list[Endpoint] = [create_it_request, get_it_request]
