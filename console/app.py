"""The console's routes, mounted by the API app (`api/app.py`) under `/console`.

Every route is a plain `Route` with its full path, so the request metrics label it by
its template like any API route; the vendored static files are a `Mount`. The console's
routes are HTML, not the API: they are left out of `/openapi.json`.
"""

from collections.abc import Awaitable, Callable
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
_TASK = "/tasks/{task_id}"
_SESSION = "/sessions/{session_id}"
_CHANNEL = "/channels/{channel_id}"
_TICKET = "/tickets/{ticket_id}"
_CHANGE = "/changes/{change_id}"


async def _home(_: Request) -> Response:
    return RedirectResponse(f"{PREFIX}/tasks", status_code=303)


@view
async def _not_found(_: Request) -> Response:
    raise ApiError(404, "not_found", "no such page")


# The console's pages and fragments: method, path under PREFIX, view.
_VIEWS: list[tuple[str, str, Callable[[Request], Awaitable[Response]]]] = [
    ("GET", "", _home),
    ("GET", "/", _home),
    ("GET", "/sign-in", auth.sign_in_form),
    ("POST", "/sign-in", auth.sign_in),
    ("POST", "/sign-out", auth.sign_out),
    ("GET", "/live/changes", tasks.tenant_changes),
    ("GET", "/tasks", tasks.task_list),
    ("POST", "/tasks", tasks.create_task),
    ("GET", "/tasks/rows", tasks.task_rows),
    ("POST", "/tasks/bulk", tasks.bulk_confirm),
    ("POST", "/tasks/bulk/apply", tasks.bulk_apply),
    ("GET", _TASK, task_detail.task_page),
    ("GET", _TASK + "/summary", task_detail.task_summary),
    ("GET", _TASK + "/live", task_detail.task_live),
    ("GET", _TASK + "/artifacts/{artifact_id}", task_detail.artifact),
    ("POST", _TASK + "/{action}", task_detail.task_action),
    ("GET", "/approvals", approvals.approvals),
    ("GET", "/approvals/rows", approvals.approvals_rows),
    ("POST", "/approvals/{approval_id}", approvals.resolve),
    ("GET", "/threads", conversations.threads),
    ("POST", "/threads", conversations.create_thread),
    ("GET", "/threads/{thread_id}", conversations.thread),
    ("POST", "/threads/{thread_id}/runs", conversations.send_message),
    ("GET", "/runs/{run_id}", conversations.run_page),
    ("GET", "/runs/{run_id}/steps", conversations.run_steps_fragment),
    ("GET", "/lanes", lanes.lanes),
    ("GET", "/sessions", sessions.session_list),
    ("GET", "/sessions/rows", sessions.session_rows),
    ("GET", _SESSION, sessions.session_page),
    ("GET", _SESSION + "/body", sessions.session_body),
    ("GET", "/channels", channels.channel_list),
    ("GET", _CHANNEL, channels.channel_page),
    ("GET", _CHANNEL + "/live", channels.channel_live),
    ("GET", "/spawn-refusals", spawn_refusals.spawn_refusals),
    ("GET", "/tickets", tickets.ticket_list),
    ("GET", "/tickets/rows", tickets.ticket_rows),
    ("GET", _TICKET, tickets.ticket_page),
    ("GET", _TICKET + "/body", tickets.ticket_body),
    ("POST", _TICKET + "/notes", tickets.add_note),
    ("POST", _TICKET + "/status", tickets.set_status),
    ("POST", _TICKET + "/request-info", tickets.request_info),
    ("POST", _TICKET + "/user-response", tickets.user_response),
    ("POST", _TICKET + "/agents/{agent_id}/{action}", tickets.agent_action),
    ("GET", "/changes", changes.change_list),
    ("GET", "/changes/rows", changes.change_rows),
    ("GET", _CHANGE, changes.change_page),
    ("POST", _CHANGE + "/{decision}", changes.decide),
    ("GET", "/audit", audit.audit_feed),
    ("GET", "/audit/verify", audit.verify),
]
ROUTES: list[Route] = [
    Route(PREFIX + path, handler, methods=[method]) for method, path, handler in _VIEWS
]
# Anything else under /console is an HTML 404, not the API's JSON one.
FALLBACK = Route(PREFIX + "/{path:path}", _not_found, methods=["GET", "POST"])


def routes() -> list[BaseRoute]:
    static = Mount(PREFIX + "/static", app=StaticFiles(directory=STATIC_DIR), name="console_static")
    return [*ROUTES, static, FALLBACK]
