"""Agents on tickets: `POST /api/tickets/{id}/assign-agent` and `/unassign-agent`, and
`/api/agents` (list, active, stats, one agent, its logs, stop, wake, restart, its
steering events and their acknowledgement). See `ledger/ticket_agents.py`.

Literal paths under /api/agents (`active`, `stats`, and those other modules declare,
such as `models` or `config`) never reach the routes of one agent: those take a UUID."""

from collections.abc import Callable
from uuid import UUID

from pydantic import BaseModel

from api.endpoints import AGENT, Call, Endpoint, Handler, endpoint
from api.routes.tickets import ONE_TICKET, ticket_id
from api.ticket_agent_schemas import (
    ActiveAgentsResponse,
    AgentDetailResponse,
    AgentListResponse,
    AgentLogsResponse,
    AgentResponse,
    AgentStatsResponse,
    AgentTaskResponse,
    SteeringEventResponse,
    SteeringListResponse,
)
from ledger.ticket_agent_models import (
    AgentActionRequest,
    AgentListQuery,
    AssignAgentRequest,
    LimitQuery,
)

AGENTS = "/api/agents"
ONE_AGENT = AGENTS + "/{agent_id:uuid}"
_READ = (200, 400, 401, 403, 404)
_CHANGE = (200, 400, 401, 403, 404, 409)
_TAG = "agents"


def agent_id(call: Call) -> UUID:
    return call.request.path_params["agent_id"]


@endpoint(
    "POST",
    ONE_TICKET + "/assign-agent",
    summary="Assigns an agent to the ticket: a governed task made through the policy "
    "(its status says whether it is queued, waits for an approval, or was denied), "
    "working the ticket with the prompt given (else its title and description) and "
    "the model given (else the runtime profile's). Notes people add to the ticket "
    "while it works reach it as steering events. 409 when the ticket already has an "
    "assigned agent, or is closed or cancelled.",
    role="operator",
    response=AgentTaskResponse,
    statuses=(201, 400, 401, 403, 404, 409),
    body=AssignAgentRequest,
    tag=_TAG,
)
async def assign_agent(call: Call[AssignAgentRequest, None]) -> tuple[int, AgentTaskResponse]:
    agent, created = await call.ledger.assign_agent(call.actor, ticket_id(call), call.body)
    return 201, AgentTaskResponse(agent=agent, task=created.task)


@endpoint(
    "POST",
    ONE_TICKET + "/unassign-agent",
    summary="Takes the ticket's agent off it: the agent is stopped (reason "
    "`unassigned`), its open steering events expire and its task is cancelled. 409 "
    "when the ticket has no assigned agent.",
    role="operator",
    response=AgentResponse,
    statuses=_CHANGE,
    body=AgentActionRequest,
    tag=_TAG,
)
async def unassign_agent(call: Call[AgentActionRequest, None]) -> tuple[int, AgentResponse]:
    agent = await call.ledger.unassign_agent(call.actor, ticket_id(call), call.body.reason)
    return 200, AgentResponse(agent=agent)


@endpoint(
    "GET",
    AGENTS,
    summary="Lists the tenant's agents, newest first, by status (`stopped`, or their "
    "latest task's status) and ticket.",
    role="viewer",
    response=AgentListResponse,
    statuses=_READ,
    query=AgentListQuery,
    tag=_TAG,
)
async def list_agents(call: Call[None, AgentListQuery]) -> tuple[int, AgentListResponse]:
    agents = await call.ledger.list_agents(call.actor.tenant_id, call.query)
    return 200, AgentListResponse(agents=agents, limit=call.query.limit, offset=call.query.offset)


@endpoint(
    "GET",
    AGENTS + "/active",
    summary="The assigned agents whose task is not finished (queued, on its way to a "
    "worker, running or waiting for a decision), newest first.",
    role="viewer",
    response=ActiveAgentsResponse,
    statuses=_READ,
    query=LimitQuery,
    tag=_TAG,
)
async def active_agents(call: Call[None, LimitQuery]) -> tuple[int, ActiveAgentsResponse]:
    agents = await call.ledger.active_agents(call.actor.tenant_id, call.query.limit)
    return 200, ActiveAgentsResponse(agents=agents)


@endpoint(
    "GET",
    AGENTS + "/stats",
    summary="How many agents there are per status and active, and the average length "
    "of their finished runs.",
    role="viewer",
    response=AgentStatsResponse,
    statuses=(200, 401, 403),
    tag=_TAG,
)
async def agent_stats(call: Call) -> tuple[int, AgentStatsResponse]:
    return 200, AgentStatsResponse(stats=await call.ledger.agent_stats(call.actor.tenant_id))


@endpoint(
    "GET",
    ONE_AGENT,
    summary="One agent, with its tasks (latest first), its change requests and its audit records.",
    role="viewer",
    response=AgentDetailResponse,
    statuses=(200, 401, 403, 404),
    tag=_TAG,
)
async def get_agent(call: Call) -> tuple[int, AgentDetailResponse]:
    detail = await call.ledger.agent_detail(call.actor, agent_id(call))
    return 200, AgentDetailResponse(
        agent=detail.agent,
        tasks=detail.tasks,
        change_requests=detail.change_requests,
        audit=detail.audit,
    )


@endpoint(
    "GET",
    ONE_AGENT + "/logs",
    summary="The latest trace events of the agent's tasks (its runs' progress, tool "
    "calls, steering deliveries), oldest first.",
    role="viewer",
    response=AgentLogsResponse,
    statuses=_READ,
    query=LimitQuery,
    tag=_TAG,
)
async def agent_logs(call: Call[None, LimitQuery]) -> tuple[int, AgentLogsResponse]:
    events = await call.ledger.agent_logs(call.actor.tenant_id, agent_id(call), call.query.limit)
    return 200, AgentLogsResponse(events=events)


def _agent_action(
    action: str, response: type[BaseModel], summary: str
) -> Callable[[Handler], Endpoint]:
    """`POST /api/agents/{id}/<action>`: an operator's, with a reason, 409 when the
    agent's state does not allow it."""
    return endpoint(
        "POST",
        ONE_AGENT + f"/{action}",
        summary=summary,
        role="operator",
        response=response,
        statuses=_CHANGE,
        body=AgentActionRequest,
        tag=_TAG,
    )


@_agent_action(
    "stop",
    AgentResponse,
    "Stops the agent: its task is cancelled, its open steering events expire and the "
    "ticket is left without an agent. 409 when it is already stopped.",
)
async def stop_agent(call: Call[AgentActionRequest, None]) -> tuple[int, AgentResponse]:
    agent = await call.ledger.stop_agent(call.actor, agent_id(call), call.body.reason)
    return 200, AgentResponse(agent=agent)


@_agent_action(
    "wake",
    AgentTaskResponse,
    "Gives an assigned agent whose last task has finished a new task (through the "
    "policy); its unacknowledged steering events reach the new run. 409 while its task "
    "is unfinished or once it is stopped.",
)
async def wake_agent(call: Call[AgentActionRequest, None]) -> tuple[int, AgentTaskResponse]:
    agent, created = await call.ledger.wake_agent(call.actor, agent_id(call), call.body.reason)
    return 200, AgentTaskResponse(agent=agent, task=created.task)


@_agent_action(
    "restart",
    AgentTaskResponse,
    "Replaces an assigned agent by a new one with the same settings and a new task; the "
    "old one is stopped (reason `restarted`) and its task cancelled, and its open "
    "steering events are superseded by copies addressed to the new one. 409 once it is "
    "stopped.",
)
async def restart_agent(call: Call[AgentActionRequest, None]) -> tuple[int, AgentTaskResponse]:
    agent, created = await call.ledger.restart_agent(call.actor, agent_id(call), call.body.reason)
    return 200, AgentTaskResponse(agent=agent, task=created.task)


@endpoint(
    "GET",
    ONE_AGENT + "/steering",
    summary="The agent's steering events, newest first, each with its state: pending "
    "(waiting for the agent's next model turn), delivered (in the model input of the "
    "attempt named), acknowledged, superseded (the agent was restarted) or expired.",
    role="viewer",
    response=SteeringListResponse,
    statuses=_READ,
    query=LimitQuery,
    tag=_TAG,
)
async def list_steering(call: Call[None, LimitQuery]) -> tuple[int, SteeringListResponse]:
    events = await call.ledger.agent_steering(
        call.actor.tenant_id, agent_id(call), call.query.limit
    )
    return 200, SteeringListResponse(events=events)


@endpoint(
    "POST",
    ONE_AGENT + "/steering/{event_id:uuid}/ack",
    summary="The agent acknowledges a steering event delivered to it, once it has taken "
    "it into account; the same answer again for one already acknowledged. Takes the "
    "session credential of the agent's run (Authorization: Bearer wbs_...); 404 for an "
    "event that is not the caller's (another agent's, or not delivered to its claim).",
    role=AGENT,
    response=SteeringEventResponse,
    statuses=(200, 401, 404),
    tag=_TAG,
)
async def acknowledge_steering(call: Call) -> tuple[int, SteeringEventResponse]:
    event = await call.ledger.acknowledge_steering(
        call.session, agent_id(call), call.request.path_params["event_id"]
    )
    return 200, SteeringEventResponse(event=event)


# Literal paths before the routes of one agent.
ENDPOINTS: list[Endpoint] = [
    assign_agent,
    unassign_agent,
    list_agents,
    active_agents,
    agent_stats,
    get_agent,
    agent_logs,
    stop_agent,
    wake_agent,
    restart_agent,
    list_steering,
    acknowledge_steering,
]
