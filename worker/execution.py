"""Executing one claimed run: heartbeat, execute, then complete, fail, pause, block or
release.

Used by the worker service and by the API's in-process `run`, so both follow the same
fenced path: every write presents the claim's fence, and a worker that lost its lease
(reaped, cancelled, released) stops and writes nothing more. SDK spans are written to
the trace in batches, with each heartbeat and before the outcome, so a run's trace is
visible while it runs and complete when it ends (a cancelled run keeps what it did).
"""

import asyncio
import contextlib
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

import structlog

from ledger.leases import Claim, FenceRejected
from ledger.models import Task
from metrics import RUN_DURATION, SDK_TOKENS
from worker import spans
from worker.context import RunContext
from worker.executors import (
    ExecutionBlocked,
    ExecutionFailed,
    ExecutionResult,
    Executor,
    trace_id_for,
)

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


async def execute_claim(execution: Execution, executor: Executor, run: RunContext) -> Task | None:
    """Run the claimed task to an outcome. Returns the task as recorded, or None when
    this worker no longer owns the run (nothing more was written)."""
    started = time.perf_counter()
    outcome = await _execute(execution, executor, run)
    label = "lost" if outcome is None else str(outcome.status)
    RUN_DURATION.labels(run.task.lane, label).observe(time.perf_counter() - started)
    return outcome


async def _execute(execution: Execution, executor: Executor, run: RunContext) -> Task | None:
    fence = execution.claim.fence
    leases, worker = run.leases, run.worker
    logger = log.bind(
        task_id=str(run.task.id),
        run_id=str(fence.run_id),
        attempt=fence.attempt,
        trace_id=trace_id_for(run),
    )
    if execution.stop_reason is not None:  # stopped between claim and start
        return await _stopped(execution, run, logger)
    execution.task = asyncio.create_task(executor(run))
    heartbeat = asyncio.create_task(_heartbeat(execution, run))
    try:
        result = await execution.task
    except asyncio.CancelledError:
        if execution.stop_reason is None:
            raise  # the worker itself is being cancelled
        await _flush_spans(run, logger)
        return await _stopped(execution, run, logger)
    except ExecutionBlocked as blocked:
        return await _fenced(leases.block(fence, worker=worker, reason=str(blocked)), logger)
    except Exception as error:  # the agent's failure is the run's outcome
        kind, retryable = (
            (error.failure_kind, error.retryable)
            if isinstance(error, ExecutionFailed)
            else ("executor_error", True)
        )
        logger.warning(
            "execution_failed", failure_kind=kind, error=f"{type(error).__name__}: {error}"
        )
        await _flush_spans(run, logger)
        return await _fenced(
            leases.fail(
                fence,
                worker=worker,
                failure_kind=kind,
                error=f"{type(error).__name__}: {error}",
                retryable=retryable,
            ),
            logger,
        )
    finally:
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat

    if not await _flush_spans(run, logger):
        return None
    if result.input_tokens or result.output_tokens:
        lane, model = run.task.lane, run.task.model_provider
        SDK_TOKENS.labels(lane, model, "input").inc(result.input_tokens)
        SDK_TOKENS.labels(lane, model, "output").inc(result.output_tokens)
        await _fenced(
            leases.record_usage(
                fence,
                worker=worker,
                input_tokens=result.input_tokens,
                output_tokens=result.output_tokens,
            ),
            logger,
        )
    if result.paused is not None:
        return await _fenced(
            leases.pause(
                fence,
                worker=worker,
                saved_state=result.paused.saved_state,
                pending=result.paused.pending,
            ),
            logger,
        )
    if result.final_output:
        stored = await asyncio.to_thread(
            run.store.put,
            run.task.tenant_id,
            run.task.id,
            "final_output.md",
            leases.redactor.text(result.final_output).encode(),
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
            await asyncio.to_thread(run.store.delete, stored.storage_ref)
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


async def _flush_spans(run: RunContext, logger: Any) -> bool:
    """Write the SDK spans finished so far; False when the run is no longer ours."""
    trace_id = trace_id_for(run)
    finished = spans.drain(trace_id)
    if not finished:
        return True
    try:
        written = await _fenced(
            run.leases.append_spans(run.claim.fence, worker=run.worker, spans=finished), logger
        )
    except Exception:
        spans.put_back(trace_id, finished)  # the next flush tries again
        raise
    return written is not None


async def _stopped(execution: Execution, run: RunContext, logger: Any) -> Task | None:
    reason = execution.stop_reason
    logger.info("execution_stopped", reason=str(reason))
    if reason == StopReason.DRAIN:
        return await _fenced(
            run.leases.release(execution.claim.fence, worker=run.worker, reason="worker draining"),
            logger,
        )
    return None  # cancelled or lease lost: the ledger already records what happened


async def _heartbeat(execution: Execution, run: RunContext) -> None:
    """Extend the lease every third of it, writing the spans finished meanwhile; a
    refused heartbeat stops the execution."""
    lease_seconds = run.lane.lease_seconds
    while True:
        await asyncio.sleep(lease_seconds / 3)
        try:
            await run.leases.heartbeat(
                execution.claim.fence, worker=run.worker, lease_seconds=lease_seconds
            )
            await _flush_spans(run, log)
        except FenceRejected:
            execution.stop(StopReason.LEASE_LOST)
            return
        except Exception as error:  # the database may be back before the lease runs out
            log.warning(
                "heartbeat_failed",
                run_id=str(execution.claim.fence.run_id),
                error=type(error).__name__,
            )
