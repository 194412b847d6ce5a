"""Live streams wake when their task's trace grows, also when one statement appends the
events of hundreds of tasks: a notification lists up to 200 of the tasks."""

import asyncio
import contextlib

from conftest import fast_policy

from ledger.notify_feed import TRACES, NotifyFeed
from dispatcher.outbox import Outbox
from lanes.registry import LaneRegistry
from ledger.models import TaskCreateRequest
from ledger.repository import Actor, Ledger


async def test_one_dispatch_of_450_tasks_wakes_the_stream_of_each(fresh_pool) -> None:
    policy = fast_policy()
    ledger = Ledger(fresh_pool, policy)
    request = TaskCreateRequest(lane="analysis", title="t", instructions="x")
    created = await asyncio.gather(
        *(ledger.create_task(Actor("olga", "t1", "operator"), request) for _ in range(450))
    )
    feed = NotifyFeed(fresh_pool, TRACES)
    await feed.listener.ensure()
    lanes = LaneRegistry(fresh_pool, policy)
    try:
        with contextlib.ExitStack() as streams:
            woken = [streams.enter_context(feed.subscribe(str(each.task.id))) for each in created]
            # Postgres delivers notifications in commit order: once one sent now has
            # arrived, so has any the creates sent, and the streams can be reset.
            barrier = streams.enter_context(feed.subscribe("barrier"))
            await fresh_pool.execute("SELECT pg_notify('workbench_traces', 'barrier')")
            await asyncio.wait_for(barrier.wait(), 5)
            for event in woken:
                event.clear()
            result = await Outbox(fresh_pool, lanes, "dispatcher").dispatch_once(1000)
            assert result.sent == 450  # one statement appended all 450 `dispatched` events
            await asyncio.wait_for(asyncio.gather(*(event.wait() for event in woken)), 5)
    finally:
        await lanes.close()
        await feed.listener.close()


async def test_a_listen_connection_made_again_wakes_every_stream(fresh_pool) -> None:
    """What was notified while nobody listened is lost, so each stream must read again."""
    feed = NotifyFeed(fresh_pool, TRACES)
    await feed.ensure()
    try:
        with feed.subscribe("some-task") as woken:
            listening = feed.listener._connection
            assert listening is not None
            await fresh_pool.execute("SELECT pg_terminate_backend($1)", listening.get_server_pid())

            async def until_woken() -> None:
                # The loss is noticed when the connection is next looked at.
                while not woken.is_set():
                    await feed.ensure()
                    await asyncio.sleep(0.05)

            await asyncio.wait_for(until_woken(), 10)
    finally:
        await feed.listener.close()
