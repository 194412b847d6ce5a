"""The one place errors become responses.

Every failure, expected or not, leaves through here, so a client never sees a
traceback or an HTML page; a bug shows up as a JSON 500 and a log line, never as
internals in the response. Two shapes, chosen by path:
- the task API: `{"error": {"code", "message", "details"}}`;
- the worker protocol under `/api/agent/`: `{"diagnostic": {...}, "error": "<message>"}`,
  the shape its workers already parse.
"""

from typing import Any

import asyncpg
import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Match
from starlette.types import ExceptionHandler

from ledger.database import CONNECTION_LOST_ERRORS, connection_lost
from ledger.errors import (
    ConfigError,
    Conflict,
    InvalidTransition,
    LedgerError,
    NotFound,
    PolicyError,
)
from ledger.leases import FenceRejected
from ledger.repository import BadRequest

log = structlog.get_logger(__name__)


class ApiError(Exception):
    def __init__(
        self, status_code: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.details = details or {}


WORKER_PROTOCOL_PREFIX = "/api/agent/"

_CATEGORIES = {
    400: "validation",
    401: "auth",
    403: "auth",
    404: "not_found",
    405: "routing",
    409: "conflict",
    413: "validation",
    503: "availability",
}


def error_body(
    path: str, status_code: int, code: str, message: str, details: dict[str, Any]
) -> dict[str, Any]:
    if not path.startswith(WORKER_PROTOCOL_PREFIX):
        return {"error": {"code": code, "message": message, "details": details}}
    return {
        "diagnostic": {
            "category": _CATEGORIES.get(status_code, "internal"),
            "code": code,
            "data_freshness": "live",
            "doc_url": "/openapi.json",
            "evidence": details,
            "id": f"{code}:{status_code}",
            "message": message,
            "severity": "error" if status_code >= 500 else "warning",
            "suggested_command": _SUGGESTIONS.get(code, ""),
            "title": code.replace("_", " "),
        },
        "error": message,
    }


_SUGGESTIONS = {
    "fence_rejected": "stop work on this run; claim-next for new work",
    "unauthenticated": "send Authorization: Bearer <worker token>",
    "database_unavailable": "retry with backoff",
}


def error_response(
    path: str,
    status_code: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status_code == 401 else None
    return JSONResponse(
        error_body(path, status_code, code, message, details or {}),
        status_code=status_code,
        headers=headers,
    )


_LEDGER_STATUS: dict[type[LedgerError], int] = {
    NotFound: 404,
    InvalidTransition: 409,
    Conflict: 409,
    PolicyError: 403,
    FenceRejected: 409,
    BadRequest: 400,
    ConfigError: 500,
}

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


async def _api_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ApiError)
    return error_response(
        request.url.path, error.status_code, error.code, error.message, error.details
    )


def ledger_status(error: LedgerError) -> int:
    """The HTTP status a ledger error answers with (the console renders the same)."""
    return next((code for kind, code in _LEDGER_STATUS.items() if isinstance(error, kind)), 500)


async def _ledger_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, LedgerError)
    status = ledger_status(error)
    return error_response(request.url.path, status, error.code, error.message, error.details)


def _allowed_methods(request: Request) -> str:
    """Every method some route of this path answers (RFC 9110 `Allow`). Each method of a
    path is its own route, so the one route Starlette matched names only its own."""
    methods: set[str] = set()
    for route in request.app.routes:
        match, _ = route.matches({**request.scope, "method": ""})
        if match is not Match.NONE and getattr(route, "methods", None):
            methods |= route.methods
    return ", ".join(sorted(methods))


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    code = _HTTP_CODES.get(error.status_code, "http_error")
    message = "no such route" if error.status_code == 404 else str(error.detail)
    response = error_response(request.url.path, error.status_code, code, message)
    if error.status_code == 405:
        response.headers["Allow"] = _allowed_methods(request)
    return response


async def _database_unavailable(request: Request, error: Exception) -> JSONResponse:
    log.warning("database_unavailable", path=request.url.path, error=type(error).__name__)
    return error_response(
        request.url.path, 503, "database_unavailable", "the database is not reachable; retry"
    )


async def _interface_error(request: Request, error: Exception) -> JSONResponse:
    # The server ended the connection under the request; any other InterfaceError is
    # misuse, a bug: a 500.
    if connection_lost(error):
        return await _database_unavailable(request, error)
    return await _unexpected(request, error)


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    log.exception("unhandled_error", path=request.url.path, method=request.method)
    return error_response(request.url.path, 500, "internal_error", "an unexpected error occurred")


EXCEPTION_HANDLERS: dict[Any, ExceptionHandler] = {
    ApiError: _api_error,
    LedgerError: _ledger_error,
    HTTPException: _http_error,
    asyncpg.InterfaceError: _interface_error,
    # The rest of the ways the database goes away under a request: a restart (fast or
    # immediate shutdown), an idle pooled connection the server ended, no free slot.
    **dict.fromkeys(CONNECTION_LOST_ERRORS, _database_unavailable),
    Exception: _unexpected,
}
