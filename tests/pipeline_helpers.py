"""The pipeline in one process, for tests: a dispatcher and a worker on a database of
their own, a counting executor, and helpers to create tasks and wait for them."""

import asyncio
import contextlib
import tempfile
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import UUID

from dispatcher.service import DispatcherConfig, run_dispatcher
from ledger.artifact_store import LocalArtifactStore
from ledger.models import TaskCreateRequest
from ledger.repository import Actor, Ledger
from worker.context import RunContext
from worker.executors import ExecutionResult
from worker.service import Worker, WorkerConfig

OPERATOR = Actor("olga", "t1", "operator")
ARTIFACTS = Path(tempfile.mkdtemp(prefix="workbench-test-artifacts-"))


class CountingExecutor:
    """Counts executions per task: the test's witness that nothing ran twice."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.runs: Counter[UUID] = Counter()
        self.started: defaultdict[UUID, asyncio.Event] = defaultdict(asyncio.Event)
        self.cancelled: set[UUID] = set()

    async def __call__(self, run: RunContext) -> ExecutionResult:
        task = run.task
        self.runs[task.id] += 1
        self.started[task.id].set()
        try:
            await asyncio.sleep(float(task.scope.get("sleep_seconds", self.seconds)))
        except asyncio.CancelledError:
            self.cancelled.add(task.id)
            raise
        return ExecutionResult(final_output=f"done {task.title}")


@contextlib.asynccontextmanager
async def pipeline(
    pool, policy, executor, *, concurrency: int = 8, drain_seconds: float = 5.0
) -> AsyncIterator[tuple[Worker, asyncio.Event]]:
    stop = asyncio.Event()
    worker = Worker(
        pool,
        policy,
        WorkerConfig(
            lanes=["analysis", "change-nonprod"],
            concurrency=concurrency,
            drain_seconds=drain_seconds,
            name="test-worker",
        ),
        executor,
        LocalArtifactStore(ARTIFACTS),
    )
    tasks = [
        asyncio.create_task(
            run_dispatcher(
                pool,
                policy,
                stop,
                DispatcherConfig(poll_interval=0.2, reap_interval=0.2, name="test-dispatcher"),
            )
        ),
        asyncio.create_task(worker.run(stop)),
    ]
    try:
        yield worker, stop
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 20)


async def create_tasks(ledger: Ledger, count: int, **scope) -> list[UUID]:
    ids = []
    for i in range(count):
        request = TaskCreateRequest(
            lane="analysis", title=f"task {i}", instructions="x", scope=scope
        )
        ids.append((await ledger.create_task(OPERATOR, request)).task.id)
    return ids


async def wait_status(ledger: Ledger, ids: list[UUID], status: str, seconds: float = 20):
    async def all_there() -> None:
        while True:
            statuses = [(await ledger.get_task("t1", i)).status for i in ids]
            if all(s == status for s in statuses):
                return
            await asyncio.sleep(0.05)

    await asyncio.wait_for(all_there(), seconds)
