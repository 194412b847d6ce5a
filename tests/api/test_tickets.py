"""The ticket routes as a service desk and its agents use them: create and list with
filters, explicit status changes inside a ticket's workflow, assignment, notes,
attachment metadata, a request for information and the requester's answer; each with
its note and audit record, and nothing of another tenant's."""

import httpx

TICKETS = "/api/tickets"


async def _ticket(http: httpx.AsyncClient, headers: dict[str, str], **fields: object) -> dict:
    body = {"title": "Investigate phishing report", "description": "User reported mail."}
    body.update(fields)
    response = await http.post(TICKETS, json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()["ticket"]


async def _audit_actions(pool, tenant: str, ticket_id: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT action FROM audit_records WHERE tenant_id = $1 AND ticket_id = $2 ORDER BY seq",
        tenant,
        ticket_id,
    )
    return [row["action"] for row in rows]


async def test_create_with_the_seed_body_and_read_back(http, auth) -> None:
    ticket = await _ticket(
        http,
        auth(),
        ticket_class="Incident",
        status="new",
        priority="2",
        created_by="dashboard",
        auto_assign=True,
    )
    assert ticket["status"] == "new" and ticket["priority"] == 2
    assert ticket["created_by"] == "dashboard"
    assert ticket["provider"] == "local" and ticket["provider_sync_status"] == "local_only"
    detail = await http.get(f"{TICKETS}/{ticket['id']}", headers=auth("viewer"))
    assert detail.status_code == 200, detail.text
    assert detail.json()["ticket"]["id"] == ticket["id"]
    assert detail.json()["agent"] == {"agent_id": None, "task_id": None, "task_status": None}


async def test_priority_takes_p1_to_p4_or_1_to_4(http, auth) -> None:
    for given, stored in (("P1", 1), ("p4", 4), (3, 3), ("2", 2), (1.0, 1)):
        assert (await _ticket(http, auth(), priority=given))["priority"] == stored
    for bad in ("P5", "0", 5, "urgent", True, "02", " 1"):
        response = await http.post(TICKETS, json={"title": "x", "priority": bad}, headers=auth())
        assert response.status_code == 400, (bad, response.text)


async def test_a_status_outside_the_workflow_is_400_naming_the_allowed_ones(http, auth) -> None:
    created = await http.post(TICKETS, json={"title": "x", "status": "implement"}, headers=auth())
    assert created.status_code == 400, created.text
    assert created.json()["error"]["details"]["allowed"][0] == "new"
    ticket = await _ticket(http, auth())
    for status in ("implement", "RESOLVED", ""):
        moved = await http.post(
            f"{TICKETS}/{ticket['id']}/status", json={"status": status}, headers=auth()
        )
        assert moved.status_code == 400, moved.text
        error = moved.json()["error"]
        assert error["details"]["field"] == "status"
        assert "in_progress" in error["details"]["allowed"] and "in_progress" in error["message"]
    document = (await http.get("/openapi.json")).json()
    schema = document["components"]["schemas"]["TicketStatusRequest"]["properties"]["status"]
    assert schema["enum"] == error["details"]["allowed"]


async def test_status_change_writes_a_note_and_an_audit_record(http, auth, pool, tenant) -> None:
    ticket = await _ticket(http, auth())
    url = f"{TICKETS}/{ticket['id']}"
    body = {
        "status": "resolved",
        "actor": "agent-159",
        "reason": "All approved containment steps completed.",
        "close_provider": False,
    }
    moved = await http.post(url + "/status", json=body, headers=auth())
    assert moved.status_code == 200, moved.text
    assert moved.json()["ticket"]["status"] == "resolved"
    assert moved.json()["ticket"]["previous_status"] == "new"
    note = moved.json()["note"]
    assert note["kind"] == "status_change" and note["author"] == "agent-159"
    assert "containment" in note["body"]
    notes = (await http.get(url + "/notes", headers=auth("viewer"))).json()["notes"]
    assert [n["id"] for n in notes] == [note["id"]]
    assert await _audit_actions(pool, tenant, ticket["id"]) == [
        "ticket_created",
        "ticket_status_changed",
    ]


async def test_put_patch_and_post_on_the_ticket_take_the_status_payload(http, auth) -> None:
    ticket = await _ticket(http, auth())
    url = f"{TICKETS}/{ticket['id']}"
    for method, status in (("PUT", "assigned"), ("PATCH", "in_progress"), ("POST", "on_hold")):
        response = await http.request(method, url, json={"status": status}, headers=auth())
        assert response.status_code == 200, (method, response.text)
        assert response.json()["ticket"]["status"] == status
    bad = await http.patch(url, json={"status": "authorize"}, headers=auth())
    assert bad.status_code == 400, bad.text


async def test_a_closed_ticket_stays_closed(http, auth) -> None:
    ticket = await _ticket(http, auth())
    url = f"{TICKETS}/{ticket['id']}/status"
    assert (await http.post(url, json={"status": "closed"}, headers=auth())).status_code == 200
    reopened = await http.post(url, json={"status": "in_progress"}, headers=auth())
    assert reopened.status_code == 409, reopened.text
    assert reopened.json()["error"]["details"]["current_status"] == "closed"


async def test_list_filters(http, auth) -> None:
    headers = auth()
    urgent = await _ticket(http, headers, priority="P1")
    mine = await _ticket(http, headers, priority=3)
    await http.post(f"{TICKETS}/{mine['id']}/assignment", json={"assignee": "bob"}, headers=headers)
    await http.post(
        f"{TICKETS}/{urgent['id']}/status", json={"status": "in_progress"}, headers=headers
    )

    async def ids(**params: object) -> list[str]:
        response = await http.get(TICKETS, params=params, headers=auth("viewer"))
        assert response.status_code == 200, response.text
        return [t["id"] for t in response.json()["tickets"]]

    assert await ids() == [mine["id"], urgent["id"]]
    assert await ids(priority="P1") == [urgent["id"]]
    assert await ids(priority="1") == [urgent["id"]]
    assert await ids(status="in_progress") == [urgent["id"]]
    assert await ids(assignee="bob") == [mine["id"]]
    assert await ids(agent_only="true") == []
    assert await ids(limit=1) == [mine["id"]]
    assert await ids(limit=1, offset=1) == [urgent["id"]]
    for params in ({"stauts": "new"}, {"status": "implement"}, {"priority": "P5"}):
        refused = await http.get(TICKETS, params=params, headers=auth())
        assert refused.status_code == 400, params


async def test_assignment_escalates_with_a_note(http, auth, pool, tenant) -> None:
    ticket = await _ticket(http, auth())
    body = {
        "assignee_team": "Tier 2 Endpoint Support",
        "owning_group": "Endpoint Support",
        "assignee": "endpoint.tier2.demo",
        "escalation_tier": "Tier 2",
        "priority": "P2",
        "actor": "ops-chat-reassignment-smoke",
        "reason": "Requester clarified that endpoint packaging is required.",
    }
    moved = await http.post(f"{TICKETS}/{ticket['id']}/assignment", json=body, headers=auth())
    assert moved.status_code == 200, moved.text
    assigned = moved.json()["ticket"]
    assert (assigned["assignee_team"], assigned["owning_group"], assigned["assignee"]) == (
        "Tier 2 Endpoint Support",
        "Endpoint Support",
        "endpoint.tier2.demo",
    )
    assert assigned["priority"] == 2
    note = moved.json()["note"]
    assert note["kind"] == "assignment" and "Tier 2" in note["body"]
    assert note["data"]["escalation_tier"] == "Tier 2"
    assert "ticket_assigned" in await _audit_actions(pool, tenant, ticket["id"])
    reason_only = await http.post(
        f"{TICKETS}/{ticket['id']}/assignment",
        json={"reason": "Stays with Tier 2."},
        headers=auth(),
    )
    assert reason_only.status_code == 200, reason_only.text
    assert reason_only.json()["ticket"]["assignee"] == "endpoint.tier2.demo"
    assert "unchanged" in reason_only.json()["note"]["body"]


async def test_notes_and_attachments(http, auth) -> None:
    ticket = await _ticket(http, auth())
    url = f"{TICKETS}/{ticket['id']}"
    note = {
        "body": "Scoped recipients and found no additional delivery.",
        "author": "agent_26",
        "source": "agent",
        "visibility": "internal",
    }
    added = await http.post(url + "/notes", json=note, headers=auth())
    assert added.status_code == 201, added.text
    assert {k: added.json()["note"][k] for k in note} == note
    bad = await http.post(url + "/notes", json={**note, "visibility": "everyone"}, headers=auth())
    assert bad.status_code == 400
    attachment = {
        "filename": "headers.eml",
        "content_type": "message/rfc822",
        "size_bytes": 2048,
        "storage_ref": "s3://evidence/headers.eml",
    }
    stored = await http.post(url + "/attachments", json=attachment, headers=auth())
    assert stored.status_code == 201, stored.text
    listed = (await http.get(url + "/attachments", headers=auth("viewer"))).json()
    assert [a["filename"] for a in listed["attachments"]] == ["headers.eml"]
    assert listed["attachments"][0]["uploaded_by"] == "alice"


async def test_request_info_then_user_response_restores_the_status(http, auth) -> None:
    ticket = await _ticket(http, auth())
    url = f"{TICKETS}/{ticket['id']}"
    await http.post(url + "/status", json={"status": "in_progress"}, headers=auth())
    asked = await http.post(
        url + "/request-info", json={"question": "Which mailbox received it?"}, headers=auth()
    )
    assert asked.status_code == 200, asked.text
    assert asked.json()["ticket"]["status"] == "awaiting_user_response"
    assert asked.json()["note"]["visibility"] == "public"
    again = await http.post(url + "/request-info", json={"question": "And?"}, headers=auth())
    assert again.status_code == 409
    answered = await http.post(
        url + "/user-response",
        json={"body": "finance@example.com", "author": "requester"},
        headers=auth(),
    )
    assert answered.status_code == 200, answered.text
    assert answered.json()["ticket"]["status"] == "in_progress"
    assert answered.json()["note"]["source"] == "user-response"
    twice = await http.post(url + "/user-response", json={"body": "again"}, headers=auth())
    assert twice.status_code == 409
    assert twice.json()["error"]["details"]["current_status"] == "in_progress"


async def test_another_tenants_ticket_is_not_found(http, auth) -> None:
    ticket = await _ticket(http, auth())
    url = f"{TICKETS}/{ticket['id']}"
    other = auth(tenant_id="another-tenant")
    calls = [
        http.get(url, headers=other),
        http.get(url + "/notes", headers=other),
        http.get(url + "/attachments", headers=other),
        http.post(url + "/status", json={"status": "closed"}, headers=other),
        http.patch(url, json={"status": "closed"}, headers=other),
        http.post(url + "/assignment", json={"assignee": "x"}, headers=other),
        http.post(url + "/notes", json={"body": "hi"}, headers=other),
        http.post(url + "/request-info", json={"question": "?"}, headers=other),
        http.post(url + "/user-response", json={"body": "x"}, headers=other),
    ]
    for call in calls:
        response = await call
        assert response.status_code == 404, response.text
    ours = await http.get(url, headers=auth())
    assert ours.json()["ticket"]["status"] == "new"
    assert (await http.get(TICKETS, headers=other)).json()["tickets"] == []


async def test_roles(http, auth) -> None:
    refused = await http.post(TICKETS, json={"title": "x"}, headers=auth("viewer"))
    assert refused.status_code == 403
    assert (await http.get(TICKETS)).status_code == 401


async def test_an_it_request_is_a_ticket_and_its_tasks_are_worked_for_it(http, auth) -> None:
    itr = {"request_number": "ITR-77", "title": "Disk full on app-7", "requester": "bob"}
    created = await http.post("/api/it-requests", json=itr, headers=auth())
    assert created.status_code == 201, created.text
    ticket = created.json()["ticket"]
    assert (ticket["ticket_class"], ticket["it_request_number"]) == ("UserRequest", "ITR-77")
    assert ticket["title"] == "Disk full on app-7" and ticket["created_by"] == "bob"
    fetched = await http.get("/api/it-requests/ITR-77", headers=auth("viewer"))
    assert fetched.json()["ticket"]["id"] == ticket["id"]
    task = await http.post(
        "/api/agents/tasks/from-it-request/ITR-77", json={"lane": "analysis"}, headers=auth()
    )
    assert task.status_code == 201, task.text
    assert task.json()["ticket_id"] == ticket["id"]
    assert task.json()["task"]["scope"]["ticket_id"] == ticket["id"]
    listed = (await http.get(TICKETS, headers=auth())).json()["tickets"]
    assert [t["id"] for t in listed] == [ticket["id"]]
