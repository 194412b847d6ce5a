"""Probes and the API description; no token needed."""

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from api.schemas import HealthResponse
from ledger.migrate import pending_migrations
from metrics.liveness import health


async def healthz(_: Request) -> JSONResponse:
    """The process serves, and the loops it runs beside the API (in `workbench up`)
    turn. Says nothing about the database on purpose (metrics/liveness.py)."""
    status, body = health()
    return JSONResponse(HealthResponse.model_validate(body).model_dump(), status_code=status)


async def readyz(request: Request) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        async with request.app.state.ledger.pool.acquire(timeout=2) as connection:
            pending = await pending_migrations(connection)
        checks["database"] = "ok"
        checks["migrations"] = "ok" if not pending else f"pending: {pending}"
    except Exception as error:  # whatever the failure, the answer is "not ready"
        checks["database"] = f"unavailable: {type(error).__name__}"
    ready = all(value == "ok" for value in checks.values()) and "migrations" in checks
    body = HealthResponse(status="ok" if ready else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.state.openapi)


ROUTES = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
]
