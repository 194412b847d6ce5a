"""End to end: the pipeline as separate processes, the way it is deployed. `workbench api`,
`workbench dispatcher` and `workbench worker --executor sleep` run as subprocesses that
share one embedded PostgreSQL through a common WORKBENCH_DATA_DIR, and the tests drive
them over HTTP while killing, terminating, stopping and resuming workers:

- a burst of 200 tasks goes through every stage exactly once;
- a worker killed with SIGKILL loses its leases; the reaper retries, another worker
  finishes each task exactly once;
- SIGTERM drains: runs still going after WORKBENCH_DRAIN_SECONDS are released on the
  same attempt and the worker exits 0;
- a worker frozen (SIGSTOP) past its lease is a zombie: after SIGCONT its writes are
  refused by the fence and the rescuing worker's result stands.
"""

import signal
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from process_helpers import (
    TASKS,
    ApiServer,
    Pipeline,
    Workbench,
    auth,
    create_task,
    fast_lanes,
    get_task,
    get_traces,
    handle_pids,
    kinds,
    only,
    statuses,
    stop_and_check,
    wait_until,
)

HAPPY_PATH = ["created", "policy_verdict", "dispatched", "worker_receipt", "succeeded"]

# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    root = tmp_path_factory.mktemp("pipeline")
    api = ApiServer(root / "data", root / "api.log", fast_lanes(root))
    api.start()
    pipeline = Pipeline(api, root)
    try:
        pipeline.spawn("dispatcher", ["dispatcher"]).wait_for_event("dispatcher_started")
        yield pipeline
    finally:
        # Workers and the dispatcher first, the API last: the last user of the embedded
        # PostgreSQL stops it.
        problems = stop_and_check(pipeline.services)
        api_returncode, postgres_left_running = api.stop()
        killed = sorted(s.pid for s in pipeline.services if s.killed_on_purpose)
        leftover_handles = handle_pids(api.data_dir)
        still_running = Workbench._postmaster_pid(api.data_dir / "pgdata")
    assert not problems, "\n\n".join(problems)
    assert api_returncode == 0, f"workbench api exited with {api_returncode}:\n{api.output()}"
    assert still_running is None, "a PostgreSQL of this data directory is still running"
    # A process killed with SIGKILL cannot say it stopped using the shared server, so the
    # server stays up after the last orderly exit (it was stopped above); any other
    # reason for it to stay up is a bug.
    assert leftover_handles == killed, (leftover_handles, killed)
    assert postgres_left_running == bool(killed), (postgres_left_running, killed)


@pytest.fixture(scope="module")
def tokens(pipeline: Pipeline) -> dict[str, str]:
    with ThreadPoolExecutor(2) as pool:
        load = pool.submit(pipeline.api.token, "operator", "pipeline-load", "lena")
        faults = pool.submit(pipeline.api.token, "operator", "pipeline-faults", "fred")
        return {"load": load.result(), "faults": faults.result()}


@pytest.fixture
def fleet(pipeline: Pipeline) -> Iterator[Pipeline]:
    """The pipeline; workers a test leaves running are stopped (and must exit 0)
    afterwards, so the next test starts with none."""
    yield pipeline
    problems = stop_and_check(pipeline.workers_running())
    assert not problems, "\n\n".join(problems)


@pytest.fixture
def client(pipeline: Pipeline) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=pipeline.api.base_url, timeout=30.0) as http:
        yield http


# --------------------------------------------------------------------------- scenarios


def test_burst_of_tasks_each_runs_once(
    fleet: Pipeline, client: httpx.Client, tokens: dict[str, str]
) -> None:
    token = tokens["load"]
    names = ["w-load-1", "w-load-2", "w-load-3"]
    fleet.start_workers(names)
    count = 200

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        created = list(
            pool.map(lambda n: create_task(client, token, 0.05, f"burst {n}"), range(count))
        )
    created_in = time.monotonic() - started
    ids = {task["id"] for task in created}
    assert len(ids) == count

    def all_succeeded() -> list[dict[str, Any]] | None:
        response = client.get(
            TASKS, params={"status": "succeeded", "limit": "200"}, headers=auth(token)
        )
        assert response.status_code == 200, response.text
        done = response.json()["tasks"]
        return done if len(done) == count else None

    try:
        done = wait_until(all_succeeded, 60, f"{count} tasks succeeded", every=0.1)
    except pytest.fail.Exception:
        everything = client.get(TASKS, params={"limit": "200"}, headers=auth(token)).json()
        print(Counter(task["status"] for task in everything["tasks"]))
        raise
    wall = time.monotonic() - started
    print(
        f"\n{count} tasks (sleep 0.05 s) through api, dispatcher and {len(names)} workers "
        f"x concurrency 8: {wall:.2f} s wall ({created_in:.2f} s to create, "
        f"{count / wall:.0f} tasks/s)"
    )
    assert {task["id"] for task in done} == ids
    assert all(task["attempt"] == 1 for task in done)

    with ThreadPoolExecutor(8) as pool:
        all_traces = dict(
            zip(ids, pool.map(lambda i: get_traces(client, token, i), ids), strict=True)
        )
    per_worker: Counter[str] = Counter()
    for task_id, traces in all_traces.items():
        assert kinds(traces) == HAPPY_PATH, (task_id, kinds(traces))
        receipt, succeeded = traces[3], traces[4]
        assert receipt["actor"] in names
        assert succeeded["actor"] == receipt["actor"]
        assert receipt["from_status"] == "dispatched"
        assert receipt["to_status"] == "running"
        assert succeeded["to_status"] == "succeeded"
        assert receipt["run_id"] == succeeded["run_id"] == traces[0]["run_id"]
        per_worker[receipt["actor"]] += 1
    print(f"tasks per worker: {dict(sorted(per_worker.items()))}")
    assert sum(per_worker.values()) == count


def test_killed_worker_leases_are_rescued(
    fleet: Pipeline, client: httpx.Client, tokens: dict[str, str]
) -> None:
    token = tokens["faults"]
    doomed = fleet.worker("w-doomed")
    tasks = [create_task(client, token, 5, f"survive kill {n}") for n in range(10)]
    ids = [task["id"] for task in tasks]

    def eight_running() -> dict[str, dict[str, Any]] | None:
        now = statuses(client, token, ids)
        running = {i: t for i, t in now.items() if t["status"] == "running"}
        return running if len(running) == 8 else None  # concurrency 8 of 10 tasks

    running = wait_until(eight_running, 20, "8 of the 10 tasks running on w-doomed")
    for task_id in running:
        receipts = only(get_traces(client, token, task_id), "worker_receipt")
        assert [r["actor"] for r in receipts] == ["w-doomed"]
    assert doomed.kill() == -signal.SIGKILL

    fleet.worker("w-fresh", concurrency=16)

    def all_succeeded() -> dict[str, dict[str, Any]] | None:
        now = statuses(client, token, ids)
        return now if all(t["status"] == "succeeded" for t in now.values()) else None

    final = wait_until(all_succeeded, 40, "all 10 tasks succeeded after the kill", every=0.5)
    assert all(task["status"] != "running" for task in final.values())
    for task_id, task in final.items():
        traces = get_traces(client, token, task_id)
        succeeded = only(traces, "succeeded")
        assert len(succeeded) == 1, kinds(traces)
        assert succeeded[0]["actor"] == "w-fresh"
        assert succeeded[0]["run_id"] == task["current_run_id"]
        receipts = [r["actor"] for r in only(traces, "worker_receipt")]
        expired = only(traces, "lease_expired")
        if task_id in running:
            assert task["attempt"] == 2, (task_id, kinds(traces))
            assert receipts == ["w-doomed", "w-fresh"]
            assert len(expired) == 1, kinds(traces)
            assert expired[0]["data"] == {"claimed_by": "w-doomed", "attempt": 1}
            assert expired[0]["run_id"] == running[task_id]["current_run_id"]
            assert task["current_run_id"] != running[task_id]["current_run_id"]
            assert len(only(traces, "retry_scheduled")) == 1
        else:  # waited in the lane while w-doomed was full; never ran there
            assert task["attempt"] == 1, (task_id, kinds(traces))
            assert receipts == ["w-fresh"]
            assert expired == []
        assert only(traces, "fence_refused") == []
        assert kinds(traces)[-1] == "succeeded"


def test_sigterm_drains_and_releases(
    fleet: Pipeline, client: httpx.Client, tokens: dict[str, str]
) -> None:
    token = tokens["faults"]
    worker = fleet.worker("w-drain", WORKBENCH_DRAIN_SECONDS="1")
    tasks = [create_task(client, token, 30, f"drain {n}") for n in range(3)]
    ids = [task["id"] for task in tasks]
    wait_until(
        lambda: all(t["status"] == "running" for t in statuses(client, token, ids).values()),
        20,
        "3 long tasks running on w-drain",
    )

    worker.send(signal.SIGTERM)
    asked = time.monotonic()
    returncode = worker.terminate(timeout=10)
    took = time.monotonic() - asked
    assert returncode == 0, f"w-drain exited with {returncode}:\n{worker.tail()}"
    assert took < 10, took
    print(f"\nw-drain exited {took:.2f} s after SIGTERM (drain 1 s)")
    assert '"event":"draining"' in worker.output()

    for created in tasks:
        task = get_task(client, token, created["id"])
        traces = get_traces(client, token, created["id"])
        assert task["status"] in {"queued", "dispatched"}, (task["status"], kinds(traces))
        assert task["attempt"] == 1
        assert task["current_run_id"] == created["current_run_id"]
        released = only(traces, "released")
        assert len(released) == 1, kinds(traces)
        assert released[0]["actor"] == "w-drain"
        assert released[0]["from_status"] == "running"
        assert released[0]["to_status"] == "queued"
        assert released[0]["data"] == {"attempt": 1}
        assert released[0]["run_id"] == created["current_run_id"]
        for kind in ("lease_expired", "retry_scheduled", "succeeded", "fence_refused"):
            assert only(traces, kind) == [], kinds(traces)
        assert kinds(traces)[:5] == [*HAPPY_PATH[:4], "released"], kinds(traces)

    for created in tasks:
        response = client.post(
            f"{TASKS}/{created['id']}/cancel", json={"reason": "clean up"}, headers=auth(token)
        )
        assert response.status_code == 200, response.text
        assert response.json()["task"]["status"] == "cancelled"
        assert response.json()["task"]["attempt"] == 1


def test_zombie_worker_is_fenced_off(
    fleet: Pipeline, client: httpx.Client, tokens: dict[str, str]
) -> None:
    token = tokens["faults"]
    zombie = fleet.worker("w-zombie")
    created = create_task(client, token, 4, "zombie")
    task_id = created["id"]
    wait_until(
        lambda: get_task(client, token, task_id)["status"] == "running",
        20,
        "the task running on w-zombie",
        every=0.05,
    )
    claimed_at = time.monotonic()
    zombie.send(signal.SIGSTOP)
    try:
        fleet.worker("w-rescuer")

        def rescued() -> dict[str, Any] | None:
            task = get_task(client, token, task_id)
            return task if task["status"] == "running" and task["attempt"] == 2 else None

        rescued_task = wait_until(rescued, 20, "attempt 2 running on w-rescuer")
        # Resume only once the zombie's own sleep is over, so it goes on to complete.
        time.sleep(max(0.0, claimed_at + 4.5 - time.monotonic()))
    finally:
        zombie.send(signal.SIGCONT)

    def refused_and_done() -> list[dict[str, Any]] | None:
        traces = get_traces(client, token, task_id)
        refused = only(traces, "fence_refused")
        return traces if refused and "succeeded" in kinds(traces) else None

    traces = wait_until(refused_and_done, 15, "zombie's first write refused, rescuer done")
    task = get_task(client, token, task_id)
    assert task["status"] == "succeeded"
    assert task["attempt"] == 2
    assert task["current_run_id"] == rescued_task["current_run_id"] != created["current_run_id"]

    succeeded = only(traces, "succeeded")
    assert len(succeeded) == 1, kinds(traces)
    assert succeeded[0]["actor"] == "w-rescuer"
    assert succeeded[0]["run_id"] == task["current_run_id"]
    assert [r["actor"] for r in only(traces, "worker_receipt")] == ["w-zombie", "w-rescuer"]
    expired = only(traces, "lease_expired")
    assert len(expired) == 1
    assert expired[0]["data"] == {"claimed_by": "w-zombie", "attempt": 1}
    refused = only(traces, "fence_refused")
    assert {t["actor"] for t in refused} == {"w-zombie"}
    assert {t["run_id"] for t in refused} == {created["current_run_id"]}
    assert all(t["data"]["attempt"] == 1 for t in refused)
    # Its first write after waking (a heartbeat, or the completion carrying its late
    # result's artifact) is refused, and it stops there: it writes nothing further.
    operations = [t["data"]["operation"] for t in refused]
    assert len(operations) == 1 and operations[0] in {"heartbeat", "complete"}, operations
    # Nothing else from the zombie made it into the ledger.
    assert {t["kind"] for t in traces if t["actor"] == "w-zombie"} == {
        "worker_receipt",
        "fence_refused",
    }

    artifacts = client.get(f"{TASKS}/{task_id}/artifacts", headers=auth(token))
    assert artifacts.status_code == 200, artifacts.text
    listed = artifacts.json()["artifacts"]
    assert [(a["run_id"], a["metadata"]["attempt"]) for a in listed] == [
        (task["current_run_id"], 2)
    ]
    # Nor a file: the zombie's stored output was removed when its record was refused.
    stored = list((fleet.api.data_dir / "artifacts").rglob(f"{task_id}/*"))
    assert len(stored) == 1, stored
    # The zombie, resumed, is an ordinary worker again: the fleet fixture stops it and
    # it must exit 0.
    assert zombie.running()


def test_tool_approval_survives_a_killed_worker(
    fleet: Pipeline, client: httpx.Client, tokens: dict[str, str]
) -> None:
    token = tokens["faults"]
    first = fleet.worker("w-agent-1", executor="sdk")
    response = client.post(
        TASKS,
        json={
            "lane": "change-nonprod",
            "title": "Scale app-7",
            "mutation_level": "write_nonprod",
            "instructions": 'Scale app-7\n#call write_artifact {"name": "plan.txt", '
            '"content": "replicas: 3"}',
        },
        headers=auth(token),
    )
    assert response.status_code == 201, response.text
    task_id = response.json()["task"]["id"]
    paused = wait_until(
        lambda: (
            (task := get_task(client, token, task_id))["status"] == "awaiting_approval" and task
        ),
        30,
        "the run paused for approval",
    )
    assert paused["pending_approval"]["tool"] == "write_artifact"
    assert first.kill() == -signal.SIGKILL  # the worker that paused is gone

    approved = client.post(f"{TASKS}/{task_id}/approve", json={"reason": "ok"}, headers=auth(token))
    assert approved.status_code == 200, approved.text
    assert approved.json()["trace"]["kind"] == "tool_call_approved"
    fleet.worker("w-agent-2", executor="sdk")
    done = wait_until(
        lambda: (task := get_task(client, token, task_id))["status"] == "succeeded" and task,
        30,
        "another worker finished from the saved state",
    )
    assert done["attempt"] == 1
    traces = get_traces(client, token, task_id)
    assert [t["actor"] for t in only(traces, "worker_receipt")] == ["w-agent-1", "w-agent-2"]
    assert [(t["actor"], t["data"]["decision"]) for t in only(traces, "tool_verdict")] == [
        ("w-agent-2", "approved")
    ]
    listed = client.get(f"{TASKS}/{task_id}/artifacts", headers=auth(token)).json()
    assert sorted(a["name"] for a in listed["artifacts"]) == ["final_output.md", "plan.txt"]
