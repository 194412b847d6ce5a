"""Claims and heartbeats: how a worker comes to hold a run, and keeps holding it.

A claim is guarded by the `claim` rule (only the attempt a hint names, only while the
run and its task wait) and returns a `Fence`, and the task's agent session bound to the
claim with its credential (`ledger/agent_sessions.py`), in the same transaction; a
heartbeat extends the lease only for the holder of that fence.
"""

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from ledger.agent_sessions import Claimed, SessionGrant, SessionOpening, new_claim_token
from ledger.attempts import log_transition
from ledger.database import plan_batches_as_sized
from ledger.fencing import Fence, FencedWrites
from ledger.models import Run, Task
from ledger.sql import query
from ledger.states import TRANSITIONS


@dataclass(frozen=True)
class Hint:
    """What a claim asks for: the run a lane message names, at the attempt it names."""

    task_id: UUID
    run_id: UUID
    attempt: int


@dataclass(frozen=True)
class Claim:
    fence: Fence
    task: Task
    run: Run
    # The worker keeps the fence; the agent it runs gets the grant's credential.
    grant: SessionGrant


class Claims(FencedWrites, SessionOpening):
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
        rule = TRANSITIONS["claim"]
        async with self.pool.acquire() as connection, connection.transaction():
            picked = await connection.fetchrow(
                query("claim_next_run"), lanes, tenant_id, rule.task_guard, rule.run_guard
            )
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
                fence = Fence(hint.run_id, hint.attempt, new_claim_token())
                fences[hint.run_id] = (hint, fence)
        lanes = self.policy.lanes
        rule = TRANSITIONS["claim"]
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
            rule.task_guard,
            rule.run_guard,
            rule.task_to,
            rule.run_to,
        )
        claimed = [(dict(row), Run.model_validate(row["claimed_run"])) for row in rows]
        grants = await self.open_sessions(
            connection,
            [
                Claimed(run.task_id, run.id, run.lane, fences[run.id][1].token_hash)
                for _, run in claimed
            ],
        )
        claims: dict[UUID, Claim] = {}
        for task, run in claimed:
            claims[run.id] = Claim(
                fences[run.id][1], Task.model_validate(task), run, grants[run.id]
            )
            log_transition(task, "worker_receipt", task["task_was"], task["status"], worker)
        # Each claim answers the first hint naming its run; a second copy gets None.
        return [claims.pop(hint.run_id, None) for hint in hints]

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
