"""Fault: a poison task, whose execution kills the worker process every time.

Worker processes are the real `workbench worker` with recording_worker.py's executor,
which SIGKILLs its own process on a task marked poison. The test restarts every worker
that dies, as Kubernetes restarts a crashed pod. Each crash loses the poison run's
lease; the reaper retries it until its attempts run out and the task ends `failed`
with the lease expiry as the reason, while every other task succeeds exactly once.
"""

import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fault_helpers import Cluster, running_cluster
from process_helpers import (
    MAX_ATTEMPTS,
    Service,
    create_task,
    fast_lanes,
    get_task,
    get_traces,
    kinds,
    only,
)

HAPPY_PATH = ["created", "policy_verdict", "dispatched", "worker_receipt", "succeeded"]
ATTEMPT = ["dispatched", "worker_receipt", "lease_expired"]
# created, policy_verdict; then each attempt, a retry between attempts; then failed.
POISON_PATH = [
    "created",
    "policy_verdict",
    *ATTEMPT,
    "retry_scheduled",
    *ATTEMPT,
    "retry_scheduled",
    *ATTEMPT,
    "failed",
]
WORKER_SLOTS = ("w-a", "w-b")
HEALTHY_TASKS = 8


@pytest.fixture
def cluster(tmp_path: Path, make_database: Callable[[], str]) -> Iterator[Cluster]:
    # A dispatch timeout longer than a worker restart: every hint in the lane then
    # comes from the outbox after a retry, and the traces are exact.
    lanes = fast_lanes(tmp_path, dispatch_timeout_seconds=60)
    with running_cluster(tmp_path, make_database(), lanes) as cluster:
        yield cluster


class Supervisor:
    """Keeps one worker per slot running: a worker that died is replaced by a new
    process (named slot.generation), as a Deployment replaces a crashed pod."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.generations = Counter[str]()
        # Concurrency 1: a crash then takes down only the poison run, not innocent
        # runs that happened to share the process (those would lose an attempt too).
        self.workers = {slot: self._start(slot, wait=True) for slot in WORKER_SLOTS}
        self.crashed: list[Service] = []

    def _start(self, slot: str, wait: bool) -> Service:
        self.generations[slot] += 1
        name = f"{slot}.{self.generations[slot]}"
        return self.cluster.recording_worker(name, concurrency=1, wait=wait)

    def restart_crashed(self) -> None:
        for slot, worker in self.workers.items():
            if not worker.running():
                # Not killed by the test, but its exit is checked below rather than by
                # the fixture's SIGTERM check.
                worker.killed_on_purpose = True
                self.crashed.append(worker)
                self.workers[slot] = self._start(slot, wait=False)

    def run_until(self, done: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                pytest.fail(f"not done within {timeout} s; crashed: {len(self.crashed)}")
            self.restart_crashed()
            time.sleep(0.1)


def test_poison_task_is_dead_lettered_and_the_rest_succeed(cluster: Cluster) -> None:
    token = cluster.token()
    cluster.dispatcher()
    supervisor = Supervisor(cluster)
    with httpx.Client(base_url=cluster.api.base_url, timeout=30.0) as client:
        healthy = [create_task(client, token, 0.2, f"healthy {n}") for n in range(HEALTHY_TASKS)]
        poison = create_task(client, token, 0, "poison", scope={"poison": True})
        healthy += [create_task(client, token, 0.2, f"late {n}") for n in range(HEALTHY_TASKS)]
        ids = [task["id"] for task in healthy]

        def all_ended() -> bool:
            rows = cluster.sql(
                "SELECT status FROM tasks WHERE id = ANY($1::uuid[])", [*ids, poison["id"]]
            )
            return all(row["status"] in {"succeeded", "failed"} for row in rows)

        supervisor.run_until(all_ended, timeout=90)

        task = get_task(client, token, poison["id"])
        traces = get_traces(client, token, poison["id"])
        assert task["status"] == "failed", (task, kinds(traces))
        assert task["attempt"] == MAX_ATTEMPTS
        assert kinds(traces) == POISON_PATH
        receipts = only(traces, "worker_receipt")
        expired = only(traces, "lease_expired")
        # Each attempt's lease expired on the worker that claimed it, and that worker
        # is one of the processes that died.
        crashed_names = {worker.name for worker in supervisor.crashed}
        assert [e["data"]["claimed_by"] for e in expired] == [r["actor"] for r in receipts]
        assert {r["actor"] for r in receipts} <= crashed_names
        assert [e["data"]["attempt"] for e in expired] == [1, 2, 3]
        last = receipts[-1]["actor"]
        reason = f"lease_expired on attempt 3 of 3: no heartbeat from {last}"
        assert task["terminal_reason"] == reason
        assert only(traces, "failed")[0]["message"] == reason
        assert only(traces, "failed")[0]["data"] == {"failure_kind": "lease_expired"}
        runs = cluster.sql(
            "SELECT attempt, status, failure_kind FROM runs WHERE task_id = $1 ORDER BY attempt",
            poison["id"],
        )
        assert runs == [
            {"attempt": n, "status": "lost", "failure_kind": "lease_expired"} for n in (1, 2, 3)
        ]

        # Three crashes, each a SIGKILL in the middle of the poison run, and the poison
        # executed once per attempt.
        assert len(supervisor.crashed) == MAX_ATTEMPTS, [w.name for w in supervisor.crashed]
        for worker in supervisor.crashed:
            assert worker.process is not None
            assert worker.process.wait(timeout=5) == -signal.SIGKILL, worker.name
        invocations = cluster.invocations()
        assert invocations[poison["id"]] == MAX_ATTEMPTS

        for created in healthy:
            task = get_task(client, token, created["id"])
            traces = get_traces(client, token, created["id"])
            assert task["status"] == "succeeded", (task, kinds(traces))
            assert task["attempt"] == 1
            assert kinds(traces) == HAPPY_PATH
            assert invocations[created["id"]] == 1
        assert set(invocations) == {*ids, poison["id"]}

        # Nothing left behind: no lane message, no run still holding a lease.
        assert cluster.sql("SELECT count(*) AS n FROM lane_messages") == [{"n": 0}]
        assert cluster.sql("SELECT count(*) AS n FROM runs WHERE status = 'running'") == [{"n": 0}]
