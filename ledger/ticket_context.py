"""A ticket's context bundle, what an agent working it reads first: the ticket and its
current agent, its notes, attachments' metadata, change requests, the tasks worked for
it, its related tickets (parent and children) and its access requests. Each list is
bounded: the latest notes and tasks."""

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from ledger.access_requests import AccessRequests
from ledger.change_models import AccessRequest, ChangeRequest
from ledger.sql import query
from ledger.ticket_models import CurrentAgent, Ticket, TicketAttachment, TicketNote

CONTEXT_NOTES = 200
CONTEXT_TASKS = 20


class RecentTask(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: UUID
    title: str
    lane: str
    status: str
    attempt: int
    terminal_reason: str | None
    created_at: datetime
    updated_at: datetime


class TicketContext(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ticket: Ticket
    agent: CurrentAgent
    notes: list[TicketNote]
    attachments: list[TicketAttachment]
    change_requests: list[ChangeRequest]
    recent_tasks: list[RecentTask]
    related_tickets: list[Ticket]
    access_requests: list[AccessRequest]


class TicketContexts(AccessRequests):
    async def ticket_context(self, tenant_id: str, ticket_id: UUID) -> TicketContext:
        ticket = await self.get_ticket(tenant_id, ticket_id)
        tasks = await self.pool.fetch(
            query("ticket_recent_tasks"), tenant_id, ticket_id, CONTEXT_TASKS
        )
        related = await self.pool.fetch(query("related_tickets"), tenant_id, ticket_id)
        return TicketContext(
            ticket=ticket,
            agent=await self.current_agent(tenant_id, ticket_id),
            notes=await self.list_notes(tenant_id, ticket_id, CONTEXT_NOTES),
            attachments=await self.list_attachments(tenant_id, ticket_id),
            change_requests=await self.ticket_changes(tenant_id, ticket_id),
            recent_tasks=[RecentTask.model_validate(dict(row)) for row in tasks],
            related_tickets=[Ticket.model_validate(dict(row)) for row in related],
            access_requests=await self.list_access_requests(tenant_id, ticket_id),
        )
