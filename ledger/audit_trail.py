"""The audit trail as the API reads it: a tenant's chain checked
(`ledger/audit_verify.py`) and its audit feed (`ledger/audit_feed.py`)."""

from ledger.actor import Actor
from ledger.audit_feed import FeedFilters, FeedPage, read_feed
from ledger.audit_verify import ChainVerification, verify_chain
from ledger.reads import Reads


class AuditTrail(Reads):
    async def verify_audit(self, tenant_id: str) -> ChainVerification:
        async with self.pool.acquire() as connection:
            return await verify_chain(connection, tenant_id)

    async def audit_feed(
        self, actor: Actor, filters: FeedFilters, *, limit: int, cursor: str | None
    ) -> FeedPage:
        async with self.pool.acquire() as connection:
            return await read_feed(
                connection, actor.tenant_id, filters, limit=limit, role=actor.role, cursor=cursor
            )
