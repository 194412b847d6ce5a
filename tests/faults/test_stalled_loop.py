"""Fault: a loop waits on the database and the answer never comes (here: a table lock
another session holds and does not let go).

The process looks alive: its port answers, and it logs nothing wrong. Its liveness
probe must not be fooled: `/healthz` on the metrics port answers 503 naming the loop
that stopped turning (so Kubernetes restarts the pod), and 200 again once the loop turns.
SIGTERM must still end the dispatcher while its turn waits: the turn is abandoned and
rolls back, and the process exits 0.
"""

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from fault_helpers import Cluster, running_cluster
from process_helpers import LANE, fast_lanes, free_port, wait_until

# Above the longest pause a healthy loop takes between turns (the gauges refresh every 5 s).
LIVENESS_SECONDS = 6


@pytest.fixture
def cluster(tmp_path: Path, make_database: Callable[[], str]) -> Iterator[Cluster]:
    with running_cluster(tmp_path, make_database(), fast_lanes(tmp_path)) as cluster:
        yield cluster


@contextlib.contextmanager
def table_locked(url: str, table: str, mode: str) -> Iterator[None]:
    """`LOCK TABLE` held by a session of its own (on a thread with its own event loop)
    until the block ends."""
    locked, release = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    async def hold() -> None:
        connection = await asyncpg.connect(url, timeout=30)
        try:
            async with connection.transaction():
                await connection.execute(f"LOCK TABLE {table} IN {mode} MODE")
                locked.set()
                await asyncio.to_thread(release.wait)
        finally:
            await connection.close()

    def run() -> None:
        try:
            asyncio.run(hold())
        except BaseException as error:  # reported by the test, not lost in the thread
            failure.append(error)
            locked.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert locked.wait(30) and not failure, failure
    try:
        yield
    finally:
        release.set()
        thread.join(30)


def health(port: int) -> tuple[int, dict[str, str]]:
    response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    return response.status_code, response.json()["checks"]


def loops_reported(port: int) -> set[str]:
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    prefix = 'workbench_loop_last_turn_timestamp_seconds{loop="'
    return {
        line[len(prefix) :].split('"')[0]
        for line in metrics.splitlines()
        if line.startswith(prefix)
    }


def test_stalled_dispatcher_fails_liveness_and_still_stops(cluster: Cluster) -> None:
    port = free_port()
    dispatcher = cluster.spawn(
        "dispatcher",
        ["dispatcher", "--metrics-port", str(port)],
        WORKBENCH_LIVENESS_SECONDS=str(LIVENESS_SECONDS),
    )
    dispatcher.wait_for_event("dispatcher_started")
    wait_until(lambda: loops_reported(port) == {"dispatcher", "ledger_gauges"}, 30, "loops turn")
    assert health(port) == (200, {})

    # The outbox locks due runs' tasks FOR UPDATE, which waits behind EXCLUSIVE; the gauges
    # only read, which does not: exactly one loop stalls.
    with table_locked(cluster.database_url, "tasks", "EXCLUSIVE"):
        _, checks = wait_until(
            lambda: (answer := health(port))[0] == 503 and answer, 30, "healthz 503"
        )
        assert list(checks) == ["dispatcher"], checks
        assert checks["dispatcher"].startswith("stalled: no turn for ")
        assert dispatcher.running()
    wait_until(lambda: health(port) == (200, {}), 30, "healthz 200 once the lock is gone")

    with table_locked(cluster.database_url, "tasks", "EXCLUSIVE"):
        wait_until(lambda: health(port)[0] == 503, 30, "healthz 503 again")
        assert dispatcher.terminate() == 0, dispatcher.tail()
    assert dispatcher.events("dispatcher_stopped")


def test_stalled_worker_receive_loop_fails_liveness(cluster: Cluster) -> None:
    port = free_port()
    worker = cluster.spawn(
        "worker",
        ["worker", "--executor", "noop", "--lanes", LANE, "--metrics-port", str(port)],
        WORKBENCH_LIVENESS_SECONDS=str(LIVENESS_SECONDS),
    )
    worker.wait_for_event("worker_started")
    wait_until(lambda: loops_reported(port) == {f"receive:{LANE}"}, 30, "receive loop turns")
    assert health(port) == (200, {})

    # Taking hints deletes from lane_messages, which waits behind EXCLUSIVE.
    with table_locked(cluster.database_url, "lane_messages", "EXCLUSIVE"):
        _, checks = wait_until(
            lambda: (answer := health(port))[0] == 503 and answer, 30, "healthz 503"
        )
        assert list(checks) == [f"receive:{LANE}"], checks
    wait_until(lambda: health(port) == (200, {}), 30, "healthz 200 once the lock is gone")
