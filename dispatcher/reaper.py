"""The reaper: rescues runs whose worker went away.

- A running run whose lease expired (no heartbeat in time) is `lost`; the task's next
  attempt is queued after its backoff, or the task fails once `max_attempts` are spent
  (`ledger/attempts.py`).
- A dispatched run nobody claimed within its lane's `dispatch_timeout_seconds` goes
  back to `queued`, and the dispatcher sends a fresh hint.

Each rescue is its own short transaction, guarded in SQL by the `reap` and
`dispatch_timeout` rules of `ledger/states.py` (the lease must still be expired once the
task is locked, so a heartbeat that landed in between wins). Several dispatcher
replicas may reap at once: a run one of them rescued no longer matches the other's
guard.
"""

from dataclasses import dataclass
from uuid import UUID

import asyncpg

from ledger.attempts import after_failed_attempt, move_locked
from ledger.policy import PolicyConfig
from ledger.redaction import Redactor
from ledger.sql import query
from ledger.states import TRANSITIONS, TaskStatus
from ledger.traces import append_trace
from metrics import LEASE_EXPIRIES


@dataclass(frozen=True)
class ReaperConfig:
    # Who the trace events and log lines name as the actor.
    actor: str
    # At most this many expired leases, and this many stale dispatches per lane, per
    # turn: a backlog after an outage is worked off over several turns, each bounded.
    batch_size: int = 100


@dataclass(frozen=True)
class ReapResult:
    lost: int  # expired leases ended
    retried: int  # of those, the tasks queued for another attempt
    failed: int  # of those, the tasks failed: no attempt left
    redispatched: int  # dispatched runs nobody claimed, queued to be sent again


class _Skipped(Exception):
    """The run changed hands between the candidate query and its lock: roll back."""


class Reaper:
    def __init__(self, pool: asyncpg.Pool, policy: PolicyConfig, config: ReaperConfig) -> None:
        self.pool = pool
        self.policy = policy
        self.config = config
        self.redactor = Redactor(policy.secret_keys)

    async def run_once(self) -> ReapResult:
        """One turn: the expired leases, then the stale dispatches of every lane that
        has a transport."""
        lost = retried = failed = redispatched = 0
        for candidate in await self.pool.fetch(query("expired_leases"), self.config.batch_size):
            try:
                after = await self._lose(candidate)
            except _Skipped:
                continue
            lost += 1
            if after["status"] == TaskStatus.QUEUED:
                retried += 1
            else:
                failed += 1
        for lane_name, lane in self.policy.lanes.items():
            if lane.transport is None:
                continue
            stale = await self.pool.fetch(
                query("stale_dispatches"),
                lane.dispatch_timeout_seconds,
                [lane_name],
                self.config.batch_size,
            )
            for candidate in stale:
                try:
                    await self._redispatch(candidate["id"])
                except _Skipped:
                    continue
                redispatched += 1
        return ReapResult(lost, retried, failed, redispatched)

    async def _lose(self, candidate: asyncpg.Record) -> asyncpg.Record:
        """End one expired lease and retry or fail its task; the task after."""
        rule, actor = TRANSITIONS["reap"], self.config.actor
        async with self.pool.acquire() as connection, connection.transaction():
            task = await connection.fetchrow(
                query("lock_tasks_for_runs"), [candidate["id"]], rule.task_guard
            )
            if task is None:
                raise _Skipped
            run = await connection.fetchrow(
                query("lose_run_if_expired"), candidate["id"], rule.run_to, rule.run_guard
            )
            if run is None:  # a heartbeat landed first
                raise _Skipped
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
            after = await after_failed_attempt(
                connection,
                self.redactor,
                self.policy.lanes[task["lane"]],
                task,
                actor,
                "lease_expired",
                f"no heartbeat from {run['claimed_by']}",
                retryable=True,
            )
            if after is None:
                raise _Skipped
        return after

    async def _redispatch(self, run_id: UUID) -> None:
        rule = TRANSITIONS["dispatch_timeout"]
        async with self.pool.acquire() as connection, connection.transaction():
            task = await connection.fetchrow(
                query("lock_tasks_for_runs"), [run_id], rule.task_guard
            )
            if task is None:
                raise _Skipped
            run = await connection.fetchrow(
                query("redispatch_run"), run_id, rule.run_to, rule.run_guard
            )
            if run is None:
                raise _Skipped
            moved = await move_locked(
                connection,
                self.redactor,
                task,
                rule,
                actor=self.config.actor,
                kind="dispatch_timeout",
                message="no worker claimed the run in time; it will be sent again",
            )
            if moved is None:
                raise _Skipped
