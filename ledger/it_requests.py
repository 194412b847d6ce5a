"""Registered IT requests, which tasks can be created from."""

from ledger.actor import Actor
from ledger.errors import Conflict, NotFound
from ledger.models import ITRequest, ITRequestCreate
from ledger.reads import Reads
from ledger.sql import query


class ITRequests(Reads):
    async def create_it_request(self, actor: Actor, request: ITRequestCreate) -> ITRequest:
        row = await self.pool.fetchrow(
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
        return ITRequest.model_validate(dict(row))

    async def get_it_request(self, tenant_id: str, request_number: str) -> ITRequest:
        row = await self.pool.fetchrow(query("get_it_request"), tenant_id, request_number)
        if row is None:
            raise NotFound("IT request not found", request_number=request_number)
        return ITRequest.model_validate(dict(row))
