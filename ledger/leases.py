"""Worker-facing ledger operations: claim, heartbeat, complete, fail, release, and the
reaper's rescue of expired leases.

A claim returns a `Fence` (run id + attempt + claim token). Only the token's sha256 is
stored; every later write must present the token, and the SQL applies it only while
the run is still `running` under that token. A worker whose lease was taken over
(reaped, released, cancelled) gets `FenceRejected` and its write is not applied.
"""

import contextlib
import hashlib
import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn
from uuid import UUID, uuid4, uuid5

import asyncpg
import structlog

from ledger.artifact_store import StoredObject
from ledger.database import plan_batches_as_sized, planned_as_sized
from ledger.errors import LedgerError
from ledger.group_commit import GroupCommit
from ledger.models import Artifact, Run, Task, artifact_record
from ledger.policy import PolicyConfig
from ledger.redaction import Redactor
from ledger.sql import query
from ledger.states import RunStatus, TaskStatus
from ledger.traces import append_trace
from metrics import FENCE_REFUSALS, LEASE_EXPIRIES, RETRIES

log = structlog.get_logger(__name__)

_RUNNING = [TaskStatus.RUNNING]


@dataclass(frozen=True)
class Fence:
    run_id: UUID
    attempt: int
    claim_token: str

    @property
    def token_hash(self) -> str:
        return hashlib.sha256(self.claim_token.encode()).hexdigest()

    @property
    def columns(self) -> tuple[UUID, int, str]:
        """(run id, attempt, token hash): the first three parameters of every fenced query."""
        return self.run_id, self.attempt, self.token_hash


@dataclass(frozen=True)
class SpanEvent:
    """One finished SDK span, ready to be a trace event."""

    span_id: str
    kind: str
    message: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Hint:
    """What a claim asks for: the run a lane message names, at the attempt it names."""

    task_id: UUID
    run_id: UUID
    attempt: int


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class NewArtifact:
    """Content already in the artifact store, to be recorded in the ledger."""

    name: str
    media_type: str
    stored: StoredObject
    metadata: dict[str, Any]


@dataclass(frozen=True)
class _Completion:
    fence: Fence
    worker: str
    result: dict[str, Any]
    usage: Usage | None
    spans: list[SpanEvent]
    artifact: NewArtifact | None


@dataclass(frozen=True)
class Claim:
    fence: Fence
    task: Task
    run: Run


class FenceRejected(LedgerError):
    """The caller no longer holds the run: its lease expired and was taken over, it was
    cancelled or released, or the token is wrong."""

    code = "fence_rejected"


@dataclass(frozen=True)
class ReapResult:
    lost: int
    retried: int
    failed: int
    redispatched: int


class Leases:
    def __init__(self, pool: asyncpg.Pool, policy: PolicyConfig) -> None:
        self.pool = pool
        self.policy = policy
        self.redactor = Redactor(policy.secret_keys)
        self._completions = GroupCommit(self._complete_batch)

    # -- claim -------------------------------------------------------------------

    async def claim(
        self, *, task_id: UUID, run_id: UUID, attempt: int, worker: str, via: str
    ) -> Claim | None:
        """Claim the run a lane message names (see `claim_batch`)."""
        (claim,) = await self.claim_batch([Hint(task_id, run_id, attempt)], worker=worker, via=via)
        return claim

    async def claim_batch(self, hints: list[Hint], *, worker: str, via: str) -> list[Claim | None]:
        """Claim the runs a batch of lane messages names, in one transaction; one entry
        per hint, in order. None where the ledger says the run is not waiting any more
        (a duplicate, late or out-of-order hint, or a second copy in this batch):
        nothing runs twice."""
        async with self.pool.acquire() as connection, connection.transaction():
            return await self.claim_in(connection, hints, worker=worker, via=via)

    async def claim_in(
        self, connection: asyncpg.Connection, hints: list[Hint], *, worker: str, via: str
    ) -> list[Claim | None]:
        """`claim_batch` inside the caller's transaction (a Postgres lane's `take`)."""
        await plan_batches_as_sized(connection, len(hints))
        return await self._claim(connection, hints, worker, via)

    async def claim_next(self, *, tenant_id: str, lanes: list[str], worker: str) -> Claim | None:
        """Claim the oldest waiting run in `lanes` (the HTTP worker protocol)."""
        async with self.pool.acquire() as connection, connection.transaction():
            picked = await connection.fetchrow(query("claim_next_run"), lanes, tenant_id)
            if picked is None:
                return None
            hint = Hint(picked["task_id"], picked["id"], picked["attempt"])
            (claim,) = await self._claim(connection, [hint], worker, "http")
            return claim

    async def _claim(
        self, connection: asyncpg.Connection, hints: list[Hint], worker: str, via: str
    ) -> list[Claim | None]:
        fences: dict[UUID, tuple[Hint, Fence]] = {}
        for hint in hints:  # a second copy of a hint in the batch claims nothing
            if hint.run_id not in fences:
                fence = Fence(hint.run_id, hint.attempt, secrets.token_urlsafe(32))
                fences[hint.run_id] = (hint, fence)
        lanes = self.policy.lanes
        rows = await connection.fetch(
            query("claim_runs"),
            list(fences),
            [hint.attempt for hint, _ in fences.values()],
            [hint.task_id for hint, _ in fences.values()],
            [fence.token_hash for _, fence in fences.values()],
            worker,
            [
                self.redactor.text(f"attempt {hint.attempt} claimed by {worker}")
                for hint, _ in fences.values()
            ],
            self.redactor.text(via),
            list(lanes),
            [lane.lease_seconds for lane in lanes.values()],
        )
        claims: dict[UUID, Claim] = {}
        for row in rows:
            task = dict(row)
            run = Run.model_validate(task["claimed_run"])
            from_status = task["task_was"]
            claims[run.id] = Claim(fences[run.id][1], Task.model_validate(task), run)
            _log_transition(task, "worker_receipt", from_status, TaskStatus.RUNNING, worker)
        # Each claim answers the first hint naming its run; a second copy gets None.
        return [claims.pop(hint.run_id, None) for hint in hints]

    # -- while running -------------------------------------------------------------

    async def heartbeat(self, fence: Fence, *, worker: str, lease_seconds: float) -> datetime:
        """Extend the lease; FenceRejected means stop working on this run now."""
        row = await self.pool.fetchrow(
            query("heartbeat_if_owner"),
            fence.run_id,
            fence.attempt,
            fence.token_hash,
            lease_seconds,
        )
        if row is None:
            await self._refused(fence, worker, "heartbeat")
        return row["lease_until"]

    async def complete(
        self,
        fence: Fence,
        *,
        worker: str,
        result: dict[str, Any] | None = None,
        usage: Usage | None = None,
        spans: list[SpanEvent] | None = None,
        artifact: NewArtifact | None = None,
    ) -> Task:
        """Record success, with what the run leaves when given: its token usage, its last
        SDK spans (before the `succeeded` event) and its output artifact. Completions
        that arrive together commit together (see `GroupCommit`); each is still fenced
        on its own, and a refused one records nothing."""
        return await self._completions.submit(
            _Completion(fence, worker, result or {}, usage, spans or [], artifact)
        )

    async def _complete_batch(self, items: list[_Completion]) -> list[Task | BaseException]:
        unique: dict[Fence, _Completion] = {}
        for item in items:  # a completion sent twice counts once
            unique.setdefault(item.fence, item)
        leaving = [item for item in unique.values() if item.artifact or item.spans]
        # The outcome alone is one statement, a transaction of its own: no BEGIN and
        # COMMIT round trips (a fifth of a noop worker's CPU went to them).
        alone = not leaving and not planned_as_sized(len(unique))
        async with (
            self.pool.acquire() as connection,
            contextlib.nullcontext() if alone else connection.transaction(),
        ):
            await plan_batches_as_sized(connection, len(unique))
            if leaving:
                await self._write_before_outcome(connection, leaving)
            rows = await connection.fetch(
                query("complete_runs"),
                [fence.run_id for fence in unique],
                [fence.attempt for fence in unique],
                [fence.token_hash for fence in unique],
                [item.usage.input_tokens if item.usage else None for item in unique.values()],
                [item.usage.output_tokens if item.usage else None for item in unique.values()],
                [item.worker for item in unique.values()],
                [self.redactor.text(f"attempt {fence.attempt} succeeded") for fence in unique],
                [self.redactor.value(item.result) for item in unique.values()],
            )
        finished: dict[tuple[UUID, str], Task] = {}
        for row in rows:
            finished[(row["current_run_id"], row["finished_by"])] = Task.model_validate(dict(row))
            _log_transition(
                row, "succeeded", TaskStatus.RUNNING, TaskStatus.SUCCEEDED, row["event_actor"]
            )
        outcomes: list[Task | BaseException] = []
        for item in items:
            task = finished.get((item.fence.run_id, item.fence.token_hash))
            if task is not None and unique[item.fence] is item:
                outcomes.append(task)
                continue
            try:  # after the commit: the refusal's own trace event needs the task lock
                await self._refused(item.fence, item.worker, "complete")
            except FenceRejected as refused:
                outcomes.append(refused)
        return outcomes

    async def _write_before_outcome(
        self, connection: asyncpg.Connection, items: list[_Completion]
    ) -> None:
        """What completions leave besides their outcome (the output artifact, the last
        SDK spans) goes in first, so the spans come before the `succeeded` event, and
        only for runs still held: with the tasks locked first, in id order, as the
        outcome's statement locks them, no run can change hands before the outcome."""
        run_ids = [item.fence.run_id for item in items]
        tasks = await connection.fetch(query("lock_tasks_for_runs"), run_ids, _RUNNING)
        task_of = {task["current_run_id"]: task["id"] for task in tasks}
        held = {
            (row["id"], row["claim_token_hash"])
            for row in await connection.fetch(
                query("runs_held"),
                run_ids,
                [item.fence.attempt for item in items],
                [item.fence.token_hash for item in items],
            )
        }
        holding = [
            item
            for item in items
            if (item.fence.run_id, item.fence.token_hash) in held and item.fence.run_id in task_of
        ]
        artifacts = [(item.fence, item.artifact) for item in holding if item.artifact]
        if artifacts:
            await self._insert_artifacts(connection, artifacts)
        spans = [
            (task_of[item.fence.run_id], item.fence, item.worker, span)
            for item in holding
            for span in item.spans
        ]
        if spans:
            await self._append_spans_locked(connection, spans)

    async def fail(
        self,
        fence: Fence,
        *,
        worker: str,
        failure_kind: str,
        error: str,
        retryable: bool = True,
    ) -> Task:
        """Record a failed attempt; retry with backoff while attempts remain."""
        error = self.redactor.text(error)[:2000]
        async with self._fenced(fence, worker, "fail") as connection:
            task = await self._end_attempt(
                connection, fence, RunStatus.FAILED, failure_kind=failure_kind, error=error
            )
            updated = await self._after_failed_attempt(
                connection, task, worker, failure_kind, error, retryable=retryable
            )
        return Task.model_validate(dict(updated))

    async def block(self, fence: Fence, *, worker: str, reason: str) -> Task:
        """Execution is impossible as configured (SDK missing, provider not set up): the
        task waits in `blocked` for an operator's retry after the fix."""
        async with self._fenced(fence, worker, "block") as connection:
            task = await self._end_attempt(
                connection, fence, RunStatus.BLOCKED, failure_kind="blocked", error=reason
            )
            blocked = await self._move_locked(
                connection,
                task,
                TaskStatus.BLOCKED,
                actor=worker,
                kind="blocked",
                message=reason,
                reason=reason,
            )
        return Task.model_validate(dict(blocked))

    async def add_artifact(self, fence: Fence, *, worker: str, artifact: NewArtifact) -> Artifact:
        """Artifact metadata, written only while this worker holds the run; writing the
        same stored object again (a retry) returns the first record."""
        async with self._fenced(fence, worker, "artifact") as connection:
            recorded = await self._insert_artifacts(connection, [(fence, artifact)])
            if not recorded:
                raise _Refusal
        return recorded[0]

    async def _insert_artifacts(
        self, connection: asyncpg.Connection, artifacts: list[tuple[Fence, NewArtifact]]
    ) -> list[Artifact]:
        """Each artifact's metadata, recorded only while its fence holds the run."""
        by_id = {
            uuid5(fence.run_id, new.stored.storage_ref): (fence, new) for fence, new in artifacts
        }
        rows = await connection.fetch(
            query("insert_artifacts_if_owner"),
            list(by_id),
            [fence.run_id for fence, _ in by_id.values()],
            [fence.attempt for fence, _ in by_id.values()],
            [fence.token_hash for fence, _ in by_id.values()],
            [new.name for _, new in by_id.values()],
            [new.media_type for _, new in by_id.values()],
            [new.stored.storage_ref for _, new in by_id.values()],
            [new.stored.sha256 for _, new in by_id.values()],
            [new.stored.size_bytes for _, new in by_id.values()],
            [self.redactor.value(new.metadata) for _, new in by_id.values()],
        )
        return [artifact_record(row) for row in rows]

    async def trace(
        self, fence: Fence, *, worker: str, kind: str, message: str, data: dict[str, Any]
    ) -> None:
        """One trace event from the worker holding the run (a tool call's verdict)."""
        async with self._fenced(fence, worker, "trace") as connection:
            task = await self._lock_running(connection, fence)
            if not await self._holds(connection, fence):
                raise _Refusal
            await append_trace(
                connection,
                self.redactor,
                task["id"],
                kind,
                actor=worker,
                run_id=fence.run_id,
                message=message,
                data=data,
            )

    async def append_spans(self, fence: Fence, *, worker: str, spans: list[SpanEvent]) -> int:
        """SDK spans as trace events, in one statement; spans stored before are skipped.
        Accepted from the holder of the run, and from the worker whose run an operator
        cancelled, so the trace shows what the agent did before it was stopped."""
        if not spans:
            return 0
        async with self._fenced(fence, worker, "trace") as connection:
            task = await connection.fetchrow(
                query("lock_tasks_for_runs"),
                [fence.run_id],
                [TaskStatus.RUNNING, TaskStatus.CANCELLED],
            )
            held = await connection.fetchval(query("holds_run_or_was_cancelled"), *fence.columns)
            if task is None or held is None:
                raise _Refusal
            return await self._append_spans_locked(
                connection, [(task["id"], fence, worker, span) for span in spans]
            )

    async def _append_spans_locked(
        self,
        connection: asyncpg.Connection,
        spans: list[tuple[UUID, Fence, str, SpanEvent]],
    ) -> int:
        """(task, fence, worker, span) per span, the tasks locked by the caller."""
        rows = await connection.fetch(
            query("append_spans"),
            [task_id for task_id, *_ in spans],
            [fence.run_id for _, fence, *_ in spans],
            [worker for _, _, worker, _ in spans],
            [span.span_id for *_, span in spans],
            [span.kind for *_, span in spans],
            [self.redactor.text(span.message) for *_, span in spans],
            [self.redactor.value(span.data) for *_, span in spans],
        )
        return len(rows)

    async def record_usage(
        self, fence: Fence, *, worker: str, input_tokens: int, output_tokens: int
    ) -> None:
        async with self._fenced(fence, worker, "usage") as connection:
            updated = await connection.fetchval(
                query("record_usage_if_owner"), *fence.columns, input_tokens, output_tokens
            )
            if updated is None:
                raise _Refusal

    async def saved_state(self, fence: Fence) -> str | None:
        """The SDK state a paused run left, if this run was paused before."""
        return await self.pool.fetchval(query("saved_state_if_owner"), *fence.columns)

    async def pause(
        self, fence: Fence, *, worker: str, saved_state: str, pending: dict[str, Any]
    ) -> Task:
        """Park the run at a tool call that needs approval, in one transaction: the SDK
        state, the pending call and `awaiting_approval`. The lease ends here; whichever
        worker claims the run after the decision resumes from the saved state."""
        async with self._fenced(fence, worker, "pause") as connection:
            task = await self._lock_running(connection, fence)
            run = await connection.fetchrow(
                query("pause_run_if_owner"), *fence.columns, saved_state
            )
            if run is None:
                raise _Refusal
            await connection.fetchrow(query("set_pending_approval"), task["id"], pending)
            paused = await self._move_locked(
                connection,
                task,
                TaskStatus.AWAITING_APPROVAL,
                actor=worker,
                kind="approval_requested",
                message=f"tool {pending['tool']} needs an operator's approval",
                data=pending,
            )
        return Task.model_validate(dict(paused))

    async def artifact_named(self, task_id: UUID, name: str) -> tuple[Artifact, str] | None:
        """The newest artifact called `name` and its storage reference."""
        row = await self.pool.fetchrow(query("latest_artifact_named"), task_id, name)
        return None if row is None else (artifact_record(dict(row)), row["storage_ref"])

    @staticmethod
    async def _holds(connection: asyncpg.Connection, fence: Fence) -> bool:
        held = await connection.fetch(
            query("runs_held"), [fence.run_id], [fence.attempt], [fence.token_hash]
        )
        return bool(held)

    async def release(self, fence: Fence, *, worker: str, reason: str) -> Task:
        """Hand the run back unfinished (a draining worker): queued again, same attempt."""
        async with self._fenced(fence, worker, "release") as connection:
            task = await self._lock_running(connection, fence)
            run = await connection.fetchrow(
                query("release_run_if_owner"), fence.run_id, fence.attempt, fence.token_hash
            )
            if run is None:
                raise _Refusal
            released = await self._move_locked(
                connection,
                task,
                TaskStatus.QUEUED,
                actor=worker,
                kind="released",
                message=f"released by {worker}: {reason}",
                data={"attempt": fence.attempt},
            )
        return Task.model_validate(dict(released))

    async def _end_attempt(
        self,
        connection: asyncpg.Connection,
        fence: Fence,
        run_status: RunStatus,
        *,
        failure_kind: str | None = None,
        error: str | None = None,
    ) -> asyncpg.Record:
        """Lock the task, then end its run if this fence still holds it; returns the
        locked task (still `running`)."""
        task = await self._lock_running(connection, fence)
        if not await self._finish_locked(connection, [fence], run_status, failure_kind, error):
            raise _Refusal
        return task

    @staticmethod
    async def _finish_locked(
        connection: asyncpg.Connection,
        fences: list[Fence],
        run_status: RunStatus,
        failure_kind: str | None = None,
        error: str | None = None,
    ) -> set[tuple[UUID, str]]:
        """End the runs these fences still hold (their tasks locked); returns the
        (run id, token hash) of each run ended."""
        if not fences:
            return set()
        rows = await connection.fetch(
            query("finish_runs_if_owner"),
            [fence.run_id for fence in fences],
            [fence.attempt for fence in fences],
            [fence.token_hash for fence in fences],
            run_status,
            failure_kind,
            error,
        )
        return {(row["id"], row["claim_token_hash"]) for row in rows}

    async def _move_locked(
        self,
        connection: asyncpg.Connection,
        task: asyncpg.Record,
        to_status: TaskStatus,
        *,
        actor: str,
        kind: str,
        message: str,
        reason: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> asyncpg.Record:
        """Move a task this transaction has locked, with its trace event."""
        (moved,) = await self._move_all_locked(
            connection,
            [task],
            to_status,
            kind=kind,
            actors=[actor],
            messages=[message],
            data=[data or {}],
            reason=reason,
        )
        return moved

    async def _move_all_locked(
        self,
        connection: asyncpg.Connection,
        tasks: list[asyncpg.Record],
        to_status: TaskStatus,
        *,
        kind: str,
        actors: list[str],
        messages: list[str],
        data: list[dict[str, Any]],
        reason: str | None = None,
    ) -> list[asyncpg.Record]:
        """Move tasks this transaction has locked, each with its trace event, in one
        statement; one `state_change` log line per task, as for every transition."""
        if not tasks:
            return []
        moved = await connection.fetch(
            query("move_tasks"),
            [task["id"] for task in tasks],
            to_status,
            kind,
            reason,
            [task["status"] for task in tasks],
            [task["current_run_id"] for task in tasks],
            actors,
            [self.redactor.text(message) for message in messages],
            [self.redactor.value(item) for item in data],
        )
        for task, actor in zip(tasks, actors, strict=True):
            _log_transition(task, kind, task["status"], to_status, actor)
        return moved

    @contextlib.asynccontextmanager
    async def _fenced(
        self, fence: Fence, worker: str, operation: str
    ) -> AsyncIterator[asyncpg.Connection]:
        """A transaction for a fenced write: `_Refusal` inside rolls it back and becomes
        a counted, traced FenceRejected."""
        try:
            async with self.pool.acquire() as connection, connection.transaction():
                yield connection
        except _Refusal:
            await self._refused(fence, worker, operation)

    @staticmethod
    async def _lock_running(connection: asyncpg.Connection, fence: Fence) -> asyncpg.Record:
        task = await connection.fetchrow(query("lock_tasks_for_runs"), [fence.run_id], _RUNNING)
        if task is None:
            raise _Refusal
        return task

    async def _refused(self, fence: Fence, worker: str, operation: str) -> NoReturn:
        """Count and trace a stale write, then raise FenceRejected."""
        FENCE_REFUSALS.inc()
        task_id = await self.pool.fetchval(query("run_task_id"), fence.run_id)
        log.warning(
            "fence_refused",
            run_id=str(fence.run_id),
            attempt=fence.attempt,
            worker=worker,
            operation=operation,
        )
        if task_id is not None:
            async with self.pool.acquire() as connection, connection.transaction():
                await append_trace(
                    connection,
                    self.redactor,
                    task_id,
                    "fence_refused",
                    actor=worker,
                    run_id=fence.run_id,
                    message=f"{operation} from {worker} refused: it no longer holds "
                    f"attempt {fence.attempt}",
                    data={"operation": operation, "attempt": fence.attempt},
                )
        raise FenceRejected(
            f"{operation} refused: this worker no longer holds the run",
            run_id=str(fence.run_id),
            attempt=fence.attempt,
        )

    async def _after_failed_attempt(
        self,
        connection: asyncpg.Connection,
        task: asyncpg.Record,
        actor: str,
        failure_kind: str,
        error: str,
        *,
        retryable: bool,
    ) -> asyncpg.Record:
        """With the task locked and its run ended: schedule the next attempt with
        backoff, or fail the task when none remain."""
        lane = self.policy.lanes[task["lane"]]
        attempt, max_attempts = task["attempt"], task["max_attempts"]
        if retryable and attempt < max_attempts:
            RETRIES.labels(task["lane"]).inc()
            retried = await connection.fetchrow(
                query("schedule_next_attempt"),
                uuid4(),
                task["id"],
                task["current_run_id"],
                _RUNNING,
                lane.retry_backoff_seconds,
                lane.retry_backoff_max_seconds,
            )
            await append_trace(
                connection,
                self.redactor,
                task["id"],
                "retry_scheduled",
                actor=actor,
                from_status=TaskStatus.RUNNING,
                to_status=TaskStatus.QUEUED,
                run_id=retried["current_run_id"],
                message=f"attempt {attempt} of {max_attempts} ended ({failure_kind}); "
                f"attempt {attempt + 1} due at {retried['next_available_at']}",
                data={
                    "failure_kind": failure_kind,
                    "error": error,
                    "failed_run_id": str(task["current_run_id"]),
                },
            )
            return retried
        reason = f"{failure_kind} on attempt {attempt} of {max_attempts}: {error}"[:2000]
        failed = await self._move_locked(
            connection,
            task,
            TaskStatus.FAILED,
            actor=actor,
            kind="failed",
            message=reason,
            reason=reason,
            data={"failure_kind": failure_kind},
        )
        return failed

    # -- the reaper's half -----------------------------------------------------------

    async def reap(self, *, actor: str, batch: int = 100) -> ReapResult:
        """Expired leases become lost attempts, retried or failed; dispatched runs nobody
        claimed in time are sent again. Each run in its own short transaction."""
        lost = retried = failed = redispatched = 0
        for candidate in await self.pool.fetch(query("expired_leases"), batch):
            async with self.pool.acquire() as connection, connection.transaction():
                task = await connection.fetchrow(
                    query("lock_tasks_for_runs"), [candidate["id"]], _RUNNING
                )
                if task is None:
                    continue
                run = await connection.fetchrow(query("lose_run_if_expired"), candidate["id"])
                if run is None:  # a heartbeat landed first
                    continue
                lost += 1
                LEASE_EXPIRIES.labels(task["lane"]).inc()
                await append_trace(
                    connection,
                    self.redactor,
                    task["id"],
                    "lease_expired",
                    actor=actor,
                    run_id=run["id"],
                    message=f"lease of {run['claimed_by']} on attempt {run['attempt']} "
                    f"expired at {candidate['lease_until']}",
                    data={"claimed_by": run["claimed_by"], "attempt": run["attempt"]},
                )
                after = await self._after_failed_attempt(
                    connection,
                    task,
                    actor,
                    "lease_expired",
                    f"no heartbeat from {run['claimed_by']}",
                    retryable=True,
                )
                if after["status"] == TaskStatus.QUEUED:
                    retried += 1
                else:
                    failed += 1
        for lane_name, lane in self.policy.lanes.items():
            if lane.transport is None:
                continue
            stale = await self.pool.fetch(
                query("stale_dispatches"), lane.dispatch_timeout_seconds, [lane_name], batch
            )
            for candidate in stale:
                redispatched += await self._redispatch(candidate["id"], actor)
        return ReapResult(lost, retried, failed, redispatched)

    async def _redispatch(self, run_id: UUID, actor: str) -> int:
        async with self.pool.acquire() as connection, connection.transaction():
            task = await connection.fetchrow(
                query("lock_tasks_for_runs"), [run_id], [TaskStatus.DISPATCHED]
            )
            if task is None or await connection.fetchrow(query("redispatch_run"), run_id) is None:
                return 0
            await self._move_locked(
                connection,
                task,
                TaskStatus.QUEUED,
                actor=actor,
                kind="dispatch_timeout",
                message="no worker claimed the run in time; it will be sent again",
            )
        return 1


def _log_transition(
    task: Mapping[str, Any], kind: str, from_status: str, to_status: str, actor: str
) -> None:
    """The `state_change` line every transition logs."""
    log.info(
        "state_change",
        task_id=str(task["id"]),
        run_id=str(task["current_run_id"]),
        kind=kind,
        from_status=from_status,
        to_status=to_status,
        actor=actor,
    )


class _Refusal(Exception):
    """Raised inside a transaction to roll it back; turned into FenceRejected outside."""
