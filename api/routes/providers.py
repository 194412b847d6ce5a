"""`/api/providers`: the ticket providers registered (`ledger/providers.py`)."""

from api.endpoints import Call, Endpoint, endpoint
from api.ticket_schemas import ProviderInfo, ProvidersResponse
from ledger.providers import PROVIDERS


@endpoint(
    "GET",
    "/api/providers",
    summary="Lists the registered ticket providers and whether each is configured.",
    role="viewer",
    response=ProvidersResponse,
    statuses=(200, 401, 403),
    tag="providers",
)
async def list_providers(call: Call) -> tuple[int, ProvidersResponse]:
    return 200, ProvidersResponse(
        providers=[
            ProviderInfo(
                name=provider.name,
                description=provider.description,
                configured=provider.configured(),
            )
            for provider in PROVIDERS.values()
        ]
    )


ENDPOINTS: list[Endpoint] = [list_providers]
