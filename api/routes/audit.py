"""`/api/audit/verify`: whether the tenant's audit chain holds."""

from api.endpoints import Call, Endpoint, endpoint
from ledger.audit_verify import ChainVerification


@endpoint(
    "GET",
    "/api/audit/verify",
    summary="Checks the tenant's hash-chained audit trail from its first record to its "
    "head: whether it holds and, if not, the first record where it breaks and why "
    "(sequence_gap, broken_link, hash_mismatch, head_mismatch).",
    role="viewer",
    response=ChainVerification,
    statuses=(200, 401, 403),
    tag="audit",
)
async def verify_audit(call: Call) -> tuple[int, ChainVerification]:
    return 200, await call.ledger.verify_audit(call.actor.tenant_id)


ENDPOINTS: list[Endpoint] = [verify_audit]
