"""The console's operations screens over HTTP, in process: tickets (filtered as the REST
list is) and one ticket with its notes, attachments, change and access requests, linked
tasks and its agent's steering events; adding a note and changing the status from the
console; change requests pending first, decided by a permitted operator, the refusals
(the requester's own change, a role the risk level does not name, an expired or decided
change) shown as clear messages with the API's status; the audit feed with its filters
and cursor, and a verify that names the record where a chain altered in Postgres breaks.
Everything is the tenant's only, a viewer sees no form and a forged action is refused."""

import re
from collections.abc import Callable
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest
from conftest import JWT_SECRET
from planted_secrets import forms_text, leaked
from signed_in import SAME_ORIGIN, error_code
from signed_in import browser as browser  # the fixture
from starlette.applications import Starlette

from api.auth import mint_token
from ledger.steering import steer_ticket_agent

TICKETS = "/api/tickets"
CHANGES = "/api/changes"


def _token(tenant: str, role: str, subject: str) -> str:
    return mint_token(JWT_SECRET, subject=subject, roles=[role], tenant_id=tenant)


async def _sign_in(client: httpx.AsyncClient, tenant: str, role: str, subject: str) -> None:
    response = await client.post(
        "/console/sign-in",
        data={"token": _token(tenant, role, subject), "next": "/console/tickets"},
        headers=SAME_ORIGIN,
    )
    assert response.status_code == 303, response.text


@pytest.fixture
async def person(app: Starlette, tenant: str):
    """A signed-in browser (its own cookie jar) for `role` named `subject`."""
    clients: list[httpx.AsyncClient] = []

    async def signed_in(role: str = "operator", subject: str = "olga", tenant_id: str = tenant):
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://workbench.test"
        )
        clients.append(client)
        await _sign_in(client, tenant_id, role, subject)
        return client

    yield signed_in
    for client in clients:
        await client.aclose()


@pytest.fixture
def ticket(http: httpx.AsyncClient, auth: Callable) -> Callable:
    async def create(tenant_id: str | None = None, **fields: object) -> dict:
        body = {"title": "Phishing report", "description": "A user forwarded a mail.", **fields}
        response = await http.post(TICKETS, json=body, headers=auth(tenant_id=tenant_id))
        assert response.status_code == 201, response.text
        return response.json()["ticket"]

    return create


@pytest.fixture
def change(http: httpx.AsyncClient, auth: Callable) -> Callable:
    async def request(ticket_id: str, subject: str = "rita", **fields: object) -> dict:
        body = {
            "ticket_id": ticket_id,
            "action": "block_url",
            "target": "https://example.invalid/phish",
            "reason": "Confirmed phishing URL.",
            "risk_level": "medium",
            **fields,
        }
        response = await http.post(f"{CHANGES}/request", json=body, headers=auth(subject=subject))
        assert response.status_code == 201, response.text
        return response.json()["change"]

    return request


def _ids(page: httpx.Response, attribute: str) -> list[str]:
    return re.findall(rf'{attribute}="([0-9a-f-]{{36}})"', page.text)


def _refusal(page: httpx.Response) -> tuple[str, str] | None:
    found = re.search(r'id="refused" data-status-code="(\d+)" data-code="(\w+)"', page.text)
    return (found.group(1), found.group(2)) if found else None


async def test_the_ticket_list_filters_as_the_api_does(
    person: Callable, ticket: Callable, http: httpx.AsyncClient, auth: Callable
) -> None:
    urgent = await ticket(title="Mail server down <script>alert(1)</script>", priority="P1")
    routine = await ticket(title="New laptop", ticket_class="UserRequest", priority=4)
    assigned = await http.post(
        f"{TICKETS}/{routine['id']}/assignment", json={"assignee": "dana"}, headers=auth()
    )
    assert assigned.status_code == 200, assigned.text
    moved = await http.post(
        f"{TICKETS}/{urgent['id']}/status", json={"status": "in_progress"}, headers=auth()
    )
    assert moved.status_code == 200, moved.text
    viewer = await person("viewer")

    everything = await viewer.get("/console/tickets")
    assert everything.status_code == 200
    assert _ids(everything, "data-ticket-id") == [routine["id"], urgent["id"]]
    assert "Mail server down &lt;script&gt;alert(1)&lt;/script&gt;" in everything.text
    assert "<script>alert" not in everything.text
    for query, shown in (
        ("status=in_progress", [urgent["id"]]),
        ("priority=1", [urgent["id"]]),
        ("priority=P4", [routine["id"]]),
        ("assignee=dana", [routine["id"]]),
        ("agent_only=true", []),
        ("status=closed", []),
    ):
        page = await viewer.get(f"/console/tickets?{query}")
        assert page.status_code == 200, query
        assert _ids(page, "data-ticket-id") == shown, query
        rows = await viewer.get(f"/console/tickets/rows?{query}")
        assert _ids(rows, "data-ticket-id") == shown, query
    for bad in ("status=bogus", "priority=P9", "colour=red", "offset=-1"):
        page = await viewer.get(f"/console/tickets?{bad}")
        assert (page.status_code, error_code(page)) == (400, "invalid_request"), bad
        assert "Traceback" not in page.text


async def test_a_ticket_shows_its_notes_attachments_changes_access_and_tasks(
    person: Callable,
    ticket: Callable,
    change: Callable,
    http: httpx.AsyncClient,
    auth: Callable,
    new_task: Callable,
    app: Starlette,
    tenant: str,
) -> None:
    mine = await ticket(title="Suspicious login")
    url = f"{TICKETS}/{mine['id']}"
    public = await http.post(
        f"{url}/notes",
        json={"body": "We are looking into it.", "source": "agent", "visibility": "public"},
        headers=auth(),
    )
    assert public.status_code == 201, public.text
    attached = await http.post(
        f"{url}/attachments",
        json={"filename": "headers.eml", "size_bytes": 2048, "storage_ref": "s3://mail/1"},
        headers=auth(),
    )
    assert attached.status_code == 201, attached.text
    gate = await change(mine["id"], action="reset_password", target="user:ann")
    access = await http.post(
        f"{url}/access-request",
        json={"resource": "mail gateway", "permission": "read logs", "assignment_group": "Mail"},
        headers=auth(),
    )
    assert access.status_code == 201, access.text
    task = (await new_task(title="Look at the sign-in logs"))["task"]
    async with app.state.ledger.pool.acquire() as connection:
        await app.state.ledger.link_ticket_task(
            connection, tenant, UUID(mine["id"]), UUID(task["id"])
        )
    viewer = await person("viewer")

    page = await viewer.get(f"/console/tickets/{mine['id']}")
    assert page.status_code == 200
    notes = re.findall(
        r'data-source="([\w-]+)" data-visibility="(\w+)" data-kind="(\w+)"', page.text
    )
    assert ("agent", "public", "note") in notes
    assert ("system", "internal", "change_requested") in notes
    assert "headers.eml" in page.text and "2048 B" in page.text
    assert gate["id"] in _ids(page, "data-change-id")
    assert "read logs on mail gateway for Mail" in page.text
    child = access.json()["access_request"]["child_ticket_id"]
    assert f'href="/console/tickets/{child}"' in page.text
    assert f'href="/console/tasks/{task["id"]}"' in page.text
    assert 'id="no-steering"' in page.text
    assert 'id="note-form"' not in page.text and 'id="status-form"' not in page.text
    # The live part is the same body.
    body = await viewer.get(f"/console/tickets/{mine['id']}/body")
    assert "headers.eml" in body.text and "<html" not in body.text


async def test_an_operator_adds_a_note_and_changes_the_status_within_the_workflow(
    person: Callable, ticket: Callable, http: httpx.AsyncClient, auth: Callable
) -> None:
    mine = await ticket()
    operator = await person("operator", subject="olga")
    page = await operator.get(f"/console/tickets/{mine['id']}")
    assert 'id="note-form"' in page.text and "reaches it at its next turn" in page.text
    options = re.findall(
        r'<option value="(\w+)">\1</option>', page.text.split('id="status-new"')[1]
    )
    assert "new" not in options and {"in_progress", "resolved", "closed"} <= set(options)

    added = await operator.post(
        f"/console/tickets/{mine['id']}/notes",
        data={"body": "Blocked the sender; password: hunter2-yaml", "visibility": "public"},
        headers=SAME_ORIGIN,
    )
    assert added.status_code == 303
    assert added.headers["location"] == f"/console/tickets/{mine['id']}?done=note"
    notes = (await http.get(f"{TICKETS}/{mine['id']}/notes", headers=auth())).json()["notes"]
    note = notes[-1]
    assert (note["source"], note["visibility"], note["author"]) == ("dashboard", "public", "olga")
    shown = await operator.get(added.headers["location"])
    assert "Note added." in shown.text and leaked(shown.text) == []

    moved = await operator.post(
        f"/console/tickets/{mine['id']}/status",
        data={"status": "resolved", "reason": "sender blocked"},
        headers=SAME_ORIGIN,
    )
    assert moved.status_code == 303
    read = (await http.get(f"{TICKETS}/{mine['id']}", headers=auth())).json()["ticket"]
    assert read["status"] == "resolved"
    outside = await operator.post(
        f"/console/tickets/{mine['id']}/status", data={"status": "done"}, headers=SAME_ORIGIN
    )
    assert (outside.status_code, error_code(outside)) == (400, "invalid_request")
    assert "awaiting_user_response" in outside.text  # the allowed ones are named
    closed = await operator.post(
        f"/console/tickets/{mine['id']}/status", data={"status": "closed"}, headers=SAME_ORIGIN
    )
    assert closed.status_code == 303
    final = await operator.get(f"/console/tickets/{mine['id']}")
    assert 'id="status-final"' in final.text and 'id="status-form"' not in final.text
    reopened = await operator.post(
        f"/console/tickets/{mine['id']}/status", data={"status": "new"}, headers=SAME_ORIGIN
    )
    assert (reopened.status_code, error_code(reopened)) == (409, "conflict")
    empty = await operator.post(
        f"/console/tickets/{mine['id']}/notes", data={"body": "  "}, headers=SAME_ORIGIN
    )
    assert (empty.status_code, error_code(empty)) == (400, "invalid_request")


async def test_a_viewer_is_refused_and_another_tenants_ticket_is_not_found(
    person: Callable, ticket: Callable, tenant: str, change: Callable
) -> None:
    mine = await ticket()
    theirs = await ticket(tenant_id=f"{tenant}-other", title="Their ticket")
    viewer = await person("viewer")
    for path, data in (
        (f"/console/tickets/{mine['id']}/notes", {"body": "forged"}),
        (f"/console/tickets/{mine['id']}/status", {"status": "closed"}),
    ):
        forged = await viewer.post(path, data=data, headers=SAME_ORIGIN)
        assert (forged.status_code, error_code(forged)) == (403, "forbidden"), path
    operator = await person("operator")
    cross_site = await operator.post(
        f"/console/tickets/{mine['id']}/notes",
        data={"body": "from elsewhere"},
        headers={"origin": "https://evil.example"},
    )
    assert (cross_site.status_code, error_code(cross_site)) == (403, "cross_origin_refused")
    for path in (
        f"/console/tickets/{theirs['id']}",
        f"/console/tickets/{theirs['id']}/body",
        f"/console/tickets/{uuid4()}",
        "/console/tickets/not-a-uuid",
    ):
        page = await operator.get(path)
        assert (page.status_code, error_code(page)) == (404, "not_found"), path
    note = await operator.post(
        f"/console/tickets/{theirs['id']}/notes", data={"body": "hi"}, headers=SAME_ORIGIN
    )
    assert (note.status_code, error_code(note)) == (404, "not_found")
    listing = await operator.get("/console/tickets")
    assert theirs["id"] not in listing.text


async def _ticket_agent(pool: asyncpg.Pool, tenant: str, ticket_id: str, task_id: str) -> UUID:
    """An agent assigned to the ticket, as the agent lifecycle records one."""
    agent_id = uuid4()
    async with pool.acquire() as connection:
        await connection.execute(
            "INSERT INTO ticket_agents (id, tenant_id, ticket_id, task_id, state, lane,"
            " model_provider, prompt, created_by) VALUES ($1, $2, $3, $4, 'assigned',"
            " 'analysis', 'offline', 'Work the ticket.', 'olga')",
            agent_id,
            tenant,
            UUID(ticket_id),
            UUID(task_id),
        )
        await connection.execute(
            "UPDATE tickets SET agent_id = $2, agent_task_id = $3 WHERE id = $1",
            UUID(ticket_id),
            agent_id,
            UUID(task_id),
        )
    return agent_id


async def test_a_ticket_shows_its_agents_steering_events_in_each_state(
    person: Callable, ticket: Callable, new_task: Callable, app: Starlette, tenant: str
) -> None:
    mine = await ticket()
    task = (await new_task(title="Work the phishing ticket"))["task"]
    pool = app.state.ledger.pool
    await _ticket_agent(pool, tenant, mine["id"], task["id"])
    operator = await person("operator")
    page = await operator.get(f"/console/tickets/{mine['id']}")
    assert "This ticket has an active agent: a note reaches it at its next turn" in page.text

    events = {}
    for state in ("pending", "delivered", "acknowledged", "superseded", "ttl", "stopped"):
        async with pool.acquire() as connection, connection.transaction():
            event = await steering_event(connection, app, tenant, mine["id"], f"Note {state}")
        events[state] = event.id
    async with pool.acquire() as connection:
        for state, sql in (
            (
                "delivered",
                "state = 'delivered', deliveries = 1, delivered_at = now(), delivered_attempt = 1",
            ),
            (
                "acknowledged",
                "state = 'acknowledged', acknowledged_at = now(), acknowledged_by = 'agent'",
            ),
            ("superseded", "state = 'superseded'"),
            ("ttl", "expires_at = now() - interval '1 second'"),
            ("stopped", "state = 'expired', closed_reason = 'agent_stopped'"),
        ):
            await connection.execute(
                f"UPDATE steering_events SET {sql} WHERE id = $1",  # noqa: S608 - the test's own
                events[state],
            )
    page = await operator.get(f"/console/tickets/{mine['id']}")
    shown = dict(re.findall(r'data-steering-id="([0-9a-f-]{36})" data-state="(\w+)"', page.text))
    assert shown == {
        str(events["pending"]): "pending",
        str(events["delivered"]): "delivered",
        str(events["acknowledged"]): "acknowledged",
        str(events["superseded"]): "superseded",
        str(events["ttl"]): "expired",  # past its time to live: read as expired
        str(events["stopped"]): "expired",
    }
    row = page.text.split(f'data-steering-id="{events["ttl"]}"')[1].split("</tr>")[0]
    assert ">ttl<" in row
    stopped = page.text.split(f'data-steering-id="{events["stopped"]}"')[1].split("</tr>")[0]
    assert "agent_stopped" in stopped and "Note stopped" in stopped


async def steering_event(connection, app: Starlette, tenant: str, ticket_id: str, body: str):
    event = await steer_ticket_agent(
        connection,
        app.state.ledger.redactor,
        tenant_id=tenant,
        ticket_id=UUID(ticket_id),
        note_id=None,
        source="dashboard",
        author="olga",
        body=body,
    )
    assert event is not None
    return event


async def test_changes_list_pending_first_and_filter_by_status_and_risk(
    person: Callable, ticket: Callable, change: Callable, http: httpx.AsyncClient, auth: Callable
) -> None:
    mine = await ticket()
    decided = await change(mine["id"], target="host:a")
    rejected = await http.post(
        f"{CHANGES}/{decided['id']}/reject", json={"reason": "no"}, headers=auth(subject="bob")
    )
    assert rejected.status_code == 200, rejected.text
    later = await change(mine["id"], target="host:b", risk_level="high", expires_in_seconds=7200)
    sooner = await change(mine["id"], target="host:c", risk_level="low", expires_in_seconds=600)
    viewer = await person("viewer")

    page = await viewer.get("/console/changes")
    assert _ids(page, "data-change-id") == [sooner["id"], later["id"], decided["id"]]
    for query, shown in (
        ("status=pending", [sooner["id"], later["id"]]),
        ("status=rejected", [decided["id"]]),
        ("risk_level=high", [later["id"]]),
        ("status=pending&risk_level=medium", []),
    ):
        filtered = await viewer.get(f"/console/changes?{query}")
        assert _ids(filtered, "data-change-id") == shown, query
        rows = await viewer.get(f"/console/changes/rows?{query}")
        assert _ids(rows, "data-change-id") == shown, query
    for bad in ("status=maybe", "risk_level=extreme", "agent=x"):
        refused = await viewer.get(f"/console/changes?{bad}")
        assert (refused.status_code, error_code(refused)) == (400, "invalid_request"), bad


async def test_a_change_is_approved_by_another_operator_and_the_refusals_are_explained(
    person: Callable, ticket: Callable, change: Callable, http: httpx.AsyncClient, auth: Callable
) -> None:
    mine = await ticket()
    pending = await change(mine["id"], subject="rita")
    approve = f"/console/changes/{pending['id']}/approve"
    requester = await person("operator", subject="rita")

    own = await requester.get(f"/console/changes/{pending['id']}")
    assert 'id="own-change"' in own.text and 'id="decide-form"' in own.text
    refused = await requester.post(approve, data={"reason": "mine"}, headers=SAME_ORIGIN)
    assert refused.status_code == 403
    assert _refusal(refused) == ("403", "policy_forbidden")
    assert "the requester of a change may not approve it" in refused.text
    assert 'data-status="pending"' in refused.text  # the change's own page, still pending

    approver = await person("operator", subject="olga")
    approved = await approver.post(approve, data={"reason": "checked"}, headers=SAME_ORIGIN)
    assert approved.status_code == 303
    shown = await approver.get(approved.headers["location"])
    assert 'id="change-status" data-status="approved"' in shown.text
    assert 'data-approver="olga"' in shown.text and 'id="decide-form"' not in shown.text
    read = (await http.get(f"{CHANGES}/{pending['id']}", headers=auth())).json()["change"]
    assert (read["status"], read["decided_by"]) == ("approved", "olga")
    again = await approver.post(
        f"/console/changes/{pending['id']}/reject", data={}, headers=SAME_ORIGIN
    )
    assert again.status_code == 409 and _refusal(again) == ("409", "conflict")
    assert "cannot reject a change that is approved" in again.text

    high = await change(mine["id"], subject="rita", risk_level="high")
    shown = await approver.get(f"/console/changes/{high['id']}")
    assert 'id="not-your-role"' in shown.text and 'id="decide-form"' not in shown.text
    role = await approver.post(f"/console/changes/{high['id']}/approve", headers=SAME_ORIGIN)
    assert role.status_code == 403 and "approved by: owner" in role.text
    owner = await person("owner", subject="omar")
    granted = await owner.post(f"/console/changes/{high['id']}/approve", headers=SAME_ORIGIN)
    assert granted.status_code == 303


async def test_an_expired_change_answers_409_and_a_viewer_cannot_decide(
    person: Callable,
    ticket: Callable,
    change: Callable,
    app: Starlette,
    tenant: str,
) -> None:
    mine = await ticket()
    late = await change(mine["id"], expires_in_seconds=60)
    await app.state.ledger.pool.execute(
        "UPDATE change_requests SET expires_at = now() - interval '1 second' WHERE id = $1",
        UUID(late["id"]),
    )
    approver = await person("operator", subject="olga")
    page = await approver.get(f"/console/changes/{late['id']}")
    assert 'data-status="expired"' in page.text and 'id="decide-form"' not in page.text
    expired = await approver.post(f"/console/changes/{late['id']}/approve", headers=SAME_ORIGIN)
    assert expired.status_code == 409 and _refusal(expired) == ("409", "conflict")
    assert "cannot approve a change that is expired" in expired.text

    pending = await change(mine["id"])
    viewer = await person("viewer")
    shown = await viewer.get(f"/console/changes/{pending['id']}")
    assert shown.status_code == 200 and 'id="decide-form"' not in shown.text
    forged = await viewer.post(f"/console/changes/{pending['id']}/approve", headers=SAME_ORIGIN)
    assert (forged.status_code, error_code(forged)) == (403, "forbidden")
    unknown = await approver.post(f"/console/changes/{pending['id']}/bless", headers=SAME_ORIGIN)
    assert (unknown.status_code, error_code(unknown)) == (404, "not_found")
    other = await person("operator", subject="olga", tenant_id=f"{tenant}-other")
    for response in (
        await other.get(f"/console/changes/{pending['id']}"),
        await other.post(f"/console/changes/{pending['id']}/approve", headers=SAME_ORIGIN),
    ):
        assert (response.status_code, error_code(response)) == (404, "not_found")
    assert pending["id"] not in (await other.get("/console/changes")).text


def _feed(page: httpx.Response) -> list[tuple[str, str, str]]:
    return re.findall(r'data-source="(\w+)" data-key="([^"]+)" data-action="(\w+)"', page.text)


async def test_the_audit_feed_filters_and_pages_by_cursor(
    person: Callable, ticket: Callable, http: httpx.AsyncClient, auth: Callable
) -> None:
    mine = await ticket(title="Feed ticket")
    other = await ticket(title="Another")
    url = f"{TICKETS}/{mine['id']}/notes"
    for visibility in ("internal", "public"):
        body = {"body": f"A {visibility} note", "visibility": visibility}
        assert (await http.post(url, json=body, headers=auth())).status_code == 201
    operator = await person("operator")

    everything = _feed(await operator.get("/console/audit"))
    assert {source for source, _, _ in everything} == {"audit", "note"}
    audit = _feed(await operator.get("/console/audit?source=audit"))
    assert audit and {source for source, _, _ in audit} == {"audit"}
    created = _feed(await operator.get("/console/audit?action=ticket_created"))
    assert [action for _, _, action in created] == ["ticket_created", "ticket_created"]
    about_mine = await operator.get(f"/console/audit?ticket_id={mine['id']}")
    assert other["id"] not in about_mine.text and _feed(about_mine)
    notes = _feed(await operator.get(f"/console/audit?source=note&ticket_id={mine['id']}"))
    assert len(notes) == 2
    viewer = await person("viewer")
    public = await viewer.get(f"/console/audit?source=note&ticket_id={mine['id']}")
    assert len(_feed(public)) == 1 and "A public note" in public.text
    searched = await operator.get("/console/audit?q=public")
    assert "A public note" in searched.text and "A internal note" not in searched.text
    assert _feed(await operator.get("/console/audit?actor=nobody-at-all")) == []

    # A page holds 50: make more records than that, then follow the cursor.
    for index in range(50):
        body = {"body": f"note {index}"}
        assert (await http.post(url, json=body, headers=auth())).status_code == 201
    first = await operator.get("/console/audit?source=audit")
    cursor = re.search(r'href="\?([^"]*cursor=[^"]+)" rel="next"', first.text)
    assert cursor is not None
    second = await operator.get("/console/audit?" + cursor.group(1).replace("&amp;", "&"))
    keys = [int(key) for _, key, _ in _feed(first) + _feed(second)]
    assert keys == sorted(keys, reverse=True) and len(set(keys)) == len(keys) > 50
    assert "source=audit" in cursor.group(1)  # the filters are kept
    for bad in ("source=log", "level=loud", "cursor=nope", "limit=5"):
        refused = await operator.get(f"/console/audit?{bad}")
        assert (refused.status_code, error_code(refused)) == (400, "invalid_request"), bad


async def test_verify_shows_the_chain_holds_then_where_it_breaks(
    person: Callable, ticket: Callable, app: Starlette, tenant: str
) -> None:
    for title in ("One", "Two", "Three", "Four"):
        await ticket(title=title)
    viewer = await person("viewer")
    held = await viewer.get("/console/audit/verify")
    assert held.status_code == 200 and 'data-intact="true"' in held.text
    assert "4 records checked" in held.text
    fragment = await viewer.get("/console/audit/verify", headers={"hx-request": "true"})
    assert 'data-intact="true"' in fragment.text and "<html" not in fragment.text

    pool = app.state.ledger.pool
    await pool.execute(
        "UPDATE audit_records SET actor = 'mallory' WHERE tenant_id = $1 AND seq = 3", tenant
    )
    changed = await viewer.get("/console/audit/verify")
    assert 'data-break-seq="3" data-break-reason="hash_mismatch"' in changed.text
    assert '<dd data-field="actor">mallory</dd>' in changed.text
    assert "2 records before it check out" in changed.text

    await pool.execute("DELETE FROM audit_records WHERE tenant_id = $1 AND seq = 3", tenant)
    removed = await viewer.get("/console/audit/verify")
    # The first record out of place is the one after the gap.
    assert 'data-break-seq="4" data-break-reason="sequence_gap"' in removed.text
    assert "Record #3 was expected here; record #4 came instead." in removed.text
    await pool.execute("DELETE FROM audit_records WHERE tenant_id = $1 AND seq = 4", tenant)
    cut = await viewer.get("/console/audit/verify")
    # Record 4 was the head: the chain now stops short of it, at the first one missing.
    assert 'data-break-seq="3" data-break-reason="sequence_gap"' in cut.text
    assert "Record #3 was expected here; the chain ends before it." in cut.text
    assert 'id="broken-record-missing"' in cut.text
    bad = await viewer.get("/console/audit/verify?deep=1")
    assert (bad.status_code, error_code(bad)) == (400, "invalid_request")


async def test_pending_changes_wait_under_approvals_and_are_decided_there(
    person: Callable, ticket: Callable, change: Callable, app: Starlette
) -> None:
    mine = await ticket()
    waiting = await change(mine["id"], subject="rita", command="systemctl reload nginx")
    late = await change(mine["id"], subject="rita", target="host:late")
    await app.state.ledger.pool.execute(
        "UPDATE change_requests SET expires_at = now() - interval '1 second' WHERE id = $1",
        UUID(late["id"]),
    )
    viewer = await person("viewer")
    shown = await viewer.get("/console/approvals")
    assert _ids(shown, 'data-approval-kind="change" data-change-id') == [waiting["id"]]
    assert "systemctl reload nginx" in shown.text and "Approve change" not in shown.text

    operator = await person("operator", subject="olga")
    listed = await operator.get("/console/approvals/rows")
    assert "Approve change" in listed.text
    decided = await operator.post(
        f"/console/changes/{waiting['id']}/approve",
        data={"reason": "ok", "back": "approvals"},
        headers=SAME_ORIGIN,
    )
    assert decided.status_code == 303
    assert decided.headers["location"] == "/console/approvals?done=change+approved"
    after = await operator.get("/console/approvals")
    assert waiting["id"] not in after.text


async def test_no_operations_screen_shows_a_planted_secret(
    person: Callable,
    ticket: Callable,
    change: Callable,
    http: httpx.AsyncClient,
    auth: Callable,
    app: Starlette,
    tenant: str,
) -> None:
    every_form = forms_text()
    mine = await ticket(title="Rotate the key: password: hunter2-yaml", description=every_form)
    url = f"{TICKETS}/{mine['id']}"
    note = await http.post(f"{url}/notes", json={"body": every_form}, headers=auth())
    assert note.status_code == 201, note.text
    signed = "https://cdn.example/v.mp4?expires=1714600000&signature=hunter2-signed"
    attached = await http.post(
        f"{url}/attachments",
        json={"filename": "v.mp4", "size_bytes": 1, "storage_ref": signed},
        headers=auth(),
    )
    assert attached.status_code == 201, attached.text
    gate = await change(mine["id"], reason="password: hunter2-yaml", command=every_form)
    operator = await person("operator")
    await operator.post(
        f"/console/tickets/{mine['id']}/notes", data={"body": every_form}, headers=SAME_ORIGIN
    )
    # A record altered to break the chain is shown as stored: still redacted.
    await app.state.ledger.pool.execute(
        "UPDATE audit_records SET actor = 'mallory' WHERE tenant_id = $1 AND seq = 1", tenant
    )
    for path in (
        "/console/tickets",
        f"/console/tickets/{mine['id']}",
        f"/console/tickets/{mine['id']}/body",
        "/console/changes",
        f"/console/changes/{gate['id']}",
        "/console/approvals",
        "/console/audit",
        "/console/audit?q=hunter2",
        "/console/audit/verify",
    ):
        page = await operator.get(path)
        assert page.status_code == 200, path
        assert leaked(page.text) == [], path
    refused = await (await person("operator", subject="rita")).post(
        f"/console/changes/{gate['id']}/approve", headers=SAME_ORIGIN
    )
    assert refused.status_code == 403 and leaked(refused.text) == []
