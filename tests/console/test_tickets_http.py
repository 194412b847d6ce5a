"""The console's ticket screens over HTTP, in process: tickets filtered as the REST
list is, one ticket with its notes (source, visibility), attachments, change and access
requests, linked tasks and its agents' steering events in each state; a note added and
the status changed from the console, within the ticket's workflow. Everything is the
tenant's only; a viewer sees no form and a forged action is refused."""

import re
from collections.abc import Callable
from uuid import UUID, uuid4

import asyncpg
import httpx
from operations_people import TICKETS, ids, refusal
from operations_people import change as change  # the fixtures
from operations_people import person as person
from operations_people import ticket as ticket
from planted_secrets import leaked
from signed_in import SAME_ORIGIN, error_code
from starlette.applications import Starlette

from ledger.steering import steer_ticket_agent


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
    assert ids(everything, "data-ticket-id") == [routine["id"], urgent["id"]]
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
        assert ids(page, "data-ticket-id") == shown, query
        rows = await viewer.get(f"/console/tickets/rows?{query}")
        assert ids(rows, "data-ticket-id") == shown, query
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
    assert gate["id"] in ids(page, "data-change-id")
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
    # Refused in words on the ticket's page, with the API's status and code.
    assert (reopened.status_code, refusal(reopened)) == (409, ("409", "conflict"))
    assert "Status not changed." in reopened.text
    assert "cannot change the status of a ticket that is closed" in reopened.text
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
    assert 'data-assignment="assigned"' in page.text and "(offline)" in page.text

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
