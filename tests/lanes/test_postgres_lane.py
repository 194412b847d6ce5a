"""The Postgres lane keeps Service Bus's peek-lock semantics on a table."""

import asyncio
from uuid import uuid4

import pytest

from lanes.base import LaneMessage, LockLost
from lanes.postgres import LaneListener, PostgresLane


def _hint(lane: str, message_id: str | None = None) -> LaneMessage:
    run_id = uuid4()
    return LaneMessage(
        message_id=message_id or str(run_id), task_id=uuid4(), run_id=run_id, attempt=1, lane=lane
    )


@pytest.fixture
async def lane(fresh_pool):
    listener = LaneListener(fresh_pool)
    lane = PostgresLane(
        fresh_pool, listener, "analysis", lock_seconds=0.5, max_delivery_count=3, poll_interval=5.0
    )
    yield lane
    await listener.close()


async def test_send_receive_complete(lane) -> None:
    hints = [_hint("analysis") for _ in range(3)]
    await lane.send_batch(hints)
    received = await lane.receive(10, max_wait=1)
    assert [r.message for r in received] == hints
    assert all(r.delivery_count == 1 for r in received)
    assert await lane.receive(10, max_wait=0) == []  # locked: invisible
    for message in received:
        await lane.complete(message)
    assert await lane.depth() == (0, 0)


async def test_duplicate_message_id_is_dropped(lane) -> None:
    hint = _hint("analysis")
    await lane.send_batch([hint])
    await lane.send_batch([hint])
    assert len(await lane.receive(10, max_wait=0)) == 1


async def test_abandon_and_lock_expiry_redeliver_with_count(lane) -> None:
    await lane.send_batch([_hint("analysis")])
    [first] = await lane.receive(1, max_wait=0)
    await lane.abandon(first)
    [second] = await lane.receive(1, max_wait=0)
    assert second.delivery_count == 2
    await asyncio.sleep(0.6)  # the lock runs out
    [third] = await lane.receive(1, max_wait=0)
    assert third.delivery_count == 3
    with pytest.raises(LockLost):
        await lane.complete(second)  # its lock is gone; the newer delivery holds it
    await lane.complete(third)


async def test_max_delivery_count_dead_letters(lane) -> None:
    await lane.send_batch([_hint("analysis")])
    for _ in range(3):
        [delivery] = await lane.receive(1, max_wait=0)
        await lane.abandon(delivery)
    assert await lane.receive(1, max_wait=0) == []
    assert await lane.depth() == (0, 1)
    reason = await lane.pool.fetchval("SELECT reason FROM lane_dead_letters")
    assert reason == "MaxDeliveryCountExceeded"


async def test_dead_letter_with_reason_and_renew_lock(lane) -> None:
    await lane.send_batch([_hint("analysis")])
    [delivery] = await lane.receive(1, max_wait=0)
    renewed = await lane.renew_lock(delivery)
    assert renewed > delivery.locked_until
    await lane.dead_letter(delivery, "poison", "executor crashed the worker")
    row = await lane.pool.fetchrow("SELECT reason, description FROM lane_dead_letters")
    assert tuple(row) == ("poison", "executor crashed the worker")


async def test_receiver_wakes_on_notify_not_poll(lane) -> None:
    waiting = asyncio.create_task(lane.receive(1, max_wait=4))
    await asyncio.sleep(0.3)
    hint = _hint("analysis")
    await lane.send_batch([hint])
    # The poll interval is 5 s: only the notification can deliver it within the wait.
    received = await asyncio.wait_for(waiting, 3)
    assert [r.message for r in received] == [hint]


async def test_lanes_do_not_see_each_other(lane, fresh_pool) -> None:
    other = PostgresLane(fresh_pool, lane.listener, "change-prod")
    await other.send_batch([_hint("change-prod")])
    assert await lane.receive(1, max_wait=0) == []
    assert len(await other.receive(1, max_wait=0)) == 1
