"""Claims, fences and the reaper: a worker whose lease was taken over writes nothing;
expired leases are retried up to max_attempts, then the task fails with its reason.

The leases here are 1 s long; a test that needs one to run out waits until the ledger
says it has (polling, with a deadline), never for a fixed time."""

import asyncio
from uuid import uuid4

import pytest
from conftest import fast_policy
from prometheus_client import REGISTRY

from dispatcher.outbox import Outbox
from dispatcher.reaper import Reaper, ReaperConfig
from lanes.registry import LaneRegistry
from ledger.leases import Fence, FenceRejected, Hint, Leases, NewArtifact
from ledger.models import TaskCreateRequest
from ledger.repository import Actor, Ledger

OPERATOR = Actor("olga", "t1", "operator")


@pytest.fixture
def policy():
    return fast_policy()


@pytest.fixture
def ledger(fresh_pool, policy):
    return Ledger(fresh_pool, policy)


@pytest.fixture
def leases(fresh_pool, policy):
    return Leases(fresh_pool, policy)


async def _queued(ledger: Ledger, **fields) -> tuple:
    request = TaskCreateRequest(lane="analysis", title="t", instructions="x", **fields)
    task = (await ledger.create_task(OPERATOR, request)).task
    return task.id, task.current_run_id


async def _claim(leases: Leases, ledger: Ledger, task_id, worker="w1"):
    task = await ledger.get_task("t1", task_id)
    return await leases.claim(
        task_id=task_id, run_id=task.current_run_id, attempt=task.attempt, worker=worker, via="test"
    )


async def _kinds(ledger: Ledger, task_id) -> list[str]:
    return [event.kind for event in await ledger.list_traces("t1", task_id)]


async def _until(pool, condition: str, *args, seconds: float = 10.0) -> None:
    """Poll until the SQL `condition` is true, for at most `seconds`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not await pool.fetchval(condition, *args):
        assert loop.time() < deadline, f"still not true after {seconds} s: {condition}"
        await asyncio.sleep(0.02)


async def _lease_expired(pool, run_id) -> None:
    """Until the run's lease has run out, as the reaper will see it."""
    await _until(pool, "SELECT lease_until < now() FROM runs WHERE id = $1", run_id)


def _reap(ledger: Ledger):
    return Reaper(ledger.pool, ledger.policy, ReaperConfig(actor="reaper")).run_once()


async def test_claim_once_then_complete(ledger, leases) -> None:
    task_id, run_id = await _queued(ledger)
    claim = await _claim(leases, ledger, task_id)
    assert claim is not None and claim.task.status == "running"
    assert claim.run.claimed_by == "w1"
    assert await _claim(leases, ledger, task_id, worker="w2") is None  # a duplicate hint
    stored_hash = await ledger.pool.fetchval(
        "SELECT claim_token_hash FROM runs WHERE id = $1", run_id
    )
    assert stored_hash == claim.fence.token_hash != claim.fence.claim_token

    done = await leases.complete(claim.fence, worker="w1", result={"ok": True})
    assert done.status == "succeeded"
    assert await _kinds(ledger, task_id) == [
        "created",
        "policy_verdict",
        "worker_receipt",
        "succeeded",
    ]


async def test_wrong_token_is_refused_and_traced(ledger, leases) -> None:
    task_id, _ = await _queued(ledger)
    claim = await _claim(leases, ledger, task_id)
    refused_before = REGISTRY.get_sample_value("workbench_fence_refusals_total") or 0
    forged = Fence(claim.fence.run_id, claim.fence.attempt, "not-the-token")
    for write in (
        leases.complete(forged, worker="zombie"),
        leases.heartbeat(forged, worker="zombie", lease_seconds=5),
        leases.fail(forged, worker="zombie", failure_kind="x", error="y"),
    ):
        with pytest.raises(FenceRejected):
            await write
    assert (await ledger.get_task("t1", task_id)).status == "running"
    assert (await _kinds(ledger, task_id)).count("fence_refused") == 3
    assert REGISTRY.get_sample_value("workbench_fence_refusals_total") == refused_before + 3


async def test_zombie_late_completion_refused_new_owner_stands(ledger, leases) -> None:
    task_id, first_run = await _queued(ledger)
    zombie = await _claim(leases, ledger, task_id, worker="zombie")
    await _lease_expired(ledger.pool, first_run)  # no heartbeat
    reaped = await _reap(ledger)
    assert (reaped.lost, reaped.retried) == (1, 1)
    task = await ledger.get_task("t1", task_id)
    assert task.status == "queued" and task.attempt == 2 and task.current_run_id != first_run

    owner = await _claim(leases, ledger, task_id, worker="owner")
    with pytest.raises(FenceRejected):
        await leases.heartbeat(zombie.fence, worker="zombie", lease_seconds=1)
    with pytest.raises(FenceRejected):
        await leases.complete(zombie.fence, worker="zombie", result={"from": "zombie"})
    final = await leases.complete(owner.fence, worker="owner", result={"from": "owner"})
    assert final.status == "succeeded"
    traces = await ledger.list_traces("t1", task_id)
    assert [t.data for t in traces if t.kind == "succeeded"] == [{"from": "owner"}]
    assert [t.kind for t in traces][2:] == [
        "worker_receipt",
        "lease_expired",
        "retry_scheduled",
        "worker_receipt",
        "fence_refused",
        "fence_refused",
        "succeeded",
    ]
    runs = await ledger.pool.fetch(
        "SELECT attempt, status, previous_run_id FROM runs WHERE task_id = $1 ORDER BY attempt",
        task_id,
    )
    assert [(r["attempt"], r["status"]) for r in runs] == [(1, "lost"), (2, "succeeded")]
    assert runs[1]["previous_run_id"] == first_run


async def test_heartbeat_keeps_the_lease(ledger, leases) -> None:
    task_id, _ = await _queued(ledger)
    claim = await _claim(leases, ledger, task_id)
    await leases.heartbeat(claim.fence, worker="w1", lease_seconds=60)
    # Past the end of the lease the claim gave: only the heartbeat keeps the run.
    await _until(ledger.pool, "SELECT now() > $1::timestamptz", claim.run.lease_until)
    assert (await _reap(ledger)).lost == 0
    assert (await ledger.get_task("t1", task_id)).status == "running"


async def test_attempts_exhausted_fails_with_reason(fresh_pool) -> None:
    policy = fast_policy(max_attempts=2)
    ledger, leases = Ledger(fresh_pool, policy), Leases(fresh_pool, policy)
    task_id, _ = await _queued(ledger)
    for _ in range(2):
        claim = await _claim(leases, ledger, task_id)
        assert claim is not None
        await _lease_expired(ledger.pool, claim.fence.run_id)
        assert (await _reap(ledger)).lost == 1
    task = await ledger.get_task("t1", task_id)
    assert task.status == "failed"
    assert task.terminal_reason.startswith("lease_expired on attempt 2 of 2")


async def test_failure_retries_then_non_retryable_fails(ledger, leases) -> None:
    task_id, _ = await _queued(ledger)
    claim = await _claim(leases, ledger, task_id)
    retried = await leases.fail(
        claim.fence, worker="w1", failure_kind="executor_error", error="boom"
    )
    assert (retried.status, retried.attempt) == ("queued", 2)
    claim = await _claim(leases, ledger, task_id)
    failed = await leases.fail(
        claim.fence, worker="w1", failure_kind="invalid_task", error="bad scope", retryable=False
    )
    assert failed.status == "failed"
    assert failed.terminal_reason == "invalid_task on attempt 2 of 3: bad scope"


async def test_release_spends_no_attempt(ledger, leases) -> None:
    task_id, run_id = await _queued(ledger)
    claim = await _claim(leases, ledger, task_id)
    released = await leases.release(claim.fence, worker="w1", reason="draining")
    assert (released.status, released.attempt, released.current_run_id) == ("queued", 1, run_id)
    again = await _claim(leases, ledger, task_id, worker="w2")
    assert again is not None and again.fence.attempt == 1
    with pytest.raises(FenceRejected):
        await leases.complete(claim.fence, worker="w1")


async def test_cancel_of_running_task_fences_out_the_worker(ledger, leases) -> None:
    task_id, _ = await _queued(ledger)
    claim = await _claim(leases, ledger, task_id)
    await ledger.cancel(OPERATOR, task_id, reason="stop")
    with pytest.raises(FenceRejected):
        await leases.complete(claim.fence, worker="w1")
    assert (await ledger.get_task("t1", task_id)).status == "cancelled"


async def test_unclaimed_dispatch_is_sent_again(ledger, leases, fresh_pool, policy) -> None:
    task_id, run_id = await _queued(ledger)
    lanes = LaneRegistry(fresh_pool, policy)
    outbox = Outbox(fresh_pool, lanes, "dispatcher")
    assert (await outbox.dispatch_once(10)).sent == 1
    await _until(  # nobody claims within the dispatch timeout
        fresh_pool,
        "SELECT dispatched_at < now() - make_interval(secs => $2) FROM runs WHERE id = $1",
        run_id,
        policy.lanes["analysis"].dispatch_timeout_seconds,
    )
    assert (await _reap(ledger)).redispatched == 1
    assert (await ledger.get_task("t1", task_id)).status == "queued"
    assert (await outbox.dispatch_once(10)).sent == 1
    ids = [
        row["message_id"]
        for row in await fresh_pool.fetch("SELECT message_id FROM lane_messages ORDER BY id")
    ]
    assert ids == [str(run_id), f"{run_id}/1"]  # the re-send is not dropped as a duplicate
    await lanes.close()


async def test_claim_of_unknown_run_is_none(leases) -> None:
    assert (
        await leases.claim(task_id=uuid4(), run_id=uuid4(), attempt=1, worker="w", via="test")
        is None
    )


async def test_claim_batch_claims_each_waiting_run_once(ledger, leases) -> None:
    ids = [(await _queued(ledger))[0] for _ in range(4)]
    tasks = [await ledger.get_task("t1", task_id) for task_id in ids]
    hints = [Hint(task.id, task.current_run_id, task.attempt) for task in tasks]
    late = Hint(tasks[0].id, tasks[0].current_run_id, tasks[0].attempt + 1)  # out of order
    stranger = Hint(uuid4(), uuid4(), 1)  # a hint for a run the ledger never had
    # The second copy of hints[1] is a duplicate delivered in the same batch.
    claims = await leases.claim_batch(
        [hints[0], hints[1], hints[1], late, stranger, hints[2], hints[3]], worker="w", via="t"
    )
    claimed = [claim for claim in claims if claim is not None]
    assert [claim is None for claim in claims] == [False, False, True, True, True, False, False]
    assert sorted(claim.task.id for claim in claimed) == sorted(ids)
    assert {claim.task.status for claim in claimed} == {"running"}
    assert len({claim.fence.claim_token for claim in claimed}) == 4
    for task_id in ids:
        assert await _kinds(ledger, task_id) == ["created", "policy_verdict", "worker_receipt"]
    # Nothing waits any more: the same batch again claims nothing.
    assert await leases.claim_batch(hints, worker="w2", via="t") == [None] * 4


async def test_completions_that_arrive_together_are_each_fenced(ledger, leases) -> None:
    ids = [(await _queued(ledger))[0] for _ in range(20)]
    claims = [await _claim(leases, ledger, task_id) for task_id in ids]
    forged = Fence(claims[5].fence.run_id, claims[5].fence.attempt, "not-the-token")
    outcomes = await asyncio.gather(
        leases.complete(forged, worker="zombie"),  # in the same batch as the real one
        *(
            leases.complete(claim.fence, worker="w1", result={"n": n})
            for n, claim in enumerate(claims)
        ),
        leases.complete(claims[7].fence, worker="w1"),  # the same completion twice
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], FenceRejected)
    assert [task.status for task in outcomes[1:21]] == ["succeeded"] * 20
    assert isinstance(outcomes[21], FenceRejected)
    for n, task_id in enumerate(ids):
        traces = await ledger.list_traces("t1", task_id)
        assert [t.data for t in traces if t.kind == "succeeded"] == [{"n": n}]
    assert [t.kind for t in await ledger.list_traces("t1", ids[5])][-2:] == [
        "succeeded",
        "fence_refused",
    ]


async def test_an_artifact_written_again_is_recorded_once(ledger, leases, tmp_path) -> None:
    from ledger.artifact_store import LocalArtifactStore

    task_id, _ = await _queued(ledger)
    claim = await _claim(leases, ledger, task_id)
    store = LocalArtifactStore(tmp_path)

    def artifact(content: bytes) -> NewArtifact:
        stored = store.put("t1", task_id, "final_output.md", content)
        return NewArtifact("final_output.md", "text/markdown", stored, {})

    # The same write twice, as after a lost answer, then a second, different object.
    written = artifact(b"done")
    first = await leases.add_artifact(claim.fence, worker="w1", artifact=written)
    again = await leases.add_artifact(claim.fence, worker="w1", artifact=written)
    second = await leases.add_artifact(claim.fence, worker="w1", artifact=artifact(b"more"))
    assert first.id == again.id != second.id
    assert len(await ledger.list_artifacts("t1", task_id)) == 2
    # With the completion, and only for the holder of the run.
    forged = Fence(claim.fence.run_id, claim.fence.attempt, "not-the-token")
    with pytest.raises(FenceRejected):
        await leases.complete(forged, worker="zombie", artifact=artifact(b"zombie"))
    done = await leases.complete(claim.fence, worker="w1", artifact=artifact(b"final"))
    assert done.status == "succeeded"
    assert len(await ledger.list_artifacts("t1", task_id)) == 3


async def test_spans_and_artifacts_of_completions_that_arrive_together(
    ledger, leases, tmp_path
) -> None:
    from ledger.artifact_store import LocalArtifactStore
    from ledger.leases import SpanEvent

    store = LocalArtifactStore(tmp_path)
    ids = [(await _queued(ledger))[0] for _ in range(6)]
    claims = [await _claim(leases, ledger, task_id) for task_id in ids]

    def spans(n: int) -> list[SpanEvent]:
        return [
            SpanEvent(f"span-{k}", "span.custom", f"task {n} step {k}", {"k": k}) for k in range(3)
        ]

    # One task flushed its first span with a heartbeat; its completion sends it again.
    await leases.append_spans(claims[0].fence, worker="w1", spans=spans(0)[:1])
    outcomes = await asyncio.gather(
        *(
            leases.complete(
                claim.fence,
                worker="w1",
                spans=spans(n),
                artifact=NewArtifact(
                    "final_output.md",
                    "text/markdown",
                    store.put("t1", claim.task.id, "final_output.md", f"out {n}".encode()),
                    {},
                ),
            )
            for n, claim in enumerate(claims)
        )
    )
    assert [task.status for task in outcomes] == ["succeeded"] * 6
    for n, task_id in enumerate(ids):
        traces = await ledger.list_traces("t1", task_id)
        assert [t.seq for t in traces] == list(range(1, len(traces) + 1))
        assert [(t.kind, t.message) for t in traces[-4:]] == [
            *(("span.custom", f"task {n} step {k}") for k in range(3)),
            ("succeeded", "attempt 1 succeeded"),
        ]
        [artifact] = await ledger.list_artifacts("t1", task_id)
        assert artifact.size_bytes == len(f"out {n}")
