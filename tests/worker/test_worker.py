"""The pipeline in one process: dispatcher and worker on a database of their own.
Nothing is lost, nothing runs twice, cancel stops a run, SIGTERM drains."""

import asyncio
from collections import Counter
from uuid import uuid4

import pytest
from conftest import fast_policy
from pipeline_helpers import (
    OPERATOR,
    CountingExecutor,
    pipeline,
)
from pipeline_helpers import create_tasks as _create
from pipeline_helpers import wait_status as _wait_status

from lanes.base import LaneMessage
from lanes.postgres import PostgresLane
from lanes.registry import LaneRegistry
from ledger.leases import Leases
from ledger.repository import Ledger
from worker.context import RunContext
from worker.executors import ExecutionResult, sleep_executor


@pytest.fixture
def policy():
    return fast_policy(lease_seconds=3.0)


async def test_tasks_flow_to_succeeded_exactly_once(fresh_pool, policy) -> None:
    ledger = Ledger(fresh_pool, policy)
    executor = CountingExecutor()
    ids = await _create(ledger, 60)
    async with pipeline(fresh_pool, policy, executor):
        await _wait_status(ledger, ids, "succeeded")
    assert executor.runs == Counter({task_id: 1 for task_id in ids})
    kinds = [event.kind for event in await ledger.list_traces("t1", ids[0])]
    assert kinds == ["created", "policy_verdict", "dispatched", "worker_receipt", "succeeded"]
    assert len(await ledger.list_artifacts("t1", ids[0])) == 1


async def test_duplicated_and_late_hints_run_nothing_twice(fresh_pool, policy) -> None:
    ledger = Ledger(fresh_pool, policy)
    executor = CountingExecutor()
    ids = await _create(ledger, 5)
    async with pipeline(fresh_pool, policy, executor):
        await _wait_status(ledger, ids, "succeeded")
        lanes = LaneRegistry(fresh_pool, policy)
        lane = lanes.get("analysis")
        # A copy of every hint again (as a broker redelivery would), plus one for an
        # attempt that never existed.
        for task_id in ids:
            task = await ledger.get_task("t1", task_id)
            for message_id, attempt in (
                (f"{task.current_run_id}/dup", 1),
                (f"{task.current_run_id}/late", 7),
            ):
                await lane.send_batch(
                    [LaneMessage(message_id, task.id, task.current_run_id, attempt, "analysis")]
                )
        for _ in range(100):  # until the worker has drained the lane
            if (await fresh_pool.fetchval("SELECT count(*) FROM lane_messages")) == 0:
                break
            await asyncio.sleep(0.05)
        await lanes.close()
    assert executor.runs == Counter({task_id: 1 for task_id in ids})
    assert await fresh_pool.fetchval("SELECT count(*) FROM lane_messages") == 0


async def test_stale_hints_drain_without_waiting_for_the_poll(fresh_pool, policy) -> None:
    # A worker with two free slots meets a backlog of hints whose runs ended long ago
    # (redispatches piled up while it was busy): it works through them back to back,
    # not two per poll interval.
    ledger = Ledger(fresh_pool, policy)
    executor = CountingExecutor()
    ids = await _create(ledger, 3)
    async with pipeline(fresh_pool, policy, executor, concurrency=2):
        await _wait_status(ledger, ids, "succeeded")
        lanes = LaneRegistry(fresh_pool, policy)
        lane = lanes.get("analysis")
        stale = [
            LaneMessage(f"{task_id}/old-{n}", task_id, uuid4(), 1, "analysis")
            for task_id in ids
            for n in range(40)
        ]
        await lane.send_batch(stale)
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        while await fresh_pool.fetchval("SELECT count(*) FROM lane_messages"):
            assert loop.time() - sent_at < 10, "stale hints still waiting after 10 s"
            await asyncio.sleep(0.05)
        await lanes.close()
    assert executor.runs == Counter({task_id: 1 for task_id in ids})


async def test_cancel_stops_a_running_execution_quickly(fresh_pool, policy) -> None:
    ledger = Ledger(fresh_pool, policy)
    executor = CountingExecutor()
    [task_id] = await _create(ledger, 1, sleep_seconds=60)
    async with pipeline(fresh_pool, policy, executor):
        await asyncio.wait_for(executor.started[task_id].wait(), 10)
        loop = asyncio.get_running_loop()
        cancelled_at = loop.time()
        await ledger.cancel(OPERATOR, task_id, reason="wrong target")
        while task_id not in executor.cancelled:
            assert loop.time() - cancelled_at < 2.0, "execution still running 2 s after cancel"
            await asyncio.sleep(0.02)
    task = await ledger.get_task("t1", task_id)
    assert task.status == "cancelled"
    assert task.terminal_reason == "cancelled by olga: wrong target"


async def test_sigterm_drain_finishes_short_runs(fresh_pool, policy) -> None:
    ledger = Ledger(fresh_pool, policy)
    executor = CountingExecutor()
    ids = await _create(ledger, 3, sleep_seconds=0.5)
    async with pipeline(fresh_pool, policy, executor, drain_seconds=5) as (_, stop):
        for task_id in ids:
            await asyncio.wait_for(executor.started[task_id].wait(), 10)
        stop.set()  # what SIGTERM does
    for task_id in ids:
        task = await ledger.get_task("t1", task_id)
        assert (task.status, task.attempt) == ("succeeded", 1)


async def test_sigterm_drain_releases_long_runs_without_spending_attempts(
    fresh_pool, policy
) -> None:
    ledger = Ledger(fresh_pool, policy)
    executor = CountingExecutor()
    ids = await _create(ledger, 2, sleep_seconds=60)
    async with pipeline(fresh_pool, policy, executor, drain_seconds=0.3) as (_, stop):
        for task_id in ids:
            await asyncio.wait_for(executor.started[task_id].wait(), 10)
        stop.set()
    for task_id in ids:
        task = await ledger.get_task("t1", task_id)
        assert (task.status, task.attempt) == ("queued", 1)
        kinds = [event.kind for event in await ledger.list_traces("t1", task_id)]
        assert kinds[-1] == "released"
    # The next worker picks them up on the same attempt.
    quick = CountingExecutor()
    for task_id in ids:
        await fresh_pool.execute(
            "UPDATE tasks SET scope = '{\"sleep_seconds\": 0}' WHERE id = $1", task_id
        )
    async with pipeline(fresh_pool, policy, quick):
        await _wait_status(ledger, ids, "succeeded")
    for task_id in ids:
        assert (await ledger.get_task("t1", task_id)).attempt == 1


async def test_executor_crash_is_retried_then_fails(fresh_pool) -> None:
    policy = fast_policy(max_attempts=2)
    ledger = Ledger(fresh_pool, policy)

    async def crashing(run: RunContext) -> ExecutionResult:
        raise RuntimeError("the agent fell over")

    [task_id] = await _create(ledger, 1)
    async with pipeline(fresh_pool, policy, crashing):
        await _wait_status(ledger, [task_id], "failed")
    task = await ledger.get_task("t1", task_id)
    assert task.attempt == 2
    assert task.terminal_reason == (
        "executor_error on attempt 2 of 2: RuntimeError: the agent fell over"
    )


async def test_sleep_executor_reads_scope(fresh_pool, policy) -> None:
    ledger = Ledger(fresh_pool, policy)
    [task_id] = await _create(ledger, 1, sleep_seconds=0.01)
    async with pipeline(fresh_pool, policy, sleep_executor):
        await _wait_status(ledger, [task_id], "succeeded")
    [artifact] = await ledger.list_artifacts("t1", task_id)
    assert artifact.size_bytes == len(b"slept 0.01 s")


class PeekLockOnly:
    """The Postgres lane seen only through the protocol every transport has (receive,
    then settle), as a worker sees a Service Bus queue."""

    def __init__(self, lane: PostgresLane) -> None:
        self._lane = lane

    def __getattr__(self, name: str):
        if name == "take":
            raise AttributeError(name)
        return getattr(self._lane, name)


async def test_failed_hint_settlement_still_runs_the_claimed_run(
    fresh_pool, policy, monkeypatch
) -> None:
    original_get, original_complete = LaneRegistry.get, PostgresLane.complete_batch

    async def broken_once(self, batch):  # the transport fails right after the claim
        if not broken.is_set():
            broken.set()
            raise ConnectionError("lane connection reset")
        return await original_complete(self, batch)

    broken = asyncio.Event()
    monkeypatch.setattr(PostgresLane, "complete_batch", broken_once)
    monkeypatch.setattr(
        LaneRegistry, "get", lambda self, name: PeekLockOnly(original_get(self, name))
    )
    ledger = Ledger(fresh_pool, policy)
    executor = CountingExecutor()
    [task_id] = await _create(ledger, 1)
    async with pipeline(fresh_pool, policy, executor):
        await _wait_status(ledger, [task_id], "succeeded")
    assert broken.is_set()
    assert executor.runs[task_id] == 1
    assert (await ledger.get_task("t1", task_id)).attempt == 1


async def test_a_failed_claim_leaves_the_postgres_lane_hints_in_place(
    fresh_pool, monkeypatch
) -> None:
    # Redispatch only long after the worker's one-second pause, so the hints the worker
    # takes again are the ones the failed claim put back.
    policy = fast_policy(lease_seconds=3.0, dispatch_timeout_seconds=30.0)
    original = Leases.claim_in

    async def broken_once(self, connection, hints, **kwargs):  # taken, then the claim fails
        if not broken.is_set():
            broken.set()
            await original(self, connection, hints, **kwargs)
            raise ConnectionError("connection reset mid-claim")
        return await original(self, connection, hints, **kwargs)

    broken = asyncio.Event()
    monkeypatch.setattr(Leases, "claim_in", broken_once)
    ledger = Ledger(fresh_pool, policy)
    executor = CountingExecutor()
    ids = await _create(ledger, 3)
    async with pipeline(fresh_pool, policy, executor):
        await _wait_status(ledger, ids, "succeeded")
    assert broken.is_set()
    assert executor.runs == Counter({task_id: 1 for task_id in ids})
    for task_id in ids:  # the rolled-back claim spent no attempt and left no trace
        assert (await ledger.get_task("t1", task_id)).attempt == 1
        kinds = [event.kind for event in await ledger.list_traces("t1", task_id)]
        assert kinds == ["created", "policy_verdict", "dispatched", "worker_receipt", "succeeded"]
    assert await fresh_pool.fetchval("SELECT count(*) FROM lane_messages") == 0


async def test_an_unreadable_postgres_lane_message_is_dead_lettered(fresh_pool, policy) -> None:
    ledger = Ledger(fresh_pool, policy)
    executor = CountingExecutor()
    async with pipeline(fresh_pool, policy, executor):
        await fresh_pool.execute(
            "INSERT INTO lane_messages (lane, message_id, body) VALUES ($1, $2, $3)",
            "analysis",
            "garbled",
            {"run_id": "not-a-uuid"},
        )
        ids = await _create(ledger, 2)
        await _wait_status(ledger, ids, "succeeded")
    dead = await fresh_pool.fetch("SELECT message_id, reason FROM lane_dead_letters")
    assert [(row["message_id"], row["reason"]) for row in dead] == [("garbled", "MalformedMessage")]
    assert executor.runs == Counter({task_id: 1 for task_id in ids})
