"""A worker that lost its run writes nothing: no outcome, no artifact, no stray file."""

from pathlib import Path

from conftest import fast_policy

from ledger.artifact_store import LocalArtifactStore
from ledger.leases import Leases
from ledger.models import TaskCreateRequest
from ledger.repository import Actor, Ledger
from worker.context import RunContext
from worker.execution import Execution, execute_claim
from worker.executors import ExecutionResult


async def test_taken_over_run_leaves_no_artifact_or_file(fresh_pool, tmp_path: Path) -> None:
    policy = fast_policy(lease_seconds=30.0)
    ledger, leases = Ledger(fresh_pool, policy), Leases(fresh_pool, policy)
    store = LocalArtifactStore(tmp_path)
    operator = Actor("olga", "t1", "operator")
    task = (
        await ledger.create_task(
            operator, TaskCreateRequest(lane="analysis", title="t", instructions="x")
        )
    ).task
    claim = await leases.claim(
        task_id=task.id, run_id=task.current_run_id, attempt=1, worker="slow", via="test"
    )
    assert claim is not None

    async def overtaken(run: RunContext) -> ExecutionResult:
        # While this "agent" works, the run is handed to someone else.
        await leases.release(claim.fence, worker="drain", reason="taken over")
        return ExecutionResult(final_output="late result")

    outcome = await execute_claim(
        Execution(claim), overtaken, RunContext(claim, leases, store, "slow", policy)
    )
    assert outcome is None
    assert await ledger.list_artifacts("t1", task.id) == []
    assert [path for path in tmp_path.rglob("*") if path.is_file()] == []
    assert (await ledger.get_task("t1", task.id)).status == "queued"
