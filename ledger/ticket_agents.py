"""Agents on tickets: assigning one, its lifecycle (stop, wake, restart, unassign), its
reads, and the steering notes a ticket's people send it while it works.

An agent is the governed task made for a ticket through the policy like any other
(`TaskCreation.create_task`): the verdict decides whether it is queued for a worker,
waits for an approval, or is recorded as denied (the agent is then written stopped,
reason `policy_denied`). The task's scope names the agent (`ticket_agent_id`), which is
how the worker knows to give its run the steering inbox and the `ack_steering` tool
(`worker/steering.py`). A wake, the requester's answer to a question, or the approval
that grants an access request raised for the ticket gives the agent a new task when its
last one has finished; a restart replaces the agent by a new one, and its open steering
notes go to the replacement.

Every change is a guarded statement (`*_if_assigned`, or the task the agent is moved
from) with a note on the ticket, an audit record and a trace event on the task, in the
transaction that makes it. A stopped agent's task is cancelled after that transaction
commits, by the task's own guarded transition: if the task finished in between, there
is nothing left to cancel.

What a model, profile and prompt resolve to: the prompt given, else the ticket's title
and description; the profile named, else the one the ticket's class is routed to, else
the tenant's active one, else the defaults (`ledger/agent_config.py`), gives the lane,
provider, mutation level, instructions and model; the model given wins over the
profile's. A wake or restart resolves the agent's profile again, so a changed setting
reaches its next task.
"""

import contextlib
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from ledger.actor import Actor
from ledger.agent_config import (
    PROFILE_SCOPE_KEY,
    AgentConfigs,
    ResolvedProfile,
    hold_agent_limit,
)
from ledger.change_models import ApproveChangeRequest, ChangeRequest
from ledger.creation import CreatedTask, WithTask
from ledger.decisions import Decisions
from ledger.errors import Conflict, InvalidTransition, NotFound
from ledger.models import TaskCreateRequest
from ledger.sql import query
from ledger.states import TaskStatus
from ledger.steering import (
    close_open_steering,
    steer_ticket_agent,
    supersede_open_steering,
)
from ledger.ticket_agent_models import (
    STOPPED,
    AssignAgentRequest,
    AutoAssignOutcome,
    TicketAgent,
)
from ledger.ticket_agent_reads import FINISHED, AgentReads
from ledger.ticket_models import Ticket, TicketCreateRequest, TicketNote, UserResponseRequest
from ledger.ticket_timeline import TicketEvent, audit_ticket, write_note
from ledger.ticket_workflow import TERMINAL_STATUSES
from ledger.traces import append_trace

# The scope key that makes a task a ticket agent's (read by `worker/steering.py`).
TICKET_AGENT_KEY = "ticket_agent_id"
ASSIGNED = "assigned"
POLICY_DENIED = "policy_denied"


def _instructions(ticket: Ticket, run: ResolvedProfile, prompt: str) -> str:
    working = (
        f"You are the agent working ticket {ticket.id} ({ticket.ticket_class}, priority "
        f"{ticket.priority}): {ticket.title}\n\n{prompt}"
    )
    return f"{run.instructions}\n\n{working}" if run.instructions else working


class TicketAgents(AgentReads, Decisions, AgentConfigs):
    async def on_ticket_event(self, connection: asyncpg.Connection, event: TicketEvent) -> None:
        """A note from a person or a ticketing provider (and the requester's answer)
        becomes a steering event for the ticket's agent, in the note's transaction."""
        if event.note is not None and event.kind in ("note_added", "user_responded"):
            await steer_ticket_agent(
                connection,
                self.redactor,
                tenant_id=event.tenant_id,
                ticket_id=event.ticket.id,
                note_id=event.note.id,
                source=event.note.source,
                author=event.note.author,
                body=event.note.body,
            )
        await super().on_ticket_event(connection, event)

    # -- the lifecycle -----------------------------------------------------------------

    async def assign_agent(
        self, actor: Actor, ticket_id: UUID, request: AssignAgentRequest
    ) -> tuple[TicketAgent, CreatedTask]:
        """A new agent for the ticket and its first task, through the policy. 409 when
        the ticket already has an assigned agent, or is closed or cancelled."""
        ticket = await self.get_ticket(actor.tenant_id, ticket_id)
        if ticket.status in TERMINAL_STATUSES:
            raise Conflict(
                f"cannot assign an agent to a ticket that is {ticket.status}",
                current_status=ticket.status,
            )
        assigned = await self.pool.fetchrow(
            query("assigned_agent_of_ticket"), actor.tenant_id, ticket_id
        )
        if assigned is not None:
            raise _already_assigned(assigned["id"])
        run = await self._run_of(actor.tenant_id, request.profile, ticket, request.model)
        agent_id = uuid4()
        prompt = self.redactor.text(request.prompt or f"{ticket.title}\n\n{ticket.description}")
        model = run.model

        async def with_task(connection: asyncpg.Connection, task_id: UUID, status: str) -> None:
            denied = status == TaskStatus.DENIED
            try:
                await connection.execute(
                    query("insert_ticket_agent"),
                    agent_id,
                    actor.tenant_id,
                    ticket_id,
                    task_id,
                    STOPPED if denied else ASSIGNED,
                    POLICY_DENIED if denied else None,
                    run.lane,
                    run.model_provider,
                    model,
                    request.profile,
                    prompt,
                    actor.subject,
                    None,
                )
            except asyncpg.UniqueViolationError as error:
                raise _already_assigned(None) from error
            await self._record_task(
                connection, actor, ticket, agent_id, task_id, "assigned", current=not denied
            )

        created = await self._agent_task(actor, ticket, run, prompt, agent_id, model, with_task)
        return await self.get_agent(actor.tenant_id, agent_id), created

    async def open_ticket(
        self, actor: Actor, request: TicketCreateRequest
    ) -> tuple[Ticket, AutoAssignOutcome | None]:
        """A new ticket and, with `auto_assign`, an agent for it when the tenant's
        settings route its class to a profile with `auto_assign` (other routes stay
        manual). Tried once, after the ticket commits: refused (past the agent limit, or
        for a ticket created closed), the ticket stays without one, with a note saying why."""
        ticket = await self.create_ticket(actor, request)
        if not request.auto_assign:
            return ticket, None
        config = (await self.agent_config(actor.tenant_id)).config
        name = config.route_assignments.get(ticket.ticket_class)
        if name is None or not config.profiles[name].auto_assign:
            reason = f"no profile with auto_assign is routed {ticket.ticket_class} tickets"
            return ticket, AutoAssignOutcome(assigned=False, reason=reason)
        try:
            agent, _ = await self.assign_agent(actor, ticket.id, AssignAgentRequest(profile=name))
        except Conflict as refused:  # the agent limit, or a ticket created closed
            async with self.pool.acquire() as connection:
                await write_note(
                    connection,
                    self.redactor,
                    ticket,
                    actor.tenant_id,
                    kind="agent",
                    body=f"auto-assign skipped: {refused.message}",
                    author=actor.subject,
                    source="system",
                )
            return ticket, AutoAssignOutcome(assigned=False, reason=refused.message, profile=name)
        assigned = agent.state == ASSIGNED
        return await self.get_ticket(actor.tenant_id, ticket.id), AutoAssignOutcome(
            assigned=assigned,
            reason=f"routed to profile {name}" if assigned else str(agent.stop_reason),
            profile=name,
            agent_id=agent.id,
        )

    async def unassign_agent(self, actor: Actor, ticket_id: UUID, reason: str) -> TicketAgent:
        """Take the ticket's agent off it: stopped (reason `unassigned`), its open
        steering closed and its task cancelled. 409 when no agent is assigned."""
        await self.get_ticket(actor.tenant_id, ticket_id)
        row = await self.pool.fetchrow(
            query("assigned_agent_of_ticket"), actor.tenant_id, ticket_id
        )
        if row is None:
            raise Conflict("the ticket has no assigned agent", ticket_id=str(ticket_id))
        return await self._stop(actor, row["id"], "unassigned", reason)

    async def stop_agent(self, actor: Actor, agent_id: UUID, reason: str) -> TicketAgent:
        """Stop the agent: its open steering closed, its task cancelled, the ticket left
        without an agent. 409 when it is already stopped."""
        return await self._stop(actor, agent_id, "stopped", reason)

    async def wake_agent(
        self, actor: Actor, agent_id: UUID, reason: str, *, why: str = "wake"
    ) -> tuple[TicketAgent, CreatedTask]:
        """A new task for an assigned agent whose last task has finished; its open
        steering notes reach the new task's run. 409 while its task is unfinished or
        once it is stopped."""
        agent = await self.get_agent(actor.tenant_id, agent_id)
        if agent.state != ASSIGNED or agent.status not in FINISHED:
            raise Conflict(
                f"cannot wake an agent that is {agent.status}", current_status=agent.status
            )
        ticket = await self.get_ticket(actor.tenant_id, agent.ticket_id)
        run = await self._run_of(actor.tenant_id, agent.profile, ticket, agent.model)

        async def with_task(connection: asyncpg.Connection, task_id: UUID, status: str) -> None:
            moved = await connection.fetchrow(
                query("move_ticket_agent_to_task"),
                actor.tenant_id,
                agent_id,
                task_id,
                agent.task_id,
            )
            if moved is None:
                raise Conflict("the agent changed meanwhile; read it again", agent_id=str(agent_id))
            await self._record_task(
                connection, actor, ticket, agent_id, task_id, why, current=True, reason=reason
            )

        prompt = agent.prompt + (f"\n\nWoken: {reason}" if reason else "")
        created = await self._agent_task(actor, ticket, run, prompt, agent_id, run.model, with_task)
        return await self.get_agent(actor.tenant_id, agent_id), created

    async def restart_agent(
        self, actor: Actor, agent_id: UUID, reason: str
    ) -> tuple[TicketAgent, CreatedTask]:
        """Replace an assigned agent by a new one with the same settings and a new task;
        the old one is stopped (reason `restarted`), its task cancelled, and its open
        steering notes handed to the new one. 409 once it is stopped."""
        old = await self.get_agent(actor.tenant_id, agent_id)
        if old.state != ASSIGNED:
            raise Conflict("cannot restart a stopped agent", current_status=old.status)
        ticket = await self.get_ticket(actor.tenant_id, old.ticket_id)
        run = await self._run_of(actor.tenant_id, old.profile, ticket, old.model)
        new_id = uuid4()

        async def with_task(connection: asyncpg.Connection, task_id: UUID, status: str) -> None:
            stopped = await connection.fetchrow(
                query("stop_ticket_agent_if_assigned"), actor.tenant_id, agent_id, "restarted"
            )
            if stopped is None:
                raise Conflict("the agent was stopped meanwhile", agent_id=str(agent_id))
            denied = status == TaskStatus.DENIED
            await connection.execute(
                query("insert_ticket_agent"),
                new_id,
                actor.tenant_id,
                old.ticket_id,
                task_id,
                STOPPED if denied else ASSIGNED,
                POLICY_DENIED if denied else None,
                run.lane,
                run.model_provider,
                run.model,
                old.profile,
                old.prompt,
                actor.subject,
                agent_id,
            )
            await supersede_open_steering(
                connection, self.redactor, stopped, new_id, actor=actor.subject
            )
            await self._record_task(
                connection,
                actor,
                ticket,
                new_id,
                task_id,
                "restart",
                current=not denied,
                reason=reason,
            )

        created = await self._agent_task(
            actor, ticket, run, old.prompt, new_id, run.model, with_task, counted=False
        )
        await self._cancel_quietly(actor, old.task_id, f"agent {agent_id} restarted")
        return await self.get_agent(actor.tenant_id, new_id), created

    async def user_response(
        self, actor: Actor, ticket_id: UUID, request: UserResponseRequest
    ) -> tuple[Ticket, TicketNote]:
        """The requester's answer (a steering event for the ticket's agent, from the
        note's transaction), then the agent resumed: the answer reaches the new task's
        first model call."""
        ticket, note = await super().user_response(actor, ticket_id, request)
        await self._resume(actor, ticket_id, "the requester answered", why="user_response")
        return ticket, note

    async def approve_change(
        self, actor: Actor, change_id: UUID, request: ApproveChangeRequest
    ) -> ChangeRequest:
        """An approval; when it grants an access request, the original ticket's agent
        resumed, and when it approves a change an agent asked for, that agent (a run
        still waiting for the decision sees it in its `wait_for_change`)."""
        approved = await super().approve_change(actor, change_id, request)
        if approved.status == "approved":
            access = await self.pool.fetchrow(
                query("access_request_for_change"), actor.tenant_id, approved.id
            )
            if access is not None:
                reason = f"access granted: {access['permission']} on {access['resource']}"
                await self._resume(actor, access["ticket_id"], reason, why="access_granted")
            elif approved.agent_id is not None:
                reason = f"change {approved.id} approved: {approved.action} on {approved.target}"
                await self._resume(actor, approved.ticket_id, reason, why="change_approved")
        return approved

    async def _resume(self, actor: Actor, ticket_id: UUID, reason: str, *, why: str) -> None:
        """Wake the ticket's agent, once the change that resumes it has committed (a
        wake in its transaction would wait on the ticket row it holds), when its last
        task has finished; an agent still working is left to its steering."""
        ticket = await self.get_ticket(actor.tenant_id, ticket_id)
        if ticket.agent_id is None:
            return
        agent = await self.get_agent(actor.tenant_id, ticket.agent_id)
        if agent.state == ASSIGNED and agent.status in FINISHED:
            # Woken meanwhile by someone else: that wake resumed it.
            with contextlib.suppress(Conflict):
                await self.wake_agent(actor, agent.id, reason, why=why)

    # -- helpers -----------------------------------------------------------------------

    async def _agent_task(
        self,
        actor: Actor,
        ticket: Ticket,
        run: ResolvedProfile,
        prompt: str,
        agent_id: UUID,
        model: str | None,
        with_task: WithTask,
        *,
        counted: bool = True,
    ) -> CreatedTask:
        """The agent's task, through the policy; refused (409) past the tenant's
        max_concurrent_agents unless it only replaces one (`counted=False`, a restart)."""
        request = TaskCreateRequest(
            lane=run.lane,
            title=f"Agent on ticket: {ticket.title}"[:500],
            instructions=_instructions(ticket, run, prompt),
            scope={
                TICKET_AGENT_KEY: str(agent_id),
                "ticket_id": str(ticket.id),
                PROFILE_SCOPE_KEY: run.scope(),
            },
            mutation_level=run.mutation_level,
            model_provider=run.model_provider,
        )

        async def within_limit(connection: asyncpg.Connection, task_id: UUID, status: str) -> None:
            if counted:
                await hold_agent_limit(connection, actor.tenant_id)
            await with_task(connection, task_id, status)

        return await self.create_task(
            actor,
            request,
            run_options={"model": model} if model else None,
            with_task=within_limit,
        )

    async def _run_of(
        self, tenant_id: str, profile: str | None, ticket: Ticket, model: str | None
    ) -> ResolvedProfile:
        """How the agent's next task runs: its profile resolved now (404 for a profile
        the tenant's settings do not define), the model given over the profile's."""
        resolved = await self.resolve_agent_profile(tenant_id, profile, ticket.ticket_class)
        return resolved.model_copy(update={"model": model or resolved.model})

    async def _record_task(
        self,
        connection: asyncpg.Connection,
        actor: Actor,
        ticket: Ticket,
        agent_id: UUID,
        task_id: UUID,
        why: str,
        *,
        current: bool,
        reason: str = "",
    ) -> None:
        """The agent's new task: recorded in its history, linked to the ticket (as its
        current agent's unless the task was denied), noted, audited and traced."""
        await connection.execute(
            query("insert_ticket_agent_task"), agent_id, task_id, actor.tenant_id, why
        )
        if current:
            await self.set_current_agent(
                connection, actor.tenant_id, ticket.id, agent_id=agent_id, task_id=task_id
            )
        else:
            await self.link_ticket_task(connection, actor.tenant_id, ticket.id, task_id)
        detail = {"task_id": str(task_id), "why": why, "reason": self.redactor.text(reason)}
        await self._write_agent_change(
            connection, actor, ticket, agent_id, f"ticket_agent_{why}", detail
        )
        await append_trace(
            connection,
            self.redactor,
            task_id,
            f"ticket_agent_{why}",
            actor=actor.subject,
            message=f"task of agent {agent_id} on ticket {ticket.id} ({why})",
            data={"agent_id": str(agent_id), "ticket_id": str(ticket.id)},
        )

    async def _stop(self, actor: Actor, agent_id: UUID, why: str, reason: str) -> TicketAgent:
        async with self.pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(query("lock_ticket_agent"), actor.tenant_id, agent_id)
            if row is None:
                raise NotFound("agent not found", agent_id=str(agent_id))
            stopped = await connection.fetchrow(
                query("stop_ticket_agent_if_assigned"), actor.tenant_id, agent_id, why
            )
            if stopped is None:
                raise Conflict("the agent is already stopped", current_status=STOPPED)
            await close_open_steering(
                connection, self.redactor, stopped, reason=f"agent_{why}", actor=actor.subject
            )
            ticket = await self.set_current_agent(
                connection, actor.tenant_id, row["ticket_id"], agent_id=None, task_id=None
            )
            detail = {"task_id": str(row["task_id"]), "reason": self.redactor.text(reason)}
            await self._write_agent_change(
                connection, actor, ticket, agent_id, f"ticket_agent_{why}", detail
            )
        await self._cancel_quietly(actor, row["task_id"], f"agent {why}: {reason}".rstrip(": "))
        return await self.get_agent(actor.tenant_id, agent_id)

    async def _cancel_quietly(self, actor: Actor, task_id: UUID, reason: str) -> None:
        """Cancel a stopped agent's task unless it has already finished."""
        # Finished before the stop reached it: nothing is left to cancel.
        with contextlib.suppress(InvalidTransition):
            await self.cancel(actor, task_id, reason=reason)

    async def _write_agent_change(
        self,
        connection: asyncpg.Connection,
        actor: Actor,
        ticket: Ticket,
        agent_id: UUID,
        action: str,
        detail: dict[str, Any],
    ) -> None:
        """The ticket note and the audit record of an agent's change."""
        await write_note(
            connection,
            self.redactor,
            ticket,
            actor.tenant_id,
            kind="agent",
            body=f"{action.removeprefix('ticket_').replace('_', ' ')}: agent {agent_id}"
            + (f" ({detail['reason']})" if detail.get("reason") else ""),
            author=actor.subject,
            source="system",
            data={"agent_id": str(agent_id), **detail},
        )
        await audit_ticket(
            connection,
            self.redactor,
            actor,
            action,
            ticket.id,
            detail,
            target_type="ticket_agent",
            target_id=agent_id,
            agent_id=agent_id,
        )


def _already_assigned(agent_id: UUID | None) -> Conflict:
    return Conflict(
        "the ticket already has an assigned agent; unassign or restart it",
        agent_id=str(agent_id) if agent_id else None,
    )
