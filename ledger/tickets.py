"""Tickets: create, list, read, change status, assign, notes, attachment metadata, and
a request for information with the requester's answer.

Every change is one guarded statement plus a note on the ticket's timeline and an audit
record, in one transaction; a ticket the caller's tenant does not own is not found. The
agent lifecycle hears of what happened through `on_ticket_event`, inside the same
transaction, so what it does with it (a steering event, a resumed agent) commits or rolls
back with the change.
"""

from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import UUID, uuid4

import asyncpg

from ledger.actor import Actor
from ledger.audit import record_audit
from ledger.errors import BadRequest, Conflict, NotFound
from ledger.providers import ProviderSync, provider_for
from ledger.reads import Reads
from ledger.redaction import Redactor
from ledger.sql import query
from ledger.ticket_models import (
    AssignmentRequest,
    AttachmentRequest,
    CurrentAgent,
    NoteRequest,
    RequestInfoRequest,
    Ticket,
    TicketAttachment,
    TicketCreateRequest,
    TicketListQuery,
    TicketNote,
    TicketStatusRequest,
    UserResponseRequest,
)
from ledger.ticket_workflow import (
    AWAITING_USER_RESPONSE,
    TERMINAL_STATUSES,
    allowed_statuses,
    in_workflow,
)

TicketEventKind = Literal[
    "ticket_created", "note_added", "user_responded", "access_granted", "access_refused"
]
_CLOSING = frozenset({"resolved", "closed"})


@dataclass(frozen=True)
class TicketEvent:
    """Something the agent lifecycle may act on: a ticket created (with `auto_assign` in
    `detail`), a note added (its `source` says whether it may steer), the requester's
    answer (the agent may resume), an access request's gate decided."""

    kind: TicketEventKind
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
        category="ticket" if target_type == "ticket" else "change",
        ticket_id=str(ticket_id),
        agent_id=str(agent_id) if agent_id else None,
        detail={**detail, "role": actor.role},
        redactor=redactor,
    )


def ticket_record(row: asyncpg.Record | None, ticket_id: UUID) -> Ticket:
    if row is None:
        raise NotFound("ticket not found", ticket_id=str(ticket_id))
    return Ticket.model_validate(dict(row))


class Tickets(Reads):
    async def on_ticket_event(self, connection: asyncpg.Connection, event: TicketEvent) -> None:
        """The agent lifecycle's hook, called inside the transaction of each event; a
        mixin placed before this one in `Ledger` overrides it. Tickets alone do nothing
        more with an event."""

    async def get_ticket(self, tenant_id: str, ticket_id: UUID) -> Ticket:
        return ticket_record(
            await self.pool.fetchrow(query("get_ticket"), tenant_id, ticket_id), ticket_id
        )

    async def current_agent(self, tenant_id: str, ticket_id: UUID) -> CurrentAgent:
        row = await self.pool.fetchrow(query("ticket_current_agent"), tenant_id, ticket_id)
        if row is None:
            raise NotFound("ticket not found", ticket_id=str(ticket_id))
        return CurrentAgent.model_validate(dict(row))

    async def list_tickets(self, tenant_id: str, filters: TicketListQuery) -> list[Ticket]:
        rows = await self.pool.fetch(
            query("list_tickets"),
            tenant_id,
            filters.status,
            filters.priority,
            filters.assignee,
            filters.agent_only,
            filters.limit,
            filters.offset,
        )
        return [Ticket.model_validate(dict(row)) for row in rows]

    async def create_ticket(
        self,
        actor: Actor,
        request: TicketCreateRequest,
        *,
        connection: asyncpg.Connection | None = None,
        parent_ticket_id: UUID | None = None,
        owning_group: str | None = None,
        it_request_number: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> Ticket:
        """A new ticket, its audit record and the `ticket_created` event; in
        `connection`'s transaction when given (an access request's child ticket)."""
        if not in_workflow(request.ticket_class, request.status):
            raise _outside_workflow(request.ticket_class, request.status)
        if connection is None:
            async with self.pool.acquire() as connection, connection.transaction():
                ticket = await self._insert_ticket(
                    connection,
                    actor,
                    request,
                    parent_ticket_id,
                    owning_group,
                    it_request_number,
                    details,
                )
            return await self._synced(actor, ticket, await provider_for(ticket).push(ticket))
        return await self._insert_ticket(
            connection, actor, request, parent_ticket_id, owning_group, it_request_number, details
        )

    async def _insert_ticket(
        self,
        connection: asyncpg.Connection,
        actor: Actor,
        request: TicketCreateRequest,
        parent_ticket_id: UUID | None,
        owning_group: str | None,
        it_request_number: str | None,
        details: dict[str, Any] | None,
    ) -> Ticket:
        row = await connection.fetchrow(
            query("insert_ticket"),
            uuid4(),
            actor.tenant_id,
            self.redactor.text(request.title),
            self.redactor.text(request.description),
            request.ticket_class,
            request.status,
            request.priority,
            request.created_by or actor.subject,
            owning_group,
            owning_group,
            parent_ticket_id,
            it_request_number,
            it_request_number,
            self.redactor.value({**(details or {}), "auto_assign": request.auto_assign}),
        )
        ticket = Ticket.model_validate(dict(row))
        await audit_ticket(
            connection,
            self.redactor,
            actor,
            "ticket_created",
            ticket.id,
            {"ticket_class": ticket.ticket_class, "status": ticket.status},
        )
        await self.on_ticket_event(
            connection,
            TicketEvent("ticket_created", ticket, detail={"auto_assign": request.auto_assign}),
        )
        return ticket

    async def _synced(self, actor: Actor, ticket: Ticket, sync: ProviderSync) -> Ticket:
        row = await self.pool.fetchrow(
            query("set_ticket_provider_sync"),
            actor.tenant_id,
            ticket.id,
            sync.status,
            sync.external_url,
        )
        return ticket_record(row, ticket.id)

    async def set_ticket_status(
        self, actor: Actor, ticket_id: UUID, request: TicketStatusRequest
    ) -> tuple[Ticket, TicketNote]:
        """Move the ticket to a status of its workflow (400 naming the allowed ones
        otherwise; 409 from a closed or cancelled ticket). Resolving or closing it with
        `close_provider` closes the provider's record too, once the change committed."""
        ticket = await self.get_ticket(actor.tenant_id, ticket_id)
        if not in_workflow(ticket.ticket_class, request.status):
            raise _outside_workflow(ticket.ticket_class, request.status)
        on_behalf = request.actor or actor.subject
        async with self.pool.acquire() as connection, connection.transaction():
            moved = await connection.fetchrow(
                query("set_ticket_status"),
                actor.tenant_id,
                ticket_id,
                request.status,
                ticket.status,
                list(TERMINAL_STATUSES),
            )
            if moved is None:
                raise await self._status_conflict(
                    actor.tenant_id, ticket_id, "change the status of"
                )
            updated = Ticket.model_validate(dict(moved))
            reason = self.redactor.text(request.reason)
            note = await write_note(
                connection,
                self.redactor,
                updated,
                actor.tenant_id,
                kind="status_change",
                body=f"Status {ticket.status} -> {updated.status} by {on_behalf}"
                + (f": {reason}" if reason else ""),
                author=on_behalf,
                source="system",
                data={"from": ticket.status, "to": updated.status, "reason": reason},
            )
            await audit_ticket(
                connection,
                self.redactor,
                actor,
                "ticket_status_changed",
                ticket_id,
                {
                    "from": ticket.status,
                    "to": updated.status,
                    "reason": reason,
                    "on_behalf_of": on_behalf,
                    "close_provider": request.close_provider,
                },
            )
        if request.close_provider and updated.status in _CLOSING:
            updated = await self._synced(
                actor, updated, await provider_for(updated).close(updated, reason)
            )
        return updated, note

    async def _status_conflict(self, tenant_id: str, ticket_id: UUID, action: str) -> Conflict:
        """Why a guarded ticket update matched nothing: the ticket is gone (404) or its
        status is not the one the change started from."""
        current = await self.get_ticket(tenant_id, ticket_id)
        return Conflict(
            f"cannot {action} a ticket that is {current.status}",
            current_status=current.status,
        )

    async def assign_ticket(
        self, actor: Actor, ticket_id: UUID, request: AssignmentRequest
    ) -> tuple[Ticket, TicketNote]:
        fields = request.model_dump(exclude={"actor", "reason"}, exclude_none=True)
        if not fields:
            raise BadRequest(
                "an assignment names at least one of assignee_team, owning_group, assignee, "
                "escalation_tier, priority",
                field="assignee",
            )
        on_behalf = request.actor or actor.subject
        async with self.pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                query("assign_ticket"),
                actor.tenant_id,
                ticket_id,
                request.assignee_team,
                request.owning_group,
                request.assignee,
                request.priority,
                list(TERMINAL_STATUSES),
            )
            if row is None:
                raise await self._status_conflict(actor.tenant_id, ticket_id, "reassign")
            ticket = Ticket.model_validate(dict(row))
            reason = self.redactor.text(request.reason)
            summary = ", ".join(f"{name}={value}" for name, value in fields.items())
            note = await write_note(
                connection,
                self.redactor,
                ticket,
                actor.tenant_id,
                kind="assignment",
                body=f"Assignment by {on_behalf}: {summary}" + (f". {reason}" if reason else ""),
                author=on_behalf,
                source="system",
                data={**fields, "reason": reason},
            )
            await audit_ticket(
                connection,
                self.redactor,
                actor,
                "ticket_assigned",
                ticket_id,
                {**fields, "reason": reason, "on_behalf_of": on_behalf},
            )
        return ticket, note

    async def add_note(self, actor: Actor, ticket_id: UUID, request: NoteRequest) -> TicketNote:
        """A note from a person, a provider or an agent; the `note_added` event lets the
        agent lifecycle steer the ticket's agent with it."""
        ticket = await self.get_ticket(actor.tenant_id, ticket_id)
        async with self.pool.acquire() as connection, connection.transaction():
            note = await write_note(
                connection,
                self.redactor,
                ticket,
                actor.tenant_id,
                kind="note",
                body=request.body,
                author=request.author or actor.subject,
                source=request.source,
                visibility=request.visibility,
                data={"recorded_by": actor.subject},
            )
            await audit_ticket(
                connection,
                self.redactor,
                actor,
                "ticket_note_added",
                ticket_id,
                {"note_id": str(note.id), "source": note.source, "visibility": note.visibility},
            )
            await self.on_ticket_event(connection, TicketEvent("note_added", ticket, note))
        return note

    async def list_notes(
        self, tenant_id: str, ticket_id: UUID, limit: int = 500
    ) -> list[TicketNote]:
        await self.get_ticket(tenant_id, ticket_id)
        rows = await self.pool.fetch(query("list_ticket_notes"), tenant_id, ticket_id, limit)
        return [TicketNote.model_validate(dict(row)) for row in rows]

    async def add_attachment(
        self, actor: Actor, ticket_id: UUID, request: AttachmentRequest
    ) -> TicketAttachment:
        ticket = await self.get_ticket(actor.tenant_id, ticket_id)
        async with self.pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                query("insert_ticket_attachment"),
                uuid4(),
                actor.tenant_id,
                ticket.id,
                self.redactor.text(request.filename),
                request.content_type,
                request.size_bytes,
                # A reference may be a signed URL: its signature is a secret.
                self.redactor.text(request.storage_ref),
                request.sha256,
                actor.subject,
            )
            attachment = TicketAttachment.model_validate(dict(row))
            await audit_ticket(
                connection,
                self.redactor,
                actor,
                "ticket_attachment_added",
                ticket_id,
                {"attachment_id": str(attachment.id), "filename": attachment.filename},
            )
        return attachment

    async def list_attachments(self, tenant_id: str, ticket_id: UUID) -> list[TicketAttachment]:
        await self.get_ticket(tenant_id, ticket_id)
        rows = await self.pool.fetch(query("list_ticket_attachments"), tenant_id, ticket_id)
        return [TicketAttachment.model_validate(dict(row)) for row in rows]

    async def request_info(
        self, actor: Actor, ticket_id: UUID, request: RequestInfoRequest
    ) -> tuple[Ticket, TicketNote]:
        """Ask the requester a question: a public note, and the ticket waits for the
        answer (awaiting_user_response) until `user_response`."""
        ticket = await self.get_ticket(actor.tenant_id, ticket_id)
        if not in_workflow(ticket.ticket_class, AWAITING_USER_RESPONSE):
            raise _outside_workflow(ticket.ticket_class, AWAITING_USER_RESPONSE)
        on_behalf = request.actor or actor.subject
        async with self.pool.acquire() as connection, connection.transaction():
            moved = await connection.fetchrow(
                query("set_ticket_status"),
                actor.tenant_id,
                ticket_id,
                AWAITING_USER_RESPONSE,
                ticket.status,
                [*TERMINAL_STATUSES, AWAITING_USER_RESPONSE],
            )
            if moved is None:
                raise await self._status_conflict(actor.tenant_id, ticket_id, "ask about")
            updated = Ticket.model_validate(dict(moved))
            note = await write_note(
                connection,
                self.redactor,
                updated,
                actor.tenant_id,
                kind="request_info",
                body=request.question,
                author=on_behalf,
                source="system",
                visibility="public",
                data={"from": ticket.status},
            )
            await audit_ticket(
                connection,
                self.redactor,
                actor,
                "ticket_info_requested",
                ticket_id,
                {"from": ticket.status, "note_id": str(note.id), "on_behalf_of": on_behalf},
            )
        return updated, note

    async def user_response(
        self, actor: Actor, ticket_id: UUID, request: UserResponseRequest
    ) -> tuple[Ticket, TicketNote]:
        """The requester's answer: a public note, the status before the question
        restored, and the `user_responded` event (the agent lifecycle may resume the
        ticket's agent). 409 when the ticket is not awaiting an answer."""
        async with self.pool.acquire() as connection, connection.transaction():
            moved = await connection.fetchrow(
                query("restore_ticket_status"), actor.tenant_id, ticket_id
            )
            if moved is None:
                raise await self._status_conflict(
                    actor.tenant_id, ticket_id, "record a requester's answer on"
                )
            ticket = Ticket.model_validate(dict(moved))
            note = await write_note(
                connection,
                self.redactor,
                ticket,
                actor.tenant_id,
                kind="user_response",
                body=request.body,
                author=request.author or actor.subject,
                source="user-response",
                visibility="public",
                data={"restored": ticket.status, "recorded_by": actor.subject},
            )
            await audit_ticket(
                connection,
                self.redactor,
                actor,
                "ticket_user_responded",
                ticket_id,
                {"restored": ticket.status, "note_id": str(note.id)},
            )
            await self.on_ticket_event(connection, TicketEvent("user_responded", ticket, note))
        return ticket, note

    async def link_ticket_task(
        self, connection: asyncpg.Connection, tenant_id: str, ticket_id: UUID, task_id: UUID
    ) -> None:
        """Record, in `connection`'s transaction, that `task_id` is worked for the ticket
        (the context's recent tasks)."""
        await connection.execute(query("link_ticket_task"), ticket_id, task_id, tenant_id)


def _outside_workflow(ticket_class: str, status: str) -> BadRequest:
    allowed = list(allowed_statuses(ticket_class))
    return BadRequest(
        f"status {status!r} is not in the {ticket_class} workflow; allowed: {', '.join(allowed)}",
        field="status",
        allowed=allowed,
    )
