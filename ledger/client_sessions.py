"""Client-side agent sessions: the client drives the agent loop, one step at a time.

A session is a thread (kind `client_session`) plus its `client_sessions` row (migration
0010). Each step the client asks for, an inference turn or a tool call, is a thread run:
a task created here through `create_task`, so it gets the policy's verdict for its
mutation level in the session's lane, is executed by a worker under a lease, retried,
cancellable and traced like any task. The thread's one-active-run rule makes the steps
sequential: a second step while one is queued, running or awaiting approval is a 409.
This module only records and authorises; `worker/client_session.py` executes.
"""

import json
from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import structlog

from ledger.actor import Actor
from ledger.creation import CreatedTask, ThreadTurn
from ledger.errors import BadRequest, Conflict, NotFound, PolicyError
from ledger.models import ApprovalRequest, TaskCreateRequest
from ledger.policy import Verdict
from ledger.session_steps import (
    INFERENCE,
    SESSION_COMPLETED,
    SESSION_RUNNING,
    SESSION_STEP,
    TOOL_CALL,
    ClientSession,
    InferenceStep,
    ToolCallStep,
    response_task,
    session_steps,
)
from ledger.sql import query
from ledger.states import TaskStatus
from ledger.threads import Threads
from ledger.tool_gateway import GatewayTool, gateway

log = structlog.get_logger(__name__)

# A step still under way: the statuses the thread's one-active-run index covers.
ACTIVE_STEP = [
    str(status)
    for status in (
        TaskStatus.QUEUED,
        TaskStatus.DISPATCHED,
        TaskStatus.RUNNING,
        TaskStatus.AWAITING_APPROVAL,
    )
]


class ClientSessions(Threads):
    def session_gateway(self, agent_type: str) -> list[GatewayTool]:
        return gateway(self.agents, self.policy, agent_type)

    async def create_client_session(
        self,
        actor: Actor,
        agent_type: str,
        *,
        provider: str,
        model: str | None,
        default_model: Callable[[str], str | None],
    ) -> ClientSession:
        """A session with a registered agent, in the agent's lane. The provider must be
        one the agent allows, and the lane's verdict for it must not be a deny; the
        model is the one asked for, else `default_model(provider)`."""
        agent = self.agents[self._agent(agent_type)]
        if provider not in self.policy.providers:
            raise BadRequest(
                f"unknown provider {provider!r}",
                field="provider",
                allowed=sorted(self.policy.providers),
            )
        if provider not in agent.allowed_providers:
            raise BadRequest(
                f"agent {agent.id} does not use provider {provider!r}",
                field="provider",
                allowed=agent.allowed_providers,
            )
        verdict = self.policy.evaluate(
            lane_name=agent.lane,
            mutation_level=self.policy.mutation_levels[0],
            source_systems=[],
            scope={},
            model_provider=provider,
            role=actor.role,
        )
        if verdict.decision == "deny":
            raise PolicyError("the policy denies this session", reasons=verdict.reasons)
        resolved = model or default_model(provider)
        if resolved is None:
            # A 409, not a 400: the request is well formed; what it needs (the provider's
            # default model) is not configured where the API runs.
            raise Conflict(
                f"the default model of provider {provider} is not configured where the API "
                "runs: name the model",
                field="model",
            )
        async with self.pool.acquire() as connection:
            row = await connection.fetchrow(
                query("insert_client_session"),
                uuid4(),
                actor.tenant_id,
                agent.id,
                self.redactor.text(f"{agent.name}: client-side session")[:500],
                actor.subject,
                agent.lane,
                provider,
                resolved,
                verdict.model_dump(),
            )
        log.info("client_session_created", session_id=str(row["thread_id"]), agent=agent.id)
        return self._session(row, [])

    async def client_session(self, actor: Actor, session_id: UUID) -> ClientSession:
        """The session with its steps (404 for another tenant's)."""
        row = await self._row(actor, session_id)
        return self._session(row, await self._steps(actor, session_id))

    async def session_step(
        self, actor: Actor, session_id: UUID, task_id: UUID
    ) -> InferenceStep | ToolCallStep:
        """One step of the session, by its task."""
        for step in await self._steps(actor, session_id):
            if step.task_id == task_id:
                return step
        raise NotFound("step not found in this session", task_id=str(task_id))

    async def start_inference(
        self,
        actor: Actor,
        session_id: UUID,
        *,
        model: str,
        text: str,
        previous_response_id: str | None,
        intent: str | None,
    ) -> CreatedTask:
        """An inference turn: a task at the intent's mutation level (read_only when
        none is declared), so its verdict is the intent gate. Without a previous
        response the turn follows the session's latest answered one."""
        row = await self._owned(actor, session_id)
        if model != row["model"]:
            # A 409, not a 400: the request is well formed, the session's model (fixed at
            # creation) is another.
            raise Conflict(
                f"the session runs model {row['model']!r}, not {model!r}",
                field="model",
                expected=row["model"],
            )
        if intent is not None and intent not in self.policy.mutation_levels:
            raise BadRequest(
                f"unknown intent {intent!r}", field="intent", allowed=self.policy.mutation_levels
            )
        previous = await self._previous(session_id, previous_response_id)
        agent = self.agents[row["agent_type"]]
        first_line = next((line for line in text.splitlines() if line.strip()), text)
        request = TaskCreateRequest(
            lane=row["lane"],
            title=f"{agent.name}: inference: {first_line.strip()}"[:500],
            instructions=text,
            mutation_level=intent or self.policy.mutation_levels[0],
            model_provider=row["provider"],
        )
        options = {
            SESSION_STEP: INFERENCE,
            "model": row["model"],
            "previous_response_id": previous,
            "intent": intent,
        }
        return await self.create_task(
            actor,
            request,
            turn=ThreadTurn(
                session_id,
                agent.id,
                run_options=self.redactor.value(options),
                message_data={SESSION_STEP: INFERENCE, "previous_response_id": previous},
                client_session=True,
            ),
        )

    async def start_tool_call(
        self, actor: Actor, session_id: UUID, *, call_id: str, name: str, arguments: str
    ) -> CreatedTask:
        """A tool call the session's model asked for, through the gateway: a task at the
        tool's mutation level (its verdict is the call's), executed once."""
        row = await self._owned(actor, session_id)
        tools = {tool.name: tool for tool in self.session_gateway(row["agent_type"])}
        if name not in tools:
            raise BadRequest(
                f"tool {name!r} is not in the session's gateway", field="name", allowed=list(tools)
            )
        try:
            parsed = json.loads(arguments)
        except json.JSONDecodeError as error:
            raise BadRequest(f"arguments are not JSON: {error}", field="arguments") from error
        if not isinstance(parsed, dict):
            raise BadRequest("arguments must be a JSON object", field="arguments")
        await self._callable(session_id, call_id, name)
        agent = self.agents[row["agent_type"]]
        request = TaskCreateRequest(
            lane=row["lane"],
            title=f"{agent.name}: tool call {name}",
            instructions=json.dumps({"call_id": call_id, "name": name, "arguments": parsed}),
            mutation_level=tools[name].mutation_level,
            model_provider=row["provider"],
        )
        # Stored as every input is, redacted: the worker executes what is stored, so a
        # secret in the arguments reaches the tool as [redacted].
        options = {
            SESSION_STEP: TOOL_CALL,
            "call_id": call_id,
            "name": name,
            "arguments": arguments,
        }
        return await self.create_task(
            actor,
            request,
            turn=ThreadTurn(
                session_id,
                agent.id,
                run_options=self.redactor.value(options),
                message_data=None,
                client_session=True,
            ),
        )

    async def complete_client_session(
        self, actor: Actor, session_id: UUID, *, summary: str, confidence: float
    ) -> ClientSession:
        """Completed by its owner, once, with no step under way. The row is locked
        first: a step being written holds a share lock on it until it commits, so a step
        is either seen here (409) or refused for the completed session."""
        async with self.pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                query("lock_client_session"), actor.tenant_id, session_id
            )
            self._check_owner(actor, row, session_id)
            assert row is not None
            if row["status"] != SESSION_RUNNING:
                raise Conflict(
                    "the client session is already completed",
                    completed_at=row["completed_at"].isoformat(),
                )
            under_way = await connection.fetchval(query("thread_task_in"), session_id, ACTIVE_STEP)
            if under_way is not None:
                raise Conflict(
                    "a step of the session is still under way: wait for it or cancel it",
                    task_id=str(under_way),
                )
            await connection.execute(
                query("complete_client_session"),
                actor.tenant_id,
                session_id,
                SESSION_COMPLETED,
                self.redactor.text(summary),
                confidence,
                SESSION_RUNNING,
            )
        log.info("client_session_completed", session_id=str(session_id), actor=actor.subject)
        return await self.client_session(actor, session_id)

    async def _row(self, actor: Actor, session_id: UUID) -> asyncpg.Record:
        row = await self.pool.fetchrow(query("get_client_session"), actor.tenant_id, session_id)
        if row is None:
            raise NotFound("client session not found", session_id=str(session_id))
        return row

    def _check_owner(self, actor: Actor, row: asyncpg.Record | None, session_id: UUID) -> None:
        if row is None:
            raise NotFound("client session not found", session_id=str(session_id))
        if row["owner"] != actor.subject:
            raise PolicyError("only the subject that created the session may act in it")

    async def _owned(self, actor: Actor, session_id: UUID) -> asyncpg.Record:
        """The session, when the caller created it and it still takes steps."""
        row = await self._row(actor, session_id)
        self._check_owner(actor, row, session_id)
        if row["status"] != SESSION_RUNNING:
            raise Conflict(
                "the client session is completed: it takes no more steps",
                session_id=str(session_id),
            )
        return row

    async def _previous(self, session_id: UUID, given: str | None) -> str | None:
        """The response a turn follows: the one given, which must be an answered turn of
        this session, else the session's latest (none before its first answer)."""
        if given is None:
            return await self.pool.fetchval(query("thread_latest_response"), session_id)
        task_id = response_task(given)
        if task_id is None or not await self.pool.fetchval(
            query("thread_response_exists"), session_id, task_id, given
        ):
            raise BadRequest(
                "previous_response_id is not a response of this session",
                field="previous_response_id",
            )
        return given

    async def _callable(self, session_id: UUID, call_id: str, name: str) -> None:
        """The call must be one the session's model asked for, of this tool, and not
        executed yet: its result is the model's context, once."""
        messages = await self.pool.fetch(query("thread_call_messages"), session_id, call_id)
        asked = [m for m in messages if m["role"] == "tool_call" and "response_id" in m["data"]]
        if not asked:
            raise BadRequest(
                f"call_id {call_id!r} is not a tool call the session's model asked for",
                field="call_id",
            )
        if asked[0]["data"].get("tool") != name:
            raise BadRequest(
                f"call {call_id} asked for tool {asked[0]['data'].get('tool')!r}",
                field="name",
            )
        if any(m["role"] == "tool_result" for m in messages):
            raise Conflict("the tool call was already executed", call_id=call_id)

    async def _steps(self, actor: Actor, session_id: UUID) -> list[InferenceStep | ToolCallStep]:
        rows = await self.pool.fetch(query("client_session_steps"), actor.tenant_id, session_id)
        messages = await self.messages(actor, session_id)
        approvals = await self.pool.fetch(
            query("tasks_approval_requests"), actor.tenant_id, [row["id"] for row in rows]
        )
        return session_steps(
            rows, messages, [ApprovalRequest.model_validate(dict(a)) for a in approvals]
        )

    def _session(self, row: asyncpg.Record, steps: list[Any]) -> ClientSession:
        agent = self.agents[row["agent_type"]]
        return ClientSession(
            id=row["thread_id"],
            status=row["status"],
            agent_type=agent.id,
            lane=row["lane"],
            provider=row["provider"],
            model=row["model"],
            system_prompt=agent.instructions,
            tools=self.session_gateway(agent.id),
            policy_verdict=Verdict.model_validate(row["policy_verdict"]),
            created_by=row["owner"],
            created_at=row["created_at"],
            completed_at=row["completed_at"],
            summary=row["summary"],
            confidence=row["confidence"],
            steps=steps,
        )
