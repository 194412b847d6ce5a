"""The transactional outbox: due `queued` runs, picked in batches with SKIP LOCKED,
sent to their lanes, and marked `dispatched` with a trace event.

Runs stay locked (through their tasks) from pick to mark, so replicas never send the
same batch. A crash between send and mark leaves the runs queued and they are sent
again: harmless, because a lane message is only a hint and a claim of a run that is
no longer waiting is refused. Postgres lanes even drop the second copy (same message
id), as Service Bus duplicate detection does.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from uuid import UUID

import asyncpg
import structlog

from lanes.base import LaneMessage
from lanes.registry import LaneRegistry
from ledger.database import plan_batches_as_sized
from ledger.sql import query
from metrics import DISPATCH_LATENCY, DISPATCHED

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class DispatchResult:
    sent: int = 0
    by_lane: dict[str, int] = field(default_factory=dict)
    failed_lanes: dict[str, str] = field(default_factory=dict)


def message_id(run_id: UUID, dispatch_count: int) -> str:
    """The run id for the first send; "<run id>/<n>" for re-sends, which must not be
    dropped as duplicates of a hint that was lost."""
    return str(run_id) if dispatch_count == 0 else f"{run_id}/{dispatch_count}"


class Outbox:
    def __init__(self, pool: asyncpg.Pool, lanes: LaneRegistry, actor: str) -> None:
        self.pool = pool
        self.lanes = lanes
        self.actor = actor

    async def dispatch_once(self, batch_size: int, task_id: UUID | None = None) -> DispatchResult:
        """Send one batch (or one task's run). A lane whose send fails keeps its runs
        queued for the next round; the others are marked."""
        async with self.pool.acquire() as connection, connection.transaction():
            rows = await (
                connection.fetch(query("lock_due_runs"), batch_size, self.lanes.configured())
                if task_id is None
                else connection.fetch(query("lock_task_run"), task_id, self.lanes.configured())
            )
            if not rows:
                return DispatchResult()
            # No wait for the WAL flush (a fifth of dispatch's Postgres CPU at batches of
            # 10). A dispatch lost to a database crash leaves its runs queued, and they
            # are sent again: the case of a dispatcher dying between send and mark,
            # which duplicate detection and the claim's guard already make harmless.
            await connection.execute("SET LOCAL synchronous_commit = off")
            await plan_batches_as_sized(connection, len(rows))
            by_lane: defaultdict[str, list[LaneMessage]] = defaultdict(list)
            for row in rows:
                by_lane[row["lane"]].append(
                    LaneMessage(
                        message_id=message_id(row["id"], row["dispatch_count"]),
                        task_id=row["task_id"],
                        run_id=row["id"],
                        attempt=row["attempt"],
                        lane=row["lane"],
                    )
                )
            sent: list[UUID] = []
            counts: dict[str, int] = {}
            failed: dict[str, str] = {}
            for lane_name, messages in by_lane.items():
                try:
                    await self.lanes.get(lane_name).send_batch(messages)
                except Exception as error:  # one lane's outage must not stop the others
                    failed[lane_name] = f"{type(error).__name__}: {error}"
                    log.warning(
                        "lane_send_failed",
                        lane=lane_name,
                        error=failed[lane_name],
                        runs=len(messages),
                    )
                    continue
                sent += [m.run_id for m in messages]
                counts[lane_name] = len(messages)
                DISPATCHED.labels(lane_name).inc(len(messages))
            for row in rows:
                if row["lane"] in counts:
                    DISPATCH_LATENCY.labels(row["lane"]).observe(max(0.0, row["waited_seconds"]))
            if sent:
                await connection.fetch(query("mark_dispatched"), sent, self.actor)
        if sent:
            log.info("dispatched", runs=len(sent), by_lane=counts)
        return DispatchResult(len(sent), counts, failed)
