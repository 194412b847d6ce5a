"""What the operator console reads of the operations data beyond the API's own reads:
the change requests with the ones waiting for a decision first, a ticket's agent as it
was assigned and its steering events (the notes that reached, or wait to reach, its
agents), and one audit record as stored (where a verify found its chain broken).
Read-only, scoped to the tenant, each a named query of `queries/console_operations.sql`,
in the shapes the API returns where it has one (`ChangeRequest`, `SteeringEvent`).
Everything else the operations screens show comes from the methods the REST routes
call."""

from typing import Any
from uuid import UUID

from ledger.change_models import ChangeRequest
from ledger.policy import RiskLevel
from ledger.reads import Reads
from ledger.sql import query
from ledger.steering import SteeringEvent

# The status of a change waiting for a decision (`ledger/changes.py`), listed first.
WAITING = "pending"
# The newest steering events a ticket's page shows.
STEERING_LIMIT = 100


class OperationsOverview(Reads):
    async def changes_pending_first(
        self,
        tenant_id: str,
        *,
        status: str | None,
        risk_level: RiskLevel | None,
        limit: int,
        offset: int,
    ) -> list[ChangeRequest]:
        rows = await self.pool.fetch(
            query("console_changes"), tenant_id, status, risk_level, limit, offset, WAITING
        )
        return [ChangeRequest.model_validate(dict(row)) for row in rows]

    async def ticket_steering(self, tenant_id: str, ticket_id: UUID) -> list[SteeringEvent]:
        rows = await self.pool.fetch(
            query("console_ticket_steering"), tenant_id, ticket_id, STEERING_LIMIT
        )
        return [SteeringEvent.model_validate(dict(row)) for row in rows]

    async def ticket_agent(self, tenant_id: str, agent_id: UUID) -> dict[str, Any] | None:
        """How the agent working a ticket was assigned: its state, lane, model and
        profile, who assigned it and whom it replaces; None when there is no such agent."""
        row = await self.pool.fetchrow(query("console_ticket_agent"), tenant_id, agent_id)
        return None if row is None else dict(row)

    async def audit_record(self, tenant_id: str, seq: int) -> dict[str, Any] | None:
        """Record `seq` of the tenant's chain as stored, or None (it is missing)."""
        row = await self.pool.fetchrow(query("console_audit_record"), tenant_id, seq)
        return None if row is None else dict(row)
