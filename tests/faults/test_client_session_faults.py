"""A client-side session against real processes: `workbench api`, a dispatcher and `sdk`
workers (the SDK's Model interface on the offline model).

A worker is killed with SIGKILL while it executes the session's tool call (an
`http_get` a local server holds open). Another worker, a fresh process whose cache
has none of the session, retries the call, then answers the next turn from a context
it rebuilt from the ledger: the turn sees the call's result, and the history holds
each step's messages once.
"""

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fault_helpers import Cluster, HeldServer, lanes_reaching_localhost, running_cluster
from process_helpers import auth, wait_until

WAIT_SECONDS = 60.0
SESSIONS = "/api/v1/client-sessions"


@pytest.fixture
def held() -> Iterator[HeldServer]:
    server = HeldServer()
    yield server
    server.close()


@pytest.fixture
def cluster(tmp_path: Path, make_database: Callable[[], str]) -> Iterator[Cluster]:
    path = lanes_reaching_localhost(tmp_path)
    # A short wait, so a step's request answers 202 while its worker is held.
    with running_cluster(
        tmp_path, make_database(), path, WORKBENCH_PROCESS_WAIT_SECONDS="2"
    ) as cluster:
        yield cluster


def _session(client: httpx.Client, session_id: str) -> dict[str, Any]:
    response = client.get(f"{SESSIONS}/{session_id}")
    assert response.status_code == 200, response.text
    return response.json()


def test_a_tool_call_whose_worker_dies_is_retried_and_the_next_turn_sees_its_result(
    cluster: Cluster, held: HeldServer
) -> None:
    cluster.dispatcher()
    first = cluster.worker("w1", executor="sdk")
    client = httpx.Client(
        base_url=cluster.api.base_url, headers=auth(cluster.token()), timeout=30.0
    )
    with client:
        created = client.post(SESSIONS, json={"agent_type": "incident-analyst"})
        assert created.status_code == 201, created.text
        session_id = created.json()["id"]
        url = f"{SESSIONS}/{session_id}"
        directive = f"#call http_get {json.dumps({'url': held.url})}"
        asked = client.post(
            url + "/inference", json={"model": "offline", "input": f"Is checkout up?\n{directive}"}
        )
        assert asked.status_code in (200, 202), asked.text
        step = wait_until(
            lambda: (s := _session(client, session_id)["steps"][0])["output"] and s,
            WAIT_SECONDS,
            "the first turn to be answered",
        )
        turn = step["output"]
        [call] = turn["tool_calls"]

        answers: list[httpx.Response] = []
        posting = threading.Thread(
            target=lambda: answers.append(client.post(url + "/tool-calls", json=call)),
            daemon=True,
        )
        posting.start()
        assert held.arrived.wait(WAIT_SECONDS), "the worker never called http_get"
        first.kill()
        posting.join(WAIT_SECONDS)
        [accepted] = answers
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["status"] == "running"

        second = cluster.worker("w2", executor="sdk")
        step = wait_until(
            lambda: (s := _session(client, session_id)["steps"][1])["status"] == "completed" and s,
            WAIT_SECONDS,
            "the tool call to complete on the second worker",
        )
        assert json.loads(step["output"]["output"]).startswith("HTTP 200")
        traces = cluster.sql(
            "SELECT kind, actor FROM trace_events WHERE task_id = $1::uuid ORDER BY seq",
            step["task_id"],
        )
        assert "lease_expired" in [t["kind"] for t in traces]
        assert any(t["actor"] == "w2" for t in traces)

        summary = client.post(
            url + "/inference",
            json={
                "model": "offline",
                "input": "Summarise it",
                "previous_response_id": turn["response_id"],
            },
        )
        assert summary.status_code == 200, summary.text
        assert summary.json()["output_text"] == (
            "offline model: completed 1 tool call(s)\n"
            "- http_get: HTTP 200\ncheckout: 3 of 4 pods crash-looping\n"
            "task: Summarise it"
        )
        # w2 never answered the first turn: it rebuilt the context from the ledger.
        contexts = [
            json.loads(line)
            for line in second.output().splitlines()
            if '"event":"client_session_context"' in line
        ]
        assert [c["source"] for c in contexts] == ["ledger"]

        messages = client.get(f"/api/v1/threads/{session_id}").json()["messages"]
        assert [m["role"] for m in messages] == [
            "user",
            "tool_call",
            "tool_call",
            "tool_result",
            "user",
            "assistant",
        ]
        done = client.post(
            url + "/complete", json={"summary": "checkout degraded", "confidence": 0.9}
        )
        assert done.status_code == 200, done.text
