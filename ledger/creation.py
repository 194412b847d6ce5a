"""Creating a task: the policy's verdict, the task, its first run and its first trace
events, written in one statement; creates that arrive together commit together."""

import dataclasses
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import structlog

from ledger.actor import Actor
from ledger.audit import record_audit
from ledger.errors import BadRequest, Conflict, PolicyError
from ledger.group_commit import GroupCommit
from ledger.models import Task, TaskCreateRequest
from ledger.policy import PolicyConfig, Verdict
from ledger.reads import Reads
from ledger.sql import query
from ledger.states import TaskStatus
from metrics import TASKS_CREATED

log = structlog.get_logger(__name__)

# A client session's status while it takes steps (migration 0010).
CLIENT_SESSION_RUNNING = "running"


@dataclass(frozen=True)
class ThreadTurn:
    """What makes a task a thread run: its thread, the agent the thread was opened for
    and the caller's agent_config. The task's instructions are the user's message, which
    is appended to the thread's history with the task, in its transaction."""

    thread_id: UUID
    agent_type: str
    run_options: dict[str, Any] | None = None
    # The user message's data; None: the run opens with no user message (a client
    # session's tool call: its messages come with its completion).
    message_data: dict[str, Any] | None = dataclasses.field(default_factory=dict)
    # A step of a client-side session (`ledger/client_sessions.py`): written only while
    # the session is running, under a share lock on its row, so that completing the
    # session and taking a step cannot both succeed.
    client_session: bool = False


# Called inside the transaction that inserts a task, with the task's id and status: what
# must be written with it, or refused with it (raising rolls the task back too).
WithTask = Callable[[asyncpg.Connection, UUID, str], Awaitable[None]]


@dataclass(frozen=True)
class CreatedTask:
    task: Task
    verdict: Verdict
    created: bool  # False when an Idempotency-Key replay returned the earlier task


def _request_hash(kind: str, body: dict[str, Any]) -> str:
    canonical = json.dumps([kind, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class TaskCreation(Reads):
    def __init__(self, pool: asyncpg.Pool, policy: PolicyConfig) -> None:
        super().__init__(pool, policy)
        self._inserts: GroupCommit[tuple[Any, ...], asyncpg.Record | None] = GroupCommit(
            self._insert_tasks, max_batch=64
        )

    def _check_known(self, lane: str, mutation_level: str, model_provider: str) -> None:
        checks = (
            ("lane", lane, self.policy.lanes),
            ("mutation_level", mutation_level, self.policy.mutation_levels),
            ("model_provider", model_provider, self.policy.providers),
        )
        for field, value, known in checks:
            if value not in known:
                raise BadRequest(f"unknown {field} {value!r}", field=field, allowed=sorted(known))

    async def create_task(
        self,
        actor: Actor,
        request: TaskCreateRequest,
        *,
        idempotency_key: str | None = None,
        lineage: dict[str, Any] | None = None,
        turn: ThreadTurn | None = None,
        with_task: WithTask | None = None,
        run_options: dict[str, Any] | None = None,
    ) -> CreatedTask:
        """Record a task with its verdict. Denied tasks are recorded too (status
        `denied`), so every refusal is auditable. A thread run (`turn`) is written with
        its user message, and refused with a conflict while its thread has a run that is
        still queued, running or waiting for a decision. `with_task` runs in the
        task's transaction (a spawn's budget check and session). `run_options` (a model)
        apply to a task's runs as a thread run's agent_config does."""
        self._check_known(request.lane, request.mutation_level, request.model_provider)
        if request.break_glass_acknowledged and actor.role != "owner":
            raise PolicyError("only an owner may break glass", role=actor.role)

        # What a replay with the same Idempotency-Key is compared with; nothing to
        # compare without one.
        request_hash = (
            _request_hash("task", {**request.model_dump(), "lineage": lineage})
            if idempotency_key is not None
            else None
        )
        raw_scope = {**request.scope, **(lineage or {})}
        scope = self.redactor.value(raw_scope)
        title = self.redactor.text(request.title)
        instructions = self.redactor.text(request.instructions)
        redacted = (scope, title, instructions) != (raw_scope, request.title, request.instructions)
        verdict = self.policy.evaluate(
            lane_name=request.lane,
            mutation_level=request.mutation_level,
            source_systems=request.source_systems,
            scope=scope,
            model_provider=request.model_provider,
            role=actor.role,
        )
        break_glass = verdict.decision == "deny" and request.break_glass_acknowledged
        status, terminal_reason = {
            "allow": (TaskStatus.QUEUED, None),
            "require_approval": (TaskStatus.AWAITING_APPROVAL, None),
            "deny": (
                (TaskStatus.AWAITING_APPROVAL, None)
                if break_glass
                else (TaskStatus.DENIED, "policy denied: " + "; ".join(verdict.reasons))
            ),
        }[verdict.decision]
        task_id = uuid4()
        run_id = uuid4() if status == TaskStatus.QUEUED else None
        attempt = 1 if run_id else 0
        lane = self.policy.lanes[request.lane]

        # The trace a task starts with: created, the verdict, and what else happened.
        events: list[tuple[str, UUID | None, str | None, str, dict[str, Any]]] = [
            (
                "created",
                run_id,
                status,
                f"task created in lane {request.lane}",
                {"lineage": lineage} if lineage else {},
            ),
            (
                "policy_verdict",
                None,
                None,
                f"policy decision: {verdict.decision}",
                verdict.model_dump(),
            ),
        ]
        if break_glass:
            events.append(
                (
                    "break_glass_requested",
                    None,
                    None,
                    "owner asked to break glass past a deny; an owner must approve",
                    {"reasons": verdict.reasons},
                )
            )
        if redacted:
            events.append(
                (
                    "secrets_redacted",
                    None,
                    None,
                    "secret values in the request were redacted before storage",
                    {},
                )
            )
        break_glass_record = (
            {"requested_by": actor.subject, "reasons": verdict.reasons} if break_glass else None
        )
        arguments = (
            task_id,
            actor.tenant_id,
            request.lane,
            title,
            instructions,
            request.source_systems,
            scope,
            request.mutation_level,
            request.model_provider,
            status,
            verdict.model_dump(),
            break_glass_record,
            terminal_reason,
            run_id,
            attempt,
            lane.max_attempts,
            actor.subject,
            idempotency_key,
            request_hash,
            [kind for kind, *_ in events],
            [event_run for _, event_run, *_ in events],
            [to_status for _, _, to_status, *_ in events],
            [actor.subject] * len(events),
            [self.redactor.text(message) for *_, message, _ in events],
            [self.redactor.value(data) for *_, data in events],
            turn.thread_id if turn else None,
            turn.agent_type if turn else None,
            turn.run_options if turn else run_options,
        )
        if verdict.decision == "deny":
            # A refusal (or an owner's break-glass request) is audited with the task it
            # records, so it takes the task's own transaction, off the batched path.
            with_task = self._audited_refusal(actor, verdict, break_glass, with_task)
        if turn is None and with_task is None:
            row = await self._inserts.submit(arguments)
        else:
            row = await self._insert_alone(arguments, turn, instructions, with_task, status)
        if row is None:
            async with self.pool.acquire() as connection:
                return await self._replay(connection, actor, idempotency_key, request_hash)
        log.info(  # the transition's line, as append_trace writes for every other one
            "state_change",
            task_id=str(task_id),
            run_id=str(run_id) if run_id else None,
            kind="created",
            from_status=None,
            to_status=status,
            actor=actor.subject,
            lane=request.lane,
            decision=verdict.decision,
        )
        # The row as stored, from what was written: the insert returns only what the
        # database chose (decoding the whole row back cost more than the rest of it).
        task = Task(
            id=task_id,
            tenant_id=actor.tenant_id,
            lane=request.lane,
            title=title,
            instructions=instructions,
            source_systems=request.source_systems,
            scope=scope,
            mutation_level=request.mutation_level,
            model_provider=request.model_provider,
            status=status,
            policy_verdict=verdict,
            break_glass=break_glass_record,
            approval=None,
            rollback=None,
            terminal_reason=terminal_reason,
            attempt=attempt,
            max_attempts=lane.max_attempts,
            current_run_id=run_id,
            created_by=actor.subject,
            created_at=row["created_at"],
            updated_at=row["created_at"],  # both default to the transaction's now()
            thread_id=turn.thread_id if turn else None,
            agent_type=turn.agent_type if turn else None,
            run_options=turn.run_options if turn else run_options,
        )
        TASKS_CREATED.labels(task.lane, verdict.decision).inc()
        return CreatedTask(task=task, verdict=verdict, created=True)

    def _audited_refusal(
        self, actor: Actor, verdict: Verdict, break_glass: bool, with_task: WithTask | None
    ) -> WithTask:
        async def audit(connection: asyncpg.Connection, task_id: UUID, status: str) -> None:
            if with_task is not None:
                await with_task(connection, task_id, status)
            await record_audit(
                connection,
                tenant_id=actor.tenant_id,
                actor=actor.subject,
                action="break_glass_requested" if break_glass else "policy_denied",
                target_type="task",
                target_id=str(task_id),
                category="policy",
                level="warning",
                detail={
                    "role": actor.role,
                    "reasons": verdict.reasons,
                    "profile": verdict.profile,
                    "policy_version": verdict.policy_version,
                    "to_status": status,
                },
                redactor=self.redactor,
            )

        return audit

    async def _insert_alone(
        self,
        arguments: tuple[Any, ...],
        turn: ThreadTurn | None,
        message: str,
        with_task: WithTask | None,
        status: str,
    ) -> asyncpg.Record:
        """A task in a transaction of its own, with what goes with it: a thread run's
        user message, or what `with_task` writes."""
        task_id = arguments[0]
        async with self.pool.acquire() as connection, connection.transaction():
            if (
                turn is not None
                and turn.client_session
                and not await connection.fetchval(
                    query("lock_running_client_session"), turn.thread_id, CLIENT_SESSION_RUNNING
                )
            ):
                raise Conflict(
                    "the client session is completed: it takes no more steps",
                    session_id=str(turn.thread_id),
                )
            try:
                row = await connection.fetchrow(query("insert_task"), *arguments)
            except asyncpg.UniqueViolationError as error:
                if turn is None or error.constraint_name != "tasks_one_active_run_per_thread":
                    raise
                raise Conflict(
                    "the thread already has a run that is queued, running or awaiting "
                    "approval; wait for it to finish or cancel it",
                    thread_id=str(turn.thread_id),
                ) from error
            if turn is not None and turn.message_data is not None:
                await connection.execute(
                    query("append_thread_messages"),
                    turn.thread_id,
                    task_id,
                    ["user"],
                    [None],
                    [message],
                    [self.redactor.value(turn.message_data)],
                )
            if with_task is not None and row is not None:
                await with_task(connection, task_id, status)
        return row

    async def _insert_tasks(
        self, batch: list[tuple[Any, ...]]
    ) -> list[asyncpg.Record | BaseException | None]:
        """The `insert_task` statements of creates that arrived together, in one
        transaction: one WAL flush for the batch instead of one per task, which was a
        third of Postgres's CPU per create. Each statement writes a task, its first run
        and its first trace events, so a lone one needs no transaction at all. A
        statement Postgres refuses would abort the others with it: then each goes again
        on its own, and only its own caller hears why."""
        async with self.pool.acquire() as connection:
            if len(batch) > 1:
                try:
                    # Pipelined: the statements go out back to back, not one round trip
                    # each, and commit together or not at all (one implicit transaction,
                    # as asyncpg sends them). An Idempotency-Key already used returns no
                    # row, so rows are matched to their creates by task id.
                    returned = await connection.fetchmany(query("insert_task"), batch)
                    inserted = {row["id"]: row for row in returned}
                    return [inserted.get(arguments[0]) for arguments in batch]
                except asyncpg.PostgresError:
                    pass
            rows: list[asyncpg.Record | BaseException | None] = []
            for arguments in batch:
                try:
                    rows.append(await connection.fetchrow(query("insert_task"), *arguments))
                except asyncpg.PostgresError as error:
                    rows.append(error)
            return rows

    async def _replay(
        self,
        connection: asyncpg.Connection,
        actor: Actor,
        idempotency_key: str | None,
        request_hash: str | None,
    ) -> CreatedTask:
        existing = await connection.fetchrow(
            query("find_task_by_idempotency_key"), actor.tenant_id, idempotency_key
        )
        assert existing is not None  # the insert conflicted on exactly this key
        if existing["request_hash"] != request_hash:
            raise Conflict(
                "Idempotency-Key was already used with a different request",
                task_id=str(existing["id"]),
            )
        task = Task.model_validate(dict(existing))
        return CreatedTask(task=task, verdict=task.policy_verdict, created=False)
