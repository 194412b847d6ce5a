"""`GET /api/dashboard/audit`: decisions people make are audit records from the moment
they are made (approvals, break glass, rejections, spawn refusals), merged newest first
with the trace events of the tenant's runs, filtered and paged without losing or
repeating an entry, and never another tenant's."""

import httpx
import pytest

FEED = "/api/dashboard/audit"
TASKS = "/api/agents/tasks"
REVIEWED = {"lane": "change-prod", "mutation_level": "write_prod", "scope": {"rollback": "x"}}


async def _feed(http: httpx.AsyncClient, auth, **params) -> dict:
    response = await http.get(FEED, params=params, headers=auth())
    assert response.status_code == 200, response.text
    return response.json()


async def test_an_approval_is_an_audit_record_beside_its_trace_event(http, auth, new_task) -> None:
    task = (await new_task(**REVIEWED))["task"]
    approved = await http.post(
        f"{TASKS}/{task['id']}/approve",
        json={"reason": "change window"},
        headers=auth(subject="olivia"),
    )
    assert approved.status_code == 200
    audit = (await _feed(http, auth, source="audit"))["entries"]
    assert [(e["action"], e["actor"], e["category"], e["level"]) for e in audit] == [
        ("approved", "olivia", "approval", "info")
    ]
    assert audit[0]["target_type"] == "task" and audit[0]["target_id"] == task["id"]
    assert audit[0]["detail"]["reason"] == "change window"
    assert audit[0]["detail"]["to_status"] == "queued"
    events = (await _feed(http, auth, source="event", target=task["id"]))["entries"]
    assert events[0]["action"] == "approved" and "created" in [e["action"] for e in events]
    assert {e["source"] for e in (await _feed(http, auth))["entries"]} == {"audit", "event"}


async def test_break_glass_is_audited_as_a_warning_when_asked_and_when_approved(
    http, auth, new_task
) -> None:
    # No rollback plan on a production write: the policy denies it.
    task = (
        await new_task(
            role="owner",
            lane="change-prod",
            mutation_level="write_prod",
            break_glass_acknowledged=True,
        )
    )["task"]
    await http.post(
        f"{TASKS}/{task['id']}/approve",
        json={"break_glass_acknowledged": True, "reason": "sev1"},
        headers=auth("owner", subject="olivia"),
    )
    warnings = (await _feed(http, auth, source="audit", level="warning"))["entries"]
    assert [(e["action"], e["actor"]) for e in warnings] == [
        ("break_glass_approved", "olivia"),
        ("break_glass_requested", "alice"),
    ]
    assert warnings[0]["detail"]["break_glass"] is True
    verified = await http.get("/api/audit/verify", headers=auth("viewer"))
    assert verified.json()["intact"] is True and verified.json()["head_seq"] == 2


async def test_a_policy_denial_and_a_rejection_are_audited(http, auth, new_task) -> None:
    denied = (await new_task(lane="change-prod", mutation_level="write_prod"))["task"]
    assert denied["status"] == "denied"
    pending = (await new_task(**REVIEWED))["task"]
    await http.post(f"{TASKS}/{pending['id']}/reject", json={"reason": "no"}, headers=auth())
    audit = (await _feed(http, auth, source="audit"))["entries"]
    assert [(e["action"], e["target_id"]) for e in audit] == [
        ("rejected", pending["id"]),
        ("policy_denied", denied["id"]),
    ]
    assert audit[1]["category"] == "policy" and audit[1]["detail"]["reasons"]


async def test_a_refused_spawn_is_audited(http, auth, new_task) -> None:
    await new_task()
    claim = (
        await http.post("/api/agent/tasks/claim-next", json={}, headers=auth("worker"))
    ).json()["claim"]
    refused = await http.post(
        "/api/agent/spawn",
        json={"instructions": "Check db01.", "permissions": {"skills": ["root_access"]}},
        headers={"Authorization": f"Bearer {claim['session_credential']}"},
    )
    assert refused.status_code == 403
    audit = (await _feed(http, auth, category="spawn"))["entries"]
    assert [(e["action"], e["level"]) for e in audit] == [("spawn_refused", "warning")]
    assert audit[0]["agent_id"] == audit[0]["target_id"]
    assert audit[0]["detail"]["code"] == "spawn_permission_denied"
    by_agent = await _feed(http, auth, agent_id=audit[0]["agent_id"], source="audit")
    assert by_agent["entries"] == audit


async def test_filters_narrow_every_source(http, auth, new_task) -> None:
    first = (await new_task(**REVIEWED))["task"]
    second = (await new_task(**REVIEWED))["task"]
    await http.post(f"{TASKS}/{first['id']}/approve", json={}, headers=auth(subject="olivia"))
    await http.post(
        f"{TASKS}/{second['id']}/reject",
        json={"reason": "rollback plan missing"},
        headers=auth(subject="rahul"),
    )
    by_actor = (await _feed(http, auth, actor="rahul"))["entries"]
    assert {(e["source"], e["action"]) for e in by_actor} == {
        ("audit", "rejected"),
        ("event", "rejected"),
    }
    assert (await _feed(http, auth, action="approved", source="audit"))["entries"][0][
        "target_id"
    ] == first["id"]
    assert {e["target_id"] for e in (await _feed(http, auth, target=second["id"]))["entries"]} == {
        second["id"]
    }
    by_text = (await _feed(http, auth, q="rollback plan", source="audit"))["entries"]
    assert [e["action"] for e in by_text] == ["rejected"]
    assert (await _feed(http, auth, category="approval", source="event"))["entries"] == []
    assert (await _feed(http, auth, category="operations", source="audit"))["entries"] == []


async def test_pages_walk_the_whole_feed_once(http, auth, new_task) -> None:
    for _ in range(3):
        task = (await new_task(**REVIEWED))["task"]
        await http.post(f"{TASKS}/{task['id']}/approve", json={}, headers=auth())
    whole = (await _feed(http, auth, limit=200))["entries"]
    seen, cursor = [], None
    while True:
        page = await _feed(http, auth, limit=4, **({"cursor": cursor} if cursor else {}))
        seen += page["entries"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [(e["source"], e["key"]) for e in seen] == [(e["source"], e["key"]) for e in whole]
    assert len(whole) > 4 and len({(e["source"], e["key"]) for e in whole}) == len(whole)
    times = [e["created_at"] for e in whole]
    assert times == sorted(times, reverse=True)


async def test_another_tenant_sees_none_of_it(http, auth, new_task, tenant) -> None:
    task = (await new_task(**REVIEWED))["task"]
    await http.post(f"{TASKS}/{task['id']}/approve", json={}, headers=auth())
    other = await http.get(FEED, headers=auth(tenant_id=f"other-{tenant}"))
    assert other.json() == {"entries": [], "next_cursor": None}


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "not-a-cursor"},
        {"cursor": "1.event.00000000-0000-0000-0000-00000000000g:1"},
        {"limit": "0"},
        {"level": "loud"},
        {"source": "gossip"},
        {"actr": "typo"},
    ],
)
async def test_bad_parameters_are_400(http, auth, params) -> None:
    response = await http.get(FEED, params=params, headers=auth())
    assert response.status_code == 400, response.text


async def _ticket_with_notes(http, auth) -> str:
    created = await http.post(
        "/api/tickets", json={"title": "Phishing report", "priority": 2}, headers=auth()
    )
    assert created.status_code == 201, created.text
    ticket = created.json()["ticket"]["id"]
    for body, visibility in (
        ("Scoped recipients, no further delivery.", "internal"),
        ("We are looking into it.", "public"),
    ):
        note = await http.post(
            f"/api/tickets/{ticket}/notes",
            json={"body": body, "author": "sam", "visibility": visibility},
            headers=auth(),
        )
        assert note.status_code in (200, 201), note.text
    return ticket


async def test_ticket_notes_are_in_the_feed_as_the_role_may_read_them(http, auth) -> None:
    ticket = await _ticket_with_notes(http, auth)
    notes = (await _feed(http, auth, source="note", actor="sam"))["entries"]
    assert [(e["summary"], e["detail"]["visibility"]) for e in notes] == [
        ("We are looking into it.", "public"),
        ("Scoped recipients, no further delivery.", "internal"),
    ]
    assert {(e["category"], e["target_type"], e["ticket_id"]) for e in notes} == {
        ("ticket", "ticket", ticket)
    }
    as_viewer = await http.get(
        FEED, params={"source": "note", "actor": "sam"}, headers=auth("viewer")
    )
    assert [e["summary"] for e in as_viewer.json()["entries"]] == ["We are looking into it."]
    # The ticket's whole trail: its notes and the audit records of what was done to it.
    trail = (await _feed(http, auth, ticket_id=ticket))["entries"]
    assert {e["source"] for e in trail} >= {"note", "audit"}
    assert (await _feed(http, auth, q="recipients", source="note"))["entries"][0]["key"] == (
        notes[1]["key"]
    )
    assert (await _feed(http, auth, ticket_id="not-a-ticket", source="note"))["entries"] == []


async def test_pages_walk_notes_and_audit_records_once(http, auth) -> None:
    for _ in range(2):
        await _ticket_with_notes(http, auth)
    whole = (await _feed(http, auth, limit=200))["entries"]
    assert {e["source"] for e in whole} >= {"note", "audit"}
    seen, cursor = [], None
    while True:
        page = await _feed(http, auth, limit=3, **({"cursor": cursor} if cursor else {}))
        seen += page["entries"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [(e["source"], e["key"]) for e in seen] == [(e["source"], e["key"]) for e in whole]


async def test_a_tickets_trail_holds_the_events_of_the_tasks_worked_for_it(http, auth) -> None:
    itr = {"request_number": "ITR-9", "title": "Disk full on app-7", "requester": "bob"}
    ticket = (await http.post("/api/it-requests", json=itr, headers=auth())).json()["ticket"]
    task = await http.post(
        "/api/agents/tasks/from-it-request/ITR-9", json={"lane": "analysis"}, headers=auth()
    )
    assert task.status_code == 201, task.text
    await new_unrelated_task(http, auth)
    events = (await _feed(http, auth, source="event", ticket_id=ticket["id"]))["entries"]
    assert events and {e["target_id"] for e in events} == {task.json()["task"]["id"]}
    assert {e["ticket_id"] for e in events} == {ticket["id"]}


async def new_unrelated_task(http, auth) -> None:
    body = {"lane": "analysis", "title": "Other", "instructions": "Summarise."}
    assert (await http.post(TASKS, json=body, headers=auth())).status_code == 201
