"""The agent registry and threads over HTTP: listing agents, opening, listing and
reading threads, each scoped to the caller's tenant."""

THREADS = "/api/v1/threads"


async def test_agents_are_listed_from_the_registry(http, auth) -> None:
    response = await http.get("/api/v1/agents", headers=auth("viewer"))
    assert response.status_code == 200
    agents = {agent["id"]: agent for agent in response.json()["agents"]}
    assert agents["it-router"]["type"] == "router"
    assert set(agents["it-router"]["routes_to"]) == {
        "incident-analyst",
        "change-planner",
        "runbook-agent",
    }
    assert agents["change-planner"]["lane"] == "change-nonprod"
    assert (await http.get("/api/v1/agents")).status_code == 401


async def test_a_thread_is_opened_for_a_registered_agent(http, auth) -> None:
    response = await http.post(THREADS, json={"agent_type": "sql-agent"}, headers=auth())
    assert response.status_code == 400
    assert response.json()["error"]["details"]["field"] == "agent_type"
    viewer = await http.post(THREADS, json={"agent_type": "it-router"}, headers=auth("viewer"))
    assert viewer.status_code == 403
    created = await http.post(
        THREADS, json={"agent_type": "it-router", "title": "checkout"}, headers=auth()
    )
    assert created.status_code == 201, created.text
    thread = created.json()["thread"]
    assert (thread["agent_type"], thread["title"], thread["message_count"]) == (
        "it-router",
        "checkout",
        0,
    )
    assert thread["session_id"] == thread["id"]


async def test_threads_are_the_tenants_own(http, auth) -> None:
    ids = []
    for agent in ("it-router", "runbook-agent"):
        response = await http.post(THREADS, json={"agent_type": agent}, headers=auth())
        ids.append(response.json()["thread"]["id"])
    listed = await http.get(THREADS, headers=auth("viewer"))
    assert [t["id"] for t in listed.json()["threads"]] == ids[::-1]
    assert "messages" not in listed.json()["threads"][0]
    filtered = await http.get(THREADS, params={"agent_type": "it-router"}, headers=auth())
    assert [t["id"] for t in filtered.json()["threads"]] == ids[:1]
    misspelt = await http.get(THREADS, params={"agent": "it-router"}, headers=auth())
    assert misspelt.status_code == 400

    detail = await http.get(f"{THREADS}/{ids[0]}", headers=auth("viewer"))
    assert detail.status_code == 200
    assert detail.json()["messages"] == []
    other = auth(tenant_id="another-tenant")
    assert (await http.get(f"{THREADS}/{ids[0]}", headers=other)).status_code == 404
    assert (await http.get(THREADS, headers=other)).json()["threads"] == []
