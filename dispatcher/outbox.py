"""The transactional outbox: due `queued` runs, picked in batches with SKIP LOCKED,
marked `dispatched` with a trace event and committed, and only then sent to their
lanes.

The tasks stay locked from pick to mark, so replicas never send the same batch, and
no longer: a slow lane holds no lock, so cancelling or approving a task whose hint is
on its way does not wait for the lane. A send that fails, or is abandoned at SIGTERM,
puts its runs back to `queued` with a `dispatch_failed` event, each only while it is
still dispatched at that send's dispatch count (a claim, a cancel or a newer dispatch
that came first wins), and the lane rests for a backoff before this outbox tries it
again. A dispatcher that dies between the commit and the send leaves its runs
dispatched with no hint: the reaper sends them again once nobody claimed them within
`dispatch_timeout_seconds`. A hint that arrives for a cancelled task, or twice, is
harmless: a lane message is only a hint, and a claim of a run that is no longer
waiting is refused.
"""

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field
from uuid import UUID

import asyncpg
import structlog

from lanes.base import LaneMessage
from lanes.registry import LaneRegistry
from ledger.database import plan_batches_as_sized
from ledger.redaction import Redactor
from ledger.sql import query
from ledger.states import TRANSITIONS
from metrics import DISPATCH_LATENCY, DISPATCHED

log = structlog.get_logger(__name__)

# A lane whose send failed rests this long before the outbox picks its runs again,
# doubled for each failure in a row up to the cap: each try costs the batch two trace
# events (dispatched, dispatch_failed), so an outage must not cost them every turn.
LANE_REST_SECONDS = 1.0
LANE_REST_MAX_SECONDS = 30.0


@dataclass(frozen=True)
class DispatchResult:
    sent: int = 0
    by_lane: dict[str, int] = field(default_factory=dict)
    failed_lanes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Marked:
    """A run this outbox marked dispatched, with what its send needs."""

    message: LaneMessage
    dispatch_count: int  # this dispatch included
    waited_seconds: float


@dataclass
class _LaneRest:
    failures: int  # sends that failed in a row
    until: float  # time.monotonic() at which the lane is tried again


def message_id(run_id: UUID, dispatch_count: int) -> str:
    """The run id for the first send; "<run id>/<n>" for re-sends, which must not be
    dropped as duplicates of a hint that was lost. `dispatch_count` counts the sends
    before this one."""
    return str(run_id) if dispatch_count == 0 else f"{run_id}/{dispatch_count}"


class Outbox:
    def __init__(self, pool: asyncpg.Pool, lanes: LaneRegistry, actor: str) -> None:
        self.pool = pool
        self.lanes = lanes
        self.actor = actor
        self.redactor = Redactor(lanes.policy.secret_keys)
        self._resting: dict[str, _LaneRest] = {}

    async def dispatch_once(self, batch_size: int, task_id: UUID | None = None) -> DispatchResult:
        """Mark one batch (or one task's run, whether or not its lane rests) dispatched,
        then send it. A lane whose send fails has its runs put back to queued; the other
        lanes' runs stay dispatched."""
        marked = await self._mark(batch_size, task_id)
        if not marked:
            return DispatchResult()
        by_lane: defaultdict[str, list[_Marked]] = defaultdict(list)
        for item in marked:
            by_lane[item.message.lane].append(item)
        sent_lanes: set[str] = set()
        failed: dict[str, str] = {}
        try:
            await asyncio.gather(
                *(
                    self._send(lane_name, [item.message for item in items], sent_lanes, failed)
                    for lane_name, items in by_lane.items()
                )
            )
        finally:
            # Also when cancelled (SIGTERM): the runs of sends that did not finish go
            # back now rather than wait out the dispatch timeout.
            unsent = [
                item for lane, items in by_lane.items() if lane not in sent_lanes for item in items
            ]
            if unsent:
                await self._requeue(unsent, failed)
        counts = {lane: len(by_lane[lane]) for lane in sent_lanes}
        for lane_name, count in counts.items():
            DISPATCHED.labels(lane_name).inc(count)
            for item in by_lane[lane_name]:
                DISPATCH_LATENCY.labels(lane_name).observe(max(0.0, item.waited_seconds))
        if counts:
            log.info("dispatched", runs=sum(counts.values()), by_lane=counts)
        return DispatchResult(sum(counts.values()), counts, failed)

    async def _mark(self, batch_size: int, task_id: UUID | None) -> list[_Marked]:
        """Pick and lock the runs, mark them dispatched and commit."""
        lanes = self.lanes.configured() if task_id is not None else self._lanes_awake()
        if not lanes:
            return []
        async with self.pool.acquire() as connection, connection.transaction():
            rows = await (
                connection.fetch(query("lock_due_runs"), batch_size, lanes)
                if task_id is None
                else connection.fetch(query("lock_task_run"), task_id, lanes)
            )
            if not rows:
                return []
            # No wait for the WAL flush (a fifth of dispatch's Postgres CPU at batches of
            # 10). A mark lost to a database crash leaves its runs queued at their old
            # dispatch count: they are marked and sent again under the same message id,
            # so a hint already sent is dropped as a duplicate, or found claimed.
            await connection.execute("SET LOCAL synchronous_commit = off")
            await plan_batches_as_sized(connection, len(rows))
            rule = TRANSITIONS["dispatch"]
            moved = await connection.fetch(
                query("mark_dispatched"),
                [row["id"] for row in rows],
                self.actor,
                rule.task_guard,
                rule.run_guard,
                rule.task_to,
                rule.run_to,
            )
        counts = {row["id"]: row["dispatch_count"] for row in moved}
        return [
            _Marked(
                LaneMessage(
                    message_id=message_id(row["id"], counts[row["id"]] - 1),
                    task_id=row["task_id"],
                    run_id=row["id"],
                    attempt=row["attempt"],
                    lane=row["lane"],
                ),
                counts[row["id"]],
                row["waited_seconds"],
            )
            for row in rows
            if row["id"] in counts
        ]

    def _lanes_awake(self) -> list[str]:
        now = time.monotonic()
        return [
            lane
            for lane in self.lanes.configured()
            if lane not in self._resting or self._resting[lane].until <= now
        ]

    async def _send(
        self, lane_name: str, messages: list[LaneMessage], sent: set[str], failed: dict[str, str]
    ) -> None:
        try:
            await self.lanes.get(lane_name).send_batch(messages)
        except Exception as error:  # one lane's outage must not stop the others
            failed[lane_name] = f"{type(error).__name__}: {error}"
            rest = self._resting.setdefault(lane_name, _LaneRest(0, 0.0))
            rest.failures += 1
            seconds = min(LANE_REST_MAX_SECONDS, LANE_REST_SECONDS * 2 ** (rest.failures - 1))
            rest.until = time.monotonic() + seconds
            log.warning(
                "lane_send_failed",
                lane=lane_name,
                error=failed[lane_name],
                runs=len(messages),
                rest_seconds=seconds,
            )
            return
        sent.add(lane_name)
        self._resting.pop(lane_name, None)

    async def _requeue(self, unsent: list[_Marked], failed: dict[str, str]) -> None:
        """dispatched -> queued for runs whose hints were not sent, with the reason."""

        def reason(lane: str) -> str:
            if lane in failed:
                return f"sending to lane {lane} failed ({failed[lane]}); it will be sent again"
            return f"the dispatcher stopped before sending to lane {lane}; it will be sent again"

        rule = TRANSITIONS["unsent"]
        await self.pool.execute(
            query("requeue_unsent"),
            [item.message.run_id for item in unsent],
            [item.dispatch_count for item in unsent],
            rule.task_guard,
            self.actor,
            [self.redactor.text(reason(item.message.lane))[:2000] for item in unsent],
            rule.run_guard,
            rule.task_to,
            rule.run_to,
        )
