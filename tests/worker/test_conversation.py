"""A thread run executed by the real Agents SDK Runner on the offline model: the router
hands the conversation to a specialist with its reason, the specialist answers with its
own tools, and the thread's history gets each message once."""

import gc
import weakref

from event_stream import assert_tool_calls_pair_with_results, parse_events

from ledger.repository import Actor
from worker import executors, streaming

THREADS = "/api/v1/threads"


async def _thread_run(app, http, auth, tenant, agent_type, message):
    created = await http.post(THREADS, json={"agent_type": agent_type}, headers=auth())
    thread_id = created.json()["thread"]["id"]
    actor = Actor("alice", tenant, "operator")
    task = (await app.state.ledger.start_run(actor, thread_id, message)).task
    ran = await http.post(f"/api/agents/tasks/{task.id}/run", headers=auth())
    assert ran.status_code == 200, ran.text
    history = await http.get(f"{THREADS}/{thread_id}", headers=auth())
    return ran.json(), history.json()["messages"]


async def test_the_router_hands_an_incident_to_the_incident_analyst(app, http, auth, tenant):
    ran, messages = await _thread_run(
        app, http, auth, tenant, "it-router", "The checkout API is down and logs show errors"
    )
    assert ran["status"] == "succeeded", ran
    assert [(m["role"], m["agent"]) for m in messages] == [
        ("user", None),
        ("handoff", "it-router"),
        ("assistant", "incident-analyst"),
    ]
    handoff = messages[1]
    assert handoff["content"] == "incident-analyst"
    # The handoff is how the message reached the analyst, not a tool it used.
    assert messages[2]["content"].startswith("offline model: completed 0 tool call(s)\n")
    assert "down" in handoff["data"]["reason"] and "errors" in handoff["data"]["reason"]
    assert [m["seq"] for m in messages] == [1, 2, 3]


async def test_a_finished_thread_run_is_freed_without_the_collector(
    app, http, auth, tenant, monkeypatch
):
    # As a task's run (tests/worker/test_streaming.py): the router, its handoffs and the
    # specialist leave no reference cycle for the collector to find.
    results = []

    async def run_agent(*args):
        result = await real_run_agent(*args)
        results.append(weakref.ref(result))
        return result

    real_run_agent = executors.run_agent
    monkeypatch.setattr(executors, "run_agent", run_agent)
    gc.disable()
    try:
        ran, _ = await _thread_run(
            app,
            http,
            auth,
            tenant,
            "it-router",
            'Which runbook covers failover?\n#call read_artifact {"name": "failover.md"}',
        )
        alive = [ref() for ref in results if ref() is not None]
    finally:
        gc.enable()
    assert ran["status"] == "succeeded", ran
    assert len(results) == 1 and alive == []


async def test_a_thread_runs_first_text_is_written_before_its_outcome(
    app, http, auth, tenant, monkeypatch
):
    # An interval no run reaches: the first text alone is written ahead of the outcome,
    # in a transaction of its own (a trace event's time is its transaction's start).
    monkeypatch.setattr(streaming, "TEXT_INTERVAL_SECONDS", 3600.0)
    ran, _ = await _thread_run(app, http, auth, tenant, "it-router", "checkout is down")
    events = ran["traces"]
    [text] = [e for e in events if e["kind"] == "text.delta"]
    [succeeded] = [e for e in events if e["kind"] == "succeeded"]
    assert text["data"]["is_final"] is True
    assert text["created_at"] < succeeded["created_at"]


async def test_a_specialist_calls_the_tools_its_lane_allows(app, http, auth, tenant):
    ran, messages = await _thread_run(
        app,
        http,
        auth,
        tenant,
        "it-router",
        'Which runbook covers failover?\n#call read_artifact {"name": "failover.md"}',
    )
    assert ran["status"] == "succeeded", ran
    assert [(m["role"], m["agent"]) for m in messages] == [
        ("user", None),
        ("handoff", "it-router"),
        ("tool_call", "runbook-agent"),
        ("tool_result", "runbook-agent"),
        ("assistant", "runbook-agent"),
    ]
    call, result = messages[2], messages[3]
    assert call["data"]["arguments"] == {"name": "failover.md"}
    assert call["data"]["call_id"] == result["data"]["call_id"]
    assert result["content"] == "no artifact named failover.md"


async def test_the_conversation_so_far_is_the_next_runs_input(app, http, auth, tenant):
    created = await http.post(THREADS, json={"agent_type": "runbook-agent"}, headers=auth())
    thread_id = created.json()["thread"]["id"]
    actor = Actor("alice", tenant, "operator")
    for message in ("first question", "second question"):
        task = (await app.state.ledger.start_run(actor, thread_id, message)).task
        ran = await http.post(f"/api/agents/tasks/{task.id}/run", headers=auth())
        assert ran.json()["status"] == "succeeded"
    traces = await http.get(f"/api/agents/tasks/{task.id}/traces", headers=auth())
    turns = [e for e in traces.json()["traces"] if e["kind"] == "span.generation"]
    # The second run's model saw the first question and its answer before its own.
    seen = [
        (item["role"], item["content"])
        for item in turns[0]["data"]["input"]
        if item.get("role") in ("user", "assistant")
    ]
    assert [role for role, _ in seen] == ["user", "assistant", "user"]
    assert (seen[0][1], seen[-1][1]) == ("first question", "second question")


async def test_a_run_resumed_after_an_approval_records_the_call_made_before_it(
    app, http, auth, tenant
):
    # The streamed run that resumes from the saved SDK state still reports the call its
    # model made before the pause: the history gets the call, its result and the answer.
    call = '#call write_artifact {"name": "plan.txt", "content": "scale to 3"}'
    created = await http.post(THREADS, json={"agent_type": "change-planner"}, headers=auth())
    thread_id = created.json()["thread"]["id"]
    actor = Actor("alice", tenant, "operator")
    task = (await app.state.ledger.start_run(actor, thread_id, f"Plan it\n{call}")).task
    paused = await http.post(f"/api/agents/tasks/{task.id}/run", headers=auth())
    assert paused.json()["status"] == "awaiting_approval", paused.json()
    await app.state.ledger.approve(
        Actor("bob", tenant, "operator"), task.id, reason="ok", break_glass_acknowledged=False
    )
    ran = await http.post(f"/api/agents/tasks/{task.id}/run", headers=auth())
    assert ran.json()["status"] == "succeeded", ran.json()

    history = await http.get(f"{THREADS}/{thread_id}", headers=auth())
    messages = history.json()["messages"]
    assert [(m["role"], m["agent"]) for m in messages] == [
        ("user", None),
        ("tool_call", "change-planner"),
        ("tool_result", "change-planner"),
        ("assistant", "change-planner"),
    ]
    assert messages[1]["data"]["call_id"] == messages[2]["data"]["call_id"]
    assert messages[2]["content"].startswith("stored plan.txt (")


async def test_the_stream_shows_a_handoff_as_a_status_and_only_real_tool_calls(
    app, http, auth, tenant
):
    ran, _ = await _thread_run(
        app,
        http,
        auth,
        tenant,
        "it-router",
        'Which runbook covers failover?\n#call read_artifact {"name": "failover.md"}',
    )
    events = parse_events(
        (await http.get(f"/api/agents/tasks/{ran['task']['id']}/events", headers=auth())).text
    )
    handoffs = [
        e["data"] for e in events if e["event"] == "status" and e["data"]["content"] == "handoff"
    ]
    assert [h["data"]["message"] for h in handoffs] == ["it-router -> runbook-agent"]
    # The router's call of its handoff tool is not a call waiting for a result.
    assert [e["data"]["tool"] for e in events if e["event"] == "tool_call"] == ["read_artifact"]
    assert_tool_calls_pair_with_results(events)
