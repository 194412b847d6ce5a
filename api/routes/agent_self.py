"""`/api/agent/me`, `/api/agent/coordinator/config` and `/api/agent/context`: what the
calling session (its credential: `Authorization: Bearer wbs_...`) reads about itself.
See `ledger/agent_context.py`."""

from api.endpoints import AGENT, Call, Endpoint, endpoint
from api.routes.agent_channels import CREDENTIAL, runtime
from api.runtime_schemas import (
    ContextResponse,
    CoordinatorQuery,
    CoordinatorResponse,
    MeResponse,
)


@endpoint(
    "GET",
    "/api/agent/me",
    summary="The calling session: itself (agent, model, provider), its session with "
    "lineage, its active task lease with its channel, its capabilities, the channels it "
    "sees with its unread counts, its workspace and the workspace's coordinator "
    "settings, and its limits. " + CREDENTIAL,
    role=AGENT,
    response=MeResponse,
    statuses=(200, 401),
    tag="agent-runtime",
)
async def me(call: Call) -> tuple[int, MeResponse]:
    return 200, MeResponse(me=await runtime(call).me(call.session))


@endpoint(
    "GET",
    "/api/agent/coordinator/config",
    summary="A workspace's coordinator settings (the session's own workspace unless "
    "`workspace` names a lane; 404 for an unknown one): enabled, agent name, model, "
    "provider, max children, max depth, max active sessions per workspace, default and "
    "maximum TTL of spawned sessions, and where each value came from (the lane, the "
    "lanes file's top level, or the built-in default). " + CREDENTIAL,
    role=AGENT,
    response=CoordinatorResponse,
    statuses=(200, 400, 401, 404),
    query=CoordinatorQuery,
    tag="agent-runtime",
)
async def coordinator_config(call: Call[None, CoordinatorQuery]) -> tuple[int, CoordinatorResponse]:
    coordinator = runtime(call).coordinator(call.session, call.query.workspace)
    return 200, CoordinatorResponse(coordinator=coordinator)


@endpoint(
    "GET",
    "/api/agent/context",
    summary="The session's context bundle, its sections always in this order: self, "
    "session (with lineage), task (the task, its current run, prior attempts, recent "
    "events, execution profile, limits), coordination_channel, inbox_summary (unread "
    "count and the newest unread messages' previews), peer_roster (the other sessions "
    "on its channels now), capabilities, limits, provenance (generated_at). Each list "
    "is cut to context_section_limit after a fixed sort, and its section says so "
    "(limit, returned, truncated). " + CREDENTIAL,
    role=AGENT,
    response=ContextResponse,
    statuses=(200, 401),
    tag="agent-runtime",
)
async def context(call: Call) -> tuple[int, ContextResponse]:
    return 200, ContextResponse(context=await runtime(call).context(call.session))


ENDPOINTS: list[Endpoint] = [me, coordinator_config, context]
