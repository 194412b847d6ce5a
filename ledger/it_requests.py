"""Registered IT requests, which tasks can be created from. Each is registered as a
ticket too (a `UserRequest` carrying the request's number), in the same transaction;
the tasks created from it are worked for that ticket."""

from ledger.actor import Actor
from ledger.errors import Conflict, NotFound
from ledger.models import ITRequest, ITRequestCreate
from ledger.sql import query
from ledger.ticket_models import Ticket, TicketCreateRequest
from ledger.tickets import Tickets


class ITRequests(Tickets):
    async def create_it_request(
        self, actor: Actor, request: ITRequestCreate
    ) -> tuple[ITRequest, Ticket]:
        async with self.pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                query("insert_it_request"),
                actor.tenant_id,
                request.request_number,
                self.redactor.text(request.title),
                self.redactor.text(request.description),
                request.requester,
                request.source_system,
                self.redactor.value(request.details),
                actor.subject,
            )
            if row is None:
                raise Conflict(
                    "an IT request with this number exists", request_number=request.request_number
                )
            ticket = await self.create_ticket(
                actor,
                TicketCreateRequest(
                    title=request.title,
                    description=request.description,
                    ticket_class="UserRequest",
                    created_by=request.requester or None,
                ),
                connection=connection,
                it_request_number=request.request_number,
                details={
                    "requester": request.requester,
                    "source_system": request.source_system,
                    "it_request": request.details,
                },
            )
        return ITRequest.model_validate(dict(row)), ticket

    async def get_it_request(self, tenant_id: str, request_number: str) -> ITRequest:
        row = await self.pool.fetchrow(query("get_it_request"), tenant_id, request_number)
        if row is None:
            raise NotFound("IT request not found", request_number=request_number)
        return ITRequest.model_validate(dict(row))

    async def ticket_for_it_request(self, tenant_id: str, request_number: str) -> Ticket:
        row = await self.pool.fetchrow(query("ticket_for_it_request"), tenant_id, request_number)
        if row is None:
            raise NotFound("IT request not found", request_number=request_number)
        return Ticket.model_validate(dict(row))
