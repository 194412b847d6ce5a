"""Tool approvals that survive the worker: the run pauses with its SDK state saved in
Postgres; after an operator's decision any worker resumes it from there."""

from conftest import fast_policy
from test_worker import _wait_status, pipeline

from ledger.models import TaskCreateRequest
from ledger.repository import Actor, Ledger
from worker.executors import sdk_executor

OPERATOR = Actor("olga", "t1", "operator")
WRITE = '#call write_artifact {"name": "change.txt", "content": "set replicas=3 token=abc123"}'


async def _paused_task(fresh_pool, policy) -> tuple[Ledger, object]:
    ledger = Ledger(fresh_pool, policy)
    request = TaskCreateRequest(
        lane="change-nonprod",
        title="Scale app-7",
        instructions=f"Scale app-7 to 3 replicas\n{WRITE}",
        mutation_level="write_nonprod",
    )
    task = (await ledger.create_task(OPERATOR, request)).task
    async with pipeline(fresh_pool, policy, sdk_executor):  # worker A
        await _wait_status(ledger, [task.id], "awaiting_approval")
    return ledger, task.id


async def test_pause_saves_state_then_another_worker_finishes(fresh_pool) -> None:
    policy = fast_policy(lease_seconds=5.0)
    ledger, task_id = await _paused_task(fresh_pool, policy)  # worker A is gone now

    task = await ledger.get_task("t1", task_id)
    pending = task.pending_approval
    assert pending["tool"] == "write_artifact"
    assert "abc123" not in pending["arguments"]  # redacted for the operator's screen
    assert len(pending["arguments_sha256"]) == 64
    run = await fresh_pool.fetchrow(
        "SELECT status, saved_state, claim_token_hash FROM runs WHERE id = $1", task.current_run_id
    )
    assert run["status"] == "paused" and run["saved_state"] and run["claim_token_hash"] is None
    assert await ledger.list_artifacts("t1", task_id) == []  # the tool has not run

    decided = await ledger.approve(
        Actor("bob", "t1", "operator"), task_id, reason="ok", break_glass_acknowledged=False
    )
    assert decided.task.status == "queued" and decided.trace.kind == "tool_call_approved"
    assert decided.task.attempt == 1  # the pause spent no attempt

    async with pipeline(fresh_pool, policy, sdk_executor):  # worker B
        await _wait_status(ledger, [task_id], "succeeded")
    traces = await ledger.list_traces("t1", task_id)
    kinds = [t.kind for t in traces]
    assert kinds.index("approval_requested") < kinds.index("tool_call_approved")
    verdicts = [t.data for t in traces if t.kind == "tool_call"]
    assert [(v["tool"], v["decision"]) for v in verdicts] == [("write_artifact", "approved")]
    # The SDK opens a function span at the pause too (no output): the tool ran once.
    outputs = [t.data.get("output") for t in traces if t.kind == "span.function"]
    [executed] = [output for output in outputs if output]
    assert executed.startswith("stored change.txt (")
    [change] = [a for a in await ledger.list_artifacts("t1", task_id) if a.name == "change.txt"]
    assert change.size_bytes == len(b"set replicas=3 token=[redacted]")
    names = sorted(a.name for a in await ledger.list_artifacts("t1", task_id))
    assert names == ["change.txt", "final_output.md"]
    receipts = [t.actor for t in traces if t.kind == "worker_receipt"]
    assert len(receipts) == 2  # claimed, paused, claimed again


async def test_rejected_tool_call_is_not_executed(fresh_pool) -> None:
    policy = fast_policy(lease_seconds=5.0)
    ledger, task_id = await _paused_task(fresh_pool, policy)
    decided = await ledger.reject(Actor("bob", "t1", "operator"), task_id, reason="no")
    assert decided.task.status == "queued" and decided.trace.kind == "tool_call_rejected"
    async with pipeline(fresh_pool, policy, sdk_executor):
        await _wait_status(ledger, [task_id], "succeeded")
    traces = await ledger.list_traces("t1", task_id)
    assert [t for t in traces if t.kind == "tool_call"] == []
    assert [a.name for a in await ledger.list_artifacts("t1", task_id)] == ["final_output.md"]
