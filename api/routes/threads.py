"""`/api/v1/agents` and `/api/v1/threads`: the agent registry and conversations.

A thread belongs to its tenant and to the agent it was opened for; its runs are tasks
(see `ledger/threads.py`), so they are read, cancelled and approved like tasks.
"""

from uuid import UUID

from api.endpoints import Call, Endpoint, endpoint
from api.schemas import (
    AgentInfo,
    AgentListResponse,
    ThreadDetailResponse,
    ThreadListQuery,
    ThreadListResponse,
    ThreadResponse,
)
from ledger.models import ThreadCreateRequest

THREADS = "/api/v1/threads"
ONE_THREAD = THREADS + "/{thread_id:uuid}"


def _thread_id(call: Call) -> UUID:
    return call.request.path_params["thread_id"]


@endpoint(
    "GET",
    "/api/v1/agents",
    summary="Lists the agents a conversation can talk to, from the agents file. "
    "Needs no model client.",
    role="viewer",
    response=AgentListResponse,
    statuses=(200, 401, 403),
    tag="conversations",
)
async def list_agents(call: Call) -> tuple[int, AgentListResponse]:
    registry = call.ledger.agents
    agents = [
        AgentInfo(
            **agent.model_dump(exclude={"soul"}), soul_digest=registry.soul_of(agent.id).digest
        )
        for agent in registry.all()
    ]
    return 200, AgentListResponse(agents=agents)


@endpoint(
    "POST",
    THREADS,
    summary="Opens a conversation thread with a registered agent (agent_type).",
    role="operator",
    response=ThreadResponse,
    statuses=(201, 400, 401, 403),
    body=ThreadCreateRequest,
    tag="conversations",
)
async def create_thread(call: Call[ThreadCreateRequest, None]) -> tuple[int, ThreadResponse]:
    thread = await call.ledger.create_thread(
        call.actor, call.body.agent_type, title=call.body.title, metadata=call.body.metadata
    )
    return 201, ThreadResponse(thread=thread)


@endpoint(
    "GET",
    THREADS,
    summary="Lists the tenant's threads, most recently active first (at most 50), "
    "without their messages; agent_type filters by agent.",
    role="viewer",
    response=ThreadListResponse,
    statuses=(200, 400, 401, 403),
    query=ThreadListQuery,
    tag="conversations",
)
async def list_threads(call: Call[None, ThreadListQuery]) -> tuple[int, ThreadListResponse]:
    threads = await call.ledger.list_threads(call.actor, call.query.agent_type)
    return 200, ThreadListResponse(threads=threads)


@endpoint(
    "GET",
    ONE_THREAD,
    summary="Returns a thread with its full message history, oldest first.",
    role="viewer",
    response=ThreadDetailResponse,
    statuses=(200, 401, 403, 404),
    tag="conversations",
)
async def get_thread(call: Call) -> tuple[int, ThreadDetailResponse]:
    thread = await call.ledger.get_thread(call.actor, _thread_id(call))
    messages = await call.ledger.messages(call.actor, thread.id)
    return 200, ThreadDetailResponse(thread=thread, messages=messages)


ENDPOINTS: list[Endpoint] = [list_agents, create_thread, list_threads, get_thread]
