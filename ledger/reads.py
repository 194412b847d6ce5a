"""Reading the ledger: tasks (a page at a time, by keyset cursor), runs, traces and
artifacts, each scoped to its tenant; and what every part of `Ledger` shares."""

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg

from ledger.errors import BadRequest, NotFound
from ledger.models import Artifact, Run, Task, TraceEvent, artifact_record
from ledger.policy import PolicyConfig
from ledger.redaction import Redactor
from ledger.sql import query


@dataclass(frozen=True)
class TaskPage:
    tasks: list[Task]
    next_cursor: str | None


# A page's keyset position: the last task's created_at in microseconds since the epoch
# (Postgres' precision) and its id. Every string of this shape is a valid cursor, so the
# documented pattern says all there is to say about one.
CURSOR_PATTERN = r"^[0-9]{1,19}\.[0-9a-f]{32}$"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def encode_cursor(task: Task) -> str:
    return f"{(task.created_at - _EPOCH) // _MICROSECOND}.{task.id.hex}"


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    if not re.fullmatch(CURSOR_PATTERN, cursor):
        raise BadRequest("cursor is not one this API returned", field="cursor")
    micros, task_id = cursor.split(".")
    try:
        created_at = _EPOCH + int(micros) * _MICROSECOND
    except OverflowError:
        # Past the last datetime: every task was created before it.
        created_at = datetime.max.replace(tzinfo=UTC)
    return created_at, UUID(hex=task_id)


class Reads:
    def __init__(self, pool: asyncpg.Pool, policy: PolicyConfig) -> None:
        self.pool = pool
        self.policy = policy
        self.redactor = Redactor(policy.secret_keys)

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
        return await self.traces_after(tenant_id, task_id, after_seq=after_seq, limit=limit)

    async def traces_after(
        self, tenant_id: str, task_id: UUID, *, after_seq: int, limit: int
    ) -> list[TraceEvent]:
        """`list_traces` for a caller that has read the task already (a live stream, woken
        each time the trace grows): one query, still scoped to the tenant."""
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
