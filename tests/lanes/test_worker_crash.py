"""Fault: a worker process is killed with SIGKILL while it holds a received hint it has
not claimed yet, and another worker process must run the task.

The first worker's claim is held up by a lock the test takes on the task row, so the
kill lands at a known point: the hint received (under its peer-lock on Service Bus,
inside the claim's transaction on the Postgres lane), the claim not committed. Over
Service Bus the hint comes back only when the queue's lock duration has passed since
it was received (the README's Reliability section has the numbers); on the Postgres
lane, the dead worker's transaction rolls back and the hint is there again at once.
Either way the task runs exactly once, claimed by the second worker.
"""

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from uuid import UUID, uuid4

import asyncpg
import pytest
import yaml
from process_helpers import FOREIGN_ENV, Service
from servicebus_peer import ServiceBusPeer

from dispatcher.outbox import Outbox
from lanes.registry import LaneRegistry
from ledger.database import close_pool, create_pool
from ledger.migrate import apply_migrations
from ledger.models import TaskCreateRequest
from ledger.policy import PolicyConfig, Transport, load_policy
from ledger.repository import Actor, Ledger

# The queue's lock duration on the peer: short, so the test is; the README gives the
# gap this costs at the lock durations that matter.
LOCK_SECONDS = 3.0
WAIT_SECONDS = 60.0
OPERATOR = Actor("olga", "t1", "operator")


@pytest.fixture(scope="module")
def peer() -> Iterator[ServiceBusPeer]:
    with ServiceBusPeer() as running:
        yield running


@pytest.fixture
async def database(make_database: Callable[[], str]) -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    url = make_database()
    pool = await create_pool(url, max_size=4)
    async with pool.acquire() as connection:
        await apply_migrations(connection)
    yield url, pool
    await close_pool(pool)


def _policy(transport: Transport) -> PolicyConfig:
    """The default lanes, `analysis` on `transport`, no rescue by the reaper in time."""
    policy = load_policy()
    analysis = policy.lanes["analysis"].model_copy(
        update={"transport": transport, "dispatch_timeout_seconds": 3600.0}
    )
    return policy.model_copy(update={"lanes": {**policy.lanes, "analysis": analysis}})


async def _until(condition: Callable[[], "asyncio.Future[bool]"], what: str) -> None:
    async with asyncio.timeout(WAIT_SECONDS):
        while not await condition():
            await asyncio.sleep(0.05)
    assert await condition(), what


@pytest.mark.parametrize("transport", ["servicebus", "postgres"])
async def test_hint_held_by_a_killed_worker_is_claimed_by_another(
    transport: str,
    peer: ServiceBusPeer,
    database: tuple[str, asyncpg.Pool],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, pool = database
    if transport == "servicebus":
        queue = f"crash-{uuid4().hex[:8]}"
        peer.create_queue(
            queue, lock_duration=LOCK_SECONDS, max_delivery_count=10, duplicate_detection=True
        )
        policy = _policy(Transport(kind="servicebus", queue=queue))
    else:
        policy = _policy(Transport(kind="postgres"))
    lanes_file = tmp_path / "lanes.yaml"
    lanes_file.write_text(yaml.safe_dump(policy.model_dump(mode="json")))
    monkeypatch.setenv("SERVICEBUS_CONNECTION_STRING", peer.connection_string)
    env = {key: value for key, value in os.environ.items() if key not in FOREIGN_ENV}
    env |= {
        "DATABASE_URL": url,
        "WORKBENCH_LANES_FILE": str(lanes_file),
        "WORKBENCH_ARTIFACT_DIR": str(tmp_path / "artifacts"),
    }

    def worker(name: str) -> Service:
        args = ["worker", "--lanes", "analysis", "--executor", "noop", "--concurrency", "2"]
        return Service(
            name, args, env | {"WORKBENCH_WORKER_NAME": name}, tmp_path / f"{name}.log"
        ).start()

    ledger = Ledger(pool, policy)
    request = TaskCreateRequest(lane="analysis", title="held", instructions="x")
    task_id: UUID = (await ledger.create_task(OPERATOR, request)).task.id
    lanes = LaneRegistry(pool, policy)
    try:
        assert (await Outbox(pool, lanes, "dispatcher").dispatch_once(10)).sent == 1
    finally:
        await lanes.close()

    async def claim_waiting() -> bool:
        return bool(
            await pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )

    async def task_status() -> str:
        return await pool.fetchval("SELECT status FROM tasks WHERE id = $1", task_id)

    doomed = worker("worker-a")
    survivor: Service | None = None
    holder = await pool.acquire()
    try:
        blocker = holder.transaction()
        await blocker.start()
        await holder.execute("SELECT 1 FROM tasks WHERE id = $1 FOR UPDATE", task_id)
        await _until(claim_waiting, "worker-a received the hint and waits to claim it")
        survivor = worker("worker-b")
        await asyncio.to_thread(survivor.wait_for_event, "worker_started")
        assert doomed.kill() == -9
        await blocker.rollback()
    finally:
        await pool.release(holder)
    try:

        async def succeeded() -> bool:
            return await task_status() == "succeeded"

        await _until(succeeded, "worker-b ran the task")
        events = await ledger.list_traces("t1", task_id)
        assert [e.kind for e in events] == [
            "created",
            "policy_verdict",
            "dispatched",
            "worker_receipt",
            "succeeded",
        ]
        assert events[3].actor == "worker-b"
        if transport == "servicebus":
            assert peer.queue_depth(queue) == 0
    finally:
        assert survivor is not None
        assert survivor.terminate() == 0, survivor.tail()
    assert '"event":"worker_receipt"' not in doomed.output()
