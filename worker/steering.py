"""Steering a ticket agent's run: the notes people send it reach the model between
turns, and the agent acknowledges them with a tool (see `ledger/steering.py`).

How the notes get into the run: the SDK's `RunConfig.call_model_input_filter`, which the
Runner calls immediately before every model call with the input it is about to send and
lets us return a changed one. Of what the SDK offers it is the one that fits:
- it runs at exactly the boundaries a steering note may arrive at without interrupting
  anything: before the first model call, and after every tool call, once the tool's
  result is in and before the model decides what to do with it;
- the model sees the note as ordinary input (a user message), in the streamed and the
  non-streamed loop alike;
- run hooks (`on_llm_start`) only observe the input, and a tool's result is only
  reached when the agent happens to call a tool.
What the filter returns is not kept in the run's own items, so the inbox keeps the
notes this claim was given and puts each back at the place it first joined the input,
on every later call: the model keeps seeing what it was told, where it was told it.
"""

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import structlog
from agents import FunctionTool, function_tool
from agents.run_config import CallModelData, ModelInputData
from agents.tool_context import ToolContext

from ledger.steering import SteeringNote
from ledger.ticket_agents import TICKET_AGENT_KEY
from worker.context import RunContext
from worker.tools import verdict

log = structlog.get_logger(__name__)

ACK_TOOL = "ack_steering"
INSTRUCTIONS = (
    "People working the ticket may send you steering notes while you work; each arrives "
    "as a message between your steps. Take it into account in what you do next, and "
    f"acknowledge it with the {ACK_TOOL} tool once you have."
)


def ticket_agent_id(run: RunContext) -> str | None:
    """The ticket agent a run works for, None for any other task or a thread run."""
    if run.task.thread_id is not None:
        return None
    value = run.task.scope.get(TICKET_AGENT_KEY)
    return value if isinstance(value, str) else None


def note_message(note: SteeringNote) -> dict[str, Any]:
    """A delivered note as the model sees it: a user message naming where it came from."""
    return {
        "role": "user",
        "content": (
            f"Steering note {note.id} from {note.source} ({note.author}):\n{note.body}\n\n"
            f"Acknowledge it with {ACK_TOOL} once you have taken it into account."
        ),
    }


@dataclass
class SteeringInbox:
    """The run's `call_model_input_filter`: at each model call, the agent's open
    steering events this claim has not had yet are marked delivered and join the input;
    the ones it had stay where they joined it."""

    run: RunContext
    # (index in the run's own input where the note joined it, the note's message)
    delivered: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    async def __call__(self, data: CallModelData[Any]) -> ModelInputData:
        run = self.run
        base = list(data.model_data.input)
        notes = await run.leases.deliver_steering(
            run.claim.fence, worker=run.worker, task_id=run.task.id
        )
        if notes:
            log.info(
                "steering_delivered",
                task_id=str(run.task.id),
                attempt=run.claim.fence.attempt,
                events=[str(note.id) for note in notes],
            )
        self.delivered.extend((len(base), note_message(note)) for note in notes)
        merged: list[Any] = []
        pending = iter(self.delivered)
        upcoming = next(pending, None)
        for index in range(len(base) + 1):
            while upcoming is not None and upcoming[0] == index:
                merged.append(upcoming[1])
                upcoming = next(pending, None)
            if index < len(base):
                merged.append(base[index])
        return ModelInputData(input=merged, instructions=data.model_data.instructions)


async def ack_steering(ctx: ToolContext[RunContext], event_id: str | None = None) -> str:
    """Acknowledge a steering note once you have taken it into account.

    Args:
        event_id: The note's id, as its message names it; leave it out to acknowledge
            every note delivered to you so far.
    """
    run = ctx.context
    await verdict(ctx, "read_only", {"event_id": event_id})
    try:
        ids = [UUID(event_id)] if event_id else None
    except ValueError:
        return f"refused: {event_id!r} is not a steering note id"
    acknowledged = await run.leases.acknowledge_steering(
        run.claim.fence, worker=run.worker, task_id=run.task.id, event_ids=ids
    )
    if not acknowledged:
        return "no steering note to acknowledge"
    return f"acknowledged {len(acknowledged)} steering note(s): " + ", ".join(
        str(i) for i in acknowledged
    )


# Built once per process, like the lane tools (`worker/tools.py`).
ACK_STEERING: FunctionTool = function_tool(ack_steering, name_override=ACK_TOOL)
