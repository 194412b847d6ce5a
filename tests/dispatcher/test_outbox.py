"""The outbox under replicas: several dispatchers at once send each run exactly once."""

import asyncio

from conftest import fast_policy

from dispatcher.outbox import Outbox
from lanes.registry import LaneRegistry
from ledger.models import TaskCreateRequest
from ledger.repository import Actor, Ledger


async def test_replicas_send_each_run_once(fresh_pool) -> None:
    policy = fast_policy()
    ledger = Ledger(fresh_pool, policy)
    operator = Actor("olga", "t1", "operator")
    request = TaskCreateRequest(lane="analysis", title="t", instructions="x")
    for _ in range(300):
        await ledger.create_task(operator, request)
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
