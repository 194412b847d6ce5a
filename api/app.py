"""The Starlette application: one middleware list, one set of error handlers, routes
gathered from the resource modules."""

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from api.auth import Authenticator
from api.body_limit import BodyLimitMiddleware
from api.errors import EXCEPTION_HANDLERS
from api.metrics import RequestMetricsMiddleware, metrics_endpoint
from api.openapi import build_openapi
from api.routes import (
    agent_channels,
    agent_config,
    agent_runtime,
    agent_self,
    agent_sessions,
    agent_soul,
    agent_spawn,
    audit,
    changes,
    client_sessions,
    dashboard,
    events,
    health,
    it_requests,
    providers,
    runs,
    search,
    tasks,
    threads,
    ticket_agents,
    tickets,
    workspaces,
)
from api.settings import MAX_BODY_BYTES, ApiSettings
from console.app import routes as console_routes
from dispatcher.outbox import Outbox
from lanes.registry import LaneRegistry
from ledger.agent_runtime import AgentRuntime
from ledger.artifact_store import artifact_store_from_env
from ledger.channel_waits import ChannelWaits
from ledger.database import close_pool, create_pool, resolve_database_url
from ledger.leases import Leases
from ledger.migrate import apply_migrations
from ledger.notify_feed import TRACES, NotifyFeed
from ledger.policy import PolicyConfig, load_policy
from ledger.repository import Ledger
from metrics.runner_health import RunnerHealthCheck

ENDPOINTS = [
    *tasks.ENDPOINTS,
    *workspaces.ENDPOINTS,
    *it_requests.ENDPOINTS,
    *tickets.ENDPOINTS,
    *ticket_agents.ENDPOINTS,
    *changes.ENDPOINTS,
    *providers.ENDPOINTS,
    *agent_runtime.ENDPOINTS,
    *agent_channels.ENDPOINTS,
    *agent_self.ENDPOINTS,
    *agent_soul.ENDPOINTS,
    *agent_spawn.ENDPOINTS,
    *agent_config.ENDPOINTS,
    *events.ENDPOINTS,
    *threads.ENDPOINTS,
    *runs.ENDPOINTS,
    *agent_sessions.ENDPOINTS,
    *client_sessions.ENDPOINTS,
    *audit.ENDPOINTS,
    *dashboard.ENDPOINTS,
    *search.ENDPOINTS,
]


def create_app(
    settings: ApiSettings,
    *,
    database_url: str | None = None,
    policy: PolicyConfig | None = None,
) -> Starlette:
    """The API. The database is `database_url`, else `DATABASE_URL`, else the embedded
    server; migrations are applied at start-up. The policy (`policy`, else the lanes
    file) is read here: `/openapi.json` lists its lanes, levels and providers."""
    config = policy or load_policy()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        url = database_url or await asyncio.to_thread(resolve_database_url)
        pool = await create_pool(url)
        try:
            async with pool.acquire() as connection:
                await apply_migrations(connection)
            app.state.ledger = Ledger(pool, config)
            app.state.leases = Leases(pool, config)
            app.state.runtime = AgentRuntime(pool, config)
            app.state.runner_health = RunnerHealthCheck(pool, config)
            app.state.lanes = LaneRegistry(pool, config)
            app.state.outbox = Outbox(pool, app.state.lanes, actor=f"api:{socket.gethostname()}")
            app.state.artifacts = artifact_store_from_env()
            app.state.trace_feed = NotifyFeed(pool, TRACES)
            app.state.channel_waits = ChannelWaits(pool)
            yield
            await app.state.trace_feed.listener.close()
            await app.state.channel_waits.close()
            await app.state.lanes.close()
            await asyncio.to_thread(app.state.artifacts.close)
        finally:
            await close_pool(pool)

    routes = [
        *health.ROUTES,
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        *(item.route() for item in ENDPOINTS),
        # The operator console (HTML, not in /openapi.json).
        *console_routes(),
    ]
    templates = {route.endpoint: route.path for route in routes if isinstance(route, Route)}
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(RequestMetricsMiddleware, templates=templates),
            Middleware(BodyLimitMiddleware, max_bytes=MAX_BODY_BYTES),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.authenticator = Authenticator(
        secret=settings.jwt_secret,
        jwks_url=settings.jwks_url,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )
    app.state.settings = settings
    # Set when the process is asked to stop (cli/main.py), before the server waits for
    # open connections to close: streams that never end by themselves (the console's)
    # end then, so a browser tab left open does not hold the shutdown.
    app.state.stopping = asyncio.Event()
    app.state.openapi = build_openapi(ENDPOINTS, config)
    return app
