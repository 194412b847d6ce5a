"""Soak (marker `soak`, run by `make soak`, left out of `make test`): workers killed with
SIGKILL at random points, round after round, while tasks of random lengths run.

The same fault as tests/e2e/test_pipeline_processes.py::test_killed_worker_leases_are_rescued,
repeated: each round creates tasks, waits a random moment, kills a random worker and
starts a replacement. Throughout, no run may stay `running` long past its lease (the
reaper must rescue it); at the end every task has ended exactly once (one `succeeded`
event, the last one) and nothing is left running or in the lane.

SOAK_ROUNDS (default 25) and SOAK_SEED (default: random, printed) tune a run.
"""

import os
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fault_helpers import Cluster, running_cluster
from process_helpers import LEASE_SECONDS, Service, create_task, fast_lanes, wait_until

pytestmark = pytest.mark.soak

ROUNDS = int(os.environ.get("SOAK_ROUNDS", "25"))
SEED = int(os.environ.get("SOAK_SEED") or random.SystemRandom().randrange(2**32))
TASKS_PER_ROUND = 12
WORKERS = 3
# Past its lease a run waits for the reaper's next pass (every second) and the task
# lock; more than this means nobody is rescuing it.
RESCUE_SLACK_SECONDS = 10.0


@pytest.fixture
def cluster(tmp_path: Path, make_database: Callable[[], str]) -> Iterator[Cluster]:
    # Enough attempts that a task unlucky enough to be on several killed workers still
    # ends by succeeding: the property under test is "ends exactly once".
    lanes = fast_lanes(tmp_path, max_attempts=20)
    with running_cluster(tmp_path, make_database(), lanes) as cluster:
        yield cluster


def overdue_runs(cluster: Cluster) -> list[dict[str, Any]]:
    return cluster.sql(
        "SELECT id::text, task_id::text, claimed_by, lease_until, now() AS now FROM runs"
        " WHERE status = 'running' AND lease_until < now() - make_interval(secs => $1)",
        RESCUE_SLACK_SECONDS,
    )


def test_workers_killed_at_random_points(cluster: Cluster) -> None:
    print(f"\nsoak: {ROUNDS} rounds, SOAK_SEED={SEED}")
    chance = random.Random(SEED)
    token = cluster.token()
    cluster.dispatcher()
    generation = Counter[int]()

    def start(slot: int, wait: bool) -> Service:
        generation[slot] += 1
        name = f"w-soak-{slot}.{generation[slot]}"
        if wait:
            return cluster.worker(name, concurrency=4)
        return cluster.spawn(
            name,
            ["worker", "--executor", "sleep", "--concurrency", "4"],
            WORKBENCH_WORKER_NAME=name,
        )

    workers = [start(slot, wait=True) for slot in range(WORKERS)]
    ids: list[str] = []
    kills = 0
    with httpx.Client(base_url=cluster.api.base_url, timeout=30.0) as client:
        for round_number in range(ROUNDS):
            for n in range(TASKS_PER_ROUND):
                seconds = round(chance.uniform(0.05, 2.5 * LEASE_SECONDS), 2)
                ids.append(create_task(client, token, seconds, f"soak {round_number}.{n}")["id"])
            time.sleep(chance.uniform(0.0, 2.0))
            slot = chance.randrange(WORKERS)
            if workers[slot].running():
                workers[slot].kill()
                kills += 1
            workers[slot] = start(slot, wait=False)
            assert overdue_runs(cluster) == [], f"round {round_number}: a lease nobody rescued"

        def all_ended() -> list[dict[str, Any]] | None:
            assert overdue_runs(cluster) == [], "a lease nobody rescued"
            rows = cluster.sql("SELECT id::text, status, attempt FROM tasks")
            return rows if all(row["status"] == "succeeded" for row in rows) else None

        tasks = wait_until(all_ended, 300, f"all {len(ids)} tasks succeeded", every=1.0)

    assert sorted(row["id"] for row in tasks) == sorted(ids)
    events = cluster.sql(
        "SELECT task_id::text, kind, seq FROM trace_events"
        " WHERE kind IN ('succeeded', 'failed', 'cancelled') ORDER BY task_id, seq"
    )
    terminal = Counter(row["task_id"] for row in events)
    assert terminal == Counter(dict.fromkeys(ids, 1)), "a task ended more than once"
    last = cluster.sql(
        "SELECT DISTINCT ON (task_id) task_id::text, kind FROM trace_events"
        " ORDER BY task_id, seq DESC"
    )
    assert {row["kind"] for row in last} == {"succeeded"}
    assert cluster.sql("SELECT count(*)::int AS n FROM runs WHERE status = 'running'") == [{"n": 0}]
    assert cluster.sql("SELECT count(*)::int AS n FROM lane_dead_letters") == [{"n": 0}]
    wait_until(
        lambda: cluster.sql("SELECT count(*)::int AS n FROM lane_messages") == [{"n": 0}],
        30,
        "the lanes emptied",
    )
    attempts = Counter(row["attempt"] for row in tasks)
    print(f"{len(ids)} tasks, {kills} workers killed, attempts {dict(sorted(attempts.items()))}")
    assert kills >= ROUNDS // 2
