"""The audit trail as the API reads it: a tenant's chain checked (`ledger/audit_verify.py`)."""

from ledger.audit_verify import ChainVerification, verify_chain
from ledger.reads import Reads


class AuditTrail(Reads):
    async def verify_audit(self, tenant_id: str) -> ChainVerification:
        async with self.pool.acquire() as connection:
            return await verify_chain(connection, tenant_id)
