"""Waiting, in a request, for a run a worker executes: the routes that answer with a
run's outcome when it comes soon enough (process message, a client session's step)
wait here, on the trace feed, and never run anything themselves."""

import asyncio
from uuid import UUID

from api.endpoints import Call
from api.errors import ApiError
from api.routes.events import POLL_SECONDS, STREAM_ENDS
from ledger.models import Task
from ledger.notify import wait_any
from ledger.states import TaskStatus

# A run that stopped without an answer is an error, not an empty answer: the client
# must not mistake it for one. (status, code) per such stop.
NO_ANSWER = {
    TaskStatus.DENIED: (403, "run_denied"),
    TaskStatus.CANCELLED: (409, "run_cancelled"),
    TaskStatus.FAILED: (502, "run_failed"),
    TaskStatus.BLOCKED: (502, "run_blocked"),
}


async def stopped(call: Call, task_id: UUID, seconds: float) -> Task:
    """The task once it stops (a status that ends its stream), or as it is after
    `seconds`. Subscribed before each status read: a change between the two wakes it."""
    feed = call.request.app.state.trace_feed
    await feed.ensure()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    with feed.subscribe(str(task_id)) as grew:
        while True:
            grew.clear()
            task = await call.ledger.get_task(call.actor.tenant_id, task_id)
            left = deadline - loop.time()
            if task.status in STREAM_ENDS or left <= 0:
                return task
            await wait_any(grew, seconds=min(POLL_SECONDS, left))


def refuse_unanswered(task: Task) -> None:
    """Raise the error for a run that stopped without an answer (see NO_ANSWER)."""
    if task.status in NO_ANSWER:
        status, code = NO_ANSWER[task.status]
        raise ApiError(
            status,
            code,
            task.terminal_reason or f"the run is {task.status}",
            {"run_id": str(task.id), "status": task.status},
        )
