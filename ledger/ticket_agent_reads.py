"""Reads of the agents on tickets (`ledger/ticket_agents.py`): one, a page, the active
ones, counts and durations, the detail (tasks, change requests, audit), the logs (the
trace events of its tasks) and its steering events; and a session's acknowledgement of
a steering event delivered to it."""

from dataclasses import dataclass
from uuid import UUID

from ledger.actor import Actor
from ledger.agent_sessions import Caller
from ledger.audit_feed import FeedEntry, FeedFilters, read_feed
from ledger.change_models import ChangeListQuery, ChangeRequest
from ledger.changes import Changes
from ledger.errors import NotFound
from ledger.models import TraceEvent
from ledger.sql import query
from ledger.states import TERMINAL
from ledger.steering import SteeringEvent, expire_overdue_steering
from ledger.ticket_agent_models import (
    STOPPED,
    AgentListQuery,
    AgentStats,
    AgentTask,
    TicketAgent,
    agent_record,
)
from ledger.traces import append_trace

FINISHED = sorted(str(status) for status in TERMINAL)
DETAIL_ITEMS = 20


@dataclass(frozen=True)
class AgentDetail:
    agent: TicketAgent
    tasks: list[AgentTask]
    change_requests: list[ChangeRequest]
    audit: list[FeedEntry]


class AgentReads(Changes):
    # -- reads -------------------------------------------------------------------------

    async def get_agent(self, tenant_id: str, agent_id: UUID) -> TicketAgent:
        row = await self.pool.fetchrow(query("get_ticket_agent"), tenant_id, agent_id)
        if row is None:
            raise NotFound("agent not found", agent_id=str(agent_id))
        return agent_record(row)

    async def list_agents(self, tenant_id: str, filters: AgentListQuery) -> list[TicketAgent]:
        rows = await self.pool.fetch(
            query("list_ticket_agents"),
            tenant_id,
            filters.status,
            filters.ticket_id,
            filters.limit,
            filters.offset,
        )
        return [agent_record(row) for row in rows]

    async def active_agents(self, tenant_id: str, limit: int) -> list[TicketAgent]:
        rows = await self.pool.fetch(query("active_ticket_agents"), tenant_id, FINISHED, limit)
        return [agent_record(row) for row in rows]

    async def agent_stats(self, tenant_id: str) -> AgentStats:
        async with self.pool.acquire() as connection:
            counts = {
                row["status"]: row["agents"]
                for row in await connection.fetch(query("ticket_agent_status_counts"), tenant_id)
            }
            durations = await connection.fetchrow(query("ticket_agent_durations"), tenant_id)
        finished = {*FINISHED, STOPPED}
        return AgentStats(
            total=sum(counts.values()),
            active=sum(n for status, n in counts.items() if status not in finished),
            by_status=counts,
            finished_runs=durations["finished_runs"],
            average_duration_seconds=durations["average_seconds"],
        )

    async def agent_detail(self, actor: Actor, agent_id: UUID) -> AgentDetail:
        """The agent, its tasks (the latest first), its change requests and its audit
        records, the latest DETAIL_ITEMS of each."""
        agent = await self.get_agent(actor.tenant_id, agent_id)
        async with self.pool.acquire() as connection:
            tasks = await connection.fetch(
                query("ticket_agent_tasks"), actor.tenant_id, agent_id, DETAIL_ITEMS
            )
            audit = await read_feed(
                connection,
                actor.tenant_id,
                FeedFilters(source="audit", agent_id=str(agent_id)),
                limit=DETAIL_ITEMS,
                role=actor.role,
            )
        changes = await self.list_changes(
            actor.tenant_id, ChangeListQuery(agent_id=agent_id, limit=DETAIL_ITEMS)
        )
        return AgentDetail(
            agent=agent,
            tasks=[AgentTask.model_validate(dict(row)) for row in tasks],
            change_requests=changes,
            audit=audit.entries,
        )

    async def agent_logs(self, tenant_id: str, agent_id: UUID, limit: int) -> list[TraceEvent]:
        """The latest `limit` trace events of the agent's tasks, oldest first."""
        await self.get_agent(tenant_id, agent_id)
        rows = await self.pool.fetch(query("ticket_agent_logs"), tenant_id, agent_id, limit)
        return [TraceEvent.model_validate(dict(row)) for row in rows]

    async def agent_steering(
        self, tenant_id: str, agent_id: UUID, limit: int
    ) -> list[SteeringEvent]:
        """The agent's steering events, newest first; the overdue ones are written
        `expired` first, so what is listed is their state now."""
        agent = await self.get_agent(tenant_id, agent_id)
        async with self.pool.acquire() as connection, connection.transaction():
            await expire_overdue_steering(connection, self.redactor, agent.id)
            rows = await connection.fetch(query("list_steering_events"), tenant_id, agent_id, limit)
        return [SteeringEvent.model_validate(dict(row)) for row in rows]

    async def acknowledge_steering(
        self, caller: Caller, agent_id: UUID, event_id: UUID
    ) -> SteeringEvent:
        """The calling session acknowledges an event delivered to its claim (again:
        the same answer). 404 for an event that is not the caller's: another agent's,
        not delivered to this session's claim, or another tenant's."""
        async with self.pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                query("steering_event_for_session"),
                event_id,
                agent_id,
                caller.tenant_id,
                caller.session_id,
            )
            if row is None or not row["delivered_to_session"]:
                raise NotFound("no such steering event for this session", event_id=str(event_id))
            if row["state"] != "delivered":
                return SteeringEvent.model_validate(dict(row))
            acked = await connection.fetchrow(
                query("acknowledge_steering_for_session"),
                event_id,
                agent_id,
                caller.tenant_id,
                caller.session_id,
                f"session:{caller.session_id}",
            )
            await append_trace(
                connection,
                self.redactor,
                acked["task_id"],
                "steering_acknowledged",
                actor=f"session:{caller.session_id}",
                message="1 steering note(s) acknowledged",
                data={"event_ids": [str(event_id)]},
            )
        return SteeringEvent.model_validate(dict(acked))
