"""The agent runtime's SDK tools, run for real: a dispatcher and a worker on a database of
their own, the real Runner and the offline model, whose `#call` lines drive the tools.

A parent spawns two helpers, asks them a question on its run's channel, collects their
replies and their final outputs, and finishes with both answers; a helper of the agents
file runs with its instructions and its soul, and its trace records the soul's digest.
A spawn that would widen permissions is refused through the tool with its diagnostic
code and audited, and creates nothing; a helper is offered only the tools its
permissions list. The context bundle reads as the REST route's.
"""

import json
from typing import Any
from uuid import UUID

import pytest
from conftest import fast_policy
from pipeline_helpers import ARTIFACTS, OPERATOR, pipeline
from pipeline_helpers import wait_status as _wait_status

from ledger.agent_registry import load_agents
from ledger.artifact_store import LocalArtifactStore
from ledger.models import TaskCreateRequest
from ledger.repository import Ledger
from worker.executors import sdk_executor

PODS = "pods: 3 of 4 checkout pods crash-looping"
ALERTS = "alerts: checkout 5xx above 20 percent since 12:02"


def _call(tool: str, **arguments: Any) -> str:
    return f"#call {tool} {json.dumps(arguments)}"


def _helper(answer: str) -> str:
    """A helper's task: wait for its parent's question on the parent's channel, answer."""
    return "\n".join(
        [
            "Answer the coordinator's question about checkout.",
            _call("channel_recv", channel="parent", wait_seconds=30),
            _call("channel_reply", body=answer),
        ]
    )


@pytest.fixture
def policy():
    return fast_policy(lease_seconds=5.0)


async def _run(fresh_pool, policy, instructions: str) -> tuple[Ledger, UUID]:
    ledger = Ledger(fresh_pool, policy)
    request = TaskCreateRequest(lane="analysis", title="Checkout health", instructions=instructions)
    task = (await ledger.create_task(OPERATOR, request)).task
    async with pipeline(fresh_pool, policy, sdk_executor):
        await _wait_status(ledger, [task.id], "succeeded", seconds=90)
    return ledger, task.id


async def _output(ledger: Ledger, task_id: UUID) -> str:
    [artifact] = [
        a for a in await ledger.list_artifacts("t1", task_id) if a.name == "final_output.md"
    ]
    stored = await ledger.pool.fetchval(
        "SELECT storage_ref FROM artifacts WHERE id = $1", artifact.id
    )
    return LocalArtifactStore(ARTIFACTS).get(stored).decode()


def _results(output: str) -> dict[str, list[Any]]:
    """The tool results the offline model's final message lists, by tool."""
    found: dict[str, list[Any]] = {}
    for line in output.splitlines():
        if line.startswith("- ") and ": " in line:
            tool, result = line[2:].split(": ", 1)
            found.setdefault(tool, []).append(json.loads(result))
    return found


async def test_a_parent_spawns_two_helpers_talks_with_them_and_finishes_with_their_answers(
    fresh_pool, policy
) -> None:
    instructions = "\n".join(
        [
            "Find out how checkout is doing, with two helpers.",
            _call("spawn_agent", title="pods helper", instructions=_helper(PODS)),
            _call(
                "spawn_agent",
                title="alerts helper",
                agent_name="incident-analyst",
                auto_stop_on_parent=False,
                instructions=_helper(ALERTS),
            ),
            _call("channel_send", message_kind="request", body="How is checkout doing?"),
            _call("channel_recv", wait_seconds=30, at_least=2),
            _call("wait_for_child", wait_seconds=60),
        ]
    )
    ledger, parent_id = await _run(fresh_pool, policy, instructions)

    output = await _output(ledger, parent_id)
    assert PODS in output and ALERTS in output
    results = _results(output)
    spawned = [result["spawned"] for result in results["spawn_agent"]]
    assert [s["agent_name"] for s in spawned] == ["workbench-analysis", "incident-analyst"]
    assert [s["auto_stop_on_parent"] for s in spawned] == [True, False]
    # The helpers answered on the parent's channel, each replying to its question.
    [sent] = results["channel_send"]
    [received] = results["channel_recv"]
    replies = received["messages"]
    assert sorted(m["body"] for m in replies) == sorted([PODS, ALERTS])
    assert {m["reply_to_message_id"] for m in replies} == {sent["sent"]["message_id"]}
    assert {m["from_session_id"] for m in replies} == {s["session_id"] for s in spawned}
    [waited] = results["wait_for_child"]
    assert waited["settled"] is True
    outputs = {child["session_id"]: child for child in waited["children"]}
    for each, answer in zip(spawned, (PODS, ALERTS), strict=True):
        child = outputs[each["session_id"]]
        assert child["task_status"] == "succeeded" and answer in child["output"]
        assert child["session_state"] == "stopped"

    # Each call has its verdict, and the ledger's record of what it did.
    traces = await ledger.list_traces("t1", parent_id)
    verdicts = [t.data["tool"] for t in traces if t.kind == "tool_verdict"]
    assert verdicts == [
        "spawn_agent",
        "spawn_agent",
        "channel_send",
        "channel_recv",
        "wait_for_child",
    ]
    assert [t.data["child_session_id"] for t in traces if t.kind == "spawned"] == [
        s["session_id"] for s in spawned
    ]
    assert [t.data["message_kind"] for t in traces if t.kind == "channel_message"] == ["request"]

    # The helper of the agents file ran with its instructions and its soul.
    soul = load_agents(policy).soul_of("incident-analyst")
    assert soul.valid and soul.digest
    alerts_task = UUID(spawned[1]["task_id"])
    child_traces = await ledger.list_traces("t1", alerts_task)
    [souls] = [t.data["souls"] for t in child_traces if t.kind == "soul"]
    assert souls == {"incident-analyst": soul.digest}
    prompts = json.dumps([t.data for t in child_traces if t.kind == "span.generation"])
    assert "You are the incident analyst" in prompts and soul.digest in prompts
    pods_traces = await ledger.list_traces("t1", UUID(spawned[0]["task_id"]))
    assert [t for t in pods_traces if t.kind == "soul"] == []  # the lane's agent has none


async def test_a_spawn_that_widens_permissions_is_refused_through_the_tool(
    fresh_pool, policy
) -> None:
    narrowed = "\n".join(
        [
            "Only listen.",
            _call("channel_send", channel="parent", body="a helper that may not speak"),
        ]
    )
    instructions = "\n".join(
        [
            "Start helpers.",
            _call(
                "spawn_agent",
                instructions="Propose a fix.",
                permissions={"tools": ["read_artifact", "propose_change"]},
            ),
            _call("spawn_agent", instructions=narrowed, permissions={"tools": ["channel_recv"]}),
            _call("wait_for_child", wait_seconds=60),
            _call("agent_context"),
        ]
    )
    ledger, parent_id = await _run(fresh_pool, policy, instructions)

    results = _results(await _output(ledger, parent_id))
    refused, allowed = results["spawn_agent"]
    assert refused["refused"]["code"] == "spawn_permission_denied"
    assert refused["refused"]["details"]["widened"] == [{"kind": "tools", "atom": "propose_change"}]
    traces = await ledger.list_traces("t1", parent_id)
    [audit] = [t for t in traces if t.kind == "spawn_refused"]
    assert audit.data["code"] == "spawn_permission_denied"
    # Nothing of the refused child: one helper, the one allowed.
    assert [t.kind for t in traces].count("spawned") == 1
    sessions = await fresh_pool.fetch("SELECT task_id FROM agent_sessions WHERE type = 'spawned'")
    assert [row["task_id"] for row in sessions] == [UUID(allowed["spawned"]["task_id"])]
    assert await fresh_pool.fetchval("SELECT count(*) FROM tasks") == 2

    # The context bundle as GET /api/agent/context has it: its sections in their order.
    [bundle] = [result["context"] for result in results["agent_context"]]
    assert list(bundle) == [
        "self",
        "session",
        "task",
        "coordination_channel",
        "inbox_summary",
        "peer_roster",
        "capabilities",
        "limits",
        "provenance",
    ]
    assert bundle["session"]["task_id"] == str(parent_id)
    assert bundle["session"]["lineage"]["spawn_depth"] == 0

    # The allowed helper holds only channel_recv: channel_send is not offered to it.
    [waited] = results["wait_for_child"]
    [child] = waited["children"]
    assert child["task_status"] == "succeeded"
    assert "tool 'channel_send' is not available (offered: channel_recv)" in child["output"]
