"""Conversations: threads, their history, and starting a run in one.

A thread run is a task (`ledger/creation.py` with a `ThreadTurn`): it gets the policy's
verdict for the lane of the agent the thread was opened for and is executed by a
worker like any task; the user's message is its instructions and joins the history in
the same transaction. The agents' answers join the history with the run's completion.
"""

from functools import cached_property
from typing import Any
from uuid import UUID, uuid4

from ledger.actor import Actor
from ledger.agent_registry import AgentRegistry, load_agents
from ledger.creation import CreatedTask, TaskCreation, ThreadTurn
from ledger.errors import BadRequest, Conflict, NotFound
from ledger.models import (
    AgentConfig,
    Task,
    TaskCreateRequest,
    Thread,
    ThreadMessage,
    TraceEvent,
    thread_record,
)
from ledger.sql import query

# The most threads a listing returns.
THREAD_LIST_LIMIT = 50
# Trace events read per query when a run's whole trace is read.
TRACE_PAGE = 5000


class Threads(TaskCreation):
    @cached_property
    def agents(self) -> AgentRegistry:
        return load_agents(self.policy)

    def _agent(self, agent_type: str, field: str = "agent_type") -> str:
        if agent_type not in self.agents:
            raise BadRequest(
                f"unknown {field} {agent_type!r}", field=field, allowed=self.agents.ids()
            )
        return agent_type

    async def create_thread(
        self,
        actor: Actor,
        agent_type: str,
        *,
        title: str = "",
        metadata: dict[str, Any] | None = None,
        session_id: str | None = None,
    ) -> Thread:
        self._agent(agent_type)
        async with self.pool.acquire() as connection:
            row = await connection.fetchrow(
                query("insert_thread"),
                uuid4(),
                actor.tenant_id,
                session_id,
                agent_type,
                self.redactor.text(title),
                self.redactor.value(metadata or {}),
                actor.subject,
            )
        if row is None:
            raise Conflict("a thread with this session_id exists", session_id=session_id)
        return thread_record(row)

    async def get_thread(self, actor: Actor, thread_id: UUID) -> Thread:
        async with self.pool.acquire() as connection:
            row = await connection.fetchrow(query("get_thread"), actor.tenant_id, thread_id)
        if row is None:
            raise NotFound("thread not found", thread_id=str(thread_id))
        return thread_record(row)

    async def thread_by_session(self, actor: Actor, session_id: str) -> Thread | None:
        async with self.pool.acquire() as connection:
            row = await connection.fetchrow(
                query("get_thread_by_session"), actor.tenant_id, session_id
            )
        return None if row is None else thread_record(row)

    async def list_threads(self, actor: Actor, agent_type: str | None = None) -> list[Thread]:
        async with self.pool.acquire() as connection:
            rows = await connection.fetch(
                query("list_threads"), actor.tenant_id, agent_type, THREAD_LIST_LIMIT
            )
        return [thread_record(row) for row in rows]

    async def messages(self, actor: Actor, thread_id: UUID) -> list[ThreadMessage]:
        """The thread's full history, oldest first (404 for another tenant's thread)."""
        thread = await self.get_thread(actor, thread_id)
        async with self.pool.acquire() as connection:
            rows = await connection.fetch(query("thread_history"), thread.id)
        return [ThreadMessage.model_validate(dict(row)) for row in rows]

    async def start_run(
        self,
        actor: Actor,
        thread_id: UUID,
        message: str,
        config: AgentConfig | None = None,
    ) -> CreatedTask:
        """The user's message and the run that answers it, as a governed task in the
        lane of the thread's agent. The provider must be one the agent allows; the
        lane's profile decides the rest in the verdict. The rest of the config is the
        run's options, applied by the worker."""
        config = config or AgentConfig()
        provider = config.provider
        thread = await self.get_thread(actor, thread_id)
        if thread.kind == "client_session":
            raise Conflict(
                "the thread is a client-side agent session: its client takes its steps "
                "through /api/v1/client-sessions/{id}",
                thread_id=str(thread.id),
            )
        agent = self.agents[thread.agent_type]
        if provider not in agent.allowed_providers:
            raise BadRequest(
                f"agent {agent.id} does not use provider {provider!r}",
                field="agent_config.provider",
                allowed=agent.allowed_providers,
            )
        first_line = next((line for line in message.splitlines() if line.strip()), message)
        request = TaskCreateRequest(
            lane=agent.lane,
            title=f"{agent.name}: {first_line.strip()}"[:500],
            instructions=message,
            model_provider=provider,
        )
        return await self.create_task(
            actor,
            request,
            turn=ThreadTurn(thread.id, agent.id, config.model_dump(exclude={"provider"})),
        )

    async def get_thread_run(self, actor: Actor, run_id: UUID) -> Task:
        """A thread's run: its task. A task that answers no thread is not a run, like
        another tenant's."""
        try:
            task = await self.get_task(actor.tenant_id, run_id)
        except NotFound:
            task = None
        if task is None or task.thread_id is None:
            raise NotFound("run not found", run_id=str(run_id))
        return task

    async def run_trace(self, run: Task) -> list[TraceEvent]:
        """Every trace event of a thread run (as `get_thread_run` read it), in order, a
        page at a time: its steps are read from them."""
        events: list[TraceEvent] = []
        while True:
            after = events[-1].seq if events else 0
            rows = await self.pool.fetch(
                query("list_traces"), run.tenant_id, run.id, after, TRACE_PAGE
            )
            events += [TraceEvent.model_validate(dict(row)) for row in rows]
            if len(rows) < TRACE_PAGE:
                return events
