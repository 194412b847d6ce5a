"""`workbench worker`: receive hints from lanes, claim runs, execute them.

When the worker settles a lane message, and why: right after the claim is decided.
The message is only a hint; once the claim has committed (or been refused because the
run is no longer waiting: a duplicate, late or out-of-order hint), Postgres holds the
truth, so the message is completed either way. Holding it for the length of an agent
run would tie a minutes-long run to a message lock that must be renewed and can be
lost; instead the run's lease (renewed by heartbeat) protects the work, and if this
worker dies the reaper re-queues the run and the dispatcher sends a fresh hint. A
Postgres lane's messages live beside the ledger, so there the claim and the settlement
are a single transaction (`PostgresLane.take`).

What a crash between receive and claim costs: the hints of that one receive (at most
the free slots: Service Bus prefetch is off) come back when their lock runs out, the
queue's lock duration after the receive; a Postgres lane's come back as soon as the
dead worker's transaction is rolled back, at the next worker's poll.

Shutdown (SIGTERM): stop receiving, give in-flight runs `drain_seconds` to finish, then
stop the rest and release them: back to `queued` on the same attempt, so the drain
costs no attempt. Then exit.
"""

import asyncio
import os
import socket
from dataclasses import dataclass
from uuid import UUID

import asyncpg
import structlog

from lanes.base import Lane, LaneMessage, Received
from lanes.postgres import PostgresLane
from lanes.registry import LaneRegistry
from ledger.artifact_store import ArtifactStore
from ledger.leases import Claim, Hint, Leases
from ledger.notify import Listener, wait_any
from ledger.policy import PolicyConfig
from metrics import WORKER_CAPACITY, WORKER_IN_FLIGHT
from metrics.liveness import LOOPS
from worker.context import RunContext
from worker.execution import Execution, StopReason, execute_claim
from worker.executors import Executor
from worker.providers import aclose_providers
from worker.runtime_access import RuntimeAccess

log = structlog.get_logger(__name__)


def default_worker_name() -> str:
    # In Kubernetes the hostname is the pod name; the pid tells apart several workers
    # on one machine.
    return os.environ.get("WORKBENCH_WORKER_NAME") or f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class WorkerConfig:
    lanes: list[str]
    concurrency: int = 4
    drain_seconds: float = float(os.environ.get("WORKBENCH_DRAIN_SECONDS", "25"))
    receive_wait: float = 1.0
    name: str = ""


class Worker:
    def __init__(
        self,
        pool: asyncpg.Pool,
        policy: PolicyConfig,
        config: WorkerConfig,
        executor: Executor,
        store: ArtifactStore,
    ) -> None:
        unknown = [lane for lane in config.lanes if lane not in policy.lanes]
        if unknown:
            raise ValueError(f"unknown lanes: {unknown}")
        self.pool = pool
        self.policy = policy
        self.config = config
        self.name = config.name or default_worker_name()
        self.executor = executor
        self.store = store
        self.leases = Leases(pool, policy)
        self.lanes = LaneRegistry(pool, policy)
        self.agent_runtime = RuntimeAccess.open(pool, policy)
        self.in_flight: dict[UUID, Execution] = {}
        self._handlers: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()
        self._draining = False
        self._cancel_listener = Listener(pool, "workbench_cancel", self._on_cancel)

    def _on_cancel(self, run_id: str) -> None:
        execution = self.in_flight.get(UUID(run_id))
        if execution is not None:
            execution.stop(StopReason.CANCELLED)

    async def run(self, stop: asyncio.Event) -> None:
        WORKER_CAPACITY.set(self.config.concurrency)
        log.info(
            "worker_started",
            worker=self.name,
            lanes=self.config.lanes,
            concurrency=self.config.concurrency,
        )
        receivers = [
            asyncio.create_task(self._receive_loop(self.lanes.get(lane), stop))
            for lane in self.config.lanes
        ]
        try:
            await stop.wait()
        finally:
            await asyncio.gather(*receivers, return_exceptions=True)
            await self._drain()
            await self._cancel_listener.close()
            await self.agent_runtime.close()
            await self.lanes.close()
            await aclose_providers()
            await asyncio.to_thread(self.store.close)
            log.info("worker_stopped", worker=self.name)

    async def _receive_loop(self, lane: Lane, stop: asyncio.Event) -> None:
        # Not abandoned at SIGTERM like the dispatcher's turn: a claim cancelled after
        # its commit would leave runs claimed that nothing executes, and each would cost
        # an attempt when its lease ran out. Every wait in a turn is bounded instead.
        loop = f"receive:{lane.name}"
        try:
            while not stop.is_set():
                LOOPS.turned(loop)
                free = self.config.concurrency - len(self._handlers)
                if free <= 0:
                    self._slot_freed.clear()
                    await wait_any(self._slot_freed, stop, seconds=1.0)
                    continue
                try:
                    await self._cancel_listener.ensure()
                    claims = await self._receive_and_claim(lane, free)
                except Exception as error:  # transport or database away: retry shortly
                    # Hints taken but not claimed come back: a Postgres lane's with the
                    # rolled-back transaction, others' when their locks run out.
                    log.warning("claim_failed", lane=lane.name, error=f"{type(error).__name__}")
                    await wait_any(stop, seconds=1.0)
                    continue
                for claim in claims:
                    handler = asyncio.create_task(self._execute(claim))
                    self._handlers.add(handler)
                    handler.add_done_callback(self._handler_done)
        finally:
            LOOPS.ended(loop)

    def _handler_done(self, handler: asyncio.Task[None]) -> None:
        self._handlers.discard(handler)
        self._slot_freed.set()
        if not handler.cancelled() and handler.exception() is not None:
            log.error("handler_crashed", error=repr(handler.exception()))

    async def _receive_and_claim(self, lane: Lane, free: int) -> list[Claim]:
        wait = self.config.receive_wait
        if isinstance(lane, PostgresLane):
            # The lane is a table beside the ledger: its messages are taken in the
            # claim's own transaction, which settles them with no lock in between.
            async def claim_taken(
                connection: asyncpg.Connection, messages: list[LaneMessage]
            ) -> list[Claim]:
                claims = await self.leases.claim_in(
                    connection, [_hint(m) for m in messages], worker=self.name, via=lane.name
                )
                return _claimed(messages, claims)

            return await lane.take(claim_taken, free, wait)
        received = await lane.receive(free, wait)
        if not received:
            return []
        messages = [item.message for item in received]
        claims = await self.leases.claim_batch(
            [_hint(m) for m in messages], worker=self.name, via=lane.name
        )
        await self._settle(lane, received)
        return _claimed(messages, claims)

    async def _execute(self, claim: Claim) -> None:
        execution = Execution(claim)
        WORKER_IN_FLIGHT.inc()
        if self._draining:  # claimed while shutting down: hand it straight back
            execution.stop(StopReason.DRAIN)
        self.in_flight[claim.fence.run_id] = execution
        try:
            await execute_claim(
                execution,
                self.executor,
                RunContext(
                    claim, self.leases, self.store, self.name, self.policy, self.agent_runtime
                ),
            )
        finally:
            del self.in_flight[claim.fence.run_id]
            WORKER_IN_FLIGHT.dec()

    @staticmethod
    async def _settle(lane: Lane, received: list[Received]) -> None:
        try:
            lost = await lane.complete_batch(received)
        except Exception as error:  # the claims stand; the runs must still execute
            # The hints come back when their locks run out and are dropped as stale.
            log.warning(
                "hint_settle_failed", messages=len(received), error=f"{type(error).__name__}"
            )
            return
        for item in lost:
            # Redelivered meanwhile; the copy will find the run claimed and be dropped.
            log.info("hint_lock_lost", message_id=item.message.message_id)

    async def _drain(self) -> None:
        if not self._handlers:
            return
        log.info("draining", in_flight=len(self._handlers), seconds=self.config.drain_seconds)
        _, pending = await asyncio.wait(set(self._handlers), timeout=self.config.drain_seconds)
        self._draining = True
        for execution in list(self.in_flight.values()):
            execution.stop(StopReason.DRAIN)
        if pending:
            await asyncio.wait(pending, timeout=10)


def _hint(message: LaneMessage) -> Hint:
    return Hint(message.task_id, message.run_id, message.attempt)


def _claimed(messages: list[LaneMessage], claims: list[Claim | None]) -> list[Claim]:
    """The claims made; a hint whose run was not waiting any more (a duplicate, late or
    out-of-order one) is logged and dropped."""
    for message, claim in zip(messages, claims, strict=True):
        if claim is None:
            log.info("stale_hint_dropped", run_id=str(message.run_id), attempt=message.attempt)
    return [claim for claim in claims if claim is not None]
