"""A ticket agent's change gate: the SDK tools with which it asks for a change, waits
for people to decide it, and carries it out once approved (`ledger/changes.py`).

The agent is the change's requester (`agent:<agent id>`), so people approve it under
the lanes file's rule for its risk level, exactly as a change asked for over
`/api/changes`. Asking again for the same action on the same target gets the change
already asked for unless it expired: a woken agent replaying its plan does not ask
twice. `write_target` is the only write, and it proceeds only
under an approved change of this agent for that target; the write is the local
provider's (an artifact of the run, fenced like every worker write), and it completes
the change unless its approval policy asks for a manual completion. Each call records
its verdict first (`worker/tools.py`), so a worker that lost the run cannot act for it.
Approving a change an agent asked for wakes that agent when its task has finished
(`ledger/ticket_agents.py`).
"""

import asyncio
import time
from uuid import UUID

from agents import FunctionTool, function_tool
from agents.tool_context import ToolContext
from pydantic import ValidationError

from ledger.actor import Actor
from ledger.change_models import (
    ChangeCreateRequest,
    ChangeListQuery,
    ChangeRequest,
    CompleteChangeRequest,
)
from ledger.changes import Changes
from ledger.errors import LedgerError
from worker.context import RunContext
from worker.tools import store_artifact, verdict

# A wait inside a run holds its lease; longer waits end the run and the approval wakes
# the agent again.
MAX_WAIT_SECONDS = 120.0
_POLL_SECONDS = (0.1, 0.25, 0.5, 1.0)

INSTRUCTIONS = (
    "To change anything, ask for it with request_change (action, target, reason, risk "
    "level), wait for people to decide with wait_for_change, and carry it out with "
    "write_target only once it is approved; a rejected change must not be carried out."
)


def _gate(run: RunContext) -> tuple[Changes, Actor, UUID, UUID]:
    runtime = run.agent_runtime
    # Offered only to a ticket's agent run by a worker with the runtime (session_agent).
    assert runtime is not None
    agent_id = UUID(run.task.scope["ticket_agent_id"])
    ticket_id = UUID(run.task.scope["ticket_id"])
    actor = Actor(subject=f"agent:{agent_id}", tenant_id=run.task.tenant_id, role="operator")
    return runtime.changes, actor, agent_id, ticket_id


def _described(change: ChangeRequest) -> str:
    said = f"change {change.id} ({change.action} on {change.target}) is {change.status}"
    if change.status == "pending":
        return (
            f"{said}: it needs {change.approvals_required} approval(s) by "
            f"{', '.join(change.approver_roles)} before {change.expires_at.isoformat()}"
        )
    if change.decided_by:
        said += f", decided by {change.decided_by}"
    return said + (f": {change.decision_reason}" if change.decision_reason else "")


async def request_change(
    ctx: ToolContext[RunContext],
    action: str,
    target: str,
    reason: str,
    command: str = "",
    risk_level: str = "medium",
) -> str:
    """Ask people to approve a change before you make it.

    Args:
        action: What you will do, e.g. "update_dns_record".
        target: What you will change, e.g. "dns/partner.example".
        reason: Why the change is needed.
        command: The exact command or content you will apply.
        risk_level: low, medium, high or critical; it decides who may approve.
    """
    run = ctx.context
    await verdict(ctx, "propose", {"action": action, "target": target, "risk_level": risk_level})
    changes, actor, agent_id, ticket_id = _gate(run)
    asked = await changes.agent_change_for(
        actor.tenant_id, ticket_id=ticket_id, agent_id=agent_id, action=action, target=target
    )
    if asked is not None:
        return f"already requested: {_described(asked)}"
    try:
        request = ChangeCreateRequest.model_validate(
            {
                "ticket_id": str(ticket_id),
                "agent_id": str(agent_id),
                "action": action,
                "target": target,
                "reason": reason,
                "command": command,
                "risk_level": risk_level,
            }
        )
        change = await changes.request_change(actor, request)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        return f"refused: {problems}"
    except LedgerError as error:
        return f"refused: {error.message}"
    return f"requested: {_described(change)}"


async def wait_for_change(
    ctx: ToolContext[RunContext], change_id: str | None = None, wait_seconds: float = 60.0
) -> str:
    """Wait until people decide a change you asked for (approved, rejected or expired).

    Args:
        change_id: The change's id, as request_change answered; leave it out for the
            last change you asked for on this ticket.
        wait_seconds: How long to wait at most (up to 120); when it is still pending
            after that, finish your work: you are woken when it is approved.
    """
    run = ctx.context
    await verdict(ctx, "read_only", {"change_id": change_id})
    changes, actor, agent_id, ticket_id = _gate(run)
    if change_id is None:
        mine = ChangeListQuery(agent_id=agent_id, ticket_id=ticket_id, limit=1)
        latest = await changes.list_changes(actor.tenant_id, mine)
        if not latest:
            return "refused: you have asked for no change on this ticket"
        wanted = latest[0].id
    else:
        try:
            wanted = UUID(change_id)
        except ValueError:
            return f"refused: {change_id!r} is not a change id"
    deadline = time.monotonic() + max(0.0, min(wait_seconds, MAX_WAIT_SECONDS))
    polls = 0
    while True:
        try:
            change = await changes.get_change(actor.tenant_id, wanted)
        except LedgerError as error:
            return f"refused: {error.message}"
        if change.agent_id != agent_id:
            return f"refused: change {wanted} is not one you asked for"
        left = deadline - time.monotonic()
        if change.status != "pending" or left <= 0:
            return _described(change)
        await asyncio.sleep(min(_POLL_SECONDS[min(polls, len(_POLL_SECONDS) - 1)], left))
        polls += 1


async def write_target(ctx: ToolContext[RunContext], target: str, content: str) -> str:
    """Carry out an approved change: write its content to the target.

    Args:
        target: The target of a change of yours that people approved.
        content: What to write.
    """
    run = ctx.context
    changes, actor, agent_id, ticket_id = _gate(run)
    change = await changes.approved_change_for(
        actor.tenant_id, ticket_id=ticket_id, agent_id=agent_id, target=target
    )
    level = (
        "write_prod" if change and change.risk_level in ("high", "critical") else "write_nonprod"
    )
    details = {"target": target, "change_id": str(change.id) if change else None}
    await verdict(ctx, level, details, decision="allow" if change else "deny")
    if change is None:
        return (
            f"refused: no approved change of yours for {target}; ask for one with "
            "request_change and wait for it to be approved"
        )
    cleaned = run.leases.redactor.text(content)
    name = f"change-{change.id}.txt"
    stored = await store_artifact(
        run,
        name,
        "text/plain",
        cleaned.encode(),
        {"kind": "change_applied", "change_id": str(change.id), "target": change.target},
    )
    policy = change.approval_policy
    if policy.get("manual_completion_required") or not policy.get("auto_complete", True):
        return f"written under change {change.id} ({stored}); a person completes the change"
    done = CompleteChangeRequest(result=f"written by the agent in task {run.task.id}: {name}")
    try:
        await changes.complete_change(actor, change.id, done)
    except LedgerError as error:  # completed meanwhile, by a person
        return f"written under change {change.id} ({stored}); {error.message}"
    return f"written under change {change.id} ({stored}); the change is completed"


# Built once per process, like the lane tools (`worker/tools.py`).
CHANGE_TOOLS: list[FunctionTool] = [
    function_tool(request_change),
    function_tool(wait_for_change),
    function_tool(write_target),
]
