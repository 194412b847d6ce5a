"""Tickets: create, list, read, change status, assign, notes, attachment metadata, and
a request for information with the requester's answer.

Every change is one guarded statement plus a note on the ticket's timeline and an audit
record, in one transaction; a ticket the caller's tenant does not own is not found. The
agent lifecycle hears of what happened through `on_ticket_event`, inside the same
transaction, so what it does with it (a steering event, a resumed agent) commits or rolls
back with the change.
"""

from typing import Any
from uuid import UUID, uuid4

import asyncpg

from ledger.actor import Actor
from ledger.errors import BadRequest, Conflict, NotFound
from ledger.providers import ProviderSync, provider_for
from ledger.reads import Reads
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
from ledger.ticket_timeline import TicketEvent, audit_ticket, ticket_record, write_note
from ledger.ticket_workflow import (
    AWAITING_USER_RESPONSE,
    TERMINAL_STATUSES,
    TICKET_STATUSES,
    in_workflow,
)

_CLOSING = frozenset({"resolved", "closed"})


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
        if not in_workflow(request.status):
            raise _outside_workflow(request.status)
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
            self.redactor.text(request.created_by or actor.subject),
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
            TicketEvent(
                "ticket_created",
                actor.tenant_id,
                ticket,
                detail={"auto_assign": request.auto_assign},
            ),
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
        """Move the ticket to a status of the workflow (400 naming the allowed ones
        otherwise; 409 from a closed or cancelled ticket). Resolving or closing it with
        `close_provider` closes the provider's record too, once the change committed."""
        if not in_workflow(request.status):
            raise _outside_workflow(request.status)
        ticket = await self.get_ticket(actor.tenant_id, ticket_id)
        on_behalf = self.redactor.text(request.actor or actor.subject)
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
        # The fields given; none given records the reason alone (nothing reassigned).
        fields = self.redactor.value(
            request.model_dump(exclude={"actor", "reason"}, exclude_none=True)
        )
        on_behalf = self.redactor.text(request.actor or actor.subject)
        async with self.pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                query("assign_ticket"),
                actor.tenant_id,
                ticket_id,
                fields.get("assignee_team"),
                fields.get("owning_group"),
                fields.get("assignee"),
                request.priority,
                list(TERMINAL_STATUSES),
            )
            if row is None:
                raise await self._status_conflict(actor.tenant_id, ticket_id, "reassign")
            ticket = Ticket.model_validate(dict(row))
            reason = self.redactor.text(request.reason)
            summary = ", ".join(f"{name}={value}" for name, value in fields.items()) or "unchanged"
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
                author=self.redactor.text(request.author or actor.subject),
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
            await self.on_ticket_event(
                connection, TicketEvent("note_added", actor.tenant_id, ticket, note)
            )
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
                self.redactor.text(request.content_type),
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
        on_behalf = self.redactor.text(request.actor or actor.subject)
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
                author=self.redactor.text(request.author or actor.subject),
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
            await self.on_ticket_event(
                connection, TicketEvent("user_responded", actor.tenant_id, ticket, note)
            )
        return ticket, note

    async def set_current_agent(
        self,
        connection: asyncpg.Connection,
        tenant_id: str,
        ticket_id: UUID,
        *,
        agent_id: UUID | None,
        task_id: UUID | None,
    ) -> Ticket:
        """Record, in `connection`'s transaction, the agent now working the ticket and
        its current task (None for both when the agent is unassigned); the task is
        linked to the ticket too. The agent lifecycle writes its own audit record."""
        row = await connection.fetchrow(
            query("set_ticket_agent"), tenant_id, ticket_id, agent_id, task_id
        )
        ticket = ticket_record(row, ticket_id)
        if task_id is not None:
            await self.link_ticket_task(connection, tenant_id, ticket_id, task_id)
        return ticket

    async def link_ticket_task(
        self, connection: asyncpg.Connection, tenant_id: str, ticket_id: UUID, task_id: UUID
    ) -> None:
        """Record, in `connection`'s transaction, that `task_id` is worked for the ticket
        (the context's recent tasks)."""
        await connection.execute(query("link_ticket_task"), ticket_id, task_id, tenant_id)


def _outside_workflow(status: str) -> BadRequest:
    allowed = list(TICKET_STATUSES)
    return BadRequest(
        f"status {status!r} is not in the ticket workflow; allowed: {', '.join(allowed)}",
        field="status",
        allowed=allowed,
    )
