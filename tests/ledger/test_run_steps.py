"""A thread run's steps, status and usage read from its trace events: trace events
shaped as the worker writes them (see a real run's in tests/api/test_runs_e2e.py)."""

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from ledger.models import Task, TraceEvent
from ledger.run_steps import CONVERSATION_STATUS, run_steps, thread_run
from ledger.states import TaskStatus

TASK_ID = uuid4()
T0 = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
APPROVAL_ID = "f3b1e879-d8db-4b95-a1dc-ae62d55de748"


def _at(ms: int) -> str:
    return (T0 + timedelta(milliseconds=ms)).isoformat()


def _event(seq: int, kind: str, to_status: str | None = None, **data) -> TraceEvent:
    return TraceEvent(
        seq=seq,
        task_id=TASK_ID,
        run_id=None,
        kind=kind,
        from_status=None,
        to_status=to_status,
        actor="test-worker",
        message=kind,
        data=data,
        created_at=T0 + timedelta(seconds=seq),
    )


def _turn(seq, *, text=None, calls=(), tokens=(10, 2), start=0, end=250):
    usage = {"requests": 1, "input_tokens": tokens[0], "output_tokens": tokens[1]}
    data = {"model": "offline", "usage": usage, "started_at": _at(start), "ended_at": _at(end)}
    if text:
        data["text"] = text
    if calls:
        data["tool_calls"] = [
            {"call_id": call_id, "tool": tool, "arguments": arguments}
            for call_id, tool, arguments in calls
        ]
    return _event(seq, "span.generation", **data)


def _turn_end(seq, agent):
    return _event(
        seq, "span.custom", name="turn", data={"sdk_span_type": "turn", "agent_name": agent}
    )


def _routed_run() -> list[TraceEvent]:
    """The router hands over with its reason; the specialist reads a file and answers."""
    return [
        _event(1, "created", "queued"),
        _event(2, "worker_receipt", "running"),
        _turn(3, calls=[("call_h", "transfer_to_runbook_agent", {"reason": "mentions runbook"})]),
        _event(4, "span.handoff", from_agent="it-router", to_agent="runbook-agent"),
        _turn_end(5, "it-router"),
        _event(6, "span.agent", name="it-router"),
        _turn(7, calls=[("call_r", "read_artifact", {"name": "failover.md"})], tokens=(20, 3)),
        _event(8, "tool_verdict", call_id="call_r", tool="read_artifact", decision="allow"),
        _event(
            9,
            "span.function",
            name="read_artifact",
            call_id="call_r",
            output="no artifact named failover.md",
            started_at=_at(300),
            ended_at=_at(340),
        ),
        _turn_end(10, "runbook-agent"),
        _turn(11, text="No runbook covers failover.", tokens=(30, 5)),
        _turn_end(12, "runbook-agent"),
        _event(13, "span.agent", name="runbook-agent"),
        _event(14, "succeeded", "succeeded"),
    ]


def test_a_routed_run_reads_as_turns_a_handoff_and_a_tool_call_with_its_result() -> None:
    steps = [step.model_dump(mode="json") for step in run_steps(_routed_run())]
    assert [(s["step_index"], s["kind"]) for s in steps] == [
        (0, "model_turn"),
        (1, "handoff"),
        (2, "model_turn"),
        (3, "tool_call"),
        (4, "model_turn"),
    ]
    first, handoff, _, call, last = steps
    assert (first["agent"], first["model"], first["duration_ms"]) == ("it-router", "offline", 250)
    assert first["usage"] == {"input_tokens": 10, "output_tokens": 2, "total_tokens": 12}
    assert handoff == {
        "step_index": 1,
        "seq": 3,
        "kind": "handoff",
        "call_id": "call_h",
        "from_agent": "it-router",
        "to_agent": "runbook-agent",
        "reason": "mentions runbook",
    }
    assert call["agent"] == "runbook-agent"
    assert (call["tool"], call["arguments"], call["status"]) == (
        "read_artifact",
        {"name": "failover.md"},
        "completed",
    )
    assert (call["output"], call["error"], call["duration_ms"]) == (
        "no artifact named failover.md",
        None,
        40,
    )
    assert (last["agent"], last["text"]) == ("runbook-agent", "No runbook covers failover.")


def test_a_steps_index_never_changes_as_the_trace_grows() -> None:
    events = _routed_run()
    whole = [(s.step_index, s.kind, s.seq) for s in run_steps(events)]
    for end in range(len(events)):
        prefix = [(s.step_index, s.kind, s.seq) for s in run_steps(events[:end])]
        assert prefix == whole[: len(prefix)]


def _paused_run(decision_kind: str, **decision) -> list[TraceEvent]:
    arguments = {"summary": "scale", "change": "replicas=3 password=[redacted]"}
    return [
        _event(1, "worker_receipt", "running"),
        _turn(2, calls=[("call_p", "propose_change", arguments)]),
        # The SDK's span of the paused call: no call started, nothing ran.
        _event(3, "span.function", name="propose_change", output=None),
        _turn_end(4, "change-planner"),
        _event(
            5,
            "approval_requested",
            "awaiting_approval",
            tool="propose_change",
            call_id="call_p",
            arguments=arguments,
            approval_id=APPROVAL_ID,
            arguments_sha256="ab" * 32,
        ),
        _event(6, decision_kind, decision.pop("to_status", "queued"), **decision),
    ]


def test_an_approval_is_a_step_settled_by_the_decision_and_the_call_runs_after() -> None:
    events = _paused_run("tool_call_approved", by="bob", decision="approved", reason="ok")
    pending = run_steps(events[:-1])
    assert pending[1].status == "pending" and pending[2].status == "pending"
    events += [
        _event(7, "worker_receipt", "running"),
        _event(8, "span.function", name="propose_change", call_id="call_p", output="stored"),
    ]
    _, call, approval = run_steps(events)
    assert (call.status, call.output) == ("completed", "stored")
    assert approval.model_dump(mode="json") == {
        "step_index": 2,
        "seq": 5,
        "kind": "approval",
        "approval_id": APPROVAL_ID,
        "call_id": "call_p",
        "tool": "propose_change",
        "arguments_sha256": "ab" * 32,
        "status": "approved",
        "by": "bob",
        "reason": "ok",
        "requested_at": (T0 + timedelta(seconds=5)).isoformat().replace("+00:00", "Z"),
        "decided_at": (T0 + timedelta(seconds=6)).isoformat().replace("+00:00", "Z"),
    }


def test_a_rejected_or_cancelled_approval_says_so_and_by_whom() -> None:
    _, call, approval = run_steps(_paused_run("tool_call_rejected", by="bob", decision="rejected"))
    assert (approval.status, approval.by) == ("rejected", "bob")
    assert call.status == "rejected"  # it never ran
    _, call, approval = run_steps(_paused_run("cancelled", to_status="cancelled", reason=""))
    assert (approval.status, approval.by, approval.reason) == ("cancelled", "test-worker", None)
    assert call.status == "cancelled"


def test_a_failed_tool_call_keeps_its_error() -> None:
    error = {"message": "Error running tool", "data": {"error": "boom"}}
    events = [
        _turn(1, calls=[("call_x", "http_get", {"url": "http://x"})]),
        _event(2, "span.function", name="http_get", call_id="call_x", output=None, error=error),
    ]
    [_, call] = run_steps(events)
    assert (call.status, call.error, call.agent) == ("failed", error, None)


def test_a_tool_call_whose_span_ended_without_a_result_was_interrupted() -> None:
    # What a cancelled run leaves: the SDK ends the function span of the call under way.
    events = [
        _turn(1, calls=[("call_x", "http_get", {"url": "http://x"})]),
        _event(2, "span.function", name="http_get", call_id="call_x", output=None),
    ]
    [_, call] = run_steps(events)
    assert (call.status, call.output, call.error) == ("interrupted", None, None)


def test_a_handoff_seen_only_as_its_span_is_a_step_of_its_own() -> None:
    [handoff] = run_steps([_event(1, "span.handoff", from_agent="a", to_agent="b")])
    assert (handoff.kind, handoff.from_agent, handoff.to_agent, handoff.call_id) == (
        "handoff",
        "a",
        "b",
        None,
    )


def _task(status: TaskStatus) -> Task:
    return Task.model_validate(
        {
            "id": TASK_ID,
            "tenant_id": "t1",
            "lane": "analysis",
            "title": "t",
            "instructions": "x",
            "source_systems": [],
            "scope": {},
            "mutation_level": "read_only",
            "model_provider": "offline",
            "status": status,
            "policy_verdict": {
                "decision": "allow",
                "reasons": [],
                "profile": "standard",
                "policy_version": "1",
            },
            "break_glass": None,
            "approval": None,
            "rollback": None,
            "terminal_reason": None,
            "attempt": 1,
            "max_attempts": 3,
            "current_run_id": None,
            "created_by": "alice",
            "created_at": T0,
            "updated_at": T0,
            "thread_id": UUID(int=7),
            "agent_type": "it-router",
        }
    )


def test_the_run_has_its_times_usage_and_conversation_status() -> None:
    events = _routed_run()
    run = thread_run(_task(TaskStatus.SUCCEEDED), events, run_steps(events))
    assert (run.status, run.task_status, run.thread_id) == ("completed", "succeeded", UUID(int=7))
    assert run.started_at == T0 + timedelta(seconds=2)
    assert run.completed_at == T0 + timedelta(seconds=14)
    assert run.usage.model_dump() == {"input_tokens": 60, "output_tokens": 10, "total_tokens": 70}
    running = thread_run(_task(TaskStatus.RUNNING), events[:5], run_steps(events[:5]))
    assert (running.status, running.completed_at) == ("running", None)


def test_every_task_status_has_a_conversation_status() -> None:
    assert set(CONVERSATION_STATUS) == set(TaskStatus)
    assert CONVERSATION_STATUS[TaskStatus.DISPATCHED] == "queued"
