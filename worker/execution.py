"""Executing one claimed run: heartbeat, execute, then complete, fail, block or release.

Used by the worker service and by the API's in-process `run`, so both follow the same
fenced path: every write presents the claim's fence, and a worker that lost its lease
(reaped, cancelled, released) stops and writes nothing more.
"""

import asyncio
import contextlib
from collections.abc import Awaitable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

import structlog

from ledger.artifact_store import ArtifactStore
from ledger.leases import Claim, FenceRejected, Leases
from ledger.models import Task
from worker.executors import ExecutionBlocked, ExecutionResult, Executor

log = structlog.get_logger(__name__)
T = TypeVar("T")


class StopReason(StrEnum):
    LEASE_LOST = "lease_lost"  # a heartbeat was refused: someone else owns the run now
    CANCELLED = "cancelled"  # an operator cancelled the task; the ledger already says so
    DRAIN = "drain"  # the worker is shutting down: hand the run back


@dataclass
class Execution:
    """A run in flight, so the cancel listener and the drain can stop it."""

    claim: Claim
    stop_reason: StopReason | None = None
    task: asyncio.Task[ExecutionResult] | None = field(default=None, repr=False)

    def stop(self, reason: StopReason) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        if self.task is not None:
            self.task.cancel()


async def execute_claim(
    execution: Execution,
    executor: Executor,
    leases: Leases,
    store: ArtifactStore,
    *,
    worker: str,
    lease_seconds: float,
) -> Task | None:
    """Run the claimed task to an outcome. Returns the task as recorded, or None when
    this worker no longer owns the run (nothing was written)."""
    claim = execution.claim
    fence = claim.fence
    logger = log.bind(task_id=str(claim.task.id), run_id=str(fence.run_id), attempt=fence.attempt)
    if execution.stop_reason is not None:  # stopped between claim and start
        return await _stopped(execution, leases, worker, logger)
    execution.task = asyncio.create_task(executor(claim.task))
    heartbeat = asyncio.create_task(_heartbeat(execution, leases, worker, lease_seconds))
    try:
        result = await execution.task
    except asyncio.CancelledError:
        if execution.stop_reason is None:
            raise  # the worker itself is being cancelled
        return await _stopped(execution, leases, worker, logger)
    except ExecutionBlocked as blocked:
        return await _fenced(leases.block(fence, worker=worker, reason=str(blocked)), logger)
    except Exception as error:  # the agent's failure is the run's outcome
        logger.warning("execution_failed", error=f"{type(error).__name__}: {error}")
        return await _fenced(
            leases.fail(
                fence,
                worker=worker,
                failure_kind="executor_error",
                error=f"{type(error).__name__}: {error}",
            ),
            logger,
        )
    finally:
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat

    if result.final_output:
        stored = await asyncio.to_thread(
            store.put,
            claim.task.tenant_id,
            claim.task.id,
            "final_output.md",
            result.final_output.encode(),
        )
        recorded = await _fenced(
            leases.add_artifact(
                fence,
                worker=worker,
                name="final_output.md",
                media_type="text/markdown",
                stored=stored,
                metadata={"kind": "final_output", "attempt": fence.attempt},
            ),
            logger,
        )
        if recorded is None:  # the run was taken over: leave no unreferenced content
            await asyncio.to_thread(store.delete, stored.storage_ref)
            return None
    usage = {"input_tokens": result.input_tokens, "output_tokens": result.output_tokens}
    return await _fenced(leases.complete(fence, worker=worker, result={"usage": usage}), logger)


async def _fenced(write: Awaitable[T], logger: Any) -> T | None:
    """A fenced write; a refusal means the run was taken over: log it and stop."""
    try:
        return await write
    except FenceRejected:
        logger.warning("write_refused_lease_lost")
        return None


async def _stopped(execution: Execution, leases: Leases, worker: str, logger: Any) -> Task | None:
    reason = execution.stop_reason
    logger.info("execution_stopped", reason=str(reason))
    if reason == StopReason.DRAIN:
        return await _fenced(
            leases.release(execution.claim.fence, worker=worker, reason="worker draining"),
            logger,
        )
    return None  # cancelled or lease lost: the ledger already records what happened


async def _heartbeat(
    execution: Execution, leases: Leases, worker: str, lease_seconds: float
) -> None:
    """Extend the lease every third of it; a refused heartbeat stops the execution."""
    interval = lease_seconds / 3
    while True:
        await asyncio.sleep(interval)
        try:
            await leases.heartbeat(
                execution.claim.fence, worker=worker, lease_seconds=lease_seconds
            )
        except FenceRejected:
            execution.stop(StopReason.LEASE_LOST)
            return
        except Exception as error:  # the database may be back before the lease runs out
            log.warning(
                "heartbeat_failed",
                run_id=str(execution.claim.fence.run_id),
                error=type(error).__name__,
            )
