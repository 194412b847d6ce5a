"""The outbox: several dispatchers at once send each run exactly once; a lane that is
slow holds no task lock; a send that fails or is abandoned puts its runs back."""

import asyncio
from uuid import UUID

import asyncpg
import pytest
from conftest import fast_policy

from dispatcher.outbox import Outbox
from lanes.base import Lane, LaneMessage
from lanes.registry import LaneRegistry
from ledger.models import TaskCreateRequest
from ledger.repository import Actor, Ledger

OPERATOR = Actor("olga", "t1", "operator")


class SendGate:
    """Holds a real lane's sends until the test opens the gate (then the real send
    runs) or fails them."""

    def __init__(self, lane: Lane) -> None:
        self.entered = asyncio.Event()
        self._opened = asyncio.Event()
        self._failure: Exception | None = None
        send = lane.send_batch

        async def held_send(messages: list[LaneMessage]) -> None:
            self.entered.set()
            await self._opened.wait()
            if self._failure is not None:
                raise self._failure
            await send(messages)

        lane.send_batch = held_send  # type: ignore[method-assign]

    def open(self) -> None:
        self._failure = None
        self._opened.set()

    def fail(self, error: Exception) -> None:
        self._failure = error
        self._opened.set()


async def _create(ledger: Ledger, count: int) -> list[UUID]:
    request = TaskCreateRequest(lane="analysis", title="t", instructions="x")
    return [(await ledger.create_task(OPERATOR, request)).task.id for _ in range(count)]


async def _lock_waiters(pool: asyncpg.Pool) -> int:
    """Sessions of this database waiting for a lock another holds."""
    return await pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )


async def _kinds(ledger: Ledger, task_id: UUID) -> list[str]:
    return [event.kind for event in await ledger.list_traces("t1", task_id)]


async def _statuses(pool: asyncpg.Pool, ids: list[UUID]) -> dict[UUID, tuple[str, str, int]]:
    rows = await pool.fetch(
        "SELECT t.id, t.status, r.status AS run_status, r.dispatch_count"
        " FROM tasks t JOIN runs r ON r.id = t.current_run_id WHERE t.id = ANY($1::uuid[])",
        ids,
    )
    return {row["id"]: (row["status"], row["run_status"], row["dispatch_count"]) for row in rows}


@pytest.fixture
async def gated(fresh_pool):
    """A ledger, an outbox, and a gate on the sends of its `analysis` lane."""
    policy = fast_policy()
    lanes = LaneRegistry(fresh_pool, policy)
    gate = SendGate(lanes.get("analysis"))
    yield Ledger(fresh_pool, policy), Outbox(fresh_pool, lanes, "dispatcher"), gate
    await lanes.close()


async def test_replicas_send_each_run_once(fresh_pool) -> None:
    policy = fast_policy()
    ledger = Ledger(fresh_pool, policy)
    await _create(ledger, 300)
    lanes = LaneRegistry(fresh_pool, policy)
    replicas = [Outbox(fresh_pool, lanes, f"dispatcher-{i}") for i in range(4)]

    async def drain(outbox: Outbox) -> int:
        sent = 0
        while (result := await outbox.dispatch_once(25)).sent:
            sent += result.sent
        return sent

    totals = await asyncio.gather(*(drain(outbox) for outbox in replicas))
    await lanes.close()
    assert sum(totals) == 300
    assert all(total > 0 for total in totals)  # they shared the work
    counts = await fresh_pool.fetchrow(
        "SELECT count(*) AS messages, count(DISTINCT message_id) AS distinct_ids FROM lane_messages"
    )
    assert tuple(counts) == (300, 300)
    statuses = await fresh_pool.fetch(
        "SELECT status, dispatch_count, count(*) FROM runs GROUP BY status, dispatch_count"
    )
    assert [tuple(row) for row in statuses] == [("dispatched", 1, 300)]
    dispatched_traces = await fresh_pool.fetchval(
        "SELECT count(*) FROM trace_events WHERE kind = 'dispatched'"
    )
    assert dispatched_traces == 300


async def test_cancel_does_not_wait_for_a_slow_lane(fresh_pool, gated) -> None:
    ledger, outbox, gate = gated
    ids = await _create(ledger, 3)
    dispatch = asyncio.create_task(outbox.dispatch_once(10))
    await gate.entered.wait()  # the batch's send has started and is held
    cancel = asyncio.create_task(ledger.cancel(OPERATOR, ids[0], reason="not needed"))
    # Either the cancel finishes, or it waits for a lock (the dispatcher's, on the task).
    while not cancel.done() and not await _lock_waiters(fresh_pool):
        await asyncio.sleep(0.01)
    assert cancel.done(), "the cancel waits for a task lock held during the send"
    assert not dispatch.done()
    assert (await cancel).task.status == "cancelled"

    gate.open()
    result = await dispatch
    assert (result.sent, result.failed_lanes) == (3, {})
    statuses = await _statuses(fresh_pool, ids)
    assert statuses[ids[0]] == ("cancelled", "cancelled", 1)  # its late hint changes nothing
    assert statuses[ids[1]] == statuses[ids[2]] == ("dispatched", "dispatched", 1)
    assert await _kinds(ledger, ids[0]) == ["created", "policy_verdict", "dispatched", "cancelled"]


async def test_failed_send_puts_back_only_runs_still_dispatched(fresh_pool, gated) -> None:
    ledger, outbox, gate = gated
    ids = await _create(ledger, 3)
    dispatch = asyncio.create_task(outbox.dispatch_once(10))
    await gate.entered.wait()
    await ledger.cancel(OPERATOR, ids[0], reason="not needed")  # meanwhile
    gate.fail(ConnectionError("lane unreachable"))
    result = await dispatch
    assert result.sent == 0
    assert result.failed_lanes == {"analysis": "ConnectionError: lane unreachable"}
    statuses = await _statuses(fresh_pool, ids)
    assert statuses[ids[0]] == ("cancelled", "cancelled", 1)  # the cancel stands
    assert statuses[ids[1]] == statuses[ids[2]] == ("queued", "queued", 1)
    for task_id in ids[1:]:
        events = await ledger.list_traces("t1", task_id)
        assert [e.kind for e in events] == [
            "created",
            "policy_verdict",
            "dispatched",
            "dispatch_failed",
        ]
        failed = events[-1]
        assert (failed.from_status, failed.to_status, failed.actor) == (
            "dispatched",
            "queued",
            "dispatcher",
        )
        assert "ConnectionError: lane unreachable" in failed.message
        assert failed.data == {"lane": "analysis", "attempt": 1, "dispatch_count": 1}
    assert await fresh_pool.fetchval("SELECT count(*) FROM lane_messages") == 0

    # The operator's explicit dispatch (which no resting lane holds back) sends the runs
    # again, under new message ids.
    gate.open()
    for task_id in ids[1:]:
        again = await outbox.dispatch_once(1, task_id=task_id)
        assert (again.sent, again.failed_lanes) == (1, {})
    statuses = await _statuses(fresh_pool, ids)
    assert statuses[ids[1]] == statuses[ids[2]] == ("dispatched", "dispatched", 2)
    message_ids = await fresh_pool.fetchval("SELECT array_agg(message_id) FROM lane_messages")
    run_ids = await fresh_pool.fetchval(
        "SELECT array_agg(current_run_id::text) FROM tasks WHERE id = ANY($1::uuid[])", ids[1:]
    )
    assert sorted(message_ids) == sorted(f"{run_id}/1" for run_id in run_ids)


async def test_send_abandoned_at_shutdown_puts_its_runs_back(fresh_pool, gated) -> None:
    ledger, outbox, gate = gated
    ids = await _create(ledger, 2)
    dispatch = asyncio.create_task(outbox.dispatch_once(10))
    await gate.entered.wait()
    dispatch.cancel()  # what the dispatcher's loop does to its turn at SIGTERM
    with pytest.raises(asyncio.CancelledError):
        await dispatch
    statuses = await _statuses(fresh_pool, ids)
    assert set(statuses.values()) == {("queued", "queued", 1)}
    for task_id in ids:
        events = await ledger.list_traces("t1", task_id)
        assert events[-1].kind == "dispatch_failed"
        assert "stopped before sending" in events[-1].message
