"""Request metrics by route template (never the raw path: ids would make the label set
unbounded) and the `/metrics` endpoint."""

import time

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from metrics import HTTP_LATENCY, HTTP_REQUESTS


class RequestMetricsMiddleware:
    def __init__(self, app: ASGIApp, templates: dict[object, str]) -> None:
        self.app = app
        # endpoint -> its path template; the router records the matched endpoint in scope.
        self.templates = templates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = self.templates.get(scope.get("endpoint"), "unmatched")
            method = scope["method"]
            HTTP_REQUESTS.labels(route, method, str(status)).inc()
            HTTP_LATENCY.labels(route, method).observe(time.perf_counter() - started)


async def metrics_endpoint(request: Request) -> Response:
    # The runner's gauges are read when they are asked for (their probes are kept a few
    # seconds): the API has no loop of its own to refresh them.
    await request.app.state.runner_health.refresh_gauges()
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
