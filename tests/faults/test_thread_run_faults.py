"""Faults in conversations, against real processes: `workbench api`, a dispatcher and
`sdk` workers running the real Agents SDK with the offline model.

1. A worker is killed with SIGKILL in the middle of a thread run (its specialist inside
   an `http_get` call that a local server holds open). Another worker runs the retry;
   the client that lost its stream reconnects with Last-Event-ID and, over the two
   connections, sees every event of the run exactly once; the thread's history holds
   each message once (a run's messages join it only with its completion).
2. A tool call waits for approval, every worker is gone, and an operator resolves it:
   the run waits, queued, and completes when a worker starts.
"""

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from event_stream import parse_events
from fault_helpers import Cluster, HeldServer, lanes_reaching_localhost, running_cluster
from process_helpers import auth, wait_until

WAIT_SECONDS = 60.0


@pytest.fixture
def held() -> Iterator[HeldServer]:
    server = HeldServer()
    yield server
    server.close()


@pytest.fixture
def cluster(tmp_path: Path, make_database: Callable[[], str]) -> Iterator[Cluster]:
    """Fast lanes whose `analysis` lane lets http_get reach 127.0.0.1."""
    path = lanes_reaching_localhost(tmp_path)
    with running_cluster(tmp_path, make_database(), path) as cluster:
        yield cluster


def _client(cluster: Cluster, role: str = "operator") -> httpx.Client:
    return httpx.Client(
        base_url=cluster.api.base_url, headers=auth(cluster.token(role)), timeout=30.0
    )


def _start_run(client: httpx.Client, agent_type: str, message: str) -> tuple[str, str]:
    """A new thread and a run in it; the thread's and the run's ids. Only the POST's
    first event is read: the run goes on without the client."""
    thread = client.post("/api/v1/threads", json={"agent_type": agent_type})
    assert thread.status_code == 201, thread.text
    thread_id = thread.json()["thread"]["id"]
    with client.stream(
        "POST", f"/api/v1/threads/{thread_id}/runs", json={"message": message}
    ) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data:"):
                first = json.loads(line.removeprefix("data:"))
                assert first["type"] == "run_created"
                return thread_id, first["run_id"]
    raise AssertionError("the run's stream ended before run_created")


class StreamReader(threading.Thread):
    """Reads one run's stream on a thread of its own until it ends or is closed."""

    def __init__(self, cluster: Cluster, run_id: str, last_event_id: str | None) -> None:
        super().__init__(daemon=True)
        self.client = _client(cluster, "viewer")
        self.path = f"/api/v1/runs/{run_id}/stream"
        self.headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        self.text = ""
        self.response: httpx.Response | None = None

    def run(self) -> None:
        try:
            with self.client.stream("GET", self.path, headers=self.headers) as response:
                self.response = response
                for chunk in response.iter_text():
                    self.text += chunk
        except Exception:  # closed from the test's thread, mid-read
            return

    def ids(self) -> list[int]:
        return [int(event["id"]) for event in parse_events(self.text) if event.get("id")]

    def close(self) -> None:
        self.client.close()
        if self.ident is not None:
            self.join(10)


def _run(client: httpx.Client, run_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/runs/{run_id}")
    assert response.status_code == 200, response.text
    return response.json()


def _traces(cluster: Cluster, run_id: str) -> list[dict[str, Any]]:
    return cluster.sql(
        "SELECT seq, kind, actor FROM trace_events WHERE task_id = $1::uuid ORDER BY seq", run_id
    )


@pytest.fixture
def client(cluster: Cluster) -> Iterator[httpx.Client]:
    with _client(cluster) as operator:
        yield operator


def test_a_worker_killed_mid_run_loses_no_event_and_writes_no_message_twice(
    cluster: Cluster, client: httpx.Client, held: HeldServer
) -> None:
    cluster.dispatcher()
    first = cluster.worker("w1", executor="sdk")
    message = (
        "checkout is down since noon, look at its status page\n"
        f"#call http_get {json.dumps({'url': held.url})}"
    )
    thread_id, run_id = _start_run(client, "it-router", message)
    stream = StreamReader(cluster, run_id, None)
    stream.start()
    assert held.arrived.wait(WAIT_SECONDS), "the specialist never called http_get"
    # Killed at once, while its call is held (http_get gives up after 10 s, and a loaded
    # machine can take that long to catch a stream up). Nothing is written after the
    # kill, so the stream catches up with a ledger that no longer grows; what it has
    # read then is what the client saw before it lost the connection.
    first.kill()
    wait_until(
        lambda: stream.ids() and stream.ids()[-1] == _traces(cluster, run_id)[-1]["seq"],
        WAIT_SECONDS,
        "the stream to show every event written before the kill",
    )
    seen = stream.ids()
    stream.close()

    cluster.worker("w2", executor="sdk")
    wait_until(
        lambda: _run(client, run_id)["run"]["status"] == "completed",
        WAIT_SECONDS,
        "the run to complete on the second worker",
    )
    traces = _traces(cluster, run_id)
    assert "lease_expired" in [t["kind"] for t in traces] or any(t["actor"] == "w2" for t in traces)
    resumed = StreamReader(cluster, run_id, str(seen[-1]))
    resumed.run()  # the run is over: the stream replays what was missed, then `done`
    resumed.close()
    assert parse_events(resumed.text)[-1]["event"] == "done"
    # Every event once over the two connections, in order.
    assert seen + resumed.ids() == [t["seq"] for t in traces]

    messages = client.get(f"/api/v1/threads/{thread_id}").json()["messages"]
    roles = [m["role"] for m in messages]
    assert roles.count("user") == 1 and roles.count("assistant") == 1, roles
    assert roles.count("handoff") == 1, roles
    calls = [m for m in messages if m["role"] == "tool_call"]
    assert [c["data"].get("tool") or c["content"] for c in calls].count("http_get") <= 1
    assert len([m for m in messages if m["role"] == "tool_result"]) == len(calls) == 1


def test_an_approval_resolved_with_no_worker_alive_resumes_when_one_starts(
    cluster: Cluster, client: httpx.Client
) -> None:
    cluster.dispatcher()
    worker = cluster.worker("w1", executor="sdk")
    proposal = {"summary": "raise nginx worker_connections", "change": "worker_connections 4096"}
    message = f"plan the nginx config change\n#call propose_change {json.dumps(proposal)}"
    thread_id, run_id = _start_run(client, "change-planner", message)
    run = wait_until(
        lambda: (detail := _run(client, run_id))["approval_requests"] and detail,
        WAIT_SECONDS,
        "the run to wait for approval",
    )
    assert run["run"]["status"] == "awaiting_approval"
    [request] = run["approval_requests"]
    assert worker.terminate() == 0  # no worker is left

    resolved = client.post(
        f"/api/v1/approvals/{request['id']}/resolve",
        json={"status": "approved", "reason": "window agreed"},
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["approval_request"]["status"] == "approved"
    waiting = _run(client, run_id)
    assert waiting["run"]["status"] == "queued" and not waiting["approval_requests"]

    cluster.worker("w2", executor="sdk")
    wait_until(
        lambda: _run(client, run_id)["run"]["status"] == "completed",
        WAIT_SECONDS,
        "the approved run to complete once a worker started",
    )
    messages = client.get(f"/api/v1/threads/{thread_id}").json()["messages"]
    [result] = [m for m in messages if m["role"] == "tool_result"]
    assert "change_proposal.json" in result["content"]
