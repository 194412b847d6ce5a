"""Soul documents over HTTP: the calling session's agent's soul, the validation of one,
and a thread run's trace recording the digest of the soul its agent ran with."""

from uuid import UUID

from planted_secrets import WRITTEN_FORMS, forms_text, leaked

from ledger.repository import Actor

CLAIM_NEXT = "/api/agent/tasks/claim-next"


def _as(claim: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {claim['session_credential']}"}


async def _claim_thread_run(http, auth, app, tenant, agent: str, message: str) -> dict:
    thread = await http.post("/api/v1/threads", json={"agent_type": agent}, headers=auth())
    actor = Actor("alice", tenant, "operator")
    await app.state.ledger.start_run(actor, UUID(thread.json()["thread"]["id"]), message)
    return (await http.post(CLAIM_NEXT, json={}, headers=auth("worker"))).json()["claim"]


async def test_the_sessions_agent_soul(http, auth, app, tenant, new_task) -> None:
    claim = await _claim_thread_run(http, auth, app, tenant, "incident-analyst", "db01 is down")
    response = await http.get("/api/agent/soul", headers=_as(claim))
    assert response.status_code == 200, response.text
    soul = response.json()
    expected = app.state.runtime.agents.soul_of("incident-analyst")
    assert (soul["present"], soul["valid"], soul["active"]) == (True, True, True)
    assert soul["validation_status"] == "valid" and soul["agent_name"] == "incident-analyst"
    assert soul["digest"] == expected.digest == soul["snapshot_id"]
    assert soul["frontmatter"]["role"] == "Incident analyst for the operations team"
    assert soul["source_path"] == "souls/incident-analyst.md" and soul["revision_id"] == "1"
    assert soul["limits"]["max_body_bytes"] > 0 and soul["truncated"] is False
    # A lane's own agent has none: absent, and valid.
    await new_task()
    plain = (await http.post(CLAIM_NEXT, json={}, headers=auth("worker"))).json()["claim"]
    none = (await http.get("/api/agent/soul", headers=_as(plain))).json()
    assert (none["present"], none["valid"], none["validation_status"]) == (False, True, "missing")
    assert none["digest"] is None and none["agent_name"] == "workbench-analysis"


async def test_validate_reports_each_problem(http, auth, new_task) -> None:
    await new_task()
    claim = (await http.post(CLAIM_NEXT, json={}, headers=auth("worker"))).json()["claim"]
    url = "/api/agent/soul/validate"
    good = await http.post(
        url, json={"content": "---\nrole: Reviewer\n---\nBe kind.\n"}, headers=_as(claim)
    )
    assert good.status_code == 200 and good.json()["valid"] and good.json()["digest"]
    bad = await http.post(
        url,
        json={
            "content": "---\nrole: Reviewer\nmodel: gpt\n---\n## Permissions\n",
            "source_path": "x.md",
        },
        headers=_as(claim),
    )
    assert bad.status_code == 200
    result = bad.json()
    assert (result["valid"], result["validation_status"], result["digest"]) == (
        False,
        "invalid",
        None,
    )
    assert [(d["code"], d["field"], d["section"], d["line"]) for d in result["diagnostics"]] == [
        ("forbidden_field", "model", None, 3),
        ("reserved_section", None, "permissions", 5),
    ]
    assert all(
        d["source_path"] == "x.md" and d["severity"] == "error" for d in result["diagnostics"]
    )
    missing = await http.post(url, json={}, headers=_as(claim))
    assert missing.status_code == 400
    assert missing.json()["diagnostic"]["evidence"]["field"] == "content"
    unauthenticated = await http.post(url, json={"content": "x"}, headers=auth("worker"))
    assert unauthenticated.status_code == 401


async def test_a_secret_in_a_validated_soul_does_not_come_back(http, auth, new_task) -> None:
    await new_task()
    claim = (await http.post(CLAIM_NEXT, json={}, headers=auth("worker"))).json()["claim"]
    every_form = forms_text(WRITTEN_FORMS[:-1])
    token = claim["claim_token"]
    content = f"---\nrole: 'password: hunter2-yaml'\nprinciples: ['{token}']\n---\n{every_form}\n"
    response = await http.post(
        "/api/agent/soul/validate", json={"content": content}, headers=_as(claim)
    )
    assert response.status_code == 200, response.text
    assert leaked(response.text) == [] and claim["claim_token"] not in response.text
    assert "secret_redacted" in [d["code"] for d in response.json()["diagnostics"]]


async def test_a_thread_runs_trace_records_its_agents_soul_digest(http, auth, app, tenant) -> None:
    thread = await http.post("/api/v1/threads", json={"agent_type": "it-router"}, headers=auth())
    actor = Actor("alice", tenant, "operator")
    created = await app.state.ledger.start_run(
        actor, UUID(thread.json()["thread"]["id"]), "The payments API is down with errors"
    )
    task_id = created.task.id
    ran = await http.post(f"/api/agents/tasks/{task_id}/run", headers=auth())
    assert ran.json()["status"] == "succeeded", ran.text
    traces = (await http.get(f"/api/agents/tasks/{task_id}/traces", headers=auth())).json()
    [event] = [t for t in traces["traces"] if t["kind"] == "soul"]
    digest = app.state.runtime.agents.soul_of("incident-analyst").digest
    assert event["data"]["souls"] == {"incident-analyst": digest}
