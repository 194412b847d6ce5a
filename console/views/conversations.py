"""Conversations: the tenant's threads, one thread's messages and runs, a message sent
(the REST `POST /api/v1/threads/{id}/runs`: `Ledger.start_run`), and a run with its
steps and its trace growing live (a run is a task: the task's live trace)."""

from typing import Any
from uuid import UUID

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from api.endpoints import validate_body
from console.auth import Me, signed_view
from console.render import PREFIX, page
from console.views.task_detail import task_id_of, tool_call_waiting
from ledger.models import ThreadCreateRequest, ThreadRunRequest
from ledger.run_steps import run_steps, thread_run


@signed_view
async def threads(request: Request, me: Me) -> Response:
    ledger = request.app.state.ledger
    actor = me.principal.actor_for("viewer")
    return page(
        request,
        "threads.html",
        {"threads": await ledger.list_threads(actor), "agents": ledger.agents.all()},
    )


@signed_view
async def create_thread(request: Request, me: Me) -> Response:
    actor = me.principal.actor_for("operator")
    form = await request.form()
    body = validate_body(
        ThreadCreateRequest,
        {"agent_type": str(form.get("agent_type") or ""), "title": str(form.get("title") or "")},
    )
    thread = await request.app.state.ledger.create_thread(actor, body.agent_type, title=body.title)
    return RedirectResponse(f"{PREFIX}/threads/{thread.id}", status_code=303)


@signed_view
async def thread(request: Request, me: Me) -> Response:
    ledger = request.app.state.ledger
    actor = me.principal.actor_for("viewer")
    thread_id = task_id_of(request, "thread_id")
    found = await ledger.get_thread(actor, thread_id)
    messages = await ledger.messages(actor, thread_id)
    run_ids: list[UUID] = list(dict.fromkeys(message.task_id for message in messages))
    if found.last_run_id and found.last_run_id not in run_ids:
        run_ids.append(found.last_run_id)
    runs = [await ledger.get_task(me.tenant, run_id) for run_id in run_ids]
    return page(request, "thread.html", {"thread": found, "messages": messages, "runs": runs})


@signed_view
async def send_message(request: Request, me: Me) -> Response:
    actor = me.principal.actor_for("operator")
    thread_id = task_id_of(request, "thread_id")
    form = await request.form()
    body = validate_body(ThreadRunRequest, {"message": str(form.get("message") or "")})
    created = await request.app.state.ledger.start_run(actor, thread_id, body.message)
    return RedirectResponse(f"{PREFIX}/runs/{created.task.id}", status_code=303)


async def _run_context(request: Request, me: Me) -> dict[str, Any]:
    ledger = request.app.state.ledger
    actor = me.principal.actor_for("viewer")
    task = await ledger.get_thread_run(actor, task_id_of(request, "run_id"))
    events = await ledger.run_trace(task)
    steps = run_steps(events)
    pending = await ledger.approval_requests(actor, task.id, pending_only=True)
    return {
        "task": task,
        "run": thread_run(task, events, steps),
        "steps": steps,
        "pending": pending,
        "events": events,
        "after_seq": events[-1].seq if events else 0,
        "tool_call": tool_call_waiting(task),
    }


@signed_view
async def run_page(request: Request, me: Me) -> Response:
    return page(request, "run.html", await _run_context(request, me))


@signed_view
async def run_steps_fragment(request: Request, me: Me) -> Response:
    return page(request, "_run_steps.html", await _run_context(request, me))
