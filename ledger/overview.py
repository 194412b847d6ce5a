"""What the operator console reads beyond the REST API's reads: the task list with a
text filter, counts per status, a task's runs, everything waiting for a decision, and
the lanes and workers as the tenant's runs show them. Read-only, scoped to the tenant,
each a named query of `queries/console.sql`.

Lanes and workers are shared by every tenant, but the console shows only what the
caller's own runs say of them (depth, in flight, dead letters), like every other read.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from ledger.models import ApprovalRequest, Run, Task
from ledger.reads import Reads, TaskPage, decode_cursor, encode_cursor
from ledger.sql import query
from ledger.states import RunStatus, TaskStatus

# Counts per status stop at this many (shown as "10000+").
STATUS_COUNT_CAP = 10_000
# The most rows the approvals queue shows of each kind.
WAITING_LIMIT = 200
# Runs waiting for a worker to claim them.
_WAITING = (RunStatus.QUEUED, RunStatus.DISPATCHED)


@dataclass(frozen=True)
class LaneLoad:
    lane: str
    depth: int
    oldest_age_seconds: float | None
    scheduled: int
    running: int
    paused: int


@dataclass(frozen=True)
class WorkerLoad:
    worker: str
    lane: str
    in_flight: int
    last_heartbeat: datetime | None
    next_lease_expiry: datetime | None


@dataclass(frozen=True)
class DeadLetter:
    id: int
    lane: str
    message_id: str
    delivery_count: int
    reason: str
    description: str
    enqueued_at: datetime
    dead_lettered_at: datetime
    task_id: UUID
    title: str


def like_pattern(text: str) -> str:
    """`text` as a LIKE pattern that matches it anywhere, its wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class Overview(Reads):
    async def search_tasks(
        self,
        tenant_id: str,
        *,
        text: str,
        status: str | None,
        lane: str | None,
        limit: int,
        cursor: str | None,
    ) -> TaskPage:
        """`list_tasks` narrowed to titles containing `text` (case-insensitive)."""
        after_created, after_id = decode_cursor(cursor) if cursor else (None, None)
        rows = await self.pool.fetch(
            query("search_tasks"),
            tenant_id,
            status,
            lane,
            after_created,
            after_id,
            limit + 1,
            like_pattern(text),
        )
        tasks = [Task.model_validate(dict(row)) for row in rows[:limit]]
        more = len(rows) > limit
        return TaskPage(tasks=tasks, next_cursor=encode_cursor(tasks[-1]) if more else None)

    async def status_counts(self, tenant_id: str, *, lane: str | None) -> dict[str, int]:
        statuses = [str(status) for status in TaskStatus]
        rows = await self.pool.fetch(
            query("task_status_counts"), tenant_id, statuses, lane, STATUS_COUNT_CAP
        )
        return {row["status"]: row["n"] for row in rows}

    async def task_runs(self, tenant_id: str, task_id: UUID) -> list[Run]:
        rows = await self.pool.fetch(query("task_runs"), tenant_id, task_id)
        return [Run.model_validate(dict(row)) for row in rows]

    async def tenant_tasks_among(self, tenant_id: str, task_ids: list[UUID]) -> set[UUID]:
        rows = await self.pool.fetch(query("tenant_tasks_among"), tenant_id, task_ids)
        return {row["id"] for row in rows}

    async def waiting_tasks(self, tenant_id: str) -> list[Task]:
        rows = await self.pool.fetch(query("tasks_awaiting_approval"), tenant_id, WAITING_LIMIT)
        return [Task.model_validate(dict(row)) for row in rows]

    async def pending_tool_calls(self, tenant_id: str) -> list[ApprovalRequest]:
        rows = await self.pool.fetch(query("pending_approval_requests"), tenant_id, WAITING_LIMIT)
        return [ApprovalRequest.model_validate(dict(row)) for row in rows]

    async def lane_loads(self, tenant_id: str) -> dict[str, LaneLoad]:
        """Per lane: runs waiting to be claimed (due, queued or dispatched) and the
        oldest one's age, runs scheduled for later, running and paused."""
        loads: dict[str, dict[str, Any]] = {}
        for row in await self.pool.fetch(query("tenant_lane_backlog"), tenant_id):
            load = loads.setdefault(
                row["lane"],
                {"depth": 0, "oldest_age_seconds": None, "scheduled": 0, "running": 0, "paused": 0},
            )
            status = RunStatus(row["status"])
            if status in _WAITING:
                load["depth"] += row["due"]
                load["scheduled"] += row["later"]
                age = row["oldest_due_seconds"]
                if age is not None:
                    load["oldest_age_seconds"] = max(load["oldest_age_seconds"] or 0.0, age)
            else:
                load[str(status)] += row["due"] + row["later"]
        return {lane: LaneLoad(lane=lane, **load) for lane, load in loads.items()}

    async def worker_loads(self, tenant_id: str) -> list[WorkerLoad]:
        rows = await self.pool.fetch(query("tenant_workers"), tenant_id)
        return [WorkerLoad(**_fields(row)) for row in rows]

    async def dead_letters(self, tenant_id: str, limit: int = 50) -> list[DeadLetter]:
        rows = await self.pool.fetch(query("tenant_dead_letters"), tenant_id, limit)
        return [DeadLetter(**_fields(row)) for row in rows]


def _fields(row: Any) -> dict[str, Any]:
    return dict(row.items())
