"""The console's own reads (ledger/overview.py): each scoped to the tenant, the text
filter literal, the counts capped, lanes, workers and dead letters as the tenant's runs
show them; and the trace feed's watchers, which the console's live lists follow."""

import asyncio
from uuid import uuid4

import asyncpg

from ledger.notify_feed import TRACES, NotifyFeed
from ledger import overview
from ledger.models import TaskCreateRequest
from ledger.policy import load_policy
from ledger.repository import Actor, Ledger
from ledger.states import TaskStatus


async def _ledger_with_tasks(pool: asyncpg.Pool, tenant: str, titles: list[str]) -> tuple:
    ledger = Ledger(pool, load_policy())
    actor = Actor("olga", tenant, "operator")
    tasks = [
        (
            await ledger.create_task(
                actor, TaskCreateRequest(lane="analysis", title=t, instructions="x")
            )
        ).task
        for t in titles
    ]
    return ledger, actor, tasks


async def test_the_text_filter_takes_wildcards_literally_and_pages(pool: asyncpg.Pool) -> None:
    tenant = f"ov-{uuid4().hex[:8]}"
    titles = ["Rotate 100% of keys", "Rotate 1000 keys", "rotate_keys", "Summarise"]
    ledger, _, _ = await _ledger_with_tasks(pool, tenant, titles)

    async def titles_for(text: str) -> list[str]:
        page = await ledger.search_tasks(
            tenant, text=text, status=None, lane=None, limit=50, cursor=None
        )
        return sorted(task.title for task in page.tasks)

    assert await titles_for("100%") == ["Rotate 100% of keys"]
    assert await titles_for("e_k") == ["rotate_keys"]
    assert await titles_for("ROTATE") == ["Rotate 100% of keys", "Rotate 1000 keys", "rotate_keys"]
    first = await ledger.search_tasks(
        tenant, text="rotate", status=None, lane=None, limit=2, cursor=None
    )
    rest = await ledger.search_tasks(
        tenant, text="rotate", status=None, lane=None, limit=2, cursor=first.next_cursor
    )
    assert len(first.tasks) == 2 and len(rest.tasks) == 1 and rest.next_cursor is None
    other = await ledger.search_tasks(
        "another", text="rotate", status=None, lane=None, limit=5, cursor=None
    )
    assert other.tasks == []


async def test_counts_per_status_stop_at_the_cap(pool: asyncpg.Pool, monkeypatch) -> None:
    tenant = f"ov-{uuid4().hex[:8]}"
    ledger, actor, tasks = await _ledger_with_tasks(pool, tenant, ["a", "b", "c"])
    await ledger.cancel(actor, tasks[0].id, reason="")
    counts = await ledger.status_counts(tenant, lane=None)
    assert counts == {**dict.fromkeys(map(str, TaskStatus), 0), "queued": 2, "cancelled": 1}
    monkeypatch.setattr(overview, "STATUS_COUNT_CAP", 1)
    assert (await ledger.status_counts(tenant, lane=None))["queued"] == 1
    assert (await ledger.status_counts(tenant, lane="change-prod"))["queued"] == 0


async def test_lanes_workers_and_dead_letters_of_the_tenant(pool: asyncpg.Pool) -> None:
    tenant = f"ov-{uuid4().hex[:8]}"
    ledger, _, tasks = await _ledger_with_tasks(pool, tenant, ["a", "b", "c"])
    running, later, _ = tasks
    await pool.execute(
        "UPDATE runs SET status = 'running', claimed_by = 'worker-7', heartbeat_at = now(), "
        "lease_until = now() + interval '30 seconds' WHERE id = $1",
        running.current_run_id,
    )
    await pool.execute(
        "UPDATE runs SET available_at = now() + interval '1 hour' WHERE id = $1",
        later.current_run_id,
    )
    [load] = (await ledger.lane_loads(tenant)).values()
    assert (load.lane, load.depth, load.scheduled, load.running, load.paused) == (
        "analysis",
        1,
        1,
        1,
        0,
    )
    assert load.oldest_age_seconds is not None and load.oldest_age_seconds >= 0
    [worker] = await ledger.worker_loads(tenant)
    assert (worker.worker, worker.lane, worker.in_flight) == ("worker-7", "analysis", 1)
    assert await ledger.worker_loads("another") == []

    for body in ({"task_id": str(running.id)}, {"task_id": "not-a-uuid"}, {}):
        await pool.execute(
            "INSERT INTO lane_dead_letters (id, lane, message_id, body, enqueued_at, "
            "delivery_count, reason) VALUES ((SELECT coalesce(max(id), 0) + 1 FROM "
            "lane_dead_letters), 'analysis', $1, $2, now(), 10, 'MaxDeliveryCountExceeded')",
            str(uuid4()),
            body,
        )
    [letter] = await ledger.dead_letters(tenant)
    assert (letter.task_id, letter.title, letter.delivery_count) == (running.id, "a", 10)
    assert await ledger.dead_letters("another") == []


async def test_a_watcher_hears_every_task_and_a_reconnect(pool: asyncpg.Pool) -> None:
    feed = NotifyFeed(pool, TRACES)
    heard: list[list[str] | None] = []
    await feed.ensure()
    try:
        with feed.watch_all(heard.append):
            await pool.execute("SELECT pg_notify('workbench_traces', 'a,b')")
            while not heard:
                await asyncio.sleep(0.02)
            assert heard == [["a", "b"]]
            listening = feed.listener._connection
            await pool.execute("SELECT pg_terminate_backend($1)", listening.get_server_pid())
            async with asyncio.timeout(10):
                while None not in heard:
                    await feed.ensure()
                    await asyncio.sleep(0.05)
        await pool.execute("SELECT pg_notify('workbench_traces', 'c')")
        await asyncio.sleep(0.2)
        assert ["c"] not in heard  # no longer watching
    finally:
        await feed.listener.close()
