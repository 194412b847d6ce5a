"""How a held run ends: complete, fail, block, pause at a tool call, or release.

Each outcome locks the task first, then ends the run only if the fence still holds it,
then moves the task, all by the outcome's rule in `ledger/states.py` and in one
transaction; a refused outcome records nothing but its `fence_refused` event.
"""

import contextlib
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from ledger.attempts import after_failed_attempt, log_transition, move_locked
from ledger.database import plan_batches_as_sized, planned_as_sized
from ledger.fencing import Fence, FenceRejected, Refusal
from ledger.group_commit import GroupCommit
from ledger.models import Task
from ledger.policy import PolicyConfig
from ledger.run_writes import NewArtifact, NewMessage, RunWrites, SpanEvent, Usage
from ledger.sql import query
from ledger.states import APPROVAL_DECIDERS, TRANSITIONS, Rule


@dataclass(frozen=True)
class _Completion:
    fence: Fence
    worker: str
    result: dict[str, Any]
    usage: Usage | None
    spans: list[SpanEvent]
    artifact: NewArtifact | None
    messages: list[NewMessage]


class Outcomes(RunWrites):
    def __init__(self, pool: asyncpg.Pool, policy: PolicyConfig) -> None:
        super().__init__(pool, policy)
        self._completions = GroupCommit(self._complete_batch)

    async def complete(
        self,
        fence: Fence,
        *,
        worker: str,
        result: dict[str, Any] | None = None,
        usage: Usage | None = None,
        spans: list[SpanEvent] | None = None,
        artifact: NewArtifact | None = None,
        messages: list[NewMessage] | None = None,
    ) -> Task:
        """Record success, with what the run leaves when given: its token usage, its last
        SDK spans (before the `succeeded` event), its output artifact and, for a thread
        run, the agents' messages in its thread's history. Completions
        that arrive together commit together (see `GroupCommit`); each is still fenced
        on its own, and a refused one records nothing."""
        return await self._completions.submit(
            _Completion(fence, worker, result or {}, usage, spans or [], artifact, messages or [])
        )

    async def _complete_batch(self, items: list[_Completion]) -> list[Task | BaseException]:
        unique: dict[Fence, _Completion] = {}
        for item in items:  # a completion sent twice counts once
            unique.setdefault(item.fence, item)
        leaving = [item for item in unique.values() if item.artifact or item.spans or item.messages]
        rule = TRANSITIONS["complete"]
        # The outcome alone is one statement, a transaction of its own: no BEGIN and
        # COMMIT round trips (a fifth of a noop worker's CPU went to them).
        alone = not leaving and not planned_as_sized(len(unique))
        async with (
            self.pool.acquire() as connection,
            contextlib.nullcontext() if alone else connection.transaction(),
        ):
            await plan_batches_as_sized(connection, len(unique))
            if leaving:
                await self._write_before_outcome(connection, leaving, rule)
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
                rule.task_guard,
                rule.run_guard,
                rule.task_to,
                rule.run_to,
            )
        finished: dict[tuple[UUID, str], Task] = {}
        for row in rows:
            finished[(row["current_run_id"], row["finished_by"])] = Task.model_validate(dict(row))
            log_transition(row, "succeeded", row["task_was"], row["status"], row["event_actor"])
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
        self, connection: asyncpg.Connection, items: list[_Completion], rule: Rule
    ) -> None:
        """What completions leave besides their outcome (the output artifact, the last
        SDK spans, a thread run's messages) goes in first, so the spans come before the
        `succeeded` event, and only for runs still held: with the tasks locked first, in
        id order, as the outcome's statement locks them, no run can change hands before
        the outcome."""
        run_ids = [item.fence.run_id for item in items]
        tasks = await connection.fetch(query("lock_tasks_for_runs"), run_ids, rule.task_guard)
        task_of = {task["current_run_id"]: task["id"] for task in tasks}
        thread_of = {task["current_run_id"]: task["thread_id"] for task in tasks}
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
        for item in holding:
            thread_id = thread_of[item.fence.run_id]
            if item.messages and thread_id is not None:
                await self._append_messages(connection, thread_id, task_of[item.fence.run_id], item)

    async def _append_messages(
        self, connection: asyncpg.Connection, thread_id: UUID, task_id: UUID, item: _Completion
    ) -> None:
        await connection.execute(
            query("append_thread_messages"),
            thread_id,
            task_id,
            [message.role for message in item.messages],
            [message.agent for message in item.messages],
            [self.redactor.text(message.content) for message in item.messages],
            [self.redactor.value(message.data) for message in item.messages],
        )

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
                connection, fence, TRANSITIONS["fail"], failure_kind=failure_kind, error=error
            )
            updated = await after_failed_attempt(
                connection,
                self.redactor,
                self.policy.lanes[task["lane"]],
                task,
                worker,
                failure_kind,
                error,
                retryable=retryable,
            )
            if updated is None:
                raise Refusal
        return Task.model_validate(dict(updated))

    async def block(self, fence: Fence, *, worker: str, reason: str) -> Task:
        """Execution is impossible as configured (SDK missing, provider not set up): the
        task waits in `blocked` for an operator's retry after the fix."""
        rule = TRANSITIONS["block_running"]
        async with self._fenced(fence, worker, "block") as connection:
            task = await self._end_attempt(
                connection, fence, rule, failure_kind="blocked", error=reason
            )
            blocked = await move_locked(
                connection,
                self.redactor,
                task,
                rule,
                actor=worker,
                kind="blocked",
                message=reason,
                reason=reason,
            )
            if blocked is None:
                raise Refusal
        return Task.model_validate(dict(blocked))

    async def pause(
        self, fence: Fence, *, worker: str, saved_state: str, pending: dict[str, Any]
    ) -> Task:
        """Park the run at a tool call that needs approval, in one transaction: the SDK
        state, the pending call, its approval request and `awaiting_approval`. The lease
        ends here; whichever worker claims the run after the decision resumes from the
        saved state."""
        rule = TRANSITIONS["pause"]
        async with self._fenced(fence, worker, "pause") as connection:
            task = await self._lock_task(connection, fence, rule.task_guard)
            run = await connection.fetchrow(
                query("pause_run_if_owner"),
                *fence.columns,
                saved_state,
                rule.run_to,
                rule.run_guard,
            )
            if run is None:
                raise Refusal
            request = await connection.fetchrow(
                query("insert_approval_request"),
                uuid4(),
                task["tenant_id"],
                task["id"],
                fence.run_id,
                pending["call_id"],
                pending["tool"],
                pending["arguments"],
                pending["arguments_sha256"],
                list(APPROVAL_DECIDERS),
            )
            pending = {**pending, "approval_id": str(request["id"])}
            await connection.fetchrow(query("set_pending_approval"), task["id"], pending)
            paused = await move_locked(
                connection,
                self.redactor,
                task,
                rule,
                actor=worker,
                kind="approval_requested",
                message=f"tool {pending['tool']} needs an operator's approval",
                data=pending,
            )
            if paused is None:
                raise Refusal
        return Task.model_validate(dict(paused))

    async def release(self, fence: Fence, *, worker: str, reason: str) -> Task:
        """Hand the run back unfinished (a draining worker): queued again, same attempt."""
        rule = TRANSITIONS["release"]
        async with self._fenced(fence, worker, "release") as connection:
            task = await self._lock_task(connection, fence, rule.task_guard)
            run = await connection.fetchrow(
                query("release_run_if_owner"), *fence.columns, rule.run_to, rule.run_guard
            )
            if run is None:
                raise Refusal
            released = await move_locked(
                connection,
                self.redactor,
                task,
                rule,
                actor=worker,
                kind="released",
                message=f"released by {worker}: {reason}",
                data={"attempt": fence.attempt},
            )
            if released is None:
                raise Refusal
        return Task.model_validate(dict(released))

    async def _end_attempt(
        self,
        connection: asyncpg.Connection,
        fence: Fence,
        rule: Rule,
        *,
        failure_kind: str,
        error: str,
    ) -> asyncpg.Record:
        """Lock the task, then end its run by `rule` if this fence still holds it;
        returns the locked task (still `running`)."""
        task = await self._lock_task(connection, fence, rule.task_guard)
        ended = await connection.fetch(
            query("finish_runs_if_owner"),
            [fence.run_id],
            [fence.attempt],
            [fence.token_hash],
            rule.run_to,
            failure_kind,
            error,
            rule.run_guard,
        )
        if not ended:
            raise Refusal
        return task
