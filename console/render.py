"""Templates, and the one place a console failure becomes a page.

Every console view is wrapped by `view`: an `ApiError` or a ledger error renders as a
page (or, for an htmx request, a fragment) with the same status and error code the REST
API answers; anything else is logged and shown as `internal_error`, never a traceback.
Jinja2 escapes every value (autoescape), so a task title holding `<script>` is text.
"""

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from api.errors import ApiError, ledger_status
from ledger.database import CONNECTION_LOST_ERRORS
from ledger.errors import LedgerError
from ledger.states import may

log = structlog.get_logger(__name__)

PREFIX = "/console"
# The console's own pages load nothing from elsewhere, run no inline script or style,
# and may not be framed.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; "
    "object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _ago(value: datetime | None) -> str:
    if value is None:
        return "—"
    seconds = max(0, int((datetime.now(UTC) - value).total_seconds()))
    return _duration(seconds) + " ago"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    if seconds < 86_400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86_400} d {seconds % 86_400 // 3600} h"


def _relative(value: datetime | None) -> str:
    """A time to come as "in 5 min", one past as "5 min ago"."""
    if value is None:
        return "—"
    seconds = (value - datetime.now(UTC)).total_seconds()
    return "in " + _duration(seconds) if seconds >= 0 else _ago(value)


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


ENV = Environment(
    loader=PackageLoader("console", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters.update(ago=_ago, duration=_duration, relative=_relative, when=_when, pretty=_pretty)
ENV.globals.update(prefix=PREFIX, may=may)


def render(name: str, context: dict[str, Any]) -> str:
    return ENV.get_template(name).render(context)


def page(
    request: Request, name: str, context: dict[str, Any], *, status_code: int = 200
) -> HTMLResponse:
    """Template `name` as the answer, with the signed-in person (if any) in reach."""
    body = render(name, {"request": request, "me": getattr(request.state, "me", None), **context})
    return HTMLResponse(body, status_code=status_code, headers=SECURITY_HEADERS)


def is_fragment(request: Request) -> bool:
    """An htmx request for part of a page (not a boosted navigation)."""
    return request.headers.get("hx-request") == "true"


def error_page(
    request: Request,
    status_code: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
) -> HTMLResponse:
    context = {
        "status_code": status_code,
        "code": code,
        "message": message,
        "details": details or {},
    }
    name = "_error.html" if is_fragment(request) else "error.html"
    return page(request, name, context, status_code=status_code)


View = Callable[[Request], Awaitable[Response]]


def view(handler: View) -> View:
    """A console endpoint: its errors become pages with the API's status and code."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as error:
            return error_page(request, error.status_code, error.code, error.message, error.details)
        except LedgerError as error:
            return error_page(
                request, ledger_status(error), error.code, error.message, error.details
            )
        except CONNECTION_LOST_ERRORS:
            return error_page(
                request, 503, "database_unavailable", "the database is not reachable; retry"
            )
        except Exception:
            log.exception("console_error", path=request.url.path, method=request.method)
            return error_page(request, 500, "internal_error", "an unexpected error occurred")

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint
