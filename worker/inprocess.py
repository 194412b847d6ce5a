"""Executes a task inside the calling process (the API's `run` route, local use),
through the same claim and fenced writes as a worker."""

import socket
from dataclasses import dataclass
from uuid import UUID

from ledger.artifact_store import ArtifactStore
from ledger.errors import InvalidTransition
from ledger.leases import Leases
from ledger.models import Task
from ledger.repository import Actor, Ledger
from ledger.states import allowed_from, may
from worker.context import RunContext
from worker.execution import Execution, execute_claim
from worker.executors import sdk_executor, sdk_import_error
from worker.runtime_access import RuntimeAccess


@dataclass(frozen=True)
class RunOutcome:
    task: Task
    sdk_available: bool


async def run_in_process(
    ledger: Ledger,
    leases: Leases,
    store: ArtifactStore,
    actor: Actor,
    task_id: UUID,
    agent_runtime: RuntimeAccess,
) -> RunOutcome:
    task = await ledger.get_task(actor.tenant_id, task_id)
    if not may("claim", task.status):
        # Policy said no (or not yet), or the task is past running: the refusal itself
        # is part of the audit trail.
        await ledger.note(
            actor,
            task_id,
            "run_refused",
            f"run refused: task is {task.status}",
            data={"status": task.status},
        )
        raise InvalidTransition("run", task.status, allowed_from("claim"))

    missing = sdk_import_error()
    if missing:
        blocked = await ledger.move(
            actor, task_id, "block", kind="blocked", terminal_reason=missing
        )
        return RunOutcome(blocked.task, sdk_available=False)

    worker = f"api:{socket.gethostname()}:{actor.subject}"
    claim = None
    if task.current_run_id is not None:
        claim = await leases.claim(
            task_id=task.id,
            run_id=task.current_run_id,
            attempt=task.attempt,
            worker=worker,
            via="api",
        )
    if claim is None:
        current = await ledger.get_task(actor.tenant_id, task_id)
        raise InvalidTransition("run", current.status, allowed_from("claim"))
    await execute_claim(
        Execution(claim),
        sdk_executor,
        RunContext(claim, leases, store, worker, ledger.policy, agent_runtime),
    )
    return RunOutcome(await ledger.get_task(actor.tenant_id, task_id), sdk_available=True)
