"""What a decided change gate means for the access request it guards, if any: the child
ticket is resolved (granted) or cancelled (rejected, expired), both tickets' timelines
say so, and the agent lifecycle hears `access_granted` or `access_refused` about the
original ticket, to resume its agent. Runs inside the decision's transaction."""

from typing import TYPE_CHECKING

import asyncpg

from ledger.actor import Actor
from ledger.change_models import ChangeRequest
from ledger.sql import query
from ledger.ticket_timeline import TicketEvent, audit_ticket, ticket_record, write_note

if TYPE_CHECKING:
    from ledger.tickets import Tickets

# The child ticket's status once its gate is decided.
_CHILD_STATUS = {"approved": "resolved", "rejected": "cancelled", "expired": "cancelled"}


async def settle_access_gate(
    connection: asyncpg.Connection, tickets: "Tickets", actor: Actor, change: ChangeRequest
) -> None:
    access = await connection.fetchrow(
        query("access_request_for_change"), actor.tenant_id, change.id
    )
    if access is None or change.status not in _CHILD_STATUS:
        return
    granted = change.status == "approved"
    child_id = access["child_ticket_id"]
    child = ticket_record(
        await connection.fetchrow(query("get_ticket"), actor.tenant_id, child_id), child_id
    )
    moved = await connection.fetchrow(
        query("set_ticket_status"),
        actor.tenant_id,
        child_id,
        _CHILD_STATUS[change.status],
        child.status,
        ["closed", "cancelled", "resolved"],
    )
    verdict = "granted" if granted else change.status
    summary = f"Access {verdict}: {access['permission']} on {access['resource']}"
    if moved is not None:
        child = ticket_record(moved, child_id)
    await write_note(
        connection,
        tickets.redactor,
        child,
        actor.tenant_id,
        kind=f"access_{verdict}",
        body=summary,
        author=actor.subject,
        source="system",
        data={"access_request_id": str(access["id"]), "change_id": str(change.id)},
    )
    original = ticket_record(
        await connection.fetchrow(query("get_ticket"), actor.tenant_id, access["ticket_id"]),
        access["ticket_id"],
    )
    note = await write_note(
        connection,
        tickets.redactor,
        original,
        actor.tenant_id,
        kind=f"access_{verdict}",
        body=summary,
        author=actor.subject,
        source="system",
        data={"access_request_id": str(access["id"]), "change_id": str(change.id)},
    )
    await audit_ticket(
        connection,
        tickets.redactor,
        actor,
        f"access_{verdict}",
        original.id,
        {"child_ticket_id": str(child_id), "change_id": str(change.id)},
        target_type="access_request",
        target_id=access["id"],
        agent_id=access["agent_id"],
    )
    await tickets.on_ticket_event(
        connection,
        TicketEvent(
            "access_granted" if granted else "access_refused",
            actor.tenant_id,
            original,
            note,
            detail={
                "access_request_id": str(access["id"]),
                "change_id": str(change.id),
                "agent_id": str(access["agent_id"]) if access["agent_id"] else None,
            },
        ),
    )
