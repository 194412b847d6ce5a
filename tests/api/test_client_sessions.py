"""Client-side agent sessions over HTTP: the client drives the loop (an inference turn,
the tool call it asked for through the gateway, a turn that sees the result, complete),
each step a thread run executed by a real worker (dispatcher, lane, the SDK's Model
interface on the offline model); the context of a turn is the same whether the worker
had it cached or rebuilt it from the ledger. Then what is refused, and why."""

import asyncio
import json
from typing import Any

import httpx
import jsonschema
from session_apps import *  # noqa: F403 - the fixtures: worked, unworked

from api.settings import MAX_BODY_BYTES
from worker import session_context

SESSIONS = "/api/v1/client-sessions"
NO_SESSION = "00000000-0000-4000-8000-000000000000"
READ = '#call read_artifact {"name": "runbook.md"}'
PROPOSE = '#call propose_change {"summary": "three replicas", "change": "replicas: 3"}'
SESSION_FIELDS = {
    "id",
    "status",
    "agent_type",
    "lane",
    "provider",
    "model",
    "system_prompt",
    "tools",
    "policy_verdict",
    "created_by",
    "created_at",
    "completed_at",
    "summary",
    "confidence",
    "steps",
}


async def _create(
    http: httpx.AsyncClient, headers: dict, agent_type: str | None = None, **fields: Any
) -> dict:
    body = {"agent_type": agent_type, **fields} if agent_type else fields
    response = await http.post(SESSIONS, json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


_DOCUMENTED = {
    "/inference": "/api/v1/client-sessions/{session_id}/inference",
    "/tool-calls": "/api/v1/client-sessions/{session_id}/tool-calls",
    "/complete": "/api/v1/client-sessions/{session_id}/complete",
}


async def _post(http: httpx.AsyncClient, headers: dict, url: str, body: dict, status: int = 200):
    response = await http.post(url, json=body, headers=headers)
    assert response.status_code == status, response.text
    template = next((t for end, t in _DOCUMENTED.items() if url.endswith(end)), None)
    if template is not None:  # the body is what /openapi.json says it is
        document = (await http.get("/openapi.json")).json()
        responses = document["paths"][template]["post"]["responses"]
        schema = responses[str(status)]["content"]["application/json"]["schema"]
        jsonschema.validate(response.json(), {**schema, "components": document["components"]})
    return response.json()


async def _loop(http: httpx.AsyncClient, auth, *, clear_cache: bool) -> tuple[list, dict, dict]:
    """One session's loop; returns the last turn's model input (as traced), the turn and
    the session's history."""
    session = await _create(http, auth(), "incident-analyst")
    url = f"{SESSIONS}/{session['id']}"
    first = await _post(
        http, auth(), url + "/inference", {"model": "offline", "input": f"Check it\n{READ}"}
    )
    [call] = first["tool_calls"]
    result = await _post(http, auth(), url + "/tool-calls", call)
    assert json.loads(result["output"]) == "no artifact named runbook.md"
    if clear_cache:
        session_context.CONTEXTS.clear()
    misses = session_context.CONTEXTS.misses
    second = await _post(
        http,
        auth(),
        url + "/inference",
        {
            "model": "offline",
            "input": "Summarise what you found",
            "previous_response_id": first["response_id"],
        },
    )
    assert session_context.CONTEXTS.misses == misses + (1 if clear_cache else 0)
    history = (await http.get(f"/api/v1/threads/{session['id']}", headers=auth("viewer"))).json()
    step = (await http.get(url, headers=auth())).json()["steps"][2]
    traces = await http.get(f"/api/agents/tasks/{step['task_id']}/traces", headers=auth())
    [turn] = [t for t in traces.json()["traces"] if t["kind"] == "span.generation"]
    return turn["data"]["input"], second, history


async def test_the_client_drives_the_loop_through_the_gateway(worked, auth) -> None:
    session = await _create(worked, auth(), "incident-analyst")
    assert set(session) == SESSION_FIELDS
    assert (session["status"], session["lane"], session["provider"], session["model"]) == (
        "running",
        "analysis",
        "offline",
        "offline",
    )
    assert session["system_prompt"].startswith("You are the incident analyst.")
    assert [(t["name"], t["mutation_level"], t["needs_approval"]) for t in session["tools"]] == [
        ("read_artifact", "read_only", False),
        ("http_get", "read_only", False),
    ]
    assert session["tools"][0]["parameters"]["required"] == ["name"]
    assert session["policy_verdict"]["decision"] == "allow"
    assert (session["created_by"], session["steps"], session["completed_at"]) == ("alice", [], None)
    url = f"{SESSIONS}/{session['id']}"

    first = await _post(
        worked, auth(), url + "/inference", {"model": "offline", "input": f"Check it\n{READ}"}
    )
    assert set(first) == {
        "response_id",
        "output_text",
        "tool_calls",
        "usage",
        "step_index",
        "execution_time_ms",
    }
    assert (first["output_text"], first["step_index"]) == ("", 0)
    [call] = first["tool_calls"]
    assert (call["name"], json.loads(call["arguments"])) == (
        "read_artifact",
        {"name": "runbook.md"},
    )
    assert first["usage"]["input_tokens"] > 0 and first["usage"]["total_tokens"] > 0

    result = await _post(worked, auth(), url + "/tool-calls", call)
    assert (result["call_id"], result["name"], result["step_index"]) == (
        call["call_id"],
        "read_artifact",
        1,
    )
    assert json.loads(result["output"]) == "no artifact named runbook.md"
    assert result["verdict"]["decision"] == "allow"
    assert result["verdict"]["mutation_level"] == "read_only"

    second = await _post(
        worked,
        auth(),
        url + "/inference",
        {
            "model": "offline",
            "input": "Summarise what you found",
            "previous_response_id": first["response_id"],
        },
    )
    # The turn saw the call and its result: the context was rebuilt with them.
    assert second["output_text"] == (
        "offline model: completed 1 tool call(s)\n"
        "- read_artifact: no artifact named runbook.md\n"
        "task: Summarise what you found"
    )
    assert (second["tool_calls"], second["step_index"]) == ([], 2)

    done = await _post(
        worked,
        auth(),
        url + "/complete",
        {"summary": "no runbook yet", "confidence": 0.7, "evidence": ["e1"], "next_steps": ["n"]},
    )
    assert (done["status"], done["summary"], done["confidence"]) == (
        "completed",
        "no runbook yet",
        0.7,
    )
    assert done["completed_at"] is not None and "evidence" not in done

    detail = (await worked.get(url, headers=auth("viewer"))).json()
    assert detail["status"] == "completed"
    steps = detail["steps"]
    assert [(s["step_index"], s["kind"], s["status"]) for s in steps] == [
        (0, "inference", "completed"),
        (1, "tool_call", "completed"),
        (2, "inference", "completed"),
    ]
    assert steps[0]["output"]["response_id"] == first["response_id"]
    assert steps[0]["input"]["text"] == f"Check it\n{READ}"
    assert steps[1]["input"] == {
        "call_id": call["call_id"],
        "name": "read_artifact",
        "arguments": call["arguments"],
    }
    assert steps[1]["output"]["output"] == result["output"]
    assert steps[2]["input"]["previous_response_id"] == first["response_id"]
    assert all(s["started_at"] and s["completed_at"] for s in steps)
    assert steps[0]["usage"] == first["usage"]
    # Each step is a thread run: its detail, trace and stream are the runs'.
    run = (await worked.get(f"/api/v1/runs/{steps[0]['task_id']}", headers=auth())).json()
    assert [step["kind"] for step in run["steps"]] == ["model_turn", "tool_call"]

    history = (await worked.get(f"/api/v1/threads/{session['id']}", headers=auth())).json()
    assert history["thread"]["kind"] == "client_session"
    assert [(m["role"], m["task_id"]) for m in history["messages"]] == [
        ("user", steps[0]["task_id"]),
        ("tool_call", steps[0]["task_id"]),
        ("tool_call", steps[1]["task_id"]),
        ("tool_result", steps[1]["task_id"]),
        ("user", steps[2]["task_id"]),
        ("assistant", steps[2]["task_id"]),
    ]
    again = await worked.post(
        url + "/complete", json={"summary": "x", "confidence": 1}, headers=auth()
    )
    assert again.status_code == 409, again.text
    late = await worked.post(
        url + "/inference", json={"model": "offline", "input": "more"}, headers=auth()
    )
    assert late.status_code == 409, late.text


async def test_a_turn_sees_the_same_context_when_the_cache_cannot_have_it(worked, auth) -> None:
    cached_input, cached, cached_history = await _loop(worked, auth, clear_cache=False)
    rebuilt_input, rebuilt, rebuilt_history = await _loop(worked, auth, clear_cache=True)
    # The model's input, as its span recorded it: the system prompt, the first turn's
    # input, the call with its result, the new input.
    assert rebuilt_input == cached_input
    assert [item.get("type", item.get("role")) for item in rebuilt_input] == [
        "system",
        "user",
        "function_call",
        "function_call_output",
        "user",
    ]
    assert rebuilt["output_text"] == cached["output_text"]
    assert rebuilt["usage"] == cached["usage"]
    assert [m["role"] for m in rebuilt_history["messages"]] == [
        m["role"] for m in cached_history["messages"]
    ]


async def test_without_previous_response_id_a_turn_follows_the_latest(worked, auth) -> None:
    session = await _create(worked, auth(), "incident-analyst")
    url = f"{SESSIONS}/{session['id']}"
    first = await _post(worked, auth(), url + "/inference", {"model": "offline", "input": READ})
    await _post(worked, auth(), url + "/tool-calls", first["tool_calls"][0])
    second = await _post(
        worked, auth(), url + "/inference", {"model": "offline", "input": "Sum up"}
    )
    assert second["output_text"].startswith("offline model: completed 1 tool call(s)")
    detail = (await worked.get(url, headers=auth())).json()
    assert detail["steps"][2]["input"]["previous_response_id"] == first["response_id"]


async def test_a_tool_above_the_approval_level_waits_and_runs_once_approved(worked, auth) -> None:
    session = await _create(worked, auth(), "change-planner")
    assert {t["name"]: t["needs_approval"] for t in session["tools"]} == {
        "read_artifact": False,
        "write_artifact": True,
        "propose_change": True,
    }
    url = f"{SESSIONS}/{session['id']}"
    turn = await _post(
        worked, auth(), url + "/inference", {"model": "offline", "input": f"Plan it\n{PROPOSE}"}
    )
    [call] = turn["tool_calls"]
    waiting = await _post(worked, auth(), url + "/tool-calls", call, status=202)
    assert waiting["status"] == "awaiting_approval" and waiting["step_index"] == 1
    assert waiting["approve"] == f"/api/v1/approvals/{waiting['approval_id']}/resolve"
    assert waiting["stream"] == f"/api/v1/runs/{waiting['task_id']}/stream"
    # The step holds the session's one active run.
    busy = await worked.post(
        url + "/inference", json={"model": "offline", "input": "x"}, headers=auth()
    )
    assert busy.status_code == 409, busy.text
    early = await worked.post(
        url + "/complete", json={"summary": "s", "confidence": 0.5}, headers=auth()
    )
    assert early.status_code == 409, early.text

    resolved = await _post(
        worked, auth(), waiting["approve"], {"status": "approved", "reason": "fine"}
    )
    assert resolved["approval_request"]["status"] == "approved"

    async def ran() -> dict:
        while True:
            step = (await worked.get(url, headers=auth())).json()["steps"][1]
            if step["status"] == "completed":
                return step
            await asyncio.sleep(0.05)

    step = await asyncio.wait_for(ran(), 20)
    assert json.loads(step["output"]["output"]).startswith("stored change_proposal.json")
    assert step["verdict"]["approval"]["status"] == "approved"
    assert step["verdict"]["approval"]["resolved_by"] == "alice"
    again = await worked.post(url + "/tool-calls", json=call, headers=auth())
    assert again.status_code == 409, again.text  # executed once


async def test_a_rejected_tool_call_tells_the_model_so(worked, auth) -> None:
    session = await _create(worked, auth(), "change-planner")
    url = f"{SESSIONS}/{session['id']}"
    turn = await _post(worked, auth(), url + "/inference", {"model": "offline", "input": PROPOSE})
    waiting = await _post(worked, auth(), url + "/tool-calls", turn["tool_calls"][0], status=202)
    await _post(worked, auth(), waiting["approve"], {"status": "rejected", "reason": "not now"})

    async def settled() -> None:
        while (await worked.get(url, headers=auth())).json()["steps"][1]["status"] != "completed":
            await asyncio.sleep(0.05)

    await asyncio.wait_for(settled(), 20)
    summary = await _post(
        worked, auth(), url + "/inference", {"model": "offline", "input": "Sum up"}
    )
    assert (
        "- propose_change: the operator rejected this tool call: not now" in summary["output_text"]
    )


async def test_bad_input_is_refused_naming_the_field(unworked, auth) -> None:
    unknown = await unworked.post(SESSIONS, json={"agent_type": "sql-agent"}, headers=auth())
    assert unknown.status_code == 400
    assert unknown.json()["error"]["details"]["field"] == "agent_type"
    provider = await unworked.post(
        SESSIONS, json={"agent_type": "incident-analyst", "provider": "nobody"}, headers=auth()
    )
    assert provider.json()["error"]["details"]["field"] == "provider"
    wrong = await unworked.post(SESSIONS, json={"agent_type": 7}, headers=auth())
    assert wrong.status_code == 400
    assert wrong.json()["error"]["details"]["problems"][0]["location"] == ["body", "agent_type"]
    viewer = await unworked.post(
        SESSIONS, json={"agent_type": "incident-analyst"}, headers=auth("viewer")
    )
    assert viewer.status_code == 403

    session = await _create(unworked, auth(), "incident-analyst")
    url = f"{SESSIONS}/{session['id']}"
    cases: list[tuple[str, dict, int, str]] = [
        ("/inference", {"model": "offline", "input": ""}, 400, "input"),
        ("/inference", {"model": "offline", "input": 3}, 400, "input"),
        ("/inference", {"model": "gpt-9", "input": "hi"}, 409, "model"),
        ("/inference", {"model": "offline", "input": "hi", "intent": "nuke"}, 400, "intent"),
        (
            "/inference",
            {"model": "offline", "input": "hi", "previous_response_id": "resp_" + "0" * 32 + "_1"},
            400,
            "previous_response_id",
        ),
        (
            "/tool-calls",
            {"call_id": "c1", "name": "propose_change", "arguments": "{}"},
            400,
            "name",
        ),
        (
            "/tool-calls",
            {"call_id": "c1", "name": "read_artifact", "arguments": "{"},
            400,
            "arguments",
        ),
        (
            "/tool-calls",
            {"call_id": "c1", "name": "read_artifact", "arguments": "{}"},
            400,
            "call_id",
        ),
        ("/complete", {"summary": "s", "confidence": 1.5}, 400, "confidence"),
    ]
    for path, body, status, field in cases:
        response = await unworked.post(url + path, json=body, headers=auth())
        assert response.status_code == status, (path, body, response.text)
        details = response.json()["error"]["details"]
        named = details.get("field") or details["problems"][0]["location"][-1]
        assert named == field, (path, body, details)
    huge = {"model": "offline", "input": "x" * MAX_BODY_BYTES}
    assert (await unworked.post(url + "/inference", json=huge, headers=auth())).status_code == 413

    body = {"model": "offline", "input": "hi"}
    other_tenant = auth(tenant_id="another-tenant")
    for path, sent in (
        ("/inference", body),
        ("/tool-calls", {"call_id": "c1", "name": "read_artifact", "arguments": "{}"}),
        ("/complete", {"summary": "s", "confidence": 1}),
    ):
        elsewhere = await unworked.post(url + path, json=sent, headers=other_tenant)
        assert elsewhere.status_code == 404, path
        someone = await unworked.post(url + path, json=sent, headers=auth(subject="mallory"))
        assert someone.status_code == 403, path
    assert (await unworked.get(url, headers=other_tenant)).status_code == 404
    assert (await unworked.get(f"{SESSIONS}/{NO_SESSION}", headers=auth())).status_code == 404
    # Another subject of the tenant may read it, not act in it.
    assert (await unworked.get(url, headers=auth("viewer", subject="mallory"))).status_code == 200
    assert (
        await unworked.post(url + "/inference", json=body, headers=auth("viewer"))
    ).status_code == 403

    # No worker here: the turn is still queued after the wait, and holds the session.
    accepted = await _post(unworked, auth(), url + "/inference", body, status=202)
    assert (accepted["status"], accepted["step_index"], accepted["approve"]) == ("queued", 0, None)
    busy = await unworked.post(url + "/inference", json=body, headers=auth())
    assert busy.status_code == 409, busy.text
    cancel = await unworked.post(
        f"/api/v1/runs/{accepted['task_id']}/cancel", json={}, headers=auth()
    )
    assert cancel.status_code == 200
    step = (await unworked.get(url, headers=auth())).json()["steps"][0]
    assert (step["status"], step["output"]) == ("cancelled", None)
    # A thread run cannot be started in a client session's thread.
    run = await unworked.post(
        f"/api/v1/threads/{session['id']}/runs", json={"message": "hi"}, headers=auth()
    )
    assert run.status_code == 409, run.text


async def test_the_model_is_the_asked_for_or_the_configured_default(
    unworked, auth, monkeypatch
) -> None:
    monkeypatch.delenv("WORKBENCH_COMPATIBLE_MODEL", raising=False)
    monkeypatch.delenv("WORKBENCH_OPENAI_MODEL", raising=False)
    body = {"agent_type": "runbook-agent", "provider": "compatible"}
    unknown = await unworked.post(SESSIONS, json=body, headers=auth())
    assert unknown.status_code == 409, unknown.text
    assert unknown.json()["error"]["details"]["field"] == "model"
    monkeypatch.setenv("WORKBENCH_COMPATIBLE_MODEL", "llama-3.1-8b")
    assert (await _create(unworked, auth(), **body))["model"] == "llama-3.1-8b"
    named = await _create(unworked, auth(), **body, model="qwen-2.5")
    assert named["model"] == "qwen-2.5"
    # The API holds no key: OpenAI's default model is known without one.
    openai = await _create(unworked, auth(), "runbook-agent", provider="openai")
    assert openai["model"] == "gpt-4.1-mini"


async def test_the_intent_gate(unworked, auth) -> None:
    session = await _create(unworked, auth(), "incident-analyst")
    url = f"{SESSIONS}/{session['id']}"
    # write_nonprod is above the analysis lane's ceiling (propose): denied, and recorded.
    denied = await unworked.post(
        url + "/inference",
        json={"model": "offline", "input": "restart it", "intent": "write_nonprod"},
        headers=auth(),
    )
    assert denied.status_code == 403, denied.text
    assert "ceiling" in denied.json()["error"]["message"]
    [step] = (await unworked.get(url, headers=auth())).json()["steps"]
    assert (step["status"], step["verdict"]["decision"], step["input"]["intent"]) == (
        "denied",
        "deny",
        "write_nonprod",
    )
    allowed = await _post(
        unworked,
        auth(),
        url + "/inference",
        {"model": "offline", "input": "x", "intent": "propose"},
        status=202,
    )
    assert allowed["status"] == "queued"
