"""An operator's decisions on a task: approve, reject (of the task, or of the tool call
a paused run waits on), retry, cancel, roll back; and notes that change no status.

Each is one guarded statement from `queries/`, given its rule's statuses from
`ledger/states.py`, plus its trace event (and, for a person's decision, its audit
record), in one transaction. A guard that matches no
row becomes `InvalidTransition` carrying the current status, so an illegal action
never half-applies.
"""

from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from ledger.actor import Actor
from ledger.audit import AuditLevel, record_audit
from ledger.errors import InvalidTransition, NotFound, PolicyError
from ledger.models import Task, TraceEvent
from ledger.reads import Reads
from ledger.sql import query
from ledger.states import TRANSITIONS, Rule, may
from ledger.traces import append_trace

# The decisions the audit trail records (by their trace kind), with its category and
# level for each: approving past a deny and asking to undo a change stand out.
_AUDITED: dict[str, tuple[str, AuditLevel]] = {
    "approved": ("approval", "info"),
    "break_glass_approved": ("approval", "warning"),
    "rejected": ("approval", "info"),
    "tool_call_approved": ("approval", "info"),
    "tool_call_rejected": ("approval", "info"),
    "retry_requested": ("task", "info"),
    "cancelled": ("task", "info"),
    "rollback_requested": ("task", "warning"),
}


@dataclass(frozen=True)
class Transition:
    task: Task
    trace: TraceEvent


class Decisions(Reads):
    async def approve(
        self, actor: Actor, task_id: UUID, *, reason: str, break_glass_acknowledged: bool
    ) -> Transition:
        """Approve a task awaiting review. A task whose verdict was `deny` (break glass
        asked for at creation) needs an owner and an explicit acknowledgement."""
        task = await self.get_task(actor.tenant_id, task_id)
        if _tool_call_waiting(task):
            return await self._decide_tool_call(actor, task, "approved", reason)
        needs_break_glass = task.policy_verdict.decision == "deny"
        if needs_break_glass and may("approve", task.status):
            if actor.role != "owner":
                raise PolicyError("only an owner may approve past a deny (break glass)")
            if not break_glass_acknowledged:
                raise PolicyError(
                    "approving past a deny needs break_glass_acknowledged: true",
                    reasons=task.policy_verdict.reasons,
                )
        approval = {
            "decision": "approved",
            "by": actor.subject,
            "role": actor.role,
            "reason": self.redactor.text(reason),
            "break_glass": needs_break_glass,
        }
        return await self._queue_next_attempt(
            actor,
            task_id,
            "approve",
            approval=approval,
            kind="break_glass_approved" if needs_break_glass else "approved",
            message=f"approved by {actor.subject}"
            + (" (break glass)" if needs_break_glass else ""),
            data=approval,
        )

    async def retry(self, actor: Actor, task_id: UUID, *, reason: str) -> Transition:
        """A new run for the next attempt; earlier runs, traces and artifacts stay."""
        return await self._queue_next_attempt(
            actor,
            task_id,
            "retry",
            approval=None,
            kind="retry_requested",
            message=f"retry requested by {actor.subject}",
            data={"reason": self.redactor.text(reason)},
        )

    async def _queue_next_attempt(
        self,
        actor: Actor,
        task_id: UUID,
        action: str,
        *,
        approval: dict[str, Any] | None,
        kind: str,
        message: str,
        data: dict[str, Any],
    ) -> Transition:
        run_id, rule = uuid4(), TRANSITIONS[action]
        async with self.pool.acquire() as connection, connection.transaction():
            row = await self._guarded(
                connection,
                "queue_next_attempt",
                action,
                rule,
                actor.tenant_id,
                task_id,
                run_id,
                approval,
            )
            await connection.execute(
                query("insert_run"),
                run_id,
                task_id,
                actor.tenant_id,
                row["lane"],
                row["attempt"],
                row["previous_run_id"],
            )
            trace = await self._trace(
                connection,
                task_id,
                kind,
                actor,
                from_status=row["from_status"],
                to_status=rule.task_to,
                run_id=run_id,
                message=message,
                data={**data, "attempt": row["attempt"]},
            )
            await self._audit(connection, actor, task_id, trace)
        return Transition(Task.model_validate(dict(row)), trace)

    async def reject(self, actor: Actor, task_id: UUID, *, reason: str) -> Transition:
        """Reject a task awaiting approval (it becomes denied), or, when it waits on a
        tool call, reject that call: the agent resumes and is told it was refused."""
        task = await self.get_task(actor.tenant_id, task_id)
        if _tool_call_waiting(task):
            return await self._decide_tool_call(actor, task, "rejected", reason)
        decision = {
            "decision": "rejected",
            "by": actor.subject,
            "role": actor.role,
            "reason": self.redactor.text(reason),
        }
        message = f"rejected by {actor.subject}"
        return await self._apply(
            actor,
            task_id,
            "reject_task",
            "reject",
            (decision, message),
            kind="rejected",
            message=message,
            data=decision,
        )

    async def _decide_tool_call(
        self, actor: Actor, task: Task, decision: str, reason: str
    ) -> Transition:
        """Bind the decision to the pending call (its arguments' hash is already on it)
        and queue the paused run again; no attempt is spent."""
        pending = task.pending_approval or {}
        recorded = {
            "decision": decision,
            "by": actor.subject,
            "role": actor.role,
            "reason": self.redactor.text(reason),
        }
        rule = TRANSITIONS["decide_tool_call"]
        return await self._apply(
            actor,
            task.id,
            "decide_tool_call",
            "approve" if decision == "approved" else "reject",
            (recorded,),
            rule=rule,
            kind=f"tool_call_{decision}",
            message=f"tool call {pending.get('tool')} {decision} by {actor.subject}",
            data={
                **recorded,
                "tool": pending.get("tool"),
                "arguments_sha256": pending.get("arguments_sha256"),
            },
            run_query="resume_paused_run",
            run_args=(rule.run_to, rule.run_guard),
            settle_approvals=(decision, recorded["reason"]),
        )

    async def cancel(self, actor: Actor, task_id: UUID, *, reason: str) -> Transition:
        reason = self.redactor.text(reason)
        return await self.move(
            actor,
            task_id,
            "cancel",
            kind="cancelled",
            terminal_reason=f"cancelled by {actor.subject}" + (f": {reason}" if reason else ""),
            data={"reason": reason},
            settle_approvals=("cancelled", reason),
        )

    async def rollback(
        self, actor: Actor, task_id: UUID, *, reason: str, remediation: str
    ) -> Transition:
        rollback = {
            "requested_by": actor.subject,
            "reason": self.redactor.text(reason),
            "remediation": self.redactor.text(remediation),
        }
        return await self._apply(
            actor,
            task_id,
            "request_rollback",
            "rollback",
            (rollback,),
            kind="rollback_requested",
            message=f"rollback requested by {actor.subject}",
            data=rollback,
        )

    async def _apply(
        self,
        actor: Actor,
        task_id: UUID,
        query_name: str,
        action: str,
        args: tuple[Any, ...],
        *,
        rule: Rule | None = None,
        kind: str,
        message: str | None,
        data: dict[str, Any],
        run_query: str | None = None,
        run_args: tuple[Any, ...] = (),
        settle_approvals: tuple[str, str] | None = None,
    ) -> Transition:
        """One guarded transition query by `rule` (the action's own when not given),
        then (optionally) a query on the task's current run and the settling of its
        pending approval requests (status, reason), then the trace event: all in one
        transaction."""
        rule = rule or TRANSITIONS[action]
        to_status = rule.task_to
        async with self.pool.acquire() as connection, connection.transaction():
            row = await self._guarded(
                connection, query_name, action, rule, actor.tenant_id, task_id, *args
            )
            if run_query is not None and row["current_run_id"] is not None:
                await connection.execute(query(run_query), row["current_run_id"], *run_args)
            if settle_approvals is not None:
                await connection.execute(
                    query("settle_approval_requests"), task_id, *settle_approvals, actor.subject
                )
            trace = await self._trace(
                connection,
                task_id,
                kind,
                actor,
                from_status=row["from_status"],
                to_status=to_status,
                run_id=row["current_run_id"],
                message=message or f"{row['from_status']} -> {to_status}",
                data=data,
            )
            await self._audit(connection, actor, task_id, trace)
        return Transition(Task.model_validate(dict(row)), trace)

    async def move(
        self,
        actor: Actor,
        task_id: UUID,
        action: str,
        *,
        kind: str,
        terminal_reason: str | None = None,
        data: dict[str, Any] | None = None,
        settle_approvals: tuple[str, str] | None = None,
    ) -> Transition:
        """The plain guarded transition by `action`'s rule; when the rule moves the run
        too, the current run is settled in the same transaction (a run that already
        finished is left as it was), and so are the approval requests when asked."""
        rule = TRANSITIONS[action]
        return await self._apply(
            actor,
            task_id,
            "move_task",
            action,
            (terminal_reason,),
            kind=kind,
            message=terminal_reason,
            data=data or {},
            run_query="settle_run_if_unfinished" if rule.run_to else None,
            run_args=(rule.run_to, None, terminal_reason, rule.run_guard),
            settle_approvals=settle_approvals,
        )

    async def note(
        self,
        actor: Actor,
        task_id: UUID,
        kind: str,
        message: str,
        *,
        data: dict[str, Any] | None = None,
        run_id: UUID | None = None,
    ) -> TraceEvent:
        """A trace event that changes no status (a refused run, a dispatch that found
        no transport)."""
        async with self.pool.acquire() as connection, connection.transaction():
            if (
                await connection.fetchval(query("get_task_status"), actor.tenant_id, task_id)
                is None
            ):
                raise NotFound("task not found", task_id=str(task_id))
            return await self._trace(
                connection,
                task_id,
                kind,
                actor,
                message=message,
                data=data or {},
                run_id=run_id,
            )

    async def _guarded(
        self,
        connection: asyncpg.Connection,
        query_name: str,
        action: str,
        rule: Rule,
        tenant_id: str,
        task_id: UUID,
        *args: Any,
    ) -> asyncpg.Record:
        """Run a guarded statement: its parameters are the tenant, the task, the
        statuses `rule` leaves from, `args`, and last the status it enters."""
        allowed = rule.task_guard
        row = await connection.fetchrow(
            query(query_name), tenant_id, task_id, allowed, *args, rule.task_to
        )
        if row is not None:
            return row
        current = await connection.fetchval(query("get_task_status"), tenant_id, task_id)
        if current is None:
            raise NotFound("task not found", task_id=str(task_id))
        raise InvalidTransition(action, current, allowed)

    async def _audit(
        self, connection: asyncpg.Connection, actor: Actor, task_id: UUID, trace: TraceEvent
    ) -> None:
        """The audit record of a person's decision, beside its trace event."""
        if trace.kind not in _AUDITED:
            return
        category, level = _AUDITED[trace.kind]
        await record_audit(
            connection,
            tenant_id=actor.tenant_id,
            actor=actor.subject,
            action=trace.kind,
            target_type="task",
            target_id=str(task_id),
            category=category,
            level=level,
            detail={
                **trace.data,
                "role": actor.role,
                "from_status": trace.from_status,
                "to_status": trace.to_status,
                "trace_seq": trace.seq,
            },
            redactor=self.redactor,
        )

    async def _trace(
        self,
        connection: asyncpg.Connection,
        task_id: UUID,
        kind: str,
        actor: Actor,
        **event: Any,
    ) -> TraceEvent:
        return await append_trace(
            connection, self.redactor, task_id, kind, actor=actor.subject, **event
        )


def _tool_call_waiting(task: Task) -> bool:
    return (
        may("decide_tool_call", task.status)
        and task.pending_approval is not None
        and "decision" not in task.pending_approval
    )
