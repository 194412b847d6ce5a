"""The console's change and audit screens over HTTP, in process: change requests
pending first, decided by a permitted operator (here and under Approvals), the refusals
(the requester's own change, a role the risk level does not name, an expired or decided
change) shown as clear messages with the API's status; the audit feed with its filters
and cursor, and a verify that names the record where a chain altered in Postgres
breaks; no screen shows a planted secret. Everything is the tenant's only."""

import re
from collections.abc import Callable
from uuid import UUID

import httpx
from operations_people import CHANGES, TICKETS, ids, refusal
from operations_people import change as change  # the fixtures
from operations_people import person as person
from operations_people import ticket as ticket
from planted_secrets import forms_text, leaked
from signed_in import SAME_ORIGIN, error_code
from starlette.applications import Starlette


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
    assert ids(page, "data-change-id") == [sooner["id"], later["id"], decided["id"]]
    for query, shown in (
        ("status=pending", [sooner["id"], later["id"]]),
        ("status=rejected", [decided["id"]]),
        ("risk_level=high", [later["id"]]),
        ("status=pending&risk_level=medium", []),
    ):
        filtered = await viewer.get(f"/console/changes?{query}")
        assert ids(filtered, "data-change-id") == shown, query
        rows = await viewer.get(f"/console/changes/rows?{query}")
        assert ids(rows, "data-change-id") == shown, query
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
    assert refusal(refused) == ("403", "policy_forbidden")
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
    assert again.status_code == 409 and refusal(again) == ("409", "conflict")
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
    assert expired.status_code == 409 and refusal(expired) == ("409", "conflict")
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
    assert ids(shown, 'data-approval-kind="change" data-change-id') == [waiting["id"]]
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
