"""Tool approvals that survive the worker: the run pauses with its SDK state saved in
Postgres; after an operator's decision any worker resumes it from there."""

import asyncio

from conftest import fast_policy
from pipeline_helpers import pipeline
from pipeline_helpers import wait_status as _wait_status

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
    # Redacted for the operator's screen, and shown as the call's tool_call event shows it.
    assert pending["arguments"] == {
        "name": "change.txt",
        "content": "set replicas=3 token=[redacted]",
    }
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
    [call] = [
        c for t in traces if t.kind == "span.generation" for c in t.data.get("tool_calls", [])
    ]
    assert call == {
        "call_id": pending["call_id"],
        "tool": "write_artifact",
        "arguments": pending["arguments"],
    }
    verdicts = [t.data for t in traces if t.kind == "tool_verdict"]
    assert [(v["call_id"], v["decision"]) for v in verdicts] == [(pending["call_id"], "approved")]
    # The SDK opens a function span at the pause too (no output, no call started): the
    # tool ran once, in the resumed run, and its result names the call it answers.
    [paused, executed] = [t.data for t in traces if t.kind == "span.function"]
    assert paused["output"] is None and "call_id" not in paused
    assert executed["output"].startswith("stored change.txt (")
    assert executed["call_id"] == pending["call_id"]
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
    assert [t for t in traces if t.kind == "tool_verdict"] == []
    assert [a.name for a in await ledger.list_artifacts("t1", task_id)] == ["final_output.md"]


async def test_cancel_stops_an_sdk_run_mid_tool_and_keeps_partial_trace(fresh_pool) -> None:
    # A tool call that takes long: http_get to a local server that answers slowly.
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Slow(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            import time

            time.sleep(30)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        policy = fast_policy(lease_seconds=5.0, allowed_hosts=["127.0.0.1"])
        ledger = Ledger(fresh_pool, policy)
        url = f"http://127.0.0.1:{server.server_port}/status"
        request = TaskCreateRequest(
            lane="analysis",
            title="Probe",
            instructions=(f'Check the service\n#call http_get {{"url": "{url}"}}'),
        )
        task = (await ledger.create_task(OPERATOR, request)).task
        async with pipeline(fresh_pool, policy, sdk_executor):
            await _wait_status(ledger, [task.id], "running")
            await _wait_for_trace(ledger, task.id, "tool_verdict")  # the slow call is under way
            loop = asyncio.get_running_loop()
            started = loop.time()
            await ledger.cancel(Actor("carol", "t1", "operator"), task.id, reason="too slow")
            while (
                await fresh_pool.fetchval(
                    "SELECT count(*) FROM trace_events WHERE task_id = $1 "
                    "AND kind = 'span.generation'",
                    task.id,
                )
            ) == 0:
                assert loop.time() - started < 2.0, "the run's spans did not arrive within 2 s"
                await asyncio.sleep(0.05)
        cancelled = await ledger.get_task("t1", task.id)
        assert cancelled.status == "cancelled"
        assert cancelled.terminal_reason == "cancelled by carol: too slow"
        kinds = [t.kind for t in await ledger.list_traces("t1", task.id)]
        assert "span.generation" in kinds  # the partial trace of what the agent did
        assert "succeeded" not in kinds
    finally:
        server.shutdown()
        server.server_close()


async def _wait_for_trace(ledger: Ledger, task_id: object, kind: str) -> None:
    async def seen() -> None:
        while kind not in [t.kind for t in await ledger.list_traces("t1", task_id)]:
            await asyncio.sleep(0.05)

    await asyncio.wait_for(seen(), 10)


async def test_token_budget_stops_the_run(fresh_pool) -> None:
    policy = fast_policy(lease_seconds=5.0, token_budget=5)
    ledger = Ledger(fresh_pool, policy)
    request = TaskCreateRequest(
        lane="analysis",
        title="Long one",
        instructions="Summarise every alert of the last month in detail",
    )
    task = (await ledger.create_task(OPERATOR, request)).task
    async with pipeline(fresh_pool, policy, sdk_executor):
        await _wait_status(ledger, [task.id], "failed")
    failed = await ledger.get_task("t1", task.id)
    assert failed.attempt == 1  # not retried: another attempt would spend as much
    assert failed.terminal_reason.startswith("budget_exceeded on attempt 1 of 3: ")
    assert "lane analysis allows 5" in failed.terminal_reason
