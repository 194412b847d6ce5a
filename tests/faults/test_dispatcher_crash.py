"""Fault: the dispatcher dies between sending a batch to the lane and marking it
dispatched (the outbox's one window where the lane and the ledger disagree).

A dispatcher process built from the real entry point sends every due run's hint and
kills itself with SIGKILL before `mark_dispatched` commits (dispatcher_dies_after_send.py).
The ledger must still say `queued`; a real dispatcher then sends again and real worker
processes run each task exactly once. Finally the same hints are delivered once more,
as a transport without duplicate detection would: the claim refuses every one.
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
from fault_helpers import DIES_AFTER_SEND, Cluster, running_cluster
from process_helpers import LANE, create_task, fast_lanes, get_traces, kinds, wait_until

from lanes.base import LaneMessage
from lanes.registry import LaneRegistry
from ledger.database import close_pool, create_pool
from ledger.policy import load_policy

TASK_COUNT = 12
HAPPY_PATH = ["created", "policy_verdict", "dispatched", "worker_receipt", "succeeded"]


@pytest.fixture
def cluster(tmp_path: Path, make_database: Callable[[], str]) -> Iterator[Cluster]:
    # A long dispatch timeout: the reaper must not re-send on its own while the test
    # starts the workers, so every hint in the lane comes from the outbox.
    lanes = fast_lanes(tmp_path, dispatch_timeout_seconds=120)
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


def send_again(cluster: Cluster, sent: list[dict[str, Any]]) -> None:
    """The recorded hints, sent once more through the real Postgres lane."""

    async def send() -> None:
        pool = await create_pool(cluster.database_url, max_size=2)
        registry = LaneRegistry(pool, load_policy(cluster.lanes_file))
        try:
            messages = [
                LaneMessage.from_properties(message["message_id"], message) for message in sent
            ]
            await registry.get(LANE).send_batch(messages)
        finally:
            await registry.close()
            await close_pool(pool)

    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, send()).result(timeout=60)


def test_dispatcher_killed_between_send_and_mark_runs_nothing_twice(
    cluster: Cluster, tmp_path: Path
) -> None:
    token = cluster.token()
    with httpx.Client(base_url=cluster.api.base_url, timeout=30.0) as client:
        tasks = [create_task(client, token, 0.1, f"resent {n}") for n in range(TASK_COUNT)]
        ids = [task["id"] for task in tasks]
        run_ids = sorted(task["current_run_id"] for task in tasks)

        sent_file = tmp_path / "sent.json"
        doomed = cluster.spawn(
            "doomed-dispatcher", [], program=DIES_AFTER_SEND, FAULTS_SENT=str(sent_file)
        )
        doomed.killed_on_purpose = True
        assert doomed.process is not None
        returncode = doomed.process.wait(timeout=60)
        assert returncode == -signal.SIGKILL, doomed.tail()
        assert '"event":"dispatched"' not in doomed.output()

        # One batch, every run, first sends (message id = run id) ...
        sent = json.loads(sent_file.read_text())
        assert sorted(message["task_id"] for message in sent) == sorted(ids)
        assert all(message["message_id"] == message["run_id"] for message in sent)
        # ... in the lane, while the ledger, rolled back with the dead connection, says
        # nothing was dispatched.
        assert lane_message_ids(cluster) == run_ids
        states = run_states(cluster, ids)
        assert {(s["status"], s["task_status"], s["dispatch_count"]) for s in states} == {
            ("queued", "queued", 0)
        }
        for task_id in ids:
            assert kinds(get_traces(client, token, task_id)) == HAPPY_PATH[:2]

        # A real dispatcher sends the batch again and marks it. The copies carry the same
        # message ids, so the lane drops them: still one hint per run.
        cluster.dispatcher()

        def all_dispatched() -> bool:
            states = run_states(cluster, ids)
            return {(s["status"], s["dispatch_count"]) for s in states} == {("dispatched", 1)}

        wait_until(all_dispatched, 30, "the runs marked dispatched by the new dispatcher")
        assert lane_message_ids(cluster) == run_ids

        workers = [cluster.recording_worker(f"w-resend-{n}") for n in (1, 2)]

        def all_succeeded() -> bool:
            return {s["task_status"] for s in run_states(cluster, ids)} == {"succeeded"}

        wait_until(all_succeeded, 60, f"{TASK_COUNT} tasks succeeded")
        assert cluster.invocations() == Counter(dict.fromkeys(ids, 1))
        traces_before = {task_id: get_traces(client, token, task_id) for task_id in ids}
        for task_id, traces in traces_before.items():
            assert kinds(traces) == HAPPY_PATH, (task_id, kinds(traces))
            assert traces[2]["data"]["dispatch_count"] == 1
            assert traces[3]["actor"] == traces[4]["actor"]
            assert traces[3]["actor"] in {"w-resend-1", "w-resend-2"}
        wait_until(lambda: not lane_message_ids(cluster), 30, "the lane emptied")

        # The same hints once more, as a transport without duplicate detection (or one
        # whose detection window had passed) would deliver them: each is received,
        # refused by the claim, settled, and runs nothing.
        send_again(cluster, sent)

        def all_dropped() -> bool:
            dropped = [e for w in workers for e in w.events("stale_hint_dropped")]
            return len(dropped) == TASK_COUNT and not lane_message_ids(cluster)

        wait_until(all_dropped, 30, "every repeated hint dropped as stale")
        dropped = [e for w in workers for e in w.events("stale_hint_dropped")]
        assert sorted(e["run_id"] for e in dropped) == run_ids
        assert cluster.invocations() == Counter(dict.fromkeys(ids, 1))
        for task_id in ids:
            assert get_traces(client, token, task_id) == traces_before[task_id]
        dead = cluster.sql("SELECT count(*) AS n FROM lane_dead_letters")
        assert dead == [{"n": 0}]
