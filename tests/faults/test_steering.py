"""Steering a ticket's agent while it works, against real processes: `workbench api`, a
dispatcher and `sdk` workers running the real Agents SDK with the offline model.

The agent's run is held inside an `http_get` call (a local server holds the request)
while a person adds a note to the ticket:
1. The note waits, `pending`, until the tool call returns; the next model turn's input
   holds it, the agent acknowledges it with `ack_steering` and goes on with its task:
   pending -> delivered -> acknowledged. A note the agent itself writes never steers.
2. The worker is killed while the call is held and the note is sent with no worker
   alive: the next attempt's first model turn gets it, once, and acknowledges it.
"""

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fault_helpers import Cluster, HeldServer, lanes_reaching_localhost, running_cluster
from process_helpers import auth, get_traces, only, wait_until

WAIT_SECONDS = 60.0
NOTE = "Leave the firewall alone: the partner changed their MX record."


@pytest.fixture
def held() -> Iterator[HeldServer]:
    server = HeldServer()
    yield server
    server.close()


@pytest.fixture
def cluster(tmp_path: Path, make_database: Callable[[], str]) -> Iterator[Cluster]:
    with running_cluster(tmp_path, make_database(), lanes_reaching_localhost(tmp_path)) as cluster:
        yield cluster


@pytest.fixture
def client(cluster: Cluster) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=cluster.api.base_url, headers=auth(cluster.token()), timeout=30.0
    ) as client:
        yield client


def _assign(client: httpx.Client, held: HeldServer) -> tuple[str, dict[str, Any]]:
    ticket = client.post("/api/tickets", json={"title": "Partner mail bounces"})
    assert ticket.status_code == 201, ticket.text
    ticket_id = ticket.json()["ticket"]["id"]
    prompt = f"Check the partner's status page.\n#call http_get {json.dumps({'url': held.url})}"
    assigned = client.post(f"/api/tickets/{ticket_id}/assign-agent", json={"prompt": prompt})
    assert assigned.status_code == 201, assigned.text
    return ticket_id, assigned.json()["agent"]


def _note(client: httpx.Client, ticket_id: str, source: str, body: str) -> None:
    response = client.post(
        f"/api/tickets/{ticket_id}/notes", json={"body": body, "source": source, "author": "dana"}
    )
    assert response.status_code == 201, response.text


def _steering(client: httpx.Client, agent_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/agents/{agent_id}/steering")
    assert response.status_code == 200, response.text
    return response.json()["events"]


def _acknowledged(client: httpx.Client, agent_id: str) -> dict[str, Any] | None:
    events = _steering(client, agent_id)
    return events[0] if events and events[0]["state"] == "acknowledged" else None


def _task(client: httpx.Client, task_id: str) -> dict[str, Any]:
    return client.get(f"/api/agents/tasks/{task_id}").json()["task"]


def _model_inputs(traces: list[dict[str, Any]]) -> list[str]:
    """Each model turn's input as the SDK gave it to the model, in order."""
    return [json.dumps(event["data"].get("input")) for event in only(traces, "span.generation")]


def test_a_note_reaches_the_running_agent_at_its_next_turn_and_is_acknowledged(
    cluster: Cluster, client: httpx.Client, held: HeldServer
) -> None:
    cluster.dispatcher()
    cluster.worker("w1", executor="sdk")
    ticket_id, agent = _assign(client, held)
    assert held.arrived.wait(WAIT_SECONDS), "the agent never called http_get"

    _note(client, ticket_id, "agent", "Progress: reading the status page.")
    _note(client, ticket_id, "dashboard", NOTE)
    [event] = _steering(client, agent["id"])  # the agent's own note did not steer
    assert event["state"] == "pending" and event["body"] == NOTE
    held.released.set()

    acknowledged = wait_until(
        lambda: _acknowledged(client, agent["id"]), WAIT_SECONDS, "the agent to acknowledge"
    )
    assert acknowledged["deliveries"] == 1 and acknowledged["delivered_attempt"] == 1
    assert acknowledged["acknowledged_by"] == "w1"
    task = wait_until(
        lambda: (task := _task(client, agent["task_id"]))["status"] == "succeeded" and task,
        WAIT_SECONDS,
        "the agent's task to succeed",
    )
    traces = get_traces(client, cluster.token(), task["id"])
    inputs = _model_inputs(traces)
    # Not in the turn that called http_get; in the turn after it, and kept after that.
    assert NOTE not in inputs[0] and all(NOTE in later for later in inputs[1:]), inputs
    kinds = [t["kind"] for t in traces]
    assert kinds.index("steering_received") < kinds.index("steering_delivered")
    assert kinds.index("steering_delivered") < kinds.index("steering_acknowledged")
    # The agent acknowledged the note and went on to the end of its task.
    calls = [
        (t["data"]["name"], str(t["data"].get("output"))) for t in only(traces, "span.function")
    ]
    assert [name for name, _ in calls] == ["http_get", "ack_steering"]
    assert calls[1][1] == f"acknowledged 1 steering note(s): {event['id']}"


def test_a_note_sent_while_the_worker_is_dead_reaches_the_next_attempt_once(
    cluster: Cluster, client: httpx.Client, held: HeldServer
) -> None:
    cluster.dispatcher()
    first = cluster.worker("w1", executor="sdk")
    ticket_id, agent = _assign(client, held)
    assert held.arrived.wait(WAIT_SECONDS), "the agent never called http_get"
    first.kill()

    _note(client, ticket_id, "requester", NOTE)
    [event] = _steering(client, agent["id"])
    assert event["state"] == "pending"
    cluster.worker("w2", executor="sdk")

    acknowledged = wait_until(
        lambda: _acknowledged(client, agent["id"]), WAIT_SECONDS, "the next attempt to acknowledge"
    )
    assert acknowledged["deliveries"] == 1 and acknowledged["delivered_attempt"] == 2
    assert acknowledged["acknowledged_by"] == "w2"
    wait_until(
        lambda: _task(client, agent["task_id"])["status"] == "succeeded",
        WAIT_SECONDS,
        "the agent's task to succeed on the second worker",
    )
    traces = get_traces(client, cluster.token(), agent["task_id"])
    [delivered] = only(traces, "steering_delivered")
    assert delivered["actor"] == "w2" and delivered["data"]["attempt"] == 2
