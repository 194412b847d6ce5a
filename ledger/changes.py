"""Change requests: a gate an agent or a person asks to pass before acting on a target,
decided by people the lanes file's rule for its risk level allows.

Who moves a change out of each status:
- `pending`: an approver (approve: `approved` once it has `approvals_required` distinct
  approvers; reject: `rejected`), or time (`expired` at `expires_at`, written by the
  dispatcher's sweeper, `dispatcher/change_expiry.py`, or by the first decision attempted
  after it; every read already shows it expired);
- `approved`: whoever carried it out (complete: `completed`);
- `rejected`, `expired`, `completed`: nobody; terminal.

The requester never approves its own change (403), whatever its role, and neither
does the person who put the requesting agent on the ticket. A decision on a
change that is not pending answers 409 with its current status. Every transition is one
guarded UPDATE plus a note on the change's ticket and an audit record, in one
transaction; a change guarding an access request settles it there too
(`ledger/access_gates.py`).
"""

from collections import Counter
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from ledger.access_gates import settle_access_gate
from ledger.actor import Actor
from ledger.change_models import (
    ApproveChangeRequest,
    ChangeCreateRequest,
    ChangeListQuery,
    ChangeRequest,
    ChangeStatusView,
    CompleteChangeRequest,
    RejectChangeRequest,
)
from ledger.errors import Conflict, NotFound, PolicyError
from ledger.sql import query
from ledger.ticket_models import Ticket
from ledger.ticket_timeline import audit_ticket, write_note
from ledger.tickets import Tickets

PENDING_PAGE = 200


def change_record(row: asyncpg.Record | None, change_id: UUID) -> ChangeRequest:
    if row is None:
        raise NotFound("change request not found", change_id=str(change_id))
    return ChangeRequest.model_validate(dict(row))


class Changes(Tickets):
    async def request_change(
        self,
        actor: Actor,
        request: ChangeCreateRequest,
        *,
        connection: asyncpg.Connection | None = None,
    ) -> ChangeRequest:
        """A pending change on one of the tenant's tickets, under the rule for its risk
        level; in `connection`'s transaction when given (an access request's gate)."""
        ticket = await self.get_ticket(actor.tenant_id, request.ticket_id)
        if connection is None:
            async with self.pool.acquire() as connection, connection.transaction():
                return await self._insert_change(connection, actor, ticket, request)
        return await self._insert_change(connection, actor, ticket, request)

    async def _insert_change(
        self,
        connection: asyncpg.Connection,
        actor: Actor,
        ticket: Ticket,
        request: ChangeCreateRequest,
    ) -> ChangeRequest:
        gates = self.policy.change_approval
        rule = gates.risk_levels[request.risk_level]
        expires_in = min(
            request.expires_in_seconds or gates.default_expiry_seconds, gates.max_expiry_seconds
        )
        row = await connection.fetchrow(
            query("insert_change_request"),
            uuid4(),
            actor.tenant_id,
            ticket.id,
            request.agent_id,
            request.action,
            self.redactor.text(request.target),
            self.redactor.text(request.reason),
            self.redactor.text(request.command),
            request.risk_level,
            request.approval_policy.model_dump(),
            actor.subject,
            list(rule.approver_roles),
            rule.approvals_required,
            self.policy.policy_version,
            float(expires_in),
        )
        change = change_record(row, row["id"])
        await self._record(
            connection,
            actor,
            ticket,
            change,
            "change_requested",
            f"Change requested: {change.action} on {change.target} ({change.risk_level} risk; "
            f"{change.approvals_required} approval(s) by {', '.join(change.approver_roles)})",
            {"reason": change.reason, "expires_at": change.expires_at.isoformat()},
        )
        return change

    async def _record(
        self,
        connection: asyncpg.Connection,
        actor: Actor,
        ticket: Ticket,
        change: ChangeRequest,
        action: str,
        body: str,
        detail: dict[str, Any],
    ) -> None:
        """The ticket note and the audit record of one transition of `change`."""
        data = {"change_id": str(change.id), "status": change.status, **detail}
        await write_note(
            connection,
            self.redactor,
            ticket,
            actor.tenant_id,
            kind=action,
            body=body,
            author=actor.subject,
            source="system",
            data=data,
        )
        await audit_ticket(
            connection,
            self.redactor,
            actor,
            action,
            ticket.id,
            {**data, "action": change.action, "risk_level": change.risk_level},
            target_type="change_request",
            target_id=change.id,
            agent_id=change.agent_id,
        )

    async def get_change(self, tenant_id: str, change_id: UUID) -> ChangeRequest:
        return change_record(
            await self.pool.fetchrow(query("get_change"), tenant_id, change_id), change_id
        )

    async def change_status(self, tenant_id: str, change_id: UUID) -> ChangeStatusView:
        change = await self.get_change(tenant_id, change_id)
        return ChangeStatusView(
            id=change.id,
            status=change.status,
            approvals=len(change.approvals),
            approvals_required=change.approvals_required,
            decided_by=change.decided_by,
            expires_at=change.expires_at,
        )

    async def list_changes(self, tenant_id: str, filters: ChangeListQuery) -> list[ChangeRequest]:
        rows = await self.pool.fetch(
            query("list_changes"),
            tenant_id,
            filters.status,
            filters.agent_id,
            filters.ticket_id,
            filters.risk_level,
            filters.limit,
            filters.offset,
        )
        return [ChangeRequest.model_validate(dict(row)) for row in rows]

    async def pending_changes(self, tenant_id: str) -> list[ChangeRequest]:
        rows = await self.pool.fetch(query("pending_changes"), tenant_id, PENDING_PAGE)
        return [ChangeRequest.model_validate(dict(row)) for row in rows]

    async def approved_change_for(
        self, tenant_id: str, *, ticket_id: UUID, agent_id: UUID, target: str
    ) -> ChangeRequest | None:
        """The approved change that lets `agent_id`'s write to `target` proceed on the
        ticket (None: there is none; the write must wait for one). The target is
        compared as stored, redacted."""
        row = await self.pool.fetchrow(
            query("approved_change_for_target"),
            tenant_id,
            ticket_id,
            agent_id,
            self.redactor.text(target),
        )
        return None if row is None else ChangeRequest.model_validate(dict(row))

    async def agent_change_for(
        self, tenant_id: str, *, ticket_id: UUID, agent_id: UUID, action: str, target: str
    ) -> ChangeRequest | None:
        """The change `agent_id` already asked for to do `action` on `target`, unless it
        expired: an agent asking again (a woken agent replaying its plan) gets it, not a
        second one."""
        row = await self.pool.fetchrow(
            query("agent_change_for_target"),
            tenant_id,
            ticket_id,
            agent_id,
            self.redactor.text(action),
            self.redactor.text(target),
        )
        return None if row is None else ChangeRequest.model_validate(dict(row))

    async def ticket_changes(self, tenant_id: str, ticket_id: UUID) -> list[ChangeRequest]:
        rows = await self.pool.fetch(query("ticket_changes"), tenant_id, ticket_id)
        return [ChangeRequest.model_validate(dict(row)) for row in rows]

    async def change_stats(self, tenant_id: str) -> dict[str, Any]:
        rows = await self.pool.fetch(query("change_stats"), tenant_id)
        by_status: Counter[str] = Counter()
        by_risk: Counter[str] = Counter()
        for row in rows:
            by_status[row["status"]] += row["count"]
            by_risk[row["risk_level"]] += row["count"]
        return {
            "total": sum(by_status.values()),
            "by_status": dict(by_status),
            "by_risk_level": dict(by_risk),
            "pending": by_status["pending"],
        }

    async def approve_change(
        self, actor: Actor, change_id: UUID, request: ApproveChangeRequest
    ) -> ChangeRequest:
        change = await self._decidable(actor, change_id, "approve")
        on_behalf = self.redactor.text(request.approved_by or actor.subject)
        if actor.subject == change.requested_by:
            raise PolicyError(
                "the requester of a change may not approve it",
                requested_by=change.requested_by,
            )
        if change.agent_id is not None:
            # GitHub's prevent_self_review: whoever set the agent to work does not review
            # what it asks to do.
            assigner = await self.pool.fetchval(
                query("agent_assigned_by"), actor.tenant_id, change.agent_id
            )
            if assigner == actor.subject:
                raise PolicyError(
                    "the person who put the agent on the ticket may not approve its change",
                    assigned_by=assigner,
                )
        if actor.role not in change.approver_roles:
            raise PolicyError(
                f"a {change.risk_level} risk change is approved by: "
                + ", ".join(change.approver_roles),
                risk_level=change.risk_level,
                approver_roles=change.approver_roles,
                role=actor.role,
            )
        if any(approval.by == actor.subject for approval in change.approvals):
            raise Conflict(
                "you have approved this change already; it waits for another approver",
                current_status=change.status,
            )
        reason = self.redactor.text(request.reason)
        approval = {"by": actor.subject, "role": actor.role, "reason": reason}
        async with self.pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                query("approve_change"),
                actor.tenant_id,
                change_id,
                actor.subject,
                approval,
                reason,
            )
            if row is None:
                raise await self._decision_conflict(actor.tenant_id, change_id, "approve")
            approved = change_record(row, change_id)
            ticket = await self._change_ticket(connection, actor, approved)
            granted = approved.status == "approved"
            await self._record(
                connection,
                actor,
                ticket,
                approved,
                "change_approved" if granted else "change_approval_added",
                f"Change {approved.action} on {approved.target} "
                + ("approved" if granted else "approval added")
                + f" by {on_behalf}"
                + f" ({len(approved.approvals)}/{approved.approvals_required})"
                + (f": {reason}" if reason else ""),
                {
                    **approval,
                    "approval_gate": True,
                    "approval_mode": "manual_approval",
                    "auto_approved": False,
                    "on_behalf_of": on_behalf,
                },
            )
            if granted:
                await settle_access_gate(connection, self, actor, approved)
        return approved

    async def reject_change(
        self, actor: Actor, change_id: UUID, request: RejectChangeRequest
    ) -> ChangeRequest:
        change = await self._decidable(actor, change_id, "reject")
        on_behalf = self.redactor.text(request.rejected_by or actor.subject)
        if actor.role not in change.approver_roles:
            raise PolicyError(
                f"a {change.risk_level} risk change is decided by: "
                + ", ".join(change.approver_roles),
                approver_roles=change.approver_roles,
                role=actor.role,
            )
        reason = self.redactor.text(request.reason)
        async with self.pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                query("reject_change"), actor.tenant_id, change_id, actor.subject, reason
            )
            if row is None:
                raise await self._decision_conflict(actor.tenant_id, change_id, "reject")
            rejected = change_record(row, change_id)
            ticket = await self._change_ticket(connection, actor, rejected)
            await self._record(
                connection,
                actor,
                ticket,
                rejected,
                "change_rejected",
                f"Change {rejected.action} on {rejected.target} rejected by "
                f"{on_behalf}" + (f": {reason}" if reason else ""),
                {"reason": reason, "on_behalf_of": on_behalf},
            )
            await settle_access_gate(connection, self, actor, rejected)
        return rejected

    async def complete_change(
        self, actor: Actor, change_id: UUID, request: CompleteChangeRequest
    ) -> ChangeRequest:
        """An approved change was carried out; 409 for any other status."""
        result = self.redactor.text(request.result)
        completed_by = self.redactor.text(request.completed_by or actor.subject)
        async with self.pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                query("complete_change"), actor.tenant_id, change_id, completed_by, result
            )
            if row is None:
                raise await self._decision_conflict(actor.tenant_id, change_id, "complete")
            completed = change_record(row, change_id)
            ticket = await self._change_ticket(connection, actor, completed)
            await self._record(
                connection,
                actor,
                ticket,
                completed,
                "change_completed",
                f"Change {completed.action} on {completed.target} completed by {completed_by}"
                + (f": {result}" if result else ""),
                {"result": result, "completed_by": completed_by},
            )
        return completed

    async def expire_change(self, actor: Actor, change_id: UUID) -> ChangeRequest | None:
        """Write a pending change past its expiry as expired, with its note and audit
        record; None when it is not (decided, or expired by someone else already)."""
        async with self.pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(query("expire_change"), actor.tenant_id, change_id)
            if row is None:
                return None
            expired = change_record(row, change_id)
            ticket = await self._change_ticket(connection, actor, expired)
            await self._record(
                connection,
                actor,
                ticket,
                expired,
                "change_expired",
                f"Change {expired.action} on {expired.target} expired undecided at "
                f"{expired.expires_at.isoformat()}",
                {"expires_at": expired.expires_at.isoformat()},
            )
            await settle_access_gate(connection, self, actor, expired)
        return expired

    async def _decidable(self, actor: Actor, change_id: UUID, action: str) -> ChangeRequest:
        """The change, if a decision may be taken on it: one past its expiry is written
        expired first (its own transaction), then refused like any other not pending."""
        change = await self.get_change(actor.tenant_id, change_id)
        if change.status == "expired":
            await self.expire_change(actor, change_id)
        if change.status != "pending":
            raise _not_pending(action, change.status)
        return change

    async def _decision_conflict(self, tenant_id: str, change_id: UUID, action: str) -> Conflict:
        return _not_pending(action, (await self.get_change(tenant_id, change_id)).status)

    async def _change_ticket(
        self, connection: asyncpg.Connection, actor: Actor, change: ChangeRequest
    ) -> Ticket:
        row = await connection.fetchrow(query("get_ticket"), actor.tenant_id, change.ticket_id)
        return Ticket.model_validate(dict(row))


def _not_pending(action: str, status: str) -> Conflict:
    return Conflict(f"cannot {action} a change that is {status}", current_status=status)
