"""A ticket's agent passing a change gate, against real processes: `workbench api`, a
dispatcher and an `sdk` worker running the real Agents SDK with the offline model.

1. The agent asks for a change and waits in its run; a person steers it meanwhile; a
   different person approves; the same run goes on: it acknowledges the note, writes the
   target under the approved change, which is then completed, and the task succeeds.
   The person who assigned the agent may not approve its change.
2. An agent that writes before its change is approved is refused; the approval wakes
   it, and its new task finds the change it asked for (not a second one) and writes.
"""

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fault_helpers import Cluster, running_cluster
from process_helpers import auth, fast_lanes, get_traces, only, wait_until

WAIT_SECONDS = 60.0
TARGET = "dns/partner.example"
ASK = {
    "action": "update_spf_record",
    "target": TARGET,
    "reason": "the partner's SPF record rejects our relay",
    "risk_level": "medium",
}
WRITE = {"target": TARGET, "content": "v=spf1 include:relay.example ~all"}
NOTE = "Keep ~all, not -all: the partner asked for a soft fail."


@pytest.fixture
def cluster(tmp_path: Path, make_database: Callable[[], str]) -> Iterator[Cluster]:
    with running_cluster(tmp_path, make_database(), fast_lanes(tmp_path)) as cluster:
        cluster.dispatcher()
        cluster.worker("w1", executor="sdk")
        yield cluster


def _client(cluster: Cluster, subject: str) -> httpx.Client:
    headers = auth(cluster.token(subject=subject))
    return httpx.Client(base_url=cluster.api.base_url, headers=headers, timeout=30.0)


@pytest.fixture
def fran(cluster: Cluster) -> Iterator[httpx.Client]:
    with _client(cluster, "fran") as client:
        yield client


@pytest.fixture
def bob(cluster: Cluster) -> Iterator[httpx.Client]:
    with _client(cluster, "bob") as client:
        yield client


def _assign(client: httpx.Client, *directives: str) -> tuple[str, dict[str, Any]]:
    ticket = client.post("/api/tickets", json={"title": "Partner mail bounces"})
    assert ticket.status_code == 201, ticket.text
    ticket_id = ticket.json()["ticket"]["id"]
    prompt = "\n".join(["Fix the partner's SPF record.", *directives])
    assigned = client.post(f"/api/tickets/{ticket_id}/assign-agent", json={"prompt": prompt})
    assert assigned.status_code == 201, assigned.text
    return ticket_id, assigned.json()["agent"]


def _changes(client: httpx.Client, ticket_id: str) -> list[dict[str, Any]]:
    detail = client.get(f"/api/tickets/{ticket_id}")
    assert detail.status_code == 200, detail.text
    return detail.json()["change_requests"]


def _task(client: httpx.Client, task_id: str) -> dict[str, Any]:
    return client.get(f"/api/agents/tasks/{task_id}").json()["task"]


def _calls(client: httpx.Client, cluster: Cluster, task_id: str) -> list[tuple[str, str]]:
    traces = get_traces(client, cluster.token(), task_id)
    spans = only(traces, "span.function")
    return [(span["data"]["name"], str(span["data"].get("output"))) for span in spans]


def _succeeded(client: httpx.Client, task_id: str) -> dict[str, Any]:
    return wait_until(
        lambda: (task := _task(client, task_id))["status"] == "succeeded" and task,
        WAIT_SECONDS,
        "the agent's task to succeed",
    )


def test_the_agent_waits_for_approval_is_steered_meanwhile_and_writes_once_approved(
    cluster: Cluster, fran: httpx.Client, bob: httpx.Client
) -> None:
    ticket_id, agent = _assign(
        fran,
        f"#call request_change {json.dumps(ASK)}",
        '#call wait_for_change {"wait_seconds": 60}',
        f"#call write_target {json.dumps(WRITE)}",
    )
    [change] = wait_until(lambda: _changes(fran, ticket_id), WAIT_SECONDS, "the change request")
    assert change["status"] == "pending" and change["requested_by"] == f"agent:{agent['id']}"
    assert _task(fran, agent["task_id"])["status"] == "running"  # waiting in its run

    note = fran.post(
        f"/api/tickets/{ticket_id}/notes",
        json={"body": NOTE, "source": "dashboard", "author": "fran"},
    )
    assert note.status_code == 201, note.text
    # Fran put the agent to work: she does not review what it asks to do.
    own = fran.post(f"/api/changes/{change['id']}/approve", json={})
    assert own.status_code == 403, own.text
    assert own.json()["error"]["details"]["assigned_by"] == "fran"
    approved = bob.post(f"/api/changes/{change['id']}/approve", json={"reason": "looks right"})
    assert approved.status_code == 200, approved.text

    task = _succeeded(fran, agent["task_id"])
    calls = _calls(fran, cluster, task["id"])
    assert [name for name, _ in calls] == [
        "request_change",
        "wait_for_change",
        "ack_steering",
        "write_target",
    ]
    assert "is approved, decided by bob" in calls[1][1]
    assert "the change is completed" in calls[3][1]
    [done] = _changes(fran, ticket_id)
    assert done["status"] == "completed" and done["completed_by"] == f"agent:{agent['id']}"
    artifacts = fran.get(f"/api/agents/tasks/{task['id']}/artifacts").json()["artifacts"]
    assert f"change-{change['id']}.txt" in [a["name"] for a in artifacts]
    [event] = fran.get(f"/api/agents/{agent['id']}/steering").json()["events"]
    assert event["state"] == "acknowledged"
    # One run, no wake: it was still running when the change was approved.
    tasks = fran.get(f"/api/agents/{agent['id']}").json()["tasks"]
    assert [t["reason"] for t in tasks] == ["assigned"]


def test_a_write_before_approval_is_refused_and_the_approval_wakes_the_agent(
    cluster: Cluster, fran: httpx.Client, bob: httpx.Client
) -> None:
    ticket_id, agent = _assign(
        fran,
        f"#call request_change {json.dumps(ASK)}",
        f"#call write_target {json.dumps(WRITE)}",
    )
    first = _succeeded(fran, agent["task_id"])
    calls = _calls(fran, cluster, first["id"])
    assert [name for name, _ in calls] == ["request_change", "write_target"]
    assert calls[1][1].startswith("refused: no approved change")
    [change] = _changes(fran, ticket_id)
    assert change["status"] == "pending"

    approved = bob.post(f"/api/changes/{change['id']}/approve", json={})
    assert approved.status_code == 200, approved.text
    woken = wait_until(
        lambda: (
            (a := fran.get(f"/api/agents/{agent['id']}").json())["agent"]["task_id"]
            != agent["task_id"]
            and a
        ),
        WAIT_SECONDS,
        "the approval to wake the agent",
    )
    assert [t["reason"] for t in woken["tasks"]] == ["change_approved", "assigned"]
    second = _succeeded(fran, woken["agent"]["task_id"])
    calls = _calls(fran, cluster, second["id"])
    assert calls[0][1].startswith("already requested: ")  # the same change, not a new one
    assert "the change is completed" in calls[1][1]
    [done] = _changes(fran, ticket_id)
    assert done["status"] == "completed"

    # Woken once more, it replays its plan: what it carried out is not asked for again.
    again = fran.post(f"/api/agents/{agent['id']}/wake", json={"reason": "check the record"})
    assert again.status_code == 200, again.text
    third = _succeeded(fran, again.json()["task"]["id"])
    calls = _calls(fran, cluster, third["id"])
    assert calls[0][1].startswith("already requested: ") and "is completed" in calls[0][1]
    assert [change["status"] for change in _changes(fran, ticket_id)] == ["completed"]
