"""`/api/agents/workspaces`: what a task composer needs to offer policy-aware choices."""

from api.endpoints import Call, Endpoint, endpoint
from api.schemas import LaneInfo, NamedInfo, ProfileInfo, RoleInfo, WorkspacesResponse


@endpoint(
    "GET",
    "/api/agents/workspaces",
    summary="Returns the lanes, source systems, the "
    "caller's role profile, model providers and policy profiles.",
    role="viewer",
    response=WorkspacesResponse,
    statuses=(200, 401, 403),
    tag="workspaces",
)
async def workspaces(call: Call) -> tuple[int, WorkspacesResponse]:
    policy = call.ledger.policy
    principal = call.request.state.principal
    role = call.actor.role
    return 200, WorkspacesResponse(
        lanes=[
            LaneInfo(
                name=name,
                transport=lane.transport.kind if lane.transport else None,
                **lane.model_dump(
                    exclude={
                        "transport",
                        "retry_backoff_seconds",
                        "retry_backoff_max_seconds",
                        # GET /api/agent/coordinator/config resolves it for the lane.
                        "coordinator",
                    }
                ),
            )
            for name, lane in policy.lanes.items()
        ],
        sources=[
            NamedInfo(name=name, description=source.description)
            for name, source in policy.sources.items()
        ],
        role=RoleInfo(
            subject=call.actor.subject,
            tenant_id=call.actor.tenant_id,
            roles=sorted(principal.roles),
            effective_role=role,
            can_create=role in ("operator", "owner"),
            can_approve=role in ("operator", "owner"),
            can_break_glass=role == "owner",
        ),
        providers=[
            NamedInfo(name=name, description=provider.description)
            for name, provider in policy.providers.items()
        ],
        policy_profiles=[
            ProfileInfo(name=name, **profile.model_dump())
            for name, profile in policy.profiles.items()
        ],
        mutation_levels=policy.mutation_levels,
        policy_version=policy.policy_version,
    )


ENDPOINTS: list[Endpoint] = [workspaces]
