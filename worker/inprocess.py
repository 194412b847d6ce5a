"""Executes a task inside the calling process (the API's `run` route, local use).

The same guarded transitions as a worker: start only from queued/dispatched, finish
only if still running, so a task cancelled mid-run stays cancelled.
"""

import socket
from dataclasses import dataclass
from uuid import UUID

from ledger.artifact_store import ArtifactStore
from ledger.errors import InvalidTransition
from ledger.models import Task
from ledger.repository import Actor, Ledger
from ledger.states import RunStatus, TaskStatus, allowed_from
from worker.executor import ExecutionBlocked, execute, sdk_import_error


@dataclass(frozen=True)
class RunOutcome:
    task: Task
    sdk_available: bool


async def run_in_process(
    ledger: Ledger, store: ArtifactStore, actor: Actor, task_id: UUID
) -> RunOutcome:
    task = await ledger.get_task(actor.tenant_id, task_id)
    if task.status in (TaskStatus.DENIED, TaskStatus.AWAITING_APPROVAL):
        # Policy said no (or not yet): the refusal itself is part of the audit trail.
        await ledger.note(
            actor,
            task_id,
            "run_refused",
            f"run refused: task is {task.status}",
            data={"status": task.status},
        )
        raise InvalidTransition("run", task.status, allowed_from("start"))

    missing = sdk_import_error()
    if missing:
        return RunOutcome(await _block(ledger, actor, task_id, missing), sdk_available=False)

    run = await ledger.start_current_run(actor, task_id, claimed_by=f"api:{socket.gethostname()}")
    try:
        result = await execute(task)
    except ExecutionBlocked as blocked:
        return RunOutcome(await _block(ledger, actor, task_id, str(blocked)), sdk_available=True)
    except Exception as error:  # the agent's failure is the task's outcome, not the API's
        return RunOutcome(
            await _finish(
                ledger,
                actor,
                task_id,
                TaskStatus.FAILED,
                RunStatus.FAILED,
                reason=f"executor error: {type(error).__name__}: {error}"[:1000],
                failure_kind="executor_error",
            ),
            sdk_available=True,
        )

    stored = store.put(actor.tenant_id, task_id, "final_output.md", result.final_output.encode())
    await ledger.add_artifact(
        actor.tenant_id,
        task_id,
        run.id,
        name="final_output.md",
        media_type="text/markdown",
        storage_ref=stored.storage_ref,
        sha256=stored.sha256,
        size_bytes=stored.size_bytes,
        metadata={"kind": "final_output", "attempt": run.attempt},
    )
    finished = await _finish(
        ledger,
        actor,
        task_id,
        TaskStatus.SUCCEEDED,
        RunStatus.SUCCEEDED,
        reason=None,
        failure_kind=None,
        usage={"input_tokens": result.input_tokens, "output_tokens": result.output_tokens},
    )
    return RunOutcome(finished, sdk_available=True)


async def _block(ledger: Ledger, actor: Actor, task_id: UUID, reason: str) -> Task:
    moved = await ledger.move(
        actor,
        task_id,
        "block",
        TaskStatus.BLOCKED,
        kind="blocked",
        terminal_reason=reason,
        run_status=RunStatus.BLOCKED,
    )
    return moved.task


async def _finish(
    ledger: Ledger,
    actor: Actor,
    task_id: UUID,
    status: TaskStatus,
    run_status: RunStatus,
    *,
    reason: str | None,
    failure_kind: str | None,
    usage: dict[str, int] | None = None,
) -> Task:
    try:
        moved = await ledger.move(
            actor,
            task_id,
            "finish",
            status,
            kind=str(status),
            terminal_reason=reason,
            run_status=run_status,
            failure_kind=failure_kind,
            data={"usage": usage or {}},
        )
    except InvalidTransition:
        # Cancelled (or otherwise moved) while the agent ran: that decision stands.
        return await ledger.get_task(actor.tenant_id, task_id)
    return moved.task
