"""What a thread run writes through its fence: the agents' messages with its completion
(once, and never from a worker that lost the run), and a paused tool call's approval
request with the pause.

The thread and its binding to the task are set up in SQL here: the threads repository
and routes that create them come with the conversations API.
"""

from uuid import uuid4

import pytest
from conftest import fast_policy

from ledger.fencing import FenceRejected
from ledger.leases import Leases
from ledger.models import TaskCreateRequest
from ledger.repository import Actor, Ledger
from ledger.run_writes import NewMessage

OPERATOR = Actor("olga", "t1", "operator")


async def _claimed_thread_run(pool, ledger: Ledger, leases: Leases):
    thread_id = uuid4()
    request = TaskCreateRequest(lane="analysis", title="t", instructions="why is it down?")
    task = (await ledger.create_task(OPERATOR, request)).task
    async with pool.acquire() as connection:
        await connection.execute(
            "INSERT INTO threads (id, tenant_id, session_key, agent_type, created_by)"
            " VALUES ($1, 't1', $2, 'it-router', 'olga')",
            thread_id,
            str(thread_id),
        )
        await connection.execute(
            "UPDATE tasks SET thread_id = $1, agent_type = 'it-router' WHERE id = $2",
            thread_id,
            task.id,
        )
    claim = await leases.claim(
        task_id=task.id, run_id=task.current_run_id, attempt=1, worker="w1", via="test"
    )
    return thread_id, task, claim


async def test_messages_are_written_with_the_completion_once(pool) -> None:
    policy = fast_policy()
    ledger, leases = Ledger(pool, policy), Leases(pool, policy)
    thread_id, task, claim = await _claimed_thread_run(pool, ledger, leases)
    assert claim.task.thread_id == thread_id
    messages = [
        NewMessage("handoff", "incident-analyst", agent="it-router", data={"reason": "outage"}),
        NewMessage("assistant", "the api is down; password=hunter2", agent="incident-analyst"),
    ]
    await leases.complete(claim.fence, worker="w1", messages=messages)
    with pytest.raises(FenceRejected):  # a second completion of the same run is refused
        await leases.complete(claim.fence, worker="w1", messages=messages)

    history = await leases.thread_history(thread_id)
    assert [(m.seq, m.role, m.agent) for m in history] == [
        (1, "handoff", "it-router"),
        (2, "assistant", "incident-analyst"),
    ]
    assert all(m.task_id == task.id for m in history)
    assert "hunter2" not in history[1].content
    assert history[0].data == {"reason": "outage"}


async def test_a_worker_that_lost_the_run_writes_no_message(pool) -> None:
    policy = fast_policy()
    ledger, leases = Ledger(pool, policy), Leases(pool, policy)
    thread_id, task, claim = await _claimed_thread_run(pool, ledger, leases)
    await ledger.cancel(OPERATOR, task.id, reason="stop")
    with pytest.raises(FenceRejected):
        await leases.complete(
            claim.fence, worker="w1", messages=[NewMessage("assistant", "too late")]
        )
    assert await leases.thread_history(thread_id) == []


async def test_a_pause_records_its_approval_request(pool) -> None:
    policy = fast_policy()
    ledger, leases = Ledger(pool, policy), Leases(pool, policy)
    _, task, claim = await _claimed_thread_run(pool, ledger, leases)
    pending = {
        "tool": "propose_change",
        "call_id": "call_7",
        "arguments": {"summary": "restart", "change": "[REDACTED]"},
        "arguments_sha256": "a" * 64,
    }
    paused = await leases.pause(claim.fence, worker="w1", saved_state="{}", pending=pending)
    async with pool.acquire() as connection:
        request = await connection.fetchrow(
            "SELECT * FROM approval_requests WHERE task_id = $1", task.id
        )
    assert paused.pending_approval["approval_id"] == str(request["id"])
    assert (request["tool"], request["call_id"], request["status"]) == (
        "propose_change",
        "call_7",
        "pending",
    )
    assert request["arguments"] == pending["arguments"]
    assert request["arguments_sha256"] == "a" * 64
    assert request["run_id"] == claim.fence.run_id
    assert list(request["deciders"]) == ["operator", "owner"]


async def _approval_request(pool, task_id):
    async with pool.acquire() as connection:
        return await connection.fetchrow(
            "SELECT * FROM approval_requests WHERE task_id = $1", task_id
        )


@pytest.mark.parametrize(
    ("decide", "status", "reason"),
    [
        (
            lambda ledger, task_id: ledger.approve(
                OPERATOR, task_id, reason="ok", break_glass_acknowledged=False
            ),
            "approved",
            "ok",
        ),
        (lambda ledger, task_id: ledger.reject(OPERATOR, task_id, reason="no"), "rejected", "no"),
        (lambda ledger, task_id: ledger.cancel(OPERATOR, task_id, reason="x"), "cancelled", "x"),
    ],
)
async def test_a_decision_settles_the_approval_request(pool, decide, status, reason) -> None:
    policy = fast_policy()
    ledger, leases = Ledger(pool, policy), Leases(pool, policy)
    _, task, claim = await _claimed_thread_run(pool, ledger, leases)
    pending = {
        "tool": "propose_change",
        "call_id": "call_8",
        "arguments": {},
        "arguments_sha256": "b" * 64,
    }
    await leases.pause(claim.fence, worker="w1", saved_state="{}", pending=pending)
    await decide(ledger, task.id)
    request = await _approval_request(pool, task.id)
    assert (request["status"], request["reason"], request["resolved_by"]) == (
        status,
        reason,
        "olga",
    )
    assert request["resolved_at"] is not None
