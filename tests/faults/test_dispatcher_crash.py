"""Fault: the dispatcher dies between committing a batch as dispatched and sending its
hints (the outbox's one window where the ledger says more than the lane holds).

A dispatcher process built from the real entry point marks every due run dispatched,
commits, and kills itself with SIGKILL before the send (dispatcher_dies_before_send.py).
The ledger says `dispatched` and the lane is empty; a real dispatcher's reaper finds
the runs unclaimed past the dispatch timeout, queues them again and sends fresh hints,
and real worker processes run each task exactly once. Finally the hints the dead
dispatcher meant to send are delivered after all, late: the claim refuses every one.
"""

import asyncio
import json
import signal
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fault_helpers import DIES_BEFORE_SEND, Cluster, running_cluster
from process_helpers import LANE, create_task, fast_lanes, get_traces, kinds, wait_until

from lanes.base import LaneMessage
from lanes.registry import LaneRegistry
from ledger.database import close_pool, create_pool
from ledger.policy import load_policy

TASK_COUNT = 12
# Long enough that workers claim the rescued runs' hints before a second rescue could
# add traces; short enough to keep the test short.
DISPATCH_TIMEOUT_SECONDS = 5.0
RESCUED_PATH = [
    "created",
    "policy_verdict",
    "dispatched",
    "dispatch_timeout",
    "dispatched",
    "worker_receipt",
    "succeeded",
]


@pytest.fixture
def cluster(tmp_path: Path, make_database: Callable[[], str]) -> Iterator[Cluster]:
    lanes = fast_lanes(tmp_path, dispatch_timeout_seconds=DISPATCH_TIMEOUT_SECONDS)
    with running_cluster(tmp_path, make_database(), lanes) as cluster:
        yield cluster


def run_states(cluster: Cluster, ids: list[str]) -> list[dict[str, Any]]:
    return cluster.sql(
        "SELECT r.id::text AS run_id, r.task_id::text AS task_id, r.status, r.dispatch_count,"
        " t.status AS task_status FROM runs r JOIN tasks t ON t.current_run_id = r.id"
        " WHERE r.task_id = ANY($1::uuid[])",
        ids,
    )


def lane_message_ids(cluster: Cluster) -> list[str]:
    rows = cluster.sql("SELECT message_id FROM lane_messages WHERE lane = $1", LANE)
    return sorted(row["message_id"] for row in rows)


def send_late(cluster: Cluster, unsent: list[dict[str, Any]]) -> None:
    """The hints the dead dispatcher meant to send, sent now through the real Postgres
    lane."""

    async def send() -> None:
        pool = await create_pool(cluster.database_url, max_size=2)
        registry = LaneRegistry(pool, load_policy(cluster.lanes_file))
        try:
            messages = [
                LaneMessage.from_properties(message["message_id"], message) for message in unsent
            ]
            await registry.get(LANE).send_batch(messages)
        finally:
            await registry.close()
            await close_pool(pool)

    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, send()).result(timeout=60)


def test_dispatcher_killed_between_mark_and_send_loses_and_repeats_nothing(
    cluster: Cluster, tmp_path: Path
) -> None:
    token = cluster.token()
    with httpx.Client(base_url=cluster.api.base_url, timeout=30.0) as client:
        tasks = [create_task(client, token, 0.1, f"rescued {n}") for n in range(TASK_COUNT)]
        ids = [task["id"] for task in tasks]
        run_ids = sorted(task["current_run_id"] for task in tasks)

        unsent_file = tmp_path / "unsent.json"
        doomed = cluster.spawn(
            "doomed-dispatcher", [], program=DIES_BEFORE_SEND, FAULTS_UNSENT=str(unsent_file)
        )
        doomed.killed_on_purpose = True
        assert doomed.process is not None
        returncode = doomed.process.wait(timeout=60)
        assert returncode == -signal.SIGKILL, doomed.tail()
        assert '"event":"dispatched"' not in doomed.output()

        # One batch, every run, first sends (message id = run id), committed as
        # dispatched, while the lane holds nothing.
        unsent = json.loads(unsent_file.read_text())
        assert sorted(message["task_id"] for message in unsent) == sorted(ids)
        assert all(message["message_id"] == message["run_id"] for message in unsent)
        assert lane_message_ids(cluster) == []
        states = run_states(cluster, ids)
        assert {(s["status"], s["task_status"], s["dispatch_count"]) for s in states} == {
            ("dispatched", "dispatched", 1)
        }
        for task_id in ids:
            assert kinds(get_traces(client, token, task_id)) == RESCUED_PATH[:3]

        # Workers wait on the empty lane; a real dispatcher's reaper rescues the runs
        # once the dispatch timeout has passed and its outbox sends new hints.
        workers = [cluster.recording_worker(f"w-rescue-{n}") for n in (1, 2)]
        cluster.dispatcher()

        def all_succeeded() -> bool:
            return {s["task_status"] for s in run_states(cluster, ids)} == {"succeeded"}

        wait_until(all_succeeded, 60, f"{TASK_COUNT} tasks succeeded")
        assert cluster.invocations() == Counter(dict.fromkeys(ids, 1))
        traces_before = {task_id: get_traces(client, token, task_id) for task_id in ids}
        for task_id, traces in traces_before.items():
            assert kinds(traces) == RESCUED_PATH, (task_id, kinds(traces))
            assert traces[4]["data"]["dispatch_count"] == 2
            assert traces[5]["actor"] == traces[6]["actor"]
            assert traces[5]["actor"] in {"w-rescue-1", "w-rescue-2"}
        wait_until(lambda: not lane_message_ids(cluster), 30, "the lane emptied")

        # The hints the dead dispatcher never sent, delivered late after all (the
        # re-sends carried other message ids, so nothing drops them as duplicates):
        # each is received, refused by the claim, settled, and runs nothing.
        send_late(cluster, unsent)

        def all_dropped() -> bool:
            dropped = [e for w in workers for e in w.events("stale_hint_dropped")]
            return len(dropped) == TASK_COUNT and not lane_message_ids(cluster)

        wait_until(all_dropped, 30, "every late hint dropped as stale")
        dropped = [e for w in workers for e in w.events("stale_hint_dropped")]
        assert sorted(e["run_id"] for e in dropped) == run_ids
        assert cluster.invocations() == Counter(dict.fromkeys(ids, 1))
        for task_id in ids:
            assert get_traces(client, token, task_id) == traces_before[task_id]
        dead = cluster.sql("SELECT count(*) AS n FROM lane_dead_letters")
        assert dead == [{"n": 0}]
