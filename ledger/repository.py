"""The only place that talks to Postgres.

One method per use case. Each state change is a guarded UPDATE from `queries/` plus
its trace event, in one transaction: either both are written or neither is. A guard
that matches no row becomes `InvalidTransition` carrying the current status, so an
illegal action never half-applies.
"""

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import structlog

from ledger.errors import Conflict, InvalidTransition, LedgerError, NotFound, PolicyError
from ledger.group_commit import GroupCommit
from ledger.models import (
    Artifact,
    ITRequest,
    ITRequestCreate,
    Run,
    Task,
    TaskCreateRequest,
    TraceEvent,
    artifact_record,
)
from ledger.policy import PolicyConfig, Role, Verdict
from ledger.redaction import Redactor
from ledger.sql import query
from ledger.states import RunStatus, TaskStatus, allowed_from
from ledger.traces import append_trace
from metrics import TASKS_CREATED

log = structlog.get_logger(__name__)


class BadRequest(LedgerError):
    """Well-formed JSON that names something the configuration does not have."""

    code = "invalid_request"


@dataclass(frozen=True)
class Actor:
    """Who acts, for which tenant, with which effective role."""

    subject: str
    tenant_id: str
    role: Role


@dataclass(frozen=True)
class CreatedTask:
    task: Task
    verdict: Verdict
    created: bool  # False when an Idempotency-Key replay returned the earlier task


@dataclass(frozen=True)
class Transition:
    task: Task
    trace: TraceEvent


@dataclass(frozen=True)
class TaskPage:
    tasks: list[Task]
    next_cursor: str | None


def encode_cursor(task: Task) -> str:
    raw = json.dumps([task.created_at.isoformat(), str(task.id)])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_at, task_id = json.loads(base64.urlsafe_b64decode(padded))
        return datetime.fromisoformat(created_at), UUID(task_id)
    except (ValueError, TypeError, binascii.Error) as error:
        raise BadRequest("cursor is not one this API returned", field="cursor") from error


def _request_hash(kind: str, body: dict[str, Any]) -> str:
    canonical = json.dumps([kind, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class Ledger:
    def __init__(self, pool: asyncpg.Pool, policy: PolicyConfig) -> None:
        self.pool = pool
        self.policy = policy
        self.redactor = Redactor(policy.secret_keys)
        self._inserts: GroupCommit[tuple[Any, ...], asyncpg.Record | None] = GroupCommit(
            self._insert_tasks, max_batch=64
        )

    # -- creation --------------------------------------------------------------

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
    ) -> CreatedTask:
        """Record a task with its verdict. Denied tasks are recorded too (status
        `denied`), so every refusal is auditable."""
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
        row = await self._inserts.submit(
            (
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
            )
        )
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
        )
        TASKS_CREATED.labels(task.lane, verdict.decision).inc()
        return CreatedTask(task=task, verdict=verdict, created=True)

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

    # -- reads -----------------------------------------------------------------

    async def get_task(self, tenant_id: str, task_id: UUID) -> Task:
        row = await self.pool.fetchrow(query("get_task"), tenant_id, task_id)
        if row is None:
            raise NotFound("task not found", task_id=str(task_id))
        return Task.model_validate(dict(row))

    async def get_run(self, tenant_id: str, run_id: UUID) -> Run:
        row = await self.pool.fetchrow(query("get_run"), run_id, tenant_id)
        if row is None:
            raise NotFound("run not found", run_id=str(run_id))
        return Run.model_validate(dict(row))

    async def list_tasks(
        self,
        tenant_id: str,
        *,
        status: str | None,
        lane: str | None,
        limit: int,
        cursor: str | None,
    ) -> TaskPage:
        after_created, after_id = decode_cursor(cursor) if cursor else (None, None)
        rows = await self.pool.fetch(
            query("list_tasks"), tenant_id, status, lane, after_created, after_id, limit + 1
        )
        tasks = [Task.model_validate(dict(row)) for row in rows[:limit]]
        more = len(rows) > limit
        return TaskPage(tasks=tasks, next_cursor=encode_cursor(tasks[-1]) if more else None)

    async def list_traces(
        self, tenant_id: str, task_id: UUID, *, after_seq: int = 0, limit: int = 1000
    ) -> list[TraceEvent]:
        await self.get_task(tenant_id, task_id)
        rows = await self.pool.fetch(query("list_traces"), tenant_id, task_id, after_seq, limit)
        return [TraceEvent.model_validate(dict(row)) for row in rows]

    async def list_artifacts(self, tenant_id: str, task_id: UUID) -> list[Artifact]:
        await self.get_task(tenant_id, task_id)
        rows = await self.pool.fetch(query("list_artifacts"), tenant_id, task_id)
        return [artifact_record(dict(row)) for row in rows]

    async def get_artifact(
        self, tenant_id: str, task_id: UUID, artifact_id: UUID
    ) -> tuple[Artifact, str]:
        """An artifact's metadata and its storage reference (which stays in the backend)."""
        row = await self.pool.fetchrow(query("get_artifact"), tenant_id, task_id, artifact_id)
        if row is None:
            raise NotFound("artifact not found", artifact_id=str(artifact_id))
        return artifact_record(dict(row)), row["storage_ref"]

    # -- operator transitions --------------------------------------------------

    async def approve(
        self, actor: Actor, task_id: UUID, *, reason: str, break_glass_acknowledged: bool
    ) -> Transition:
        """Approve a task awaiting review. A task whose verdict was `deny` (break glass
        asked for at creation) needs an owner and an explicit acknowledgement."""
        task = await self.get_task(actor.tenant_id, task_id)
        if _tool_call_waiting(task):
            return await self._decide_tool_call(actor, task, "approved", reason)
        needs_break_glass = task.policy_verdict.decision == "deny"
        if needs_break_glass and task.status == TaskStatus.AWAITING_APPROVAL:
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
        run_id = uuid4()
        async with self.pool.acquire() as connection, connection.transaction():
            row = await self._guarded(
                connection,
                "queue_next_attempt",
                action,
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
                to_status=TaskStatus.QUEUED,
                run_id=run_id,
                message=message,
                data={**data, "attempt": row["attempt"]},
            )
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
            to_status=TaskStatus.DENIED,
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
        return await self._apply(
            actor,
            task.id,
            "decide_tool_call",
            "approve",
            (recorded,),
            kind=f"tool_call_{decision}",
            to_status=TaskStatus.QUEUED,
            message=f"tool call {pending.get('tool')} {decision} by {actor.subject}",
            data={
                **recorded,
                "tool": pending.get("tool"),
                "arguments_sha256": pending.get("arguments_sha256"),
            },
            run_query="resume_paused_run",
        )

    async def cancel(self, actor: Actor, task_id: UUID, *, reason: str) -> Transition:
        reason = self.redactor.text(reason)
        return await self.move(
            actor,
            task_id,
            "cancel",
            TaskStatus.CANCELLED,
            kind="cancelled",
            terminal_reason=f"cancelled by {actor.subject}" + (f": {reason}" if reason else ""),
            run_status=RunStatus.CANCELLED,
            data={"reason": reason},
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
            to_status=TaskStatus.ROLLBACK_REQUESTED,
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
        kind: str,
        to_status: TaskStatus,
        message: str | None,
        data: dict[str, Any],
        run_query: str | None = None,
        run_args: tuple[Any, ...] = (),
    ) -> Transition:
        """One guarded transition query, then (optionally) a query on the task's current
        run, then the trace event: all in one transaction."""
        async with self.pool.acquire() as connection, connection.transaction():
            row = await self._guarded(
                connection, query_name, action, actor.tenant_id, task_id, *args
            )
            if run_query is not None and row["current_run_id"] is not None:
                await connection.execute(query(run_query), row["current_run_id"], *run_args)
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
        return Transition(Task.model_validate(dict(row)), trace)

    async def move(
        self,
        actor: Actor,
        task_id: UUID,
        action: str,
        to_status: TaskStatus,
        *,
        kind: str,
        terminal_reason: str | None = None,
        run_status: RunStatus | None = None,
        data: dict[str, Any] | None = None,
    ) -> Transition:
        """The plain guarded transition; with `run_status`, the current run is settled
        in the same transaction (a run that already finished is left as it was)."""
        return await self._apply(
            actor,
            task_id,
            "move_task",
            action,
            (to_status, terminal_reason),
            kind=kind,
            to_status=to_status,
            message=terminal_reason,
            data=data or {},
            run_query="settle_run_if_unfinished" if run_status else None,
            run_args=(run_status, None, terminal_reason),
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
        tenant_id: str,
        task_id: UUID,
        *args: Any,
    ) -> asyncpg.Record:
        allowed = allowed_from(action)
        row = await connection.fetchrow(query(query_name), tenant_id, task_id, allowed, *args)
        if row is not None:
            return row
        current = await connection.fetchval(query("get_task_status"), tenant_id, task_id)
        if current is None:
            raise NotFound("task not found", task_id=str(task_id))
        raise InvalidTransition(action, current, allowed)

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

    # -- IT requests -------------------------------------------------------------

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


def _tool_call_waiting(task: Task) -> bool:
    return (
        task.status == TaskStatus.AWAITING_APPROVAL
        and task.pending_approval is not None
        and "decision" not in task.pending_approval
    )
