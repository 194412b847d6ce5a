"""Who acts on the ledger."""

from dataclasses import dataclass

from ledger.policy import Role


@dataclass(frozen=True)
class Actor:
    """Who acts, for which tenant, with which effective role."""

    subject: str
    tenant_id: str
    role: Role
