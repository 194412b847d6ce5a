"""Agent sessions over HTTP: a message processed by a real worker (dispatcher, lane,
the SDK on the offline model), its stream, the session's status, and a tool call
approved through the session; each scoped to the caller's tenant and identity."""

import asyncio
from typing import Any

import httpx
from event_stream import parse_events
from session_apps import *  # noqa: F403 - the fixtures: worked, unworked

from api.settings import MAX_BODY_BYTES

AGENTS = "/api/v1/agents"
ANSWER_FIELDS = {
    "id",
    "content",
    "tool_calls",
    "tool_results",
    "reasoning",
    "requires_approval",
    "execution_time_ms",
    "tokens_used",
}
NO_RUN = "00000000-0000-4000-8000-000000000000"
PROPOSAL = '#call propose_change {"summary": "three replicas", "change": "replicas: 3"}'


def _message(tenant: str, session_id: str, message: str, **fields: Any) -> dict[str, Any]:
    return {
        "session_id": session_id,
        "message": message,
        "tenant_id": tenant,
        "user_id": "alice",
        **fields,
    }


async def _status_becomes(http: httpx.AsyncClient, headers: dict, session: str, state: str) -> dict:
    async def reached() -> dict:
        while True:
            status = (await http.get(f"{AGENTS}/status/{session}", headers=headers)).json()
            if status["status"] == state:
                return status
            await asyncio.sleep(0.05)

    return await asyncio.wait_for(reached(), 20)


async def test_a_message_is_routed_and_answered(worked, auth, tenant) -> None:
    message = _message(tenant, "sess-incident", "The checkout API is down and logs show errors")
    response = await worked.post(f"{AGENTS}/process", json=message, headers=auth())
    assert response.status_code == 200, response.text
    answer = response.json()
    assert set(answer) == ANSWER_FIELDS
    assert "down" in answer["reasoning"] and "errors" in answer["reasoning"]
    assert answer["content"].startswith("offline model: completed")
    assert answer["tokens_used"] > 0 and answer["execution_time_ms"] >= 0
    assert (answer["tool_calls"], answer["tool_results"], answer["requires_approval"]) == (
        [],
        [],
        False,
    )

    status = await worked.get(f"{AGENTS}/status/sess-incident", headers=auth("viewer"))
    assert status.status_code == 200, status.text
    assert status.json()["status"] == "idle" and status.json()["active_agents"] == []
    assert status.json()["message_count"] == 3  # the user's, the handoff, the answer

    stream = await worked.get(f"{AGENTS}/stream/sess-incident", headers=auth("viewer"))
    assert stream.headers["content-type"].startswith("text/event-stream")
    events = parse_events(stream.text)
    assert events[0]["data"]["data"]["kind"] == "session_run"
    assert events[0]["data"]["content"] == answer["id"]
    assert "text" in [event["event"] for event in events]
    assert events[-1]["event"] == "done" and events[-1]["data"]["content"] == "succeeded"
    ids = [int(event["id"]) for event in events if "id" in event]
    assert ids == sorted(set(ids))

    # The session goes on: the next message is a new run of the same thread.
    follow_up = _message(tenant, "sess-incident", "Which runbook explains failover?")
    second = await worked.post(f"{AGENTS}/process", json=follow_up, headers=auth())
    assert second.status_code == 200, second.text
    assert second.json()["id"] != answer["id"]
    assert "runbook" in second.json()["reasoning"]


async def test_a_tool_call_waits_for_approval_in_the_session(worked, auth, tenant) -> None:
    message = _message(tenant, "sess-change", f"Plan the deployment rollout\n{PROPOSAL}")
    response = await worked.post(f"{AGENTS}/process", json=message, headers=auth())
    assert response.status_code == 200, response.text
    paused = response.json()
    assert set(paused) == ANSWER_FIELDS
    assert paused["requires_approval"] is True and paused["content"] == ""
    assert "deployment" in paused["reasoning"]
    [waiting] = paused["tool_calls"]
    assert waiting["tool"] == "propose_change"
    assert waiting["arguments"] == {"summary": "three replicas", "change": "replicas: 3"}
    assert paused["tool_results"] == [] and paused["tokens_used"] > 0
    approval_id = waiting["approval_id"]

    status = (await worked.get(f"{AGENTS}/status/sess-change", headers=auth("viewer"))).json()
    assert status["status"] == "awaiting_approval"
    assert status["active_agents"] == ["it-router", "change-planner"]
    # The paused run still has a stream: it ends at once, saying what it waits for.
    stream = await worked.get(f"{AGENTS}/stream/sess-change", headers=auth("viewer"))
    assert parse_events(stream.text)[-1]["data"]["content"] == "awaiting_approval"

    decision = {"approval_id": approval_id, "session_id": "sess-change", "decision": "approved"}
    other = auth(tenant_id="another-tenant")
    for url in (f"{AGENTS}/status/sess-change", f"{AGENTS}/stream/sess-change"):
        assert (await worked.get(url, headers=other)).status_code == 404, url
    assert (await worked.post(f"{AGENTS}/approve", json=decision, headers=other)).status_code == 404
    # An approval is decided in the session whose run it belongs to, not in another one.
    elsewhere = _message(tenant, "sess-elsewhere", "How do I read the docs?")
    assert (await worked.post(f"{AGENTS}/process", json=elsewhere, headers=auth())).is_success
    misplaced = {**decision, "session_id": "sess-elsewhere"}
    assert (
        await worked.post(f"{AGENTS}/approve", json=misplaced, headers=auth())
    ).status_code == 404
    viewer = await worked.post(f"{AGENTS}/approve", json=decision, headers=auth("viewer"))
    assert viewer.status_code == 403

    approved = await worked.post(
        f"{AGENTS}/approve", json={**decision, "comment": "looks right"}, headers=auth()
    )
    assert approved.status_code == 200, approved.text
    assert approved.json() == {
        "success": True,
        "approval_id": approval_id,
        "status": "approved",
        "resumed": True,
    }
    again = await worked.post(f"{AGENTS}/approve", json=decision, headers=auth())
    assert again.status_code == 409

    idle = await _status_becomes(worked, auth("viewer"), "sess-change", "idle")
    assert idle["message_count"] == 5  # user, handoff, tool call, its result, the answer
    pinned = f"{AGENTS}/stream/sess-change?run_id={paused['id']}"
    events = parse_events((await worked.get(pinned, headers=auth("viewer"))).text)
    results = [event["data"] for event in events if event["event"] == "tool_result"]
    assert [result["call_id"] for result in results] == [waiting["call_id"]]
    assert events[-1]["data"]["content"] == "succeeded"


async def test_the_body_says_who_asks_and_must_be_the_token(unworked, auth, tenant) -> None:
    url = f"{AGENTS}/process"
    for field, value in (("tenant_id", "another-tenant"), ("user_id", "mallory")):
        body = {**_message(tenant, "sess-who", "hello"), field: value}
        response = await unworked.post(url, json=body, headers=auth())
        assert response.status_code == 403, response.text
        assert response.json()["error"]["details"]["field"] == field
    empty = await unworked.post(url, json=_message(tenant, "sess-who", ""), headers=auth())
    assert empty.status_code == 400
    [problem] = empty.json()["error"]["details"]["problems"]
    assert problem["location"] == ["body", "message"]
    provider = _message(tenant, "sess-who", "hello", agent_config={"provider": "nobody"})
    refused = await unworked.post(url, json=provider, headers=auth())
    assert refused.status_code == 400
    assert refused.json()["error"]["details"]["field"] == "agent_config.provider"
    agent = await unworked.post(
        url, json=_message(tenant, "sess-who", "hello", agent_type="sql-agent"), headers=auth()
    )
    assert agent.json()["error"]["details"]["field"] == "agent_type"
    huge = _message(tenant, "sess-who", "x" * MAX_BODY_BYTES)
    assert (await unworked.post(url, json=huge, headers=auth())).status_code == 413
    viewer = await unworked.post(
        url, json=_message(tenant, "sess-who", "hi"), headers=auth("viewer")
    )
    assert viewer.status_code == 403
    for unknown in (f"{AGENTS}/status/sess-none", f"{AGENTS}/stream/sess-none"):
        assert (await unworked.get(unknown, headers=auth("viewer"))).status_code == 404


async def test_a_run_past_the_wait_is_followed_on_its_stream(unworked, auth, tenant) -> None:
    url = f"{AGENTS}/process"
    body = _message(tenant, "sess-slow", "Summarise the alert", agent_type="runbook-agent")
    accepted = await unworked.post(url, json=body, headers=auth())
    assert accepted.status_code == 202, accepted.text
    run = accepted.json()
    assert (run["session_id"], run["status"]) == ("sess-slow", "queued")
    assert run["stream"] == f"{AGENTS}/stream/sess-slow?run_id={run['run_id']}"
    busy = await unworked.post(url, json=body, headers=auth())
    assert busy.status_code == 409, busy.text  # one active run per session

    status = (await unworked.get(f"{AGENTS}/status/sess-slow", headers=auth("viewer"))).json()
    assert (status["status"], status["active_agents"]) == ("thinking", ["runbook-agent"])

    cancel = f"/api/agents/tasks/{run['run_id']}/cancel"
    assert (await unworked.post(cancel, json={"reason": "no worker"}, headers=auth())).is_success
    assert (await unworked.post(url, json=body, headers=auth())).status_code == 202
    # Pinned, the stream follows the first run even though a newer one is the latest,
    # and resumes within it.
    pinned = (await unworked.get(run["stream"], headers=auth("viewer"))).text
    events = parse_events(pinned)
    assert events[0]["data"]["content"] == run["run_id"]
    assert events[-1]["data"]["content"] == "cancelled"
    last = max(int(event["id"]) for event in events if "id" in event)
    resumed = await unworked.get(
        run["stream"], headers={**auth("viewer"), "Last-Event-ID": str(last - 1)}
    )
    assert [int(e["id"]) for e in parse_events(resumed.text) if "id" in e] == [last]
    unknown_run = f"{AGENTS}/stream/sess-slow?run_id={NO_RUN}"
    assert (await unworked.get(unknown_run, headers=auth("viewer"))).status_code == 404
    bad = await unworked.get(f"{AGENTS}/stream/sess-slow?run_id=x", headers=auth("viewer"))
    assert bad.status_code == 400
