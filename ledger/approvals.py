"""Approval requests: what a paused tool call waits on, and an operator's answer.

A request is written with the pause (`ledger/outcomes.py`) and bound to the exact call
by its id and its arguments' sha256. Resolving it is the same guarded decision as
approving or rejecting the task's pending tool call (`Decisions`), so the two ways in
can never disagree: whichever is first wins, the other finds the request settled (409).
"""

from uuid import UUID

from ledger.actor import Actor
from ledger.decisions import Decisions, Transition
from ledger.errors import Conflict, NotFound, PolicyError
from ledger.models import ApprovalRequest
from ledger.sql import query


class Approvals(Decisions):
    async def get_approval(self, actor: Actor, approval_id: UUID) -> ApprovalRequest:
        async with self.pool.acquire() as connection:
            row = await connection.fetchrow(
                query("get_approval_request"), actor.tenant_id, approval_id
            )
        if row is None:
            raise NotFound("approval request not found", approval_id=str(approval_id))
        return ApprovalRequest.model_validate(dict(row))

    async def approval_requests(
        self, actor: Actor, task_id: UUID, *, pending_only: bool = False
    ) -> list[ApprovalRequest]:
        async with self.pool.acquire() as connection:
            rows = await connection.fetch(
                query("task_approval_requests"), actor.tenant_id, task_id, pending_only
            )
        return [ApprovalRequest.model_validate(dict(row)) for row in rows]

    async def resolve_approval(
        self, actor: Actor, approval_id: UUID, decision: str, *, reason: str
    ) -> tuple[ApprovalRequest, Transition]:
        """`approved` or `rejected`: the run resumes on any worker from its saved state,
        and a rejected call's result tells the model it was refused."""
        request = await self.get_approval(actor, approval_id)
        if request.status != "pending":
            raise Conflict(
                f"approval request is already {request.status}",
                approval_id=str(approval_id),
                status=request.status,
            )
        if actor.role not in request.deciders:
            raise PolicyError(
                f"role {actor.role} may not decide this request", deciders=request.deciders
            )
        task = await self.get_task(actor.tenant_id, request.task_id)
        pending = task.pending_approval or {}
        if pending.get("approval_id") != str(request.id) or "decision" in pending:
            # Settled since it was read, or the run moved on to another call.
            raise Conflict("approval request is no longer pending", approval_id=str(request.id))
        transition = await self._decide_tool_call(actor, task, decision, reason)
        return await self.get_approval(actor, approval_id), transition
