"""Spawning: a session starts a helper, a child session with a task of its own that a
worker claims from the lane like any task (the child's session is made with the task
and bound at its first claim).

What a spawn must pass, in order, each refusal a diagnostic and a `spawn_refused` event
in the parent's trace (nothing of the child is left behind):
1. the request: an agent of the parent's workspace (else 404), not the `coordinator`
   role, a TTL within the workspace's maximum (defaulted when left out);
2. the permission rule (`agentdefs/permissions.py`): the child's six kinds of
   permission a subset of the parent's (left out: the parent's);
3. the policy's verdict for the child's task, like any task (lane and mutation level of
   the parent's task, submitted as an operator: never break glass);
4. in the transaction that creates the child, with the session tree's root and the
   parent locked (so concurrent spawns through any replica take turns): the permission
   rule again, against the parent as locked; the depth; the parent's live children
   against `max_children`; the tree's live spawned sessions in the workspace against
   `max_active_per_workspace`. A child's budget is its parent's, with its own TTL.

A child stops (`dispatcher/session_reaper.py`) when its TTL passes, and, with
`auto_stop_on_parent`, when its parent stops, all the way down. A parent reads its
children (`children`), and may wait for them to settle (`children_settled`).
"""

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from agentdefs.permissions import widening
from ledger.actor import Actor
from ledger.agent_context import SelfViews
from ledger.agent_sessions import Caller, session_record, session_state
from ledger.audit import record_audit
from ledger.channels import Waker
from ledger.creation import TaskCreation
from ledger.errors import LedgerError, NotFound
from ledger.models import Task, TaskCreateRequest
from ledger.notify import wait_any
from ledger.runtime_config import Coordinator, lane_agent_name
from ledger.runtime_models import AgentSession, SessionState, SpawnBudget
from ledger.sql import query
from ledger.states import TERMINAL, TaskStatus
from ledger.traces import append_trace

# A child's task in one of these has stopped, or waits for an operator: a parent
# waiting for its children waits no longer for it.
SETTLED = TERMINAL | {TaskStatus.BLOCKED, TaskStatus.AWAITING_APPROVAL}
# How often a waiting parent reads its children again without a notification.
_POLL_SECONDS = 2.0


class SpawnRefused(LedgerError):
    """403: the spawn would widen permissions, overshoot a budget, or is not allowed."""

    code = "spawn_refused"

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message, **details)
        self.code = code


@dataclass(frozen=True)
class SpawnOrder:
    instructions: str
    title: str | None = None
    agent_name: str | None = None
    spawn_role: str | None = None
    ttl_seconds: int | None = None
    auto_stop_on_parent: bool = True
    # By kind; a kind left out is the parent's. None: all of the parent's.
    permissions: dict[str, list[str]] | None = None


@dataclass(frozen=True)
class Spawned:
    session: AgentSession
    task: Task
    permissions: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Child:
    """A spawned session as its parent sees it: its state, its task's, and where its
    task's newest final output is stored (None: none yet)."""

    session_id: UUID
    task_id: UUID
    agent_name: str
    session_state: SessionState
    stop_reason: str | None
    task_status: str
    terminal_reason: str | None
    output_ref: str | None

    @property
    def settled(self) -> bool:
        return self.task_status in SETTLED


class Spawns(SelfViews):
    tasks: TaskCreation

    async def children(self, caller: Caller) -> list[Child]:
        """The sessions the caller spawned, oldest first."""
        rows = await self.pool.fetch(query("spawned_children"), caller.session_id, caller.tenant_id)
        return [
            Child(
                session_id=row["id"],
                task_id=row["task_id"],
                agent_name=row["agent_name"],
                session_state=session_state(row["state"], row["held"], row["task_status"]),
                stop_reason=row["stop_reason"],
                task_status=row["task_status"],
                terminal_reason=row["terminal_reason"],
                output_ref=row["output_ref"],
            )
            for row in rows
        ]

    async def children_settled(
        self, caller: Caller, wanted: set[UUID], seconds: float, waker: Waker
    ) -> list[Child]:
        """The caller's children among `wanted` (by session or task id; empty: all),
        once each has settled (`SETTLED`) or after `seconds`, as they are then. The
        wake-up is a child's trace growing (NOTIFY, from whichever worker runs it). It
        waits only after a read made once it followed every child read, so a change
        between the read and the wait wakes it."""
        await waker.ensure()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        with contextlib.ExitStack() as subscriptions:
            woken: dict[UUID, asyncio.Event] = {}
            while True:
                for event in woken.values():
                    event.clear()
                children = [
                    child
                    for child in await self.children(caller)
                    if not wanted or {child.session_id, child.task_id} & wanted
                ]
                new = [child for child in children if child.task_id not in woken]
                for child in new:
                    woken[child.task_id] = subscriptions.enter_context(
                        waker.subscribe(str(child.task_id))
                    )
                if new:  # subscribed after that read: read again
                    continue
                left = deadline - loop.time()
                if all(child.settled for child in children) or left <= 0:
                    return children
                await wait_any(*woken.values(), seconds=min(_POLL_SECONDS, left))
                await waker.ensure()

    async def spawn(self, caller: Caller, order: SpawnOrder) -> Spawned:
        try:
            return await self._spawn(caller, order)
        except (SpawnRefused, NotFound) as refused:
            await self._audit_refusal(caller, order, refused)
            raise

    async def _spawn(self, caller: Caller, order: SpawnOrder) -> Spawned:
        parent = caller.session
        coordinator = self.policy.coordinator_for(parent.workspace_id)
        if not coordinator.enabled:
            raise SpawnRefused(
                "spawn_disabled", f"spawning is off in workspace {parent.workspace_id}"
            )
        agent_name = self._agent_name(order, coordinator, parent.workspace_id)
        if order.spawn_role == "coordinator":
            raise SpawnRefused(
                "spawn_role_refused",
                "a coordinator is a workspace's, never a child",
                field="spawn_role",
            )
        ttl = order.ttl_seconds or coordinator.default_ttl_seconds
        if ttl > coordinator.max_ttl_seconds:
            raise SpawnRefused(
                "spawn_limit_exceeded",
                f"ttl_seconds {ttl} is over the workspace's maximum {coordinator.max_ttl_seconds}",
                field="ttl_seconds",
                limit="max_ttl_seconds",
                max_ttl_seconds=coordinator.max_ttl_seconds,
            )
        held = parent.lineage.permission_policy.model_dump()
        asked = {**held, **(order.permissions or {})}
        _check_subset(held, asked)
        row = await self.pool.fetchrow(query("get_task"), caller.tenant_id, parent.task_id)
        if row is None:
            raise NotFound("the session's task is gone", task_id=str(parent.task_id))
        parent_task = Task.model_validate(dict(row))
        request = TaskCreateRequest(
            lane=parent.workspace_id,
            title=order.title or f"{agent_name}, helper of {parent.name}",
            instructions=order.instructions,
            source_systems=parent_task.source_systems,
            # A plan of rollback the parent's lane asks for holds for its helpers too.
            scope={"rollback": parent_task.scope["rollback"]}
            if "rollback" in parent_task.scope
            else {},
            mutation_level=parent_task.mutation_level,
            model_provider=parent_task.model_provider,
        )
        made: dict[str, AgentSession] = {}

        async def with_task(connection: asyncpg.Connection, task_id: UUID, status: str) -> None:
            if status == "denied":
                raise SpawnRefused(
                    "spawn_policy_denied", "the policy denies the child's task", lane=request.lane
                )
            made["session"] = await self._create_child(
                connection, caller, task_id, status, agent_name, order, ttl, asked
            )

        created = await self.tasks.create_task(
            Actor(f"session:{parent.id}", caller.tenant_id, "operator"),
            request,
            lineage={
                "spawn": {
                    "parent_session_id": str(parent.id),
                    "root_session_id": str(parent.lineage.root_session_id),
                    "parent_task_id": str(parent.task_id),
                }
            },
            with_task=with_task,
        )
        return Spawned(made["session"], created.task, asked)

    def _agent_name(self, order: SpawnOrder, coordinator: Coordinator, lane: str) -> str:
        """The child's agent: the one asked for, else the coordinator's; it must be the
        lane's own agent or one of the agents file's that works in the lane."""
        name = order.agent_name or coordinator.agent_name
        known = {lane_agent_name(lane)} | {
            agent.id for agent in self.agents.all() if agent.lane == lane
        }
        if name not in known:
            raise NotFound(
                f"no agent {name!r} in workspace {lane}",
                field="agent_name",
                allowed=sorted(known),
            )
        return name

    async def _create_child(
        self,
        connection: asyncpg.Connection,
        caller: Caller,
        task_id: UUID,
        status: str,
        agent_name: str,
        order: SpawnOrder,
        ttl: int,
        asked: dict[str, list[str]],
    ) -> AgentSession:
        """The budgets and the child's session, in the child task's transaction."""
        parent = caller.session
        root_id = parent.lineage.root_session_id
        await connection.fetchrow(query("lock_session"), root_id, caller.tenant_id)
        locked = await connection.fetchrow(query("lock_session"), parent.id, caller.tenant_id)
        _check_subset(locked["permission_policy"], asked)
        budget = SpawnBudget.model_validate(locked["spawn_budget"])
        depth = locked["spawn_depth"] + 1
        if depth > budget.max_depth:
            raise SpawnRefused(
                "spawn_limit_exceeded",
                f"a child would be at depth {depth}; max_depth is {budget.max_depth}",
                limit="max_depth",
                max_depth=budget.max_depth,
            )
        counts = await connection.fetchrow(
            query("live_spawned_counts"), root_id, parent.workspace_id, parent.id, list(TERMINAL)
        )
        for limit, count, allowed in (
            ("max_children", counts["children"], budget.max_children),
            ("max_active_per_workspace", counts["in_tree"], budget.max_active_per_workspace),
        ):
            if count >= allowed:
                raise SpawnRefused(
                    "spawn_limit_exceeded",
                    f"{count} live spawned sessions already; {limit} is {allowed}",
                    limit=limit,
                    live=count,
                    allowed=allowed,
                )
        session_id = uuid4()
        row = await connection.fetchrow(
            query("insert_spawned_session"),
            session_id,
            caller.tenant_id,
            task_id,
            f"{agent_name} {str(task_id)[:8]}",
            agent_name,
            parent.model,
            parent.provider,
            parent.workspace_id,
            parent.id,
            root_id,
            depth,
            order.spawn_role,
            ttl,
            order.auto_stop_on_parent,
            budget.model_copy(update={"ttl_seconds": ttl}).model_dump(),
            asked,
        )
        await append_trace(
            connection,
            self.redactor,
            parent.task_id,
            "spawned",
            actor=f"session:{parent.id}",
            run_id=parent.run_id,
            message=f"spawned {agent_name} (session {session_id}, task {task_id})",
            data={
                "child_session_id": str(session_id),
                "child_task_id": str(task_id),
                "agent_name": agent_name,
                "spawn_depth": depth,
                "ttl_seconds": ttl,
                "auto_stop_on_parent": order.auto_stop_on_parent,
                "permissions": asked,
            },
        )
        return session_record(row, held=False, task_status=status)

    async def _audit_refusal(self, caller: Caller, order: SpawnOrder, refused: LedgerError) -> None:
        """The refusal in the parent's trace, with what was asked: the order's settings,
        not its instructions, which may be long (the console shows them beside the
        diagnostic)."""
        parent = caller.session
        asked = {
            "agent_name": order.agent_name,
            "title": order.title,
            "spawn_role": order.spawn_role,
            "ttl_seconds": order.ttl_seconds,
            "auto_stop_on_parent": order.auto_stop_on_parent,
            "permissions": order.permissions,
        }
        async with self.pool.acquire() as connection, connection.transaction():
            await append_trace(
                connection,
                self.redactor,
                parent.task_id,
                "spawn_refused",
                actor=f"session:{parent.id}",
                run_id=parent.run_id,
                message=f"spawn refused ({refused.code}): {refused.message}",
                data={"code": refused.code, **refused.details, "asked": asked},
            )
            await record_audit(
                connection,
                tenant_id=caller.tenant_id,
                actor=f"session:{parent.id}",
                action="spawn_refused",
                target_type="agent_session",
                target_id=str(parent.id),
                category="spawn",
                level="warning",
                agent_id=str(parent.id),
                detail={
                    "code": refused.code,
                    "message": refused.message,
                    "task_id": str(parent.task_id),
                    **refused.details,
                },
                redactor=self.redactor,
            )


def _check_subset(parent: dict[str, Any], child: dict[str, list[str]]) -> None:
    widened = widening(parent, child)
    if widened:
        raise SpawnRefused(
            "spawn_permission_denied",
            "the child would hold permissions its parent does not: "
            + ", ".join(f"{w['kind']} {w['atom']}" for w in widened),
            widened=widened,
        )
