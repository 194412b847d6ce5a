"""A ticket's timeline and audit trail, written inside the transaction of the change
they record: a note (`write_note`), an audit record (`audit_ticket`), and the event the
agent lifecycle hears (`TicketEvent`, through `Tickets.on_ticket_event`)."""

from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import UUID, uuid4

import asyncpg

from ledger.actor import Actor
from ledger.audit import record_audit
from ledger.errors import NotFound
from ledger.redaction import Redactor
from ledger.sql import query
from ledger.ticket_models import Ticket, TicketNote

TicketEventKind = Literal[
    "ticket_created", "note_added", "user_responded", "access_granted", "access_refused"
]
_AUDIT_CATEGORIES = {
    "ticket": "ticket",
    "change_request": "change",
    "access_request": "access",
    "ticket_agent": "agent",
}


@dataclass(frozen=True)
class TicketEvent:
    """Something the agent lifecycle may act on: a ticket created (with `auto_assign` in
    `detail`), a note added (its `source` says whether it may steer), the requester's
    answer (the agent may resume), an access request's gate decided."""

    kind: TicketEventKind
    tenant_id: str
    ticket: Ticket
    note: TicketNote | None = None
    detail: dict[str, Any] = field(default_factory=dict)


async def write_note(
    connection: asyncpg.Connection,
    redactor: Redactor,
    ticket: Ticket,
    tenant_id: str,
    *,
    kind: str,
    body: str,
    author: str,
    source: str,
    visibility: str = "internal",
    data: dict[str, Any] | None = None,
) -> TicketNote:
    """Append one note to `ticket`'s timeline, redacted. Call it inside the transaction
    of the change it records."""
    row = await connection.fetchrow(
        query("insert_ticket_note"),
        uuid4(),
        tenant_id,
        ticket.id,
        kind,
        redactor.text(body),
        author,
        source,
        visibility,
        redactor.value(data or {}),
    )
    return TicketNote.model_validate(dict(row))


async def audit_ticket(
    connection: asyncpg.Connection,
    redactor: Redactor,
    actor: Actor,
    action: str,
    ticket_id: UUID,
    detail: dict[str, Any],
    *,
    target_type: str = "ticket",
    target_id: UUID | None = None,
    agent_id: UUID | None = None,
) -> None:
    """The audit record of a ticket's, a change's or an access request's transition,
    attributed to the authenticated caller."""
    await record_audit(
        connection,
        tenant_id=actor.tenant_id,
        actor=actor.subject,
        action=action,
        target_type=target_type,
        target_id=str(target_id or ticket_id),
        category=_AUDIT_CATEGORIES[target_type],
        ticket_id=str(ticket_id),
        agent_id=str(agent_id) if agent_id else None,
        detail={**detail, "role": actor.role},
        redactor=redactor,
    )


def ticket_record(row: asyncpg.Record | None, ticket_id: UUID) -> Ticket:
    if row is None:
        raise NotFound("ticket not found", ticket_id=str(ticket_id))
    return Ticket.model_validate(dict(row))
