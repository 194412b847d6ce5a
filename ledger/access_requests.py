"""Access requests: an agent working a ticket hits a permission wall and asks for what
it lacks. The request is a child ticket (`AccessRequest`, awaiting approval) for the
group that grants it, and a change gate on the original ticket and agent, which decides
the grant (`ledger/access_gates.py` settles both tickets when it is decided)."""

from uuid import UUID, uuid4

from ledger.actor import Actor
from ledger.change_models import AccessRequest, AccessRequestCreate, ChangeCreateRequest
from ledger.changes import Changes
from ledger.errors import BadRequest
from ledger.sql import query
from ledger.ticket_models import TicketCreateRequest
from ledger.ticket_timeline import audit_ticket, write_note


class AccessRequests(Changes):
    async def request_access(
        self, actor: Actor, ticket_id: UUID, request: AccessRequestCreate
    ) -> AccessRequest:
        ticket = await self.get_ticket(actor.tenant_id, ticket_id)
        group = (
            self.redactor.text(request.assignment_group)
            if request.assignment_group
            else ticket.owning_group
        )
        if group is None:
            raise BadRequest(
                "the ticket has no owning group: name the assignment_group that grants access",
                field="assignment_group",
            )
        wanted = f"{request.permission} on {request.resource}"
        async with self.pool.acquire() as connection, connection.transaction():
            child = await self.create_ticket(
                actor,
                TicketCreateRequest(
                    title=f"Access request: {wanted}"[:500],
                    description=request.reason,
                    ticket_class="AccessRequest",
                    status="awaiting_approval",
                    priority=ticket.priority,
                ),
                connection=connection,
                parent_ticket_id=ticket.id,
                owning_group=group,
                details={
                    "resource": request.resource,
                    "permission": request.permission,
                    "account_ref": request.account_ref,
                    "agent_id": str(request.agent_id) if request.agent_id else None,
                },
            )
            change = await self.request_change(
                actor,
                ChangeCreateRequest(
                    ticket_id=ticket.id,
                    agent_id=request.agent_id,
                    action="grant_access",
                    target=request.resource,
                    reason=request.reason,
                    command=f"grant {request.permission} to {request.account_ref or 'the agent'}",
                    risk_level=request.risk_level,
                    expires_in_seconds=request.expires_in_seconds,
                ),
                connection=connection,
            )
            access_id = await connection.fetchval(
                query("insert_access_request"),
                uuid4(),
                actor.tenant_id,
                ticket.id,
                child.id,
                change.id,
                request.agent_id,
                self.redactor.text(request.resource),
                self.redactor.text(request.permission),
                self.redactor.text(request.account_ref) if request.account_ref else None,
                group,
                self.redactor.text(request.reason),
                actor.subject,
            )
            for on in (ticket, child):
                await write_note(
                    connection,
                    self.redactor,
                    on,
                    actor.tenant_id,
                    kind="access_requested",
                    body=f"Access requested for {group}: {wanted}",
                    author=actor.subject,
                    source="system",
                    data={
                        "access_request_id": str(access_id),
                        "change_id": str(change.id),
                        "child_ticket_id": str(child.id),
                    },
                )
            await audit_ticket(
                connection,
                self.redactor,
                actor,
                "access_requested",
                ticket.id,
                {"child_ticket_id": str(child.id), "change_id": str(change.id), "group": group},
                target_type="access_request",
                target_id=access_id,
                agent_id=request.agent_id,
            )
        return await self.get_access_request(actor.tenant_id, access_id)

    async def get_access_request(self, tenant_id: str, access_id: UUID) -> AccessRequest:
        row = await self.pool.fetchrow(query("get_access_request"), tenant_id, access_id)
        return AccessRequest.model_validate(dict(row))

    async def list_access_requests(self, tenant_id: str, ticket_id: UUID) -> list[AccessRequest]:
        """Access requests raised for the ticket, or the one it is the child ticket of."""
        await self.get_ticket(tenant_id, ticket_id)
        rows = await self.pool.fetch(query("ticket_access_requests"), tenant_id, ticket_id)
        return [AccessRequest.model_validate(dict(row)) for row in rows]
