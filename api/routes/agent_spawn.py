"""`POST /api/agent/spawn`: the calling session starts a helper, within its permissions
and its budgets (`ledger/spawns.py`)."""

from api.endpoints import AGENT, Call, Endpoint, endpoint
from api.routes.agent_channels import CREDENTIAL, runtime
from api.runtime_schemas import SpawnBody, SpawnRequest, SpawnResponse
from ledger.spawns import SpawnOrder


@endpoint(
    "POST",
    "/api/agent/spawn",
    summary="Spawns a child session with a task of its own in the caller's workspace, "
    "which a worker claims from the lane like any task; it sees the caller's run "
    "channel. The child's permissions (tools, skills, mcp_servers, network_channels, "
    "sandbox_profiles, workspace_paths; a kind left out is the parent's) must be a "
    "subset of the caller's in each: else 403 spawn_permission_denied naming each atom. "
    "Budgets are checked in the transaction that creates the child, so concurrent "
    "spawns cannot overshoot them: 403 spawn_limit_exceeded past max_depth, "
    "max_children (live children of the caller) or max_active_per_workspace (live "
    "spawned sessions of its tree in the workspace) or the workspace's max_ttl_seconds "
    "(ttl_seconds defaults to its default_ttl_seconds); 404 for an agent the workspace "
    "does not have. A child with auto_stop_on_parent "
    "stops when its parent stops, and any child when its TTL passes. Every refusal is "
    "in the caller's trace (spawn_refused). " + CREDENTIAL,
    role=AGENT,
    response=SpawnResponse,
    statuses=(200, 400, 401, 403, 404),
    body=SpawnRequest,
    tag="agent-runtime",
)
async def spawn(call: Call[SpawnRequest, None]) -> tuple[int, SpawnResponse]:
    body = call.body
    permissions = (
        body.permissions.model_dump(exclude_none=True) if body.permissions is not None else None
    )
    spawned = await runtime(call).spawn(
        call.session,
        SpawnOrder(
            instructions=body.instructions,
            title=body.title,
            agent_name=body.agent_name,
            spawn_role=body.spawn_role,
            ttl_seconds=body.ttl_seconds,
            auto_stop_on_parent=body.auto_stop_on_parent,
            permissions=permissions,
        ),
    )
    return 200, SpawnResponse(
        spawn=SpawnBody(
            session=spawned.session,
            lineage=spawned.session.lineage,
            permissions=spawned.permissions,
            task_id=spawned.task.id,
            task_status=spawned.task.status,
        )
    )


ENDPOINTS: list[Endpoint] = [spawn]
