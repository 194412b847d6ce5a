"""Change requests as agents and approvers use them: request on a ticket, poll, approve
as the risk level's rule says (never one's own), reject, complete; an expired change
cannot be approved and expires by itself; every transition leaves a ticket note and an
audit record; another tenant's change is not found."""

import asyncio
from datetime import datetime, timedelta
from uuid import UUID

import pytest

from dispatcher.change_expiry import ChangeExpiry, ChangeExpiryConfig
from ledger.policy import load_policy

CHANGES = "/api/changes"


@pytest.fixture
async def ticket_id(http, auth) -> str:
    response = await http.post("/api/tickets", json={"title": "Phishing"}, headers=auth())
    assert response.status_code == 201, response.text
    return response.json()["ticket"]["id"]


@pytest.fixture
def request_change(http, auth, ticket_id):
    async def request(subject: str = "agent-26", **fields: object) -> dict:
        body = {
            "ticket_id": ticket_id,
            "action": "block_url",
            "target": "https://example.invalid/phish",
            "reason": "Confirmed phishing URL.",
            "command": "no-op in lab",
            "risk_level": "medium",
            "approval_policy": {"requires_human": True},
        }
        body.update(fields)
        response = await http.post(f"{CHANGES}/request", json=body, headers=auth(subject=subject))
        assert response.status_code == 201, response.text
        return response.json()["change"]

    return request


async def _note_kinds(http, auth, ticket_id: str) -> list[str]:
    notes = (await http.get(f"/api/tickets/{ticket_id}/notes", headers=auth())).json()["notes"]
    return [note["kind"] for note in notes]


async def _audit_actions(pool, tenant: str, change_id: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT action FROM audit_records WHERE tenant_id = $1 AND target_id = $2 ORDER BY seq",
        tenant,
        change_id,
    )
    return [row["action"] for row in rows]


async def test_request_approve_complete(http, auth, pool, tenant, ticket_id, request_change):
    change = await request_change()
    assert change["status"] == "pending" and change["requested_by"] == "agent-26"
    assert change["approver_roles"] == ["operator", "owner"]
    assert change["approvals_required"] == 1
    polled = await http.get(f"{CHANGES}/{change['id']}/status", headers=auth("viewer"))
    assert polled.json()["change"]["status"] == "pending"
    pending = (await http.get(f"{CHANGES}/pending", headers=auth())).json()["changes"]
    assert [c["id"] for c in pending] == [change["id"]]
    approved = await http.post(
        f"{CHANGES}/{change['id']}/approve",
        json={"approved_by": "operator", "reason": "Reviewed evidence."},
        headers=auth(subject="bob"),
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["change"]["status"] == "approved"
    assert approved.json()["change"]["decided_by"] == "bob"
    assert [a["by"] for a in approved.json()["change"]["approvals"]] == ["bob"]
    assert (await http.get(f"{CHANGES}/pending", headers=auth())).json()["changes"] == []
    completed = await http.post(
        f"{CHANGES}/{change['id']}/complete",
        json={"completed_by": "agent_26", "result": "URL block applied in test."},
        headers=auth(subject="agent-26"),
    )
    assert completed.status_code == 200, completed.text
    assert completed.json()["change"]["status"] == "completed"
    assert completed.json()["change"]["result"] == "URL block applied in test."
    assert await _note_kinds(http, auth, ticket_id) == [
        "change_requested",
        "change_approved",
        "change_completed",
    ]
    assert await _audit_actions(pool, tenant, change["id"]) == [
        "change_requested",
        "change_approved",
        "change_completed",
    ]
    detail = (await http.get(f"/api/tickets/{ticket_id}", headers=auth())).json()
    assert [c["status"] for c in detail["change_requests"]] == ["completed"]


async def test_the_requester_can_never_approve_its_own_change(http, auth, request_change):
    change = await request_change(subject="alice")
    for role in ("operator", "owner"):
        own = await http.post(
            f"{CHANGES}/{change['id']}/approve", json={}, headers=auth(role, subject="alice")
        )
        assert own.status_code == 403, own.text
    # Naming someone else in the body changes nothing: the token says who approves.
    claimed = await http.post(
        f"{CHANGES}/{change['id']}/approve",
        json={"approved_by": "bob"},
        headers=auth(subject="alice"),
    )
    assert claimed.status_code == 403
    status = (await http.get(f"{CHANGES}/{change['id']}/status", headers=auth())).json()
    assert status["change"]["status"] == "pending"


async def test_who_may_approve_follows_the_risk_level(http, auth, request_change):
    high = await request_change(risk_level="high")
    assert high["approver_roles"] == ["owner"]
    operator = await http.post(
        f"{CHANGES}/{high['id']}/approve", json={}, headers=auth("operator", subject="bob")
    )
    assert operator.status_code == 403, operator.text
    assert operator.json()["error"]["details"]["approver_roles"] == ["owner"]
    owner = await http.post(
        f"{CHANGES}/{high['id']}/approve", json={}, headers=auth("owner", subject="carol")
    )
    assert owner.json()["change"]["status"] == "approved"


async def test_a_critical_change_needs_two_distinct_approvers(http, auth, request_change):
    critical = await request_change(risk_level="critical")
    url = f"{CHANGES}/{critical['id']}/approve"
    first = await http.post(url, json={}, headers=auth("owner", subject="carol"))
    assert first.json()["change"]["status"] == "pending"
    again = await http.post(url, json={}, headers=auth("owner", subject="carol"))
    assert again.status_code == 409, again.text
    second = await http.post(url, json={}, headers=auth("owner", subject="dave"))
    assert second.json()["change"]["status"] == "approved"
    assert [a["by"] for a in second.json()["change"]["approvals"]] == ["carol", "dave"]


async def test_a_decided_change_is_409_with_its_status(http, auth, request_change):
    change = await request_change()
    url = f"{CHANGES}/{change['id']}"
    rejected = await http.post(
        url + "/reject",
        json={"rejected_by": "operator", "reason": "Insufficient evidence"},
        headers=auth(subject="bob"),
    )
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["change"]["status"] == "rejected"
    for action in ("approve", "reject", "complete"):
        late = await http.post(f"{url}/{action}", json={}, headers=auth(subject="carol"))
        assert late.status_code == 409, (action, late.text)
        assert late.json()["error"]["details"]["current_status"] == "rejected"
    pending = await request_change()
    early = await http.post(
        f"{CHANGES}/{pending['id']}/complete", json={}, headers=auth(subject="bob")
    )
    assert early.status_code == 409
    assert early.json()["error"]["details"]["current_status"] == "pending"


async def _past_expiry(pool, change_id: str) -> None:
    await pool.execute(
        "UPDATE change_requests SET expires_at = now() - interval '1 second' WHERE id = $1",
        change_id,
    )


async def test_an_expired_change_cannot_be_approved(
    http, auth, pool, tenant, ticket_id, request_change
):
    change = await request_change(expires_in_seconds=60)
    await _past_expiry(pool, change["id"])
    read = (await http.get(f"{CHANGES}/{change['id']}", headers=auth())).json()
    assert read["change"]["status"] == "expired"
    approved = await http.post(
        f"{CHANGES}/{change['id']}/approve", json={}, headers=auth(subject="bob")
    )
    assert approved.status_code == 409, approved.text
    assert approved.json()["error"]["details"]["current_status"] == "expired"
    # The refusal wrote the expiry down, once.
    stored = await pool.fetchval("SELECT status FROM change_requests WHERE id = $1", change["id"])
    assert stored == "expired"
    assert await _note_kinds(http, auth, ticket_id) == ["change_requested", "change_expired"]
    assert await _audit_actions(pool, tenant, change["id"]) == [
        "change_requested",
        "change_expired",
    ]


async def test_expiry_happens_by_itself(http, auth, pool, tenant, ticket_id, request_change):
    change = await request_change()
    await _past_expiry(pool, change["id"])
    sweeper = ChangeExpiry(pool, load_policy(), ChangeExpiryConfig(actor="dispatcher:test"))
    assert await sweeper.run_once() >= 1
    stored = await pool.fetchval("SELECT status FROM change_requests WHERE id = $1", change["id"])
    assert stored == "expired"
    assert await _note_kinds(http, auth, ticket_id) == ["change_requested", "change_expired"]
    actors = await pool.fetch(
        "SELECT actor FROM audit_records WHERE tenant_id = $1 AND action = 'change_expired'",
        tenant,
    )
    assert [row["actor"] for row in actors] == ["dispatcher:test"]
    assert await sweeper.run_once() == 0  # nothing left; a second sweep writes nothing


async def test_expiry_is_bounded_by_the_lanes_file(request_change):
    change = await request_change(expires_in_seconds=30 * 86_400)
    waits = datetime.fromisoformat(change["expires_at"]) - datetime.fromisoformat(
        change["created_at"]
    )
    assert timedelta(days=6) < waits <= timedelta(days=7)  # max_expiry_seconds


async def test_list_filters_and_stats(http, auth, ticket_id, request_change):
    agent = "0b6c3f4e-6d0f-4a43-9a57-2d9d1c8a7e10"
    low = await request_change(risk_level="low", agent_id=agent)
    high = await request_change(risk_level="high")
    await http.post(f"{CHANGES}/{low['id']}/approve", json={}, headers=auth(subject="bob"))

    async def ids(**params: object) -> list[str]:
        response = await http.get(CHANGES, params=params, headers=auth("viewer"))
        assert response.status_code == 200, response.text
        return [c["id"] for c in response.json()["changes"]]

    assert await ids() == [high["id"], low["id"]]
    assert await ids(status="approved") == [low["id"]]
    assert await ids(agent_id=agent) == [low["id"]]
    assert await ids(ticket_id=ticket_id, risk_level="high") == [high["id"]]
    assert (await http.get(CHANGES, params={"status": "done"}, headers=auth())).status_code == 400
    stats = (await http.get(f"{CHANGES}/stats", headers=auth("viewer"))).json()["stats"]
    assert stats == {
        "total": 2,
        "pending": 1,
        "by_status": {"approved": 1, "pending": 1},
        "by_risk_level": {"low": 1, "high": 1},
    }


async def test_bad_requests(http, auth, ticket_id):
    base = {"ticket_id": ticket_id, "action": "block_url", "target": "x"}
    for bad in (
        {**base, "risk_level": "extreme"},
        {**base, "ticket_id": "not-a-uuid"},
        {**base, "approval_policy": {"requires_human": "yes"}},
        {**base, "expires_in_seconds": 0},
        {k: v for k, v in base.items() if k != "action"},
    ):
        response = await http.post(f"{CHANGES}/request", json=bad, headers=auth())
        assert response.status_code == 400, (bad, response.text)
    missing = {**base, "ticket_id": "0b6c3f4e-6d0f-4a43-9a57-2d9d1c8a7e10"}
    assert (await http.post(f"{CHANGES}/request", json=missing, headers=auth())).status_code == 404
    viewer = await http.post(f"{CHANGES}/request", json=base, headers=auth("viewer"))
    assert viewer.status_code == 403


async def test_another_tenants_change_is_not_found(http, auth, ticket_id, request_change):
    change = await request_change()
    other = auth("owner", subject="mallory", tenant_id="another-tenant")
    url = f"{CHANGES}/{change['id']}"
    for response in (
        await http.get(url, headers=other),
        await http.get(url + "/status", headers=other),
        await http.post(url + "/approve", json={}, headers=other),
        await http.post(url + "/reject", json={}, headers=other),
        await http.post(url + "/complete", json={}, headers=other),
        await http.post(
            f"{CHANGES}/request",
            json={"ticket_id": ticket_id, "action": "a", "target": "t"},
            headers=other,
        ),
    ):
        assert response.status_code == 404, response.text
    assert (await http.get(CHANGES, headers=other)).json()["changes"] == []
    assert (await http.get(f"{url}/status", headers=auth())).json()["change"]["status"] == "pending"


async def test_two_approvers_at_once_decide_once(http, auth, request_change):
    change = await request_change()
    url = f"{CHANGES}/{change['id']}/approve"
    answers = await asyncio.gather(
        *(http.post(url, json={}, headers=auth(subject=who)) for who in ("bob", "carol"))
    )
    assert sorted(answer.status_code for answer in answers) == [200, 409]
    decided = (await http.get(f"{CHANGES}/{change['id']}", headers=auth())).json()["change"]
    assert len(decided["approvals"]) == 1 and decided["status"] == "approved"


async def test_an_approved_change_is_what_lets_the_agents_write_proceed(
    app, http, auth, tenant, ticket_id, request_change
):
    agent = "0b6c3f4e-6d0f-4a43-9a57-2d9d1c8a7e10"
    change = await request_change(agent_id=agent, target="db01:/etc/app.conf")
    ledger = app.state.ledger
    ask = {"ticket_id": UUID(ticket_id), "agent_id": UUID(agent), "target": "db01:/etc/app.conf"}
    assert await ledger.approved_change_for(tenant, **ask) is None
    await http.post(f"{CHANGES}/{change['id']}/approve", json={}, headers=auth(subject="bob"))
    approved = await ledger.approved_change_for(tenant, **ask)
    assert approved is not None and str(approved.id) == change["id"]
    assert await ledger.approved_change_for(tenant, **{**ask, "target": "db02"}) is None
    assert await ledger.approved_change_for("another-tenant", **ask) is None
