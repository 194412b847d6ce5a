"""The fence every worker write presents, and the refusal a stale one gets.

A claim returns a `Fence` (run id + attempt + claim token). Only the token's sha256 is
stored; every later write must present the token, and the SQL applies it only while
the run is still held under that token (the `hold` rule in `ledger/states.py`). A
worker whose lease was taken over (reaped, released, cancelled) gets `FenceRejected`,
counted and traced, and its write is not applied.
"""

import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import NoReturn
from uuid import UUID

import asyncpg
import structlog

from ledger.errors import LedgerError
from ledger.policy import PolicyConfig
from ledger.redaction import Redactor
from ledger.sql import query
from ledger.traces import append_trace
from metrics import FENCE_REFUSALS

log = structlog.get_logger(__name__)


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


class FenceRejected(LedgerError):
    """The caller no longer holds the run: its lease expired and was taken over, it was
    cancelled or released, or the token is wrong."""

    code = "fence_rejected"


class Refusal(Exception):
    """Raised inside a fenced transaction to roll it back; `FencedWrites._fenced` turns
    it into a counted, traced FenceRejected outside."""


class FencedWrites:
    """What every group of worker-facing operations shares: the pool, the lanes, the
    redactor, and the fenced transaction."""

    def __init__(self, pool: asyncpg.Pool, policy: PolicyConfig) -> None:
        self.pool = pool
        self.policy = policy
        self.redactor = Redactor(policy.secret_keys)

    @contextlib.asynccontextmanager
    async def _fenced(
        self, fence: Fence, worker: str, operation: str
    ) -> AsyncIterator[asyncpg.Connection]:
        """A transaction for a fenced write: `Refusal` inside rolls it back and becomes
        a counted, traced FenceRejected."""
        try:
            async with self.pool.acquire() as connection, connection.transaction():
                yield connection
        except Refusal:
            await self._refused(fence, worker, operation)

    @staticmethod
    async def _lock_task(
        connection: asyncpg.Connection, fence: Fence, statuses: list[str]
    ) -> asyncpg.Record:
        """Lock the task whose current run the fence names, while in one of `statuses`."""
        task = await connection.fetchrow(query("lock_tasks_for_runs"), [fence.run_id], statuses)
        if task is None:
            raise Refusal
        return task

    @staticmethod
    async def _holds(connection: asyncpg.Connection, fence: Fence) -> bool:
        held = await connection.fetch(
            query("runs_held"), [fence.run_id], [fence.attempt], [fence.token_hash]
        )
        return bool(held)

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
