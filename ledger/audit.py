"""The audit trail: `record_audit` appends who did what to which object to the tenant's
hash chain, inside the caller's transaction, so the record commits or rolls back with
the change it describes.

The chain, its canonical form and how appends in one tenant take turns are described in
`migrations/0012_audit_chain.sql`; `ledger/audit_verify.py` checks a chain.
"""

from datetime import datetime
from functools import cache
from typing import Any, Literal

import asyncpg
from pydantic import BaseModel, ConfigDict

from ledger.policy import load_policy
from ledger.redaction import Redactor
from ledger.sql import query

AuditLevel = Literal["info", "warning", "error", "critical"]
AUDIT_LEVELS: tuple[AuditLevel, ...] = ("info", "warning", "error", "critical")


class AuditRecord(BaseModel):
    """One record of a tenant's audit chain, as stored."""

    model_config = ConfigDict(extra="ignore", from_attributes=True)

    seq: int
    created_at: datetime
    actor: str
    action: str
    target_type: str
    target_id: str
    category: str
    level: AuditLevel
    ticket_id: str | None
    agent_id: str | None
    detail: dict[str, Any]
    prev_hash: str
    hash: str


@cache
def _default_redactor() -> Redactor:
    return Redactor(load_policy().secret_keys)


async def record_audit(
    conn: asyncpg.Connection,
    *,
    tenant_id: str,
    actor: str,
    action: str,
    target_type: str,
    target_id: str,
    category: str,
    level: AuditLevel = "info",
    ticket_id: str | None = None,
    agent_id: str | None = None,
    detail: dict[str, Any] | None = None,
    redactor: Redactor | None = None,
) -> AuditRecord:
    """Append one record to `tenant_id`'s chain. Call it inside the transaction that
    makes the change it records: the tenant's chain head stays locked until that
    transaction ends, so keep the rest of it short. `detail` is redacted (by `redactor`,
    else by the lanes file's secret keys) before it is hashed and stored."""
    if level not in AUDIT_LEVELS:
        raise ValueError(f"audit level must be one of {AUDIT_LEVELS}, not {level!r}")
    redact = redactor or _default_redactor()
    row = await conn.fetchrow(
        query("append_audit_record"),
        tenant_id,
        actor,
        action,
        target_type,
        # A target may be a URL or a connection string with a credential in it.
        redact.text(target_id),
        category,
        level,
        ticket_id,
        agent_id,
        redact.value(detail or {}),
    )
    return AuditRecord.model_validate(dict(row))
