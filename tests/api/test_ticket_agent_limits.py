"""What the tenant's agent settings do to agents on tickets, with no worker running:
max_concurrent_agents counts them with spawned agents (an assign or a wake past it is
409, a restart only replaces one), `auto_assign` on ticket creation starts one only for a
class routed to a profile with `auto_assign`, and a task carries its profile's timeout
for the worker to apply."""

import pytest

from worker.executors import run_timeout

TICKETS = "/api/tickets"
AGENTS = "/api/agents"
TRIAGE = {"lane": "analysis", "timeout_minutes": 2, "auto_assign": True}


async def _settings(http, auth, **settings) -> None:
    body = {"profiles": {"triage": TRIAGE, "manual": {"lane": "analysis"}}, **settings}
    stored = await http.put(f"{AGENTS}/config", json=body, headers=auth())
    assert stored.status_code == 200, stored.text


async def _ticket(http, auth, **fields) -> dict:
    body = {"title": "VPN drops every hour", "description": "Since Monday.", **fields}
    response = await http.post(TICKETS, json=body, headers=auth())
    assert response.status_code == 201, response.text
    return response.json()


async def _assign(http, auth, ticket_id: str):
    return await http.post(f"{TICKETS}/{ticket_id}/assign-agent", json={}, headers=auth())


def _limit_refusal(response) -> dict:
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == "agent_limit_reached"
    return error


async def test_the_limit_counts_ticket_agents_with_spawned_ones(http, auth) -> None:
    await _settings(http, auth, max_concurrent_agents=2)
    first = await _assign(http, auth, (await _ticket(http, auth))["ticket"]["id"])
    assert first.status_code == 201, first.text
    spawned = await http.post(
        f"{AGENTS}/spawn", json={"profile": "manual", "prompt": "Look."}, headers=auth()
    )
    assert spawned.status_code == 201, spawned.text

    waiting = (await _ticket(http, auth))["ticket"]
    error = _limit_refusal(await _assign(http, auth, waiting["id"]))
    assert (error["details"]["live_agents"], error["details"]["max_concurrent_agents"]) == (2, 2)
    detail = (await http.get(f"{TICKETS}/{waiting['id']}", headers=auth())).json()
    assert detail["agent"]["agent_id"] is None

    # A restart replaces the agent it stops: allowed at the limit.
    agent_id = first.json()["agent"]["id"]
    restarted = await http.post(f"{AGENTS}/{agent_id}/restart", headers=auth())
    assert restarted.status_code == 200, restarted.text

    # One finished frees a place.
    task_id = restarted.json()["task"]["id"]
    cancelled = await http.post(f"{AGENTS}/tasks/{task_id}/cancel", json={}, headers=auth())
    assert cancelled.status_code == 200, cancelled.text
    assert (await _assign(http, auth, waiting["id"])).status_code == 201


async def test_a_wake_past_the_limit_is_refused(http, auth) -> None:
    await _settings(http, auth, max_concurrent_agents=1)
    assigned = await _assign(http, auth, (await _ticket(http, auth))["ticket"]["id"])
    agent_id, task_id = assigned.json()["agent"]["id"], assigned.json()["task"]["id"]
    cancelled = await http.post(f"{AGENTS}/tasks/{task_id}/cancel", json={}, headers=auth())
    assert cancelled.status_code == 200, cancelled.text
    other = await _assign(http, auth, (await _ticket(http, auth))["ticket"]["id"])
    assert other.status_code == 201, other.text

    _limit_refusal(await http.post(f"{AGENTS}/{agent_id}/wake", headers=auth()))
    agent = (await http.get(f"{AGENTS}/{agent_id}", headers=auth())).json()["agent"]
    assert (agent["state"], agent["task_id"]) == ("assigned", task_id)


async def test_auto_assign_starts_an_agent_only_on_a_route_that_auto_assigns(http, auth) -> None:
    await _settings(http, auth, route_assignments={"Incident": "triage", "Change": "manual"})
    created = await _ticket(http, auth, auto_assign=True)
    outcome, ticket = created["auto_assign"], created["ticket"]
    assert outcome["assigned"] is True and outcome["profile"] == "triage"
    assert ticket["agent_id"] == outcome["agent_id"]
    agent = (await http.get(f"{AGENTS}/{outcome['agent_id']}", headers=auth())).json()["agent"]
    assert (agent["profile"], agent["status"]) == ("triage", "queued")
    task = (await http.get(f"{AGENTS}/tasks/{agent['task_id']}", headers=auth())).json()["task"]
    assert task["scope"]["agent_profile"]["timeout_minutes"] == TRIAGE["timeout_minutes"]

    manual = await _ticket(http, auth, auto_assign=True, ticket_class="Change")
    assert manual["auto_assign"]["assigned"] is False
    assert "Change" in manual["auto_assign"]["reason"]
    assert manual["ticket"]["agent_id"] is None
    # Without the flag nothing is tried, and the answer says nothing about it.
    plain = await _ticket(http, auth)
    assert plain["auto_assign"] is None and plain["ticket"]["agent_id"] is None


async def test_auto_assign_past_the_limit_leaves_a_note(http, auth) -> None:
    await _settings(http, auth, route_assignments={"Incident": "triage"}, max_concurrent_agents=1)
    assert (await _ticket(http, auth, auto_assign=True))["auto_assign"]["assigned"] is True
    refused = await _ticket(http, auth, auto_assign=True)
    assert refused["auto_assign"]["assigned"] is False
    assert "max_concurrent_agents" in refused["auto_assign"]["reason"]
    ticket_id = refused["ticket"]["id"]
    notes = (await http.get(f"{TICKETS}/{ticket_id}/notes", headers=auth())).json()["notes"]
    assert any(note["body"].startswith("auto-assign skipped") for note in notes)


@pytest.mark.parametrize(
    ("scope", "lane_seconds", "expected"),
    [
        ({}, 300.0, 300.0),
        ({"agent_profile": {"timeout_minutes": 2}}, 300.0, 120.0),
        ({"agent_profile": {"timeout_minutes": 30}}, 300.0, 300.0),
        ({"agent_profile": {"timeout_minutes": None}}, 300.0, 300.0),
    ],
)
def test_a_run_stops_at_the_shorter_of_lane_and_profile_timeout(
    scope, lane_seconds, expected
) -> None:
    assert run_timeout(scope, lane_seconds) == expected
