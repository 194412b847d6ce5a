"""What a worker writes while it holds a run, besides its outcome: artifacts, trace
events (a tool call's verdict, SDK spans), token usage; and what it reads back (the
SDK state a paused run left, an artifact by name). Each write presents the fence."""

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid5

import asyncpg

from ledger.artifact_store import StoredObject
from ledger.fencing import Fence, FencedWrites, Refusal
from ledger.models import Artifact, ThreadMessage, artifact_record
from ledger.sql import query
from ledger.states import TRANSITIONS
from ledger.traces import append_trace


@dataclass(frozen=True)
class SpanEvent:
    """One finished SDK span, ready to be a trace event."""

    span_id: str
    kind: str
    message: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class NewMessage:
    """A message a thread run leaves in its thread's history, written with its
    completion (role: assistant, tool_call, tool_result or handoff)."""

    role: str
    content: str
    agent: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NewArtifact:
    """Content already in the artifact store, to be recorded in the ledger."""

    name: str
    media_type: str
    stored: StoredObject
    metadata: dict[str, Any]


class RunWrites(FencedWrites):
    async def add_artifact(self, fence: Fence, *, worker: str, artifact: NewArtifact) -> Artifact:
        """Artifact metadata, written only while this worker holds the run; writing the
        same stored object again (a retry) returns the first record."""
        async with self._fenced(fence, worker, "artifact") as connection:
            recorded = await self._insert_artifacts(connection, [(fence, artifact)])
            if not recorded:
                raise Refusal
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
            task = await self._lock_task(connection, fence, TRANSITIONS["hold"].task_guard)
            if not await self._holds(connection, fence):
                raise Refusal
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
        rule = TRANSITIONS["record_spans"]
        async with self._fenced(fence, worker, "trace") as connection:
            task = await self._lock_task(connection, fence, rule.task_guard)
            held = await connection.fetchval(
                query("holds_run_or_was_cancelled"), *fence.columns, rule.run_guard
            )
            if held is None:
                raise Refusal
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
                raise Refusal

    async def saved_state(self, fence: Fence) -> str | None:
        """The SDK state a paused run left, if this run was paused before."""
        return await self.pool.fetchval(query("saved_state_if_owner"), *fence.columns)

    async def thread_history(self, thread_id: UUID) -> list[ThreadMessage]:
        """The conversation so far of the thread a claimed run answers."""
        async with self.pool.acquire() as connection:
            rows = await connection.fetch(query("thread_history"), thread_id)
        return [ThreadMessage.model_validate(dict(row)) for row in rows]

    async def thread_messages_after(self, thread_id: UUID, seq: int) -> list[ThreadMessage]:
        """The thread's messages after `seq`: what was written since a point the worker
        already has (a client session's cached context)."""
        rows = await self.pool.fetch(query("thread_messages_after"), thread_id, seq)
        return [ThreadMessage.model_validate(dict(row)) for row in rows]

    async def artifact_named(self, task_id: UUID, name: str) -> tuple[Artifact, str] | None:
        """The newest artifact called `name` and its storage reference."""
        row = await self.pool.fetchrow(query("latest_artifact_named"), task_id, name)
        return None if row is None else (artifact_record(dict(row)), row["storage_ref"])
