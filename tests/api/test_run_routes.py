"""Thread runs over HTTP, executed by a real worker (the Agents SDK on the offline
model): starting one answers with its live events, a reconnect replays what was
missed, the run reads as steps, an operator resolves the tool call it waits on or
cancels it, and everything is the caller's tenant's only."""

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jsonschema
import pytest
from conftest import fast_policy, settings_for_tests
from event_stream import decoded_schema, parse_events
from pipeline_helpers import pipeline
from starlette.applications import Starlette

from api.app import create_app
from api.routes.events import EVENT_SCHEMA
from api.routes.runs import RUN_STREAM_SCHEMA
from worker.executors import sdk_executor
from worker.service import Worker

THREADS = "/api/v1/threads"
RUNS = "/api/v1/runs"
READ_FAILOVER = 'Which runbook covers failover?\n#call read_artifact {"name": "failover.md"}'
PROPOSE = (
    "Plan the config change\n"
    '#call propose_change {"summary": "scale app-7", "change": "replicas=3 password=hunter2"}'
)


@dataclass
class Bench:
    app: Starlette
    http: httpx.AsyncClient
    worker: Worker


@pytest.fixture(scope="module")
async def bench(make_database, tmp_path_factory) -> AsyncIterator[Bench]:
    """The API and a worker (with its dispatcher) on a database of their own: the worker
    takes every runnable run it can see."""
    policy = fast_policy(lease_seconds=5.0, allowed_hosts=["127.0.0.1"])
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WORKBENCH_ARTIFACT_DIR", str(tmp_path_factory.mktemp("run-artifacts")))
        app = create_app(settings_for_tests(), database_url=make_database(), policy=policy)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://workbench.test"
            ) as http,
            pipeline(app.state.ledger.pool, policy, sdk_executor) as (worker, _),
        ):
            yield Bench(app, http, worker)


async def _until(check: Callable[[], Awaitable[Any]], seconds: float = 20) -> Any:
    """Polls `check` until it returns something truthy, and returns that."""

    async def poll() -> Any:
        while not (found := await check()):
            await asyncio.sleep(0.05)
        return found

    return await asyncio.wait_for(poll(), seconds)


async def _thread(bench: Bench, auth, agent_type: str) -> str:
    created = await bench.http.post(THREADS, json={"agent_type": agent_type}, headers=auth())
    assert created.status_code == 201, created.text
    return created.json()["thread"]["id"]


async def _start(bench: Bench, auth, thread_id: str, message: str) -> list[dict]:
    """Starts a run and reads its stream to the end (the in-process transport hands the
    response over once it is complete)."""
    response = await bench.http.post(
        f"{THREADS}/{thread_id}/runs", json={"message": message}, headers=auth()
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    return parse_events(response.text)


async def _run(bench: Bench, auth, run_id: str, role: str = "viewer") -> dict:
    response = await bench.http.get(f"{RUNS}/{run_id}", headers=auth(role))
    assert response.status_code == 200, response.text
    return response.json()


def _conforms(events: list[dict], schema: dict) -> None:
    validator = jsonschema.Draft202012Validator(decoded_schema(schema))
    for event in events:
        validator.validate(event)


async def test_a_run_streams_from_run_created_to_done_and_reads_as_steps(bench, auth) -> None:
    thread_id = await _thread(bench, auth, "it-router")
    events = await _start(bench, auth, thread_id, READ_FAILOVER)
    _conforms(events, RUN_STREAM_SCHEMA)
    created, *trace, done = events
    assert created["event"] == "run_created" and "id" not in created
    run_id = created["data"]["run_id"]
    assert created["data"] == {
        "type": "run_created",
        "run_id": run_id,
        "thread_id": thread_id,
        "agent_type": "it-router",
        "status": "queued",
        "seq": 0,
    }
    assert (done["event"], done["data"]["content"]) == ("done", "succeeded")
    [call_event] = [
        e for e in trace if e["event"] == "tool_call" and e["data"]["tool"] == "read_artifact"
    ]
    [result_event] = [e for e in trace if e["event"] == "tool_result"]
    assert result_event["data"]["call_id"] == call_event["data"]["call_id"]
    assert trace[0]["id"] == "1"  # the whole trace, from its first event

    body = await _run(bench, auth, run_id)
    run, steps = body["run"], body["steps"]
    assert (run["id"], run["thread_id"], run["agent_type"]) == (run_id, thread_id, "it-router")
    assert (run["status"], run["task_status"]) == ("completed", "succeeded")
    assert run["created_at"] <= run["started_at"] <= run["completed_at"]
    assert run["usage"]["total_tokens"] > 0
    assert [step["step_index"] for step in steps] == list(range(len(steps)))
    assert [(s["kind"], s.get("agent") or s.get("from_agent")) for s in steps] == [
        ("model_turn", "it-router"),
        ("handoff", "it-router"),
        ("model_turn", "runbook-agent"),
        ("tool_call", "runbook-agent"),
        ("model_turn", "runbook-agent"),
    ]
    handoff, call = steps[1], steps[3]
    assert handoff["to_agent"] == "runbook-agent" and "runbook" in handoff["reason"]
    assert (call["tool"], call["arguments"], call["output"]) == (
        "read_artifact",
        {"name": "failover.md"},
        "no artifact named failover.md",
    )
    assert steps[-1]["text"].startswith("offline model: completed")
    assert body["approval_requests"] == []

    history = (await bench.http.get(f"{THREADS}/{thread_id}", headers=auth())).json()
    assert history["thread"]["last_run_id"] == run_id
    assert [m["role"] for m in history["messages"]][-2:] == ["tool_result", "assistant"]


async def test_a_reconnect_replays_exactly_what_was_missed(bench, auth) -> None:
    thread_id = await _thread(bench, auth, "runbook-agent")
    events = await _start(bench, auth, thread_id, READ_FAILOVER)
    run_id = events[0]["data"]["run_id"]
    url = f"{RUNS}/{run_id}/stream"
    whole = await bench.http.get(url, headers=auth("viewer"))
    assert whole.status_code == 200
    replayed = parse_events(whole.text)
    _conforms(replayed, EVENT_SCHEMA)
    assert replayed == events[1:]  # all of it but run_created, which is no trace event
    ids = [int(event["id"]) for event in replayed if "id" in event]
    middle = ids[len(ids) // 2]
    expected = [e for e in replayed if int(e["data"]["seq"]) > middle]
    resumed = await bench.http.get(url, headers={**auth("viewer"), "Last-Event-ID": str(middle)})
    assert parse_events(resumed.text) == expected
    by_query = await bench.http.get(url, params={"after_seq": middle}, headers=auth("viewer"))
    assert parse_events(by_query.text) == expected
    misspelt = await bench.http.get(url, params={"after": middle}, headers=auth("viewer"))
    assert misspelt.status_code == 400


async def test_refusals_come_before_the_stream_as_json(bench, auth) -> None:
    thread_id = await _thread(bench, auth, "change-planner")
    url = f"{THREADS}/{thread_id}/runs"
    unknown = await bench.http.post(url, json={"message": "hi", "colour": "red"}, headers=auth())
    assert unknown.status_code == 400
    [problem] = unknown.json()["error"]["details"]["problems"]
    assert problem["location"] == ["body", "colour"]
    for body in ({}, {"message": ""}, {"message": "x" * 100_001}):
        assert (await bench.http.post(url, json=body, headers=auth())).status_code == 400
    provider = {"message": "hi", "agent_config": {"provider": "openai-typo"}}
    assert (await bench.http.post(url, json=provider, headers=auth())).status_code == 400
    viewer = await bench.http.post(url, json={"message": "hi"}, headers=auth("viewer"))
    assert viewer.status_code == 403
    other = await bench.http.post(
        url, json={"message": "hi"}, headers=auth(tenant_id="another-tenant")
    )
    assert other.status_code == 404
    assert other.headers["content-type"] == "application/json"

    events = await _start(bench, auth, thread_id, PROPOSE)  # it stops at the approval
    assert events[-1]["data"]["content"] == "awaiting_approval"
    second = await bench.http.post(url, json={"message": "and another"}, headers=auth())
    assert second.status_code == 409
    assert "already has a run" in second.json()["error"]["message"]
    cancelled = await bench.http.post(
        f"{RUNS}/{events[0]['data']['run_id']}/cancel", json={}, headers=auth()
    )
    assert cancelled.status_code == 200


async def test_runs_are_the_tenants_own_and_only_a_threads(bench, auth) -> None:
    thread_id = await _thread(bench, auth, "runbook-agent")
    run_id = (await _start(bench, auth, thread_id, "which runbook?"))[0]["data"]["run_id"]
    task = await bench.http.post(
        "/api/agents/tasks",
        json={"lane": "analysis", "title": "plain", "instructions": "x"},
        headers=auth(),
    )
    plain = task.json()["task"]["id"]
    other = auth("operator", tenant_id="another-tenant")
    for path in ("", "/stream"):
        assert (await bench.http.get(f"{RUNS}/{run_id}{path}", headers=other)).status_code == 404
        missing = await bench.http.get(f"{RUNS}/{plain}{path}", headers=auth())
        assert missing.status_code == 404
        assert missing.json()["error"]["message"] == "run not found"
    for run in (run_id, plain):
        cancel = await bench.http.post(f"{RUNS}/{run}/cancel", json={}, headers=other)
        assert cancel.status_code == 404


async def test_an_approved_tool_call_resumes_the_run_to_completion(bench, auth) -> None:
    thread_id = await _thread(bench, auth, "change-planner")
    events = await _start(bench, auth, thread_id, PROPOSE)
    run_id = events[0]["data"]["run_id"]
    assert events[-1]["data"]["content"] == "awaiting_approval"
    body = await _run(bench, auth, run_id)
    assert body["run"]["status"] == "awaiting_approval"
    [request] = body["approval_requests"]
    assert (request["tool"], request["status"], request["task_id"]) == (
        "propose_change",
        "pending",
        run_id,
    )
    assert request["arguments"] == {
        "summary": "scale app-7",
        "change": "replicas=3 password=[redacted]",
    }
    assert len(request["arguments_sha256"]) == 64
    _, call, approval = body["steps"]
    assert (call["kind"], call["status"], call["call_id"]) == (
        "tool_call",
        "pending",
        request["call_id"],
    )
    assert (approval["kind"], approval["status"]) == ("approval", "pending")
    assert approval["approval_id"] == request["id"]

    url = f"/api/v1/approvals/{request['id']}/resolve"
    decision = {"status": "approved", "reason": "looks right"}
    assert (await bench.http.post(url, json=decision, headers=auth("viewer"))).status_code == 403
    other = auth(tenant_id="another-tenant")
    assert (await bench.http.post(url, json=decision, headers=other)).status_code == 404
    resolved = await bench.http.post(url, json=decision, headers=auth(subject="bob"))
    assert resolved.status_code == 200, resolved.text
    settled = resolved.json()["approval_request"]
    assert (settled["status"], settled["reason"], settled["resolved_by"]) == (
        "approved",
        "looks right",
        "bob",
    )
    assert settled["resolved_at"] is not None
    again = await bench.http.post(url, json=decision, headers=auth())
    assert again.status_code == 409

    async def completed() -> dict | None:
        body = await _run(bench, auth, run_id)
        return body if body["run"]["status"] == "completed" else None

    body = await _until(completed)
    assert body["approval_requests"] == []
    steps = body["steps"]
    assert steps[1]["status"] == "completed"
    assert steps[1]["output"].startswith("stored change_proposal.json")
    assert (steps[2]["status"], steps[2]["by"]) == ("approved", "bob")
    history = (await bench.http.get(f"{THREADS}/{thread_id}", headers=auth())).json()
    results = [m for m in history["messages"] if m["role"] == "tool_result"]
    assert [r["content"] for r in results] == [steps[1]["output"]]
    resumed = await bench.http.get(f"{RUNS}/{run_id}/stream", headers=auth("viewer"))
    assert parse_events(resumed.text)[-1]["data"]["content"] == "succeeded"


async def test_a_rejected_tool_call_tells_the_model_it_was_refused(bench, auth) -> None:
    thread_id = await _thread(bench, auth, "change-planner")
    run_id = (await _start(bench, auth, thread_id, PROPOSE))[0]["data"]["run_id"]
    [request] = (await _run(bench, auth, run_id))["approval_requests"]
    rejected = await bench.http.post(
        f"/api/v1/approvals/{request['id']}/resolve",
        json={"status": "rejected", "reason": "not today"},
        headers=auth(),
    )
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["approval_request"]["status"] == "rejected"

    async def completed() -> dict | None:
        body = await _run(bench, auth, run_id)
        return body if body["run"]["status"] == "completed" else None

    steps = (await _until(completed))["steps"]
    _, call, approval, answer = steps
    assert (call["kind"], call["status"], call["output"]) == ("tool_call", "rejected", None)
    assert (approval["status"], approval["reason"]) == ("rejected", "not today")
    history = (await bench.http.get(f"{THREADS}/{thread_id}", headers=auth())).json()
    [result] = [m for m in history["messages"] if m["role"] == "tool_result"]
    assert result["content"] == "Tool execution was not approved."  # the SDK's refusal
    assert "propose_change: Tool execution was not approved." in answer["text"]
    assert result["data"]["call_id"] == request["call_id"]
    artifacts = await bench.http.get(f"/api/agents/tasks/{run_id}/artifacts", headers=auth())
    assert "change_proposal.json" not in [a["name"] for a in artifacts.json()["artifacts"]]


@pytest.fixture
def slow_server() -> Iterator[str]:
    """A local HTTP server whose answers wait until the test ends: a tool call that is
    under way for as long as the test needs."""
    released = threading.Event()

    class Slow(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            released.wait(60)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/status"
    released.set()
    server.shutdown()
    server.server_close()


async def test_cancel_stops_the_worker_and_is_safe_to_repeat(bench, auth, slow_server) -> None:
    thread_id = await _thread(bench, auth, "incident-analyst")
    message = f'The status page is down\n#call http_get {{"url": "{slow_server}"}}'
    streaming = asyncio.create_task(
        bench.http.post(f"{THREADS}/{thread_id}/runs", json={"message": message}, headers=auth())
    )

    async def calling() -> str | None:
        thread = (await bench.http.get(f"{THREADS}/{thread_id}", headers=auth())).json()
        run_id = thread["thread"]["last_run_id"]
        if run_id is None:
            return None
        traces = await bench.http.get(f"/api/agents/tasks/{run_id}/traces", headers=auth())
        kinds = [event["kind"] for event in traces.json()["traces"]]
        return run_id if "tool_verdict" in kinds else None  # the slow call is under way

    run_id = await _until(calling)
    task = (await bench.http.get(f"/api/agents/tasks/{run_id}", headers=auth())).json()["task"]
    assert task["status"] == "running"
    attempt_run = task["current_run_id"]
    assert attempt_run in {str(key) for key in bench.worker.in_flight}

    cancelled = await bench.http.post(
        f"{RUNS}/{run_id}/cancel", json={"reason": "wrong service"}, headers=auth()
    )
    assert cancelled.status_code == 200, cancelled.text
    run = cancelled.json()["run"]
    assert (run["status"], run["task_status"]) == ("cancelled", "cancelled")
    assert run["terminal_reason"] == "cancelled by alice: wrong service"
    assert run["completed_at"] is not None

    stream = parse_events((await asyncio.wait_for(streaming, 20)).text)
    assert stream[-1]["data"]["content"] == "cancelled"

    async def released() -> bool:
        return attempt_run not in {str(key) for key in bench.worker.in_flight}

    await _until(released)  # the worker stopped executing it and let it go
    body = await _run(bench, auth, run_id)
    traces = await bench.http.get(f"/api/agents/tasks/{run_id}/traces", headers=auth())
    kinds = [event["kind"] for event in traces.json()["traces"]]
    assert "succeeded" not in kinds and "span.generation" in kinds  # its partial trace
    call = next(step for step in body["steps"] if step["kind"] == "tool_call")
    assert (call["tool"], call["status"]) == ("http_get", "interrupted")  # never returned

    again = await bench.http.post(f"{RUNS}/{run_id}/cancel", json={}, headers=auth())
    assert again.status_code == 200
    assert again.json()["run"] == body["run"]


async def test_cancel_settles_a_pending_approval_and_a_finished_run_is_409(bench, auth) -> None:
    thread_id = await _thread(bench, auth, "change-planner")
    run_id = (await _start(bench, auth, thread_id, PROPOSE))[0]["data"]["run_id"]
    [request] = (await _run(bench, auth, run_id))["approval_requests"]
    viewer = await bench.http.post(f"{RUNS}/{run_id}/cancel", json={}, headers=auth("viewer"))
    assert viewer.status_code == 403
    cancelled = await bench.http.post(f"{RUNS}/{run_id}/cancel", json={}, headers=auth())
    body = cancelled.json()
    assert body["run"]["status"] == "cancelled" and body["approval_requests"] == []
    approval = body["steps"][-1]
    assert (approval["kind"], approval["status"], approval["by"]) == (
        "approval",
        "cancelled",
        "alice",
    )
    late = await bench.http.post(
        f"/api/v1/approvals/{request['id']}/resolve", json={"status": "approved"}, headers=auth()
    )
    assert late.status_code == 409

    finished_thread = await _thread(bench, auth, "runbook-agent")
    finished = (await _start(bench, auth, finished_thread, "which runbook?"))[0]["data"]["run_id"]
    refused = await bench.http.post(f"{RUNS}/{finished}/cancel", json={}, headers=auth())
    assert refused.status_code == 409
    assert refused.json()["error"]["details"]["current_status"] == "succeeded"
