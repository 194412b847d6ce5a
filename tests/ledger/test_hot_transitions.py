"""A task on its way to a worker is rewritten in place: the dispatch and the claim are
HOT updates of its row, which add no index entries (migration 0008).

A status filter's index keyed on the status itself, or an index on `updated_at`, makes
every transition insert an entry into each of the table's indexes; this test fails then.
"""

from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest
from conftest import fast_policy

from dispatcher.outbox import Outbox
from lanes.registry import LaneRegistry
from ledger.database import close_pool, create_pool
from ledger.leases import Hint, Leases
from ledger.migrate import apply_migrations
from ledger.models import TaskCreateRequest
from ledger.repository import Actor, Ledger

OPERATOR = Actor("olga", "t1", "operator")
TASKS = 60
POOL_SIZE = 3  # the outbox holds one connection while its lane sends on another


@pytest.fixture
async def pool(make_database: Callable[[], str]) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(make_database(), min_size=POOL_SIZE, max_size=POOL_SIZE)
    async with pool.acquire() as connection:
        await apply_migrations(connection)
    yield pool
    await close_pool(pool)


async def _task_updates(pool: asyncpg.Pool) -> tuple[int, int]:
    """(updates, HOT updates) of `tasks` so far, from every backend of the pool."""
    connections = [await pool.acquire() for _ in range(POOL_SIZE)]
    try:
        for connection in connections:
            # Counts reach the shared statistics when a backend next goes idle, which it
            # does before answering this statement.
            await connection.execute("SELECT pg_stat_force_next_flush()")
        row = await connections[0].fetchrow(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'tasks'"
        )
    finally:
        for connection in connections:
            await pool.release(connection)
    return row["n_tup_upd"], row["n_tup_hot_upd"]


async def test_dispatch_and_claim_rewrite_the_task_in_place(pool: asyncpg.Pool) -> None:
    policy = fast_policy()
    ledger, leases, lanes = Ledger(pool, policy), Leases(pool, policy), LaneRegistry(pool, policy)
    request = TaskCreateRequest(lane="analysis", title="Summarise", instructions="x" * 400)
    for _ in range(TASKS):
        await ledger.create_task(OPERATOR, request)
    before = await _task_updates(pool)

    dispatched = 0
    while dispatched < TASKS:
        dispatched += (await Outbox(pool, lanes, "dispatcher").dispatch_once(20)).sent

    async def claim(connection: asyncpg.Connection, messages: list) -> list:
        hints = [Hint(m.task_id, m.run_id, m.attempt) for m in messages]
        return await leases.claim_in(connection, hints, worker="w1", via="test")

    claims = []
    while len(claims) < TASKS:
        claims += await lanes.get("analysis").take(claim, 20, 1.0)
    assert all(claims)
    await lanes.close()  # its listener holds a connection of the pool
    (updates_now, hot_now), (updates_before, hot_before) = await _task_updates(pool), before
    updates, hot = updates_now - updates_before, hot_now - hot_before
    assert updates == 2 * TASKS  # dispatched, then running
    assert hot == updates
