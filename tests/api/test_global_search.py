"""`GET /api/search/global`: full-text search over the tenant's records, best matches
first, never another tenant's, never a secret."""

SEARCH = "/api/search/global"
TASKS = "/api/agents/tasks"
REVIEWED = {"lane": "change-prod", "mutation_level": "write_prod", "scope": {"rollback": "x"}}


async def _search(http, auth, q: str, **params) -> dict:
    response = await http.get(SEARCH, params={"q": q, **params}, headers=auth("viewer"))
    assert response.status_code == 200, response.text
    return response.json()


async def test_audit_records_are_found_by_what_they_say(http, auth, new_task) -> None:
    task = (await new_task(**REVIEWED))["task"]
    await http.post(
        f"{TASKS}/{task['id']}/approve",
        json={"reason": "rotate the payments ledger replica, password: hunter2-search"},
        headers=auth(subject="olivia"),
    )
    found = await _search(http, auth, "payments replica")
    assert [(hit["kind"], hit["title"]) for hit in found["results"]] == [
        ("audit", f"approved task {task['id']}")
    ]
    assert "**payments**" in found["results"][0]["snippet"]
    assert "hunter2" not in str(found)
    assert (await _search(http, auth, "hunter2-search"))["results"] == []
    assert (await _search(http, auth, "olivia -payments"))["results"] == []


async def test_agents_are_found_by_name_and_model(http, auth, new_task) -> None:
    await new_task()
    claim = (
        await http.post("/api/agent/tasks/claim-next", json={}, headers=auth("worker"))
    ).json()["claim"]
    assert claim is not None
    found = await _search(http, auth, "offline")
    agents = [hit for hit in found["results"] if hit["kind"] == "agent"]
    assert len(agents) == 1 and agents[0]["agent_id"] == agents[0]["id"]
    assert "offline" in agents[0]["snippet"]
    assert "session_credential" not in str(found) and claim["session_credential"] not in str(found)


async def test_search_is_the_tenants_own_and_bounded(http, auth, new_task, tenant) -> None:
    for _ in range(3):
        task = (await new_task(**REVIEWED))["task"]
        await http.post(f"{TASKS}/{task['id']}/approve", json={"reason": "nightly"}, headers=auth())
    assert len((await _search(http, auth, "nightly"))["results"]) == 3
    assert len((await _search(http, auth, "nightly", limit=2))["results"]) == 2
    other = await http.get(
        SEARCH, params={"q": "nightly"}, headers=auth(tenant_id=f"other-{tenant}")
    )
    assert other.json()["results"] == []
    assert (await _search(http, auth, ""))["results"] == []
    assert (await _search(http, auth, "!!! &&"))["results"] == []
    assert (await http.get(SEARCH, params={"limit": 0}, headers=auth())).status_code == 400


async def test_tickets_and_notes_are_found_as_the_role_may_read_them(http, auth) -> None:
    created = await http.post(
        "/api/tickets",
        json={"title": "VPN outage in Lisbon", "description": "Users cannot reach the VPN."},
        headers=auth(),
    )
    ticket = created.json()["ticket"]["id"]
    for body, visibility in (
        ("Lisbon concentrator rebooted; db_password=hunter2-note", "internal"),
        ("Lisbon users: we are on it.", "public"),
    ):
        await http.post(
            f"/api/tickets/{ticket}/notes",
            json={"body": body, "visibility": visibility},
            headers=auth(),
        )
    as_operator = await http.get(SEARCH, params={"q": "lisbon"}, headers=auth("operator"))
    kinds = [(hit["kind"], hit["ticket_id"]) for hit in as_operator.json()["results"]]
    assert sorted(kinds) == [("note", ticket), ("note", ticket), ("ticket", ticket)]
    assert "hunter2" not in as_operator.text
    as_viewer = (await _search(http, auth, "lisbon"))["results"]
    assert sorted(hit["kind"] for hit in as_viewer) == ["note", "ticket"]
    assert "on it" in next(hit["snippet"] for hit in as_viewer if hit["kind"] == "note")
    worker = await http.get(SEARCH, params={"q": "lisbon"}, headers=auth("worker"))
    assert worker.status_code == 403


async def test_change_requests_are_found_by_action_target_and_reason(http, auth) -> None:
    ticket = (await http.post("/api/tickets", json={"title": "Mail flow"}, headers=auth())).json()[
        "ticket"
    ]["id"]
    change = await http.post(
        "/api/changes/request",
        json={
            "ticket_id": ticket,
            "action": "block_sender",
            "target": "mallory@example.invalid",
            "reason": "Quarantine the sender behind the invoice campaign.",
            "command": "mailctl block --token hunter2-command",
            "risk_level": "low",
        },
        headers=auth(subject="agent-26"),
    )
    assert change.status_code == 201, change.text
    found = await _search(http, auth, "invoice campaign")
    changes = [hit for hit in found["results"] if hit["kind"] == "change"]
    assert [(hit["id"], hit["ticket_id"]) for hit in changes] == [
        (change.json()["change"]["id"], ticket)
    ]
    assert "**invoice**" in changes[0]["snippet"] and "hunter2" not in str(found)
    assert [h["kind"] for h in (await _search(http, auth, "mailctl"))["results"]] == []
