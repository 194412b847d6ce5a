"""Executing one claimed run: heartbeat, execute, then complete, fail, pause, block or
release.

Used by the worker service and by the API's in-process `run`, so both follow the same
fenced path: every write presents the claim's fence, and a worker that lost its lease
(reaped, cancelled, released) stops and writes nothing more. SDK spans are written to
the trace in batches, with each heartbeat and with the outcome (a success writes its
last spans, its usage and the `succeeded` event in one transaction), so a run's trace is
visible while it runs and complete when it ends (a cancelled run keeps what it did).
"""

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

import structlog

from ledger.database import connection_lost
from ledger.leases import Claim, FenceRejected, NewArtifact, Usage
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
    heartbeat = _Heartbeat(execution, run)
    try:
        result = await execution.task
    except asyncio.CancelledError:
        if execution.stop_reason is None:
            raise  # the worker itself is being cancelled
        await flush_spans(run, logger)
        return await _stopped(execution, run, logger)
    except ExecutionBlocked as blocked:
        reason = str(blocked)
        return await _fenced(run, logger, lambda: leases.block(fence, worker=worker, reason=reason))
    except Exception as error:  # the agent's failure is the run's outcome
        kind, retryable = (
            (error.failure_kind, error.retryable)
            if isinstance(error, ExecutionFailed)
            else ("executor_error", True)
        )
        described = f"{type(error).__name__}: {error}"
        logger.warning("execution_failed", failure_kind=kind, error=described)
        await flush_spans(run, logger)
        return await _fenced(
            run,
            logger,
            lambda: leases.fail(
                fence, worker=worker, failure_kind=kind, error=described, retryable=retryable
            ),
        )
    finally:
        await heartbeat.stop()

    if result.input_tokens or result.output_tokens:
        lane, model = run.task.lane, run.task.model_provider
        SDK_TOKENS.labels(lane, model, "input").inc(result.input_tokens)
        SDK_TOKENS.labels(lane, model, "output").inc(result.output_tokens)
    usage = Usage(result.input_tokens, result.output_tokens)
    if result.paused is not None:
        paused = result.paused
        if not await flush_spans(run, logger):
            return None
        await _fenced(
            run,
            logger,
            lambda: leases.record_usage(
                fence,
                worker=worker,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
            ),
        )
        return await _fenced(
            run,
            logger,
            lambda: leases.pause(
                fence, worker=worker, saved_state=paused.saved_state, pending=paused.pending
            ),
        )
    # The output artifact, usage and last spans go in with the completion: one
    # transaction where there were four.
    artifact = None
    if result.final_output:
        stored = await asyncio.to_thread(
            run.store.put,
            run.task.tenant_id,
            run.task.id,
            "final_output.md",
            leases.redactor.text(result.final_output).encode(),
        )
        artifact = NewArtifact(
            "final_output.md",
            "text/markdown",
            stored,
            {"kind": "final_output", "attempt": fence.attempt},
        )
    last_spans = spans.drain(trace_id_for(run))
    completed = await _fenced(
        run,
        logger,
        lambda: leases.complete(
            fence,
            worker=worker,
            result={"usage": asdict(usage)},
            usage=usage,
            spans=last_spans,
            artifact=artifact,
            messages=result.messages,
        ),
    )
    if completed is None and artifact is not None:  # refused: leave no orphaned content
        await asyncio.to_thread(run.store.delete, artifact.stored.storage_ref)
    return completed


async def _fenced(run: RunContext, logger: Any, write: Callable[[], Awaitable[T]]) -> T | None:
    """A fenced write. A refusal means the run was taken over: log it and stop. A lost
    database connection (a restart, a failover) is retried with backoff for as long as
    the lease surely lasts (two thirds of it: the last heartbeat was at most a third
    ago), so finished work is not thrown away and run again because of a blip. A
    refusal after such a retry may be the first try's own success, whose answer was
    lost; the fence makes either reading safe."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + run.lane.lease_seconds * 2 / 3
    delay, retried = 0.1, False
    while True:
        try:
            return await write()
        except FenceRejected:
            logger.warning("write_refused_lease_lost", after_retry=retried)
            return None
        except Exception as error:
            if not connection_lost(error) or loop.time() + delay > deadline:
                raise
            logger.warning("ledger_write_retrying", error=type(error).__name__, delay=delay)
            await asyncio.sleep(delay)
            delay, retried = min(delay * 2, 2.0), True


async def flush_spans(run: RunContext, logger: Any) -> bool:
    """Write the SDK spans finished so far (and the run's progress events, see
    `worker/streaming.py`); False when the run is no longer ours."""
    trace_id = trace_id_for(run)
    async with run.writing:
        finished = spans.drain(trace_id)
        if not finished:
            return True
        try:
            written = await _fenced(
                run,
                logger,
                lambda: run.leases.append_spans(run.claim.fence, worker=run.worker, spans=finished),
            )
        except BaseException:
            # The next flush tries again; also when the heartbeat's flush is cancelled
            # because the run ended (a span already stored is skipped).
            spans.put_back(trace_id, finished)
            raise
    return written is not None


async def _stopped(execution: Execution, run: RunContext, logger: Any) -> Task | None:
    reason = execution.stop_reason
    logger.info("execution_stopped", reason=str(reason))
    if reason == StopReason.DRAIN:
        return await _fenced(
            run,
            logger,
            lambda: run.leases.release(
                execution.claim.fence, worker=run.worker, reason="worker draining"
            ),
        )
    return None  # cancelled or lease lost: the ledger already records what happened


class _Heartbeat:
    """Extends the lease every third of it, from a third of a lease after the claim: a
    run that ends sooner (most short runs) never costs a task of its own."""

    def __init__(self, execution: Execution, run: RunContext) -> None:
        self._task: asyncio.Task[None] | None = None
        self._timer = asyncio.get_running_loop().call_later(
            run.lane.lease_seconds / 3, self._start, execution, run
        )

    def _start(self, execution: Execution, run: RunContext) -> None:
        self._task = asyncio.create_task(_heartbeat(execution, run))

    async def stop(self) -> None:
        self._timer.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def _heartbeat(execution: Execution, run: RunContext) -> None:
    """Beat now and every third of a lease after, writing the spans finished meanwhile;
    a refused heartbeat stops the execution."""
    lease_seconds = run.lane.lease_seconds
    while True:
        try:
            await run.leases.heartbeat(
                execution.claim.fence, worker=run.worker, lease_seconds=lease_seconds
            )
            await flush_spans(run, log)
        except FenceRejected:
            execution.stop(StopReason.LEASE_LOST)
            return
        except Exception as error:  # the database may be back before the lease runs out
            log.warning(
                "heartbeat_failed",
                run_id=str(execution.claim.fence.run_id),
                error=type(error).__name__,
            )
        await asyncio.sleep(lease_seconds / 3)
