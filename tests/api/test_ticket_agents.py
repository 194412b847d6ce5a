"""Agents on tickets through the API, with no worker running (the runs themselves are in
tests/faults/test_steering.py): assign through the policy, the reads, stop, wake,
restart and unassign with their notes and audit records, which notes steer and which
never do, and nothing of another tenant's."""

from uuid import UUID, uuid4

import httpx

from ledger.fencing import Fence

TICKETS = "/api/tickets"
AGENTS = "/api/agents"


async def _ticket(http: httpx.AsyncClient, headers: dict[str, str]) -> dict:
    body = {"title": "Mail gateway rejects partner domain", "description": "Since 09:00."}
    response = await http.post(TICKETS, json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()["ticket"]


async def _assign(http: httpx.AsyncClient, headers: dict[str, str], ticket: dict, **body) -> dict:
    response = await http.post(f"{TICKETS}/{ticket['id']}/assign-agent", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def _note(
    http, headers, ticket: dict, source: str, body: str = "Check the SPF record."
) -> None:
    response = await http.post(
        f"{TICKETS}/{ticket['id']}/notes",
        json={"body": body, "source": source, "author": "dana"},
        headers=headers,
    )
    assert response.status_code == 201, response.text


async def _steering(http, headers, agent_id: str) -> list[dict]:
    response = await http.get(f"{AGENTS}/{agent_id}/steering", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["events"]


async def test_assign_makes_a_governed_task_linked_to_the_ticket(http, auth, pool, tenant) -> None:
    ticket = await _ticket(http, auth())
    assigned = await _assign(http, auth(), ticket, model="gpt-4o-mini", prompt="Find the cause.")
    agent, task = assigned["agent"], assigned["task"]
    assert agent["state"] == "assigned" and agent["status"] == task["status"] == "queued"
    assert agent["model"] == "gpt-4o-mini" and agent["ticket_id"] == ticket["id"]
    assert task["scope"]["ticket_agent_id"] == agent["id"]
    assert task["policy_verdict"]["decision"] == "allow"
    assert "Find the cause." in task["instructions"]

    detail = (await http.get(f"{TICKETS}/{ticket['id']}", headers=auth("viewer"))).json()
    assert detail["agent"] == {
        "agent_id": agent["id"],
        "task_id": task["id"],
        "task_status": "queued",
    }
    context = (await http.get(f"{TICKETS}/{ticket['id']}/context", headers=auth("viewer"))).json()
    assert task["id"] in [recent["id"] for recent in context["context"]["recent_tasks"]]
    again = await http.post(f"{TICKETS}/{ticket['id']}/assign-agent", json={}, headers=auth())
    assert again.status_code == 409, again.text
    assert again.json()["error"]["details"]["agent_id"] == agent["id"]

    one = (await http.get(f"{AGENTS}/{agent['id']}", headers=auth("viewer"))).json()
    assert [t["id"] for t in one["tasks"]] == [task["id"]]
    assert [entry["action"] for entry in one["audit"]] == ["ticket_agent_assigned"]
    logs = (await http.get(f"{AGENTS}/{agent['id']}/logs", headers=auth("viewer"))).json()
    assert [e["kind"] for e in logs["events"]][:2] == ["created", "policy_verdict"]


async def test_list_filters_active_and_stats(http, auth) -> None:
    first, second = await _ticket(http, auth()), await _ticket(http, auth())
    a = (await _assign(http, auth(), first))["agent"]
    b = (await _assign(http, auth(), second))["agent"]
    stopped = await http.post(
        f"{AGENTS}/{b['id']}/stop", json={"reason": "wrong ticket"}, headers=auth()
    )
    assert stopped.status_code == 200 and stopped.json()["agent"]["status"] == "stopped"

    listed = (await http.get(AGENTS, headers=auth("viewer"))).json()["agents"]
    assert [agent["id"] for agent in listed] == [b["id"], a["id"]]
    by_ticket = (await http.get(AGENTS, params={"ticket_id": first["id"]}, headers=auth())).json()
    assert [agent["id"] for agent in by_ticket["agents"]] == [a["id"]]
    queued = (await http.get(AGENTS, params={"status": "queued"}, headers=auth())).json()
    assert [agent["id"] for agent in queued["agents"]] == [a["id"]]
    bad = await http.get(AGENTS, params={"status": "sleeping"}, headers=auth())
    assert bad.status_code == 400, bad.text
    active = (await http.get(f"{AGENTS}/active", headers=auth("viewer"))).json()["agents"]
    assert [agent["id"] for agent in active] == [a["id"]]
    stats = (await http.get(f"{AGENTS}/stats", headers=auth("viewer"))).json()["stats"]
    assert stats["total"] == 2 and stats["active"] == 1
    assert stats["by_status"] == {"queued": 1, "stopped": 1}
    assert stats["finished_runs"] == 0 and stats["average_duration_seconds"] is None


async def test_stop_cancels_the_task_and_expires_open_steering(http, auth) -> None:
    ticket = await _ticket(http, auth())
    assigned = await _assign(http, auth(), ticket)
    agent_id, task_id = assigned["agent"]["id"], assigned["task"]["id"]
    await _note(http, auth(), ticket, "dashboard")
    [event] = await _steering(http, auth("viewer"), agent_id)
    assert event["state"] == "pending" and event["body"] == "Check the SPF record."

    stopped = await http.post(f"{AGENTS}/{agent_id}/stop", headers=auth())
    assert stopped.status_code == 200, stopped.text
    task = (await http.get(f"/api/agents/tasks/{task_id}", headers=auth())).json()["task"]
    assert task["status"] == "cancelled"
    [event] = await _steering(http, auth("viewer"), agent_id)
    assert event["state"] == "expired" and event["closed_reason"] == "agent_stopped"
    detail = (await http.get(f"{TICKETS}/{ticket['id']}", headers=auth())).json()
    assert detail["agent"]["agent_id"] is None
    again = await http.post(f"{AGENTS}/{agent_id}/stop", headers=auth())
    assert again.status_code == 409, again.text
    wake = await http.post(f"{AGENTS}/{agent_id}/wake", headers=auth())
    assert wake.status_code == 409, wake.text


async def test_only_notes_from_people_and_providers_steer(http, auth) -> None:
    ticket = await _ticket(http, auth())
    agent_id = (await _assign(http, auth(), ticket))["agent"]["id"]
    for source in ("agent", "system"):
        await _note(http, auth(), ticket, source, body=f"progress from {source}")
    assert await _steering(http, auth(), agent_id) == []
    for source in ("dashboard", "provider", "requester", "itop"):
        await _note(http, auth(), ticket, source, body=f"from {source}")
    events = await _steering(http, auth(), agent_id)
    assert [event["source"] for event in events] == ["itop", "requester", "provider", "dashboard"]
    assert {event["state"] for event in events} == {"pending"}


async def test_restart_hands_open_steering_to_the_replacement(http, auth) -> None:
    ticket = await _ticket(http, auth())
    old = (await _assign(http, auth(), ticket, prompt="Look at the logs."))["agent"]
    await _note(http, auth(), ticket, "dashboard")
    restarted = await http.post(
        f"{AGENTS}/{old['id']}/restart", json={"reason": "stuck"}, headers=auth()
    )
    assert restarted.status_code == 200, restarted.text
    new = restarted.json()["agent"]
    assert new["replaces_agent_id"] == old["id"] and new["prompt"] == "Look at the logs."
    [original] = await _steering(http, auth(), old["id"])
    [copy] = await _steering(http, auth(), new["id"])
    assert original["state"] == "superseded" and original["superseded_by"] == copy["id"]
    assert copy["state"] == "pending" and copy["body"] == original["body"]
    gone = (await http.get(f"{AGENTS}/{old['id']}", headers=auth())).json()["agent"]
    assert gone["status"] == "stopped" and gone["stop_reason"] == "restarted"
    detail = (await http.get(f"{TICKETS}/{ticket['id']}", headers=auth())).json()
    assert detail["agent"]["agent_id"] == new["id"]


async def test_unassign_and_wake(http, auth, pool) -> None:
    ticket = await _ticket(http, auth())
    assigned = await _assign(http, auth(), ticket)
    agent_id, task_id = assigned["agent"]["id"], assigned["task"]["id"]
    busy = await http.post(f"{AGENTS}/{agent_id}/wake", headers=auth())
    assert busy.status_code == 409, busy.text
    # Its task finished (cancelled by an operator): a wake gives it a new one.
    cancelled = await http.post(f"/api/agents/tasks/{task_id}/cancel", json={}, headers=auth())
    assert cancelled.status_code == 200, cancelled.text
    woken = await http.post(f"{AGENTS}/{agent_id}/wake", json={"reason": "retry"}, headers=auth())
    assert woken.status_code == 200, woken.text
    assert woken.json()["agent"]["task_id"] == woken.json()["task"]["id"] != task_id
    one = (await http.get(f"{AGENTS}/{agent_id}", headers=auth())).json()
    assert [t["reason"] for t in one["tasks"]] == ["wake", "assigned"]

    gone = await http.post(f"{TICKETS}/{ticket['id']}/unassign-agent", headers=auth())
    assert gone.status_code == 200, gone.text
    assert gone.json()["agent"]["stop_reason"] == "unassigned"
    none = await http.post(f"{TICKETS}/{ticket['id']}/unassign-agent", headers=auth())
    assert none.status_code == 409, none.text
    notes = (await http.get(f"{TICKETS}/{ticket['id']}/notes", headers=auth())).json()["notes"]
    assert [n["body"].split(":")[0] for n in notes if n["kind"] == "agent"] == [
        "agent assigned",
        "agent wake",
        "agent unassigned",
    ]


async def test_another_tenants_agents_are_not_found(http, auth) -> None:
    ticket = await _ticket(http, auth())
    agent_id = (await _assign(http, auth(), ticket))["agent"]["id"]
    other = auth(tenant_id=f"other-{uuid4().hex[:8]}")
    for method, path in (
        ("GET", f"{AGENTS}/{agent_id}"),
        ("GET", f"{AGENTS}/{agent_id}/logs"),
        ("GET", f"{AGENTS}/{agent_id}/steering"),
        ("POST", f"{AGENTS}/{agent_id}/stop"),
        ("POST", f"{AGENTS}/{agent_id}/wake"),
        ("POST", f"{AGENTS}/{agent_id}/restart"),
        ("POST", f"{TICKETS}/{ticket['id']}/assign-agent"),
        ("POST", f"{TICKETS}/{ticket['id']}/unassign-agent"),
    ):
        response = await http.request(method, path, headers=other)
        assert response.status_code == 404, (path, response.text)
    assert (await http.get(AGENTS, headers=other)).json()["agents"] == []


async def test_an_ack_needs_the_agents_own_session(http, auth) -> None:
    ticket = await _ticket(http, auth())
    agent_id = (await _assign(http, auth(), ticket))["agent"]["id"]
    await _note(http, auth(), ticket, "dashboard")
    [event] = await _steering(http, auth(), agent_id)
    path = f"{AGENTS}/{agent_id}/steering/{event['id']}/ack"
    # A person's token is not a session's credential.
    assert (await http.post(path, headers=auth())).status_code == 401


async def test_literal_agent_paths_are_not_one_agent(http, auth) -> None:
    # `/api/agents/{id}` takes a UUID: other names under /api/agents are other routes.
    models = await http.get(f"{AGENTS}/models", headers=auth("viewer"))
    assert models.status_code == 200 and "agent" not in models.json(), models.text
    assert (await http.get(f"{AGENTS}/stats", headers=auth("viewer"))).status_code == 200
    response = await http.get(f"{AGENTS}/not-an-agent-id", headers=auth("viewer"))
    assert response.status_code == 404, response.text


async def test_a_session_acknowledges_only_what_was_delivered_to_its_claim(http, auth, app) -> None:
    ticket, other_ticket = await _ticket(http, auth()), await _ticket(http, auth())
    agent_id = (await _assign(http, auth(), ticket))["agent"]["id"]
    other_agent = (await _assign(http, auth(), other_ticket))["agent"]["id"]
    claimed = []
    for _ in range(2):
        response = await http.post("/api/agent/tasks/claim-next", json={}, headers=auth("worker"))
        assert response.status_code == 200, response.text
        claimed.append(response.json()["claim"])
    mine = next(c for c in claimed if c["task"]["scope"]["ticket_agent_id"] == agent_id)
    session = {"Authorization": f"Bearer {mine['session_credential']}"}
    await _note(http, auth(), ticket, "dashboard")
    await _note(http, auth(), other_ticket, "dashboard")
    [event] = await _steering(http, auth(), agent_id)
    [foreign] = await _steering(http, auth(), other_agent)
    ack = f"{AGENTS}/{agent_id}/steering/{event['id']}/ack"

    # Not yet delivered to this session's claim: not the caller's.
    assert (await http.post(ack, headers=session)).status_code == 404
    fence = Fence(UUID(mine["run"]["id"]), mine["run"]["attempt"], mine["claim_token"])
    [note] = await app.state.leases.deliver_steering(
        fence, worker="test-worker", task_id=UUID(mine["task"]["id"])
    )
    assert note.id == UUID(event["id"])
    [delivered] = await _steering(http, auth(), agent_id)
    assert delivered["state"] == "delivered" and delivered["delivered_attempt"] == 1

    for path in (
        f"{AGENTS}/{other_agent}/steering/{foreign['id']}/ack",  # another agent's
        f"{AGENTS}/{other_agent}/steering/{event['id']}/ack",  # under the wrong agent
        f"{AGENTS}/{agent_id}/steering/{uuid4()}/ack",
    ):
        assert (await http.post(path, headers=session)).status_code == 404, path
    first = await http.post(ack, headers=session)
    assert first.status_code == 200, first.text
    assert first.json()["event"]["state"] == "acknowledged"
    again = await http.post(ack, headers=session)
    assert again.status_code == 200 and again.json() == first.json()


async def _finish(http, auth, task_id: str) -> None:
    cancelled = await http.post(f"/api/agents/tasks/{task_id}/cancel", json={}, headers=auth())
    assert cancelled.status_code == 200, cancelled.text


async def test_the_requesters_answer_and_a_granted_access_resume_a_finished_agent(
    http, auth
) -> None:
    ticket = await _ticket(http, auth())
    assigned = await _assign(http, auth(), ticket)
    agent_id, url = assigned["agent"]["id"], f"{TICKETS}/{ticket['id']}"
    await _finish(http, auth, assigned["task"]["id"])
    asked = await http.post(
        url + "/request-info", json={"question": "Which mailbox?"}, headers=auth()
    )
    assert asked.status_code == 200, asked.text
    answered = await http.post(url + "/user-response", json={"body": "ops@"}, headers=auth())
    assert answered.status_code == 200, answered.text
    agent = (await http.get(f"{AGENTS}/{agent_id}", headers=auth())).json()
    assert [t["reason"] for t in agent["tasks"]] == ["user_response", "assigned"]
    assert agent["agent"]["status"] == "queued"
    # The answer waits for the new task's first model call.
    [event] = await _steering(http, auth(), agent_id)
    assert event["source"] == "user-response" and event["state"] == "pending"

    await _finish(http, auth, agent["agent"]["task_id"])
    access = await http.post(
        url + "/access-request",
        json={
            "agent_id": agent_id,
            "resource": "mx config",
            "permission": "read",
            "assignment_group": "Messaging",
        },
        headers=auth(),
    )
    assert access.status_code == 201, access.text
    change_id = access.json()["access_request"]["change_id"]
    approved = await http.post(
        f"/api/changes/{change_id}/approve", json={}, headers=auth(subject="bob")
    )
    assert approved.status_code == 200, approved.text
    agent = (await http.get(f"{AGENTS}/{agent_id}", headers=auth())).json()
    assert [t["reason"] for t in agent["tasks"]] == ["access_granted", "user_response", "assigned"]
    assert agent["agent"]["status"] == "queued"


async def test_assign_runs_the_profile_the_settings_define(http, auth) -> None:
    fix = {
        "lane": "change-nonprod",
        "mutation_level": "propose",
        "instructions": "Propose the smallest change that fixes it.",
        "model": "offline",
    }
    settings = {
        "profiles": {"fix": fix, "triage": {"lane": "analysis"}},
        "active_profile": "triage",
    }
    stored = await http.put(f"{AGENTS}/config", json=settings, headers=auth())
    assert stored.status_code == 200, stored.text

    named = await _assign(http, auth(), await _ticket(http, auth()), profile="fix")
    task = named["task"]
    assert (task["lane"], task["mutation_level"]) == ("change-nonprod", "propose")
    assert task["instructions"].startswith(fix["instructions"])
    assert named["agent"]["profile"] == "fix" and named["agent"]["lane"] == "change-nonprod"

    # No profile named: the tenant's active one.
    active = await _assign(http, auth(), await _ticket(http, auth()))
    assert active["task"]["lane"] == "analysis"
    unknown = await http.post(
        f"{TICKETS}/{(await _ticket(http, auth()))['id']}/assign-agent",
        json={"profile": "nobody-defined-this"},
        headers=auth(),
    )
    assert unknown.status_code == 404, unknown.text
