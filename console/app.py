"""The console's routes, mounted by the API app (`api/app.py`) under `/console`.

Every route is a plain `Route` with its full path, so the request metrics label it by
its template like any API route; the vendored static files are a `Mount`. The console's
routes are HTML, not the API: they are left out of `/openapi.json`.
"""

from pathlib import Path

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from api.errors import ApiError
from console import auth
from console.render import PREFIX, view
from console.views import (
    approvals,
    audit,
    changes,
    channels,
    conversations,
    lanes,
    sessions,
    spawn_refusals,
    task_detail,
    tasks,
    tickets,
)

STATIC_DIR = Path(__file__).with_name("static")
_TASK = PREFIX + "/tasks/{task_id}"
_SESSION = PREFIX + "/sessions/{session_id}"
_CHANNEL = PREFIX + "/channels/{channel_id}"
_TICKET = PREFIX + "/tickets/{ticket_id}"
_CHANGE = PREFIX + "/changes/{change_id}"


async def _home(_: Request) -> Response:
    return RedirectResponse(f"{PREFIX}/tasks", status_code=303)


@view
async def _not_found(_: Request) -> Response:
    raise ApiError(404, "not_found", "no such page")


ROUTES: list[Route] = [
    Route(PREFIX, _home, methods=["GET"]),
    Route(PREFIX + "/", _home, methods=["GET"]),
    Route(PREFIX + "/sign-in", auth.sign_in_form, methods=["GET"]),
    Route(PREFIX + "/sign-in", auth.sign_in, methods=["POST"]),
    Route(PREFIX + "/sign-out", auth.sign_out, methods=["POST"]),
    Route(PREFIX + "/live/changes", tasks.tenant_changes, methods=["GET"]),
    Route(PREFIX + "/tasks", tasks.task_list, methods=["GET"]),
    Route(PREFIX + "/tasks", tasks.create_task, methods=["POST"]),
    Route(PREFIX + "/tasks/rows", tasks.task_rows, methods=["GET"]),
    Route(PREFIX + "/tasks/bulk", tasks.bulk_confirm, methods=["POST"]),
    Route(PREFIX + "/tasks/bulk/apply", tasks.bulk_apply, methods=["POST"]),
    Route(_TASK, task_detail.task_page, methods=["GET"]),
    Route(_TASK + "/summary", task_detail.task_summary, methods=["GET"]),
    Route(_TASK + "/live", task_detail.task_live, methods=["GET"]),
    Route(_TASK + "/artifacts/{artifact_id}", task_detail.artifact, methods=["GET"]),
    Route(_TASK + "/{action}", task_detail.task_action, methods=["POST"]),
    Route(PREFIX + "/approvals", approvals.approvals, methods=["GET"]),
    Route(PREFIX + "/approvals/rows", approvals.approvals_rows, methods=["GET"]),
    Route(PREFIX + "/approvals/{approval_id}", approvals.resolve, methods=["POST"]),
    Route(PREFIX + "/threads", conversations.threads, methods=["GET"]),
    Route(PREFIX + "/threads", conversations.create_thread, methods=["POST"]),
    Route(PREFIX + "/threads/{thread_id}", conversations.thread, methods=["GET"]),
    Route(PREFIX + "/threads/{thread_id}/runs", conversations.send_message, methods=["POST"]),
    Route(PREFIX + "/runs/{run_id}", conversations.run_page, methods=["GET"]),
    Route(PREFIX + "/runs/{run_id}/steps", conversations.run_steps_fragment, methods=["GET"]),
    Route(PREFIX + "/lanes", lanes.lanes, methods=["GET"]),
    Route(PREFIX + "/sessions", sessions.session_list, methods=["GET"]),
    Route(PREFIX + "/sessions/rows", sessions.session_rows, methods=["GET"]),
    Route(_SESSION, sessions.session_page, methods=["GET"]),
    Route(_SESSION + "/body", sessions.session_body, methods=["GET"]),
    Route(PREFIX + "/channels", channels.channel_list, methods=["GET"]),
    Route(_CHANNEL, channels.channel_page, methods=["GET"]),
    Route(_CHANNEL + "/live", channels.channel_live, methods=["GET"]),
    Route(PREFIX + "/spawn-refusals", spawn_refusals.spawn_refusals, methods=["GET"]),
    Route(PREFIX + "/tickets", tickets.ticket_list, methods=["GET"]),
    Route(PREFIX + "/tickets/rows", tickets.ticket_rows, methods=["GET"]),
    Route(_TICKET, tickets.ticket_page, methods=["GET"]),
    Route(_TICKET + "/body", tickets.ticket_body, methods=["GET"]),
    Route(_TICKET + "/notes", tickets.add_note, methods=["POST"]),
    Route(_TICKET + "/status", tickets.set_status, methods=["POST"]),
    Route(_TICKET + "/request-info", tickets.request_info, methods=["POST"]),
    Route(_TICKET + "/user-response", tickets.user_response, methods=["POST"]),
    Route(_TICKET + "/agents/{agent_id}/{action}", tickets.agent_action, methods=["POST"]),
    Route(PREFIX + "/changes", changes.change_list, methods=["GET"]),
    Route(PREFIX + "/changes/rows", changes.change_rows, methods=["GET"]),
    Route(_CHANGE, changes.change_page, methods=["GET"]),
    Route(_CHANGE + "/{decision}", changes.decide, methods=["POST"]),
    Route(PREFIX + "/audit", audit.audit_feed, methods=["GET"]),
    Route(PREFIX + "/audit/verify", audit.verify, methods=["GET"]),
]
# Anything else under /console is an HTML 404, not the API's JSON one.
FALLBACK = Route(PREFIX + "/{path:path}", _not_found, methods=["GET", "POST"])


def routes() -> list[BaseRoute]:
    static = Mount(PREFIX + "/static", app=StaticFiles(directory=STATIC_DIR), name="console_static")
    return [*ROUTES, static, FALLBACK]
