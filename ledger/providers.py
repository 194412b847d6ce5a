"""Where tickets live besides this ledger: the provider interface, and the one provider
there is, `local` (the ledger is the ticket's only record).

An adapter for an outside ticketing system (iTop, ServiceNow, Jira) implements
`TicketProvider` and is added to `PROVIDERS`. The ledger calls a provider after the
change it reports has committed, never inside a transaction (an outside system's answer
must not hold rows locked), and stores what it answered as the ticket's
`provider_sync_status` and `external_url`.
"""

from dataclasses import dataclass
from typing import Protocol

from ledger.ticket_models import Ticket


@dataclass(frozen=True)
class ProviderSync:
    """What a provider answered: `local_only`, `synced`, `closed`, or `failed`."""

    status: str
    external_url: str | None = None


class TicketProvider(Protocol):
    name: str
    description: str

    def configured(self) -> bool:
        """True when the provider can reach its system (its settings are present)."""
        ...

    async def push(self, ticket: Ticket) -> ProviderSync:
        """Create or update the ticket's record at the provider."""
        ...

    async def close(self, ticket: Ticket, reason: str) -> ProviderSync:
        """Close the ticket's record at the provider (the ticket was resolved or closed
        with close_provider: true)."""
        ...


class LocalProvider:
    name = "local"
    description = "The ledger is the ticket's only record; nothing is synced elsewhere."

    def configured(self) -> bool:
        return True

    async def push(self, ticket: Ticket) -> ProviderSync:
        return ProviderSync("local_only")

    async def close(self, ticket: Ticket, reason: str) -> ProviderSync:
        return ProviderSync("local_only")


PROVIDERS: dict[str, TicketProvider] = {provider.name: provider for provider in [LocalProvider()]}


def provider_for(ticket: Ticket) -> TicketProvider:
    # A ticket names a provider that was registered when it was created; one removed
    # since is treated as local (nothing to sync with).
    return PROVIDERS.get(ticket.provider, PROVIDERS["local"])
