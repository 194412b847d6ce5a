"""Access requests: a permission wall hit on a ticket becomes a child ticket for the
owning group and a change gate on the ticket and its agent; the gate's decision is the
grant, settles the child ticket, and tells the agent lifecycle (`on_ticket_event`).
Also the ticket's context bundle and the provider list."""

from uuid import UUID

import pytest

from ledger.repository import Ledger
from ledger.ticket_timeline import TicketEvent

AGENT = "5f0e7c1a-2b3d-4e5f-8a9b-0c1d2e3f4a5b"
ACCESS = {
    "agent_id": AGENT,
    "resource": "GitLab project demo/private-infra",
    "permission": "Developer repository read access",
    "account_ref": "agent-123",
    "assignment_group": "DevSecOps",
    "risk_level": "medium",
    "sync_provider": False,
    "reason": "Repository API returned 403; read access is needed to review evidence.",
}


@pytest.fixture
async def ticket_id(http, auth) -> str:
    response = await http.post("/api/tickets", json={"title": "Review evidence"}, headers=auth())
    return response.json()["ticket"]["id"]


@pytest.fixture
def heard(monkeypatch) -> list[TicketEvent]:
    """The events the agent lifecycle would hear, in the order they happened."""
    events: list[TicketEvent] = []

    async def listen(self, connection, event: TicketEvent) -> None:
        events.append(event)

    monkeypatch.setattr(Ledger, "on_ticket_event", listen)
    return events


async def test_access_request_creates_a_child_ticket_and_a_gate(http, auth, ticket_id) -> None:
    created = await http.post(
        f"/api/tickets/{ticket_id}/access-request", json=ACCESS, headers=auth(subject="agent-1")
    )
    assert created.status_code == 201, created.text
    access = created.json()["access_request"]
    assert access["grant_status"] == "pending" and access["change_status"] == "pending"
    assert access["child_ticket_status"] == "awaiting_approval"
    assert access["ticket_id"] == ticket_id and access["agent_id"] == AGENT
    child = (await http.get(f"/api/tickets/{access['child_ticket_id']}", headers=auth())).json()
    assert child["ticket"]["ticket_class"] == "AccessRequest"
    assert child["ticket"]["owning_group"] == "DevSecOps"
    assert child["ticket"]["parent_ticket_id"] == ticket_id
    change = (await http.get(f"/api/changes/{access['change_id']}", headers=auth())).json()
    assert change["change"]["ticket_id"] == ticket_id
    assert change["change"]["agent_id"] == AGENT
    assert change["change"]["action"] == "grant_access"
    listed = await http.get(f"/api/tickets/{ticket_id}/access-requests", headers=auth("viewer"))
    assert [a["id"] for a in listed.json()["access_requests"]] == [access["id"]]
    from_child = await http.get(
        f"/api/tickets/{access['child_ticket_id']}/access-requests", headers=auth()
    )
    assert [a["id"] for a in from_child.json()["access_requests"]] == [access["id"]]


async def test_approving_the_gate_grants_and_tells_the_agent_lifecycle(
    http, auth, ticket_id, heard
) -> None:
    created = await http.post(
        f"/api/tickets/{ticket_id}/access-request", json=ACCESS, headers=auth(subject="agent-1")
    )
    access = created.json()["access_request"]
    approved = await http.post(
        f"/api/changes/{access['change_id']}/approve", json={}, headers=auth(subject="bob")
    )
    assert approved.status_code == 200, approved.text
    [listed] = (await http.get(f"/api/tickets/{ticket_id}/access-requests", headers=auth())).json()[
        "access_requests"
    ]
    assert listed["grant_status"] == "granted"
    assert listed["child_ticket_status"] == "resolved"
    granted = [event for event in heard if event.kind == "access_granted"]
    assert len(granted) == 1
    assert str(granted[0].ticket.id) == ticket_id
    assert granted[0].detail["agent_id"] == AGENT
    notes = (await http.get(f"/api/tickets/{ticket_id}/notes", headers=auth())).json()["notes"]
    assert "access_granted" in [note["kind"] for note in notes]


async def test_rejecting_the_gate_cancels_the_child_ticket(http, auth, ticket_id, heard) -> None:
    created = await http.post(
        f"/api/tickets/{ticket_id}/access-request", json=ACCESS, headers=auth(subject="agent-1")
    )
    access = created.json()["access_request"]
    await http.post(
        f"/api/changes/{access['change_id']}/reject", json={}, headers=auth(subject="bob")
    )
    [listed] = (await http.get(f"/api/tickets/{ticket_id}/access-requests", headers=auth())).json()[
        "access_requests"
    ]
    assert (listed["grant_status"], listed["child_ticket_status"]) == ("rejected", "cancelled")
    assert [event.kind for event in heard if event.kind.startswith("access")] == ["access_refused"]


async def test_access_request_needs_a_group(http, auth, ticket_id) -> None:
    body = {k: v for k, v in ACCESS.items() if k != "assignment_group"}
    refused = await http.post(f"/api/tickets/{ticket_id}/access-request", json=body, headers=auth())
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["details"]["field"] == "assignment_group"
    await http.post(
        f"/api/tickets/{ticket_id}/assignment", json={"owning_group": "Platform"}, headers=auth()
    )
    taken = await http.post(f"/api/tickets/{ticket_id}/access-request", json=body, headers=auth())
    assert taken.json()["access_request"]["assignment_group"] == "Platform"


async def test_another_tenants_ticket_has_no_access_requests(http, auth, ticket_id) -> None:
    other = auth(tenant_id="another-tenant")
    url = f"/api/tickets/{ticket_id}"
    assert (await http.post(url + "/access-request", json=ACCESS, headers=other)).status_code == 404
    assert (await http.get(url + "/access-requests", headers=other)).status_code == 404
    assert (await http.get(url + "/context", headers=other)).status_code == 404


async def test_notes_and_answers_reach_the_hook(http, auth, ticket_id, heard) -> None:
    url = f"/api/tickets/{ticket_id}"
    await http.post(url + "/notes", json={"body": "Check the proxy logs too."}, headers=auth())
    await http.post(url + "/request-info", json={"question": "Which user?"}, headers=auth())
    await http.post(url + "/user-response", json={"body": "bob"}, headers=auth())
    kinds = [(event.kind, event.note.source if event.note else None) for event in heard]
    assert kinds == [("note_added", "dashboard"), ("user_responded", "user-response")]


async def test_context_bundle(http, auth, ticket_id) -> None:
    url = f"/api/tickets/{ticket_id}"
    await http.post(url + "/notes", json={"body": "Started."}, headers=auth())
    await http.post(
        url + "/attachments",
        json={"filename": "a.log", "size_bytes": 1, "storage_ref": "s3://b/a.log"},
        headers=auth(),
    )
    access = await http.post(url + "/access-request", json=ACCESS, headers=auth())
    child_id = access.json()["access_request"]["child_ticket_id"]
    context = await http.get(url + "/context", headers=auth("viewer"))
    assert context.status_code == 200, context.text
    bundle = context.json()["context"]
    assert bundle["ticket"]["id"] == ticket_id
    assert [n["kind"] for n in bundle["notes"]][:1] == ["note"]
    assert [a["filename"] for a in bundle["attachments"]] == ["a.log"]
    assert [c["action"] for c in bundle["change_requests"]] == ["grant_access"]
    assert [t["id"] for t in bundle["related_tickets"]] == [child_id]
    assert len(bundle["access_requests"]) == 1
    assert bundle["recent_tasks"] == []
    child = (await http.get(f"/api/tickets/{child_id}/context", headers=auth())).json()
    assert [t["id"] for t in child["context"]["related_tickets"]] == [ticket_id]


async def test_context_lists_the_tasks_worked_for_the_ticket(http, auth) -> None:
    itr = {"request_number": "ITR-ctx", "title": "Disk full"}
    ticket = (await http.post("/api/it-requests", json=itr, headers=auth())).json()["ticket"]
    task = await http.post(
        "/api/agents/tasks/from-it-request/ITR-ctx", json={"lane": "analysis"}, headers=auth()
    )
    context = (await http.get(f"/api/tickets/{ticket['id']}/context", headers=auth())).json()
    assert [t["id"] for t in context["context"]["recent_tasks"]] == [task.json()["task"]["id"]]


async def test_providers_lists_local(http, auth) -> None:
    response = await http.get("/api/providers", headers=auth("viewer"))
    assert response.status_code == 200, response.text
    assert response.json()["providers"] == [
        {
            "name": "local",
            "description": "The ledger is the ticket's only record; nothing is synced elsewhere.",
            "configured": True,
        }
    ]


async def test_the_current_agent_shows_on_the_ticket(app, http, auth, tenant, new_task, ticket_id):
    task = (await new_task())["task"]
    ledger = app.state.ledger
    async with ledger.pool.acquire() as connection:
        await ledger.set_current_agent(
            connection, tenant, UUID(ticket_id), agent_id=UUID(AGENT), task_id=UUID(task["id"])
        )
    detail = (await http.get(f"/api/tickets/{ticket_id}", headers=auth())).json()
    assert detail["agent"] == {"agent_id": AGENT, "task_id": task["id"], "task_status": "queued"}
    listed = (await http.get("/api/tickets", params={"agent_only": "true"}, headers=auth())).json()
    assert [t["id"] for t in listed["tickets"]] == [ticket_id]
    context = (await http.get(f"/api/tickets/{ticket_id}/context", headers=auth())).json()
    assert [t["id"] for t in context["context"]["recent_tasks"]] == [task["id"]]
    async with ledger.pool.acquire() as connection:
        await ledger.set_current_agent(
            connection, tenant, UUID(ticket_id), agent_id=None, task_id=None
        )
    listed = (await http.get("/api/tickets", params={"agent_only": "true"}, headers=auth())).json()
    assert listed["tickets"] == []
