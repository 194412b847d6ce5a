"""`/api/agents/models`, `/config`, `/runner-health`, `/spawn` and `/create-from-prompt`:
a tenant's agent runtime settings (`ledger/agent_config.py`), what the runner looks like
from here (`metrics/runner_health.py`), and agents started as governed tasks.

An agent started here is a task created through the policy like any other: the answer
is the task with its verdict, and a worker runs it once it is queued (approved first
when the lane or the verdict requires it). Nothing runs inside the API."""

from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from api.endpoints import Call, Endpoint, endpoint
from ledger.agent_config import (
    AgentRuntimeConfig,
    AgentTask,
    ProfileName,
    ResolvedProfile,
    StoredAgentConfig,
)
from ledger.models import LongText, ShortText, Task
from ledger.policy import Verdict
from ledger.ticket_models import Priority
from ledger.ticket_workflow import TicketClass
from metrics.runner_health import RunnerHealth
from worker.providers import ProviderNotConfigured, default_model_name, model_api_url

AGENTS = "/api/agents"
_TAG = "agent-config"
_REFUSAL_NOTE = (
    " A field whose value the redactor would change (a secret-bearing name with a value, "
    "or a value in a secret's form) is refused with 400 secret_refused naming the field: "
    "provider keys belong in the deployment's environment."
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelInfo(_Strict):
    provider: str
    # None: the provider runs the model its deployment names (none named here).
    model: str | None
    # The tenant's default provider.
    default: bool


class ModelsResponse(_Strict):
    # The models of the providers configured in this process; offline always.
    models: list[ModelInfo]
    harnesses: list[str]
    config: AgentRuntimeConfig


class AgentConfigResponse(_Strict):
    agent_config: StoredAgentConfig


class RunnerHealthResponse(_Strict):
    runner_health: RunnerHealth
    # The tenant's defaults, which the health of their provider matters for.
    default_model_provider: str
    default_model: str | None


class SpawnAgentRequest(_Strict):
    profile: ProfileName
    prompt: LongText
    # The ticket the agent works for (its tenant's; linked to the task).
    ticket_id: UUID | None = None
    title: ShortText | None = None
    # What the policy reads beside the profile (a production lane's `rollback` plan).
    scope: dict[str, Any] = Field(default_factory=dict)


class PromptAgentRequest(_Strict):
    prompt: LongText
    title: ShortText | None = None
    # The ticket made for the prompt; its class picks the routed profile.
    ticket_class: TicketClass = "Incident"
    priority: Priority = 3


class AgentTaskResponse(_Strict):
    task: Task
    policy_verdict: Verdict
    profile: ResolvedProfile
    ticket_id: UUID | None


SDK_HARNESS = "openai-agents"


@endpoint(
    "GET",
    AGENTS + "/models",
    summary="Lists the models the model providers configured here offer (the offline "
    "model always), with the tenant's non-secret runtime settings.",
    role="viewer",
    response=ModelsResponse,
    statuses=(200, 401, 403),
    tag=_TAG,
)
async def list_models(call: Call) -> tuple[int, ModelsResponse]:
    config = (await call.ledger.agent_config(call.actor.tenant_id)).config
    models = []
    for provider in call.ledger.policy.providers:
        try:
            model_api_url(provider)
        except ProviderNotConfigured:
            continue
        default = provider == config.default_model_provider
        models.append(
            ModelInfo(provider=provider, model=default_model_name(provider), default=default)
        )
    return 200, ModelsResponse(models=models, harnesses=[SDK_HARNESS], config=config)


@endpoint(
    "GET",
    AGENTS + "/config",
    summary="Returns the tenant's agent runtime settings (the built-in defaults until "
    "someone stores them).",
    role="viewer",
    response=AgentConfigResponse,
    statuses=(200, 401, 403),
    tag=_TAG,
)
async def get_agent_config(call: Call) -> tuple[int, AgentConfigResponse]:
    return 200, AgentConfigResponse(
        agent_config=await call.ledger.agent_config(call.actor.tenant_id)
    )


@endpoint(
    "PUT",
    AGENTS + "/config",
    summary="Replaces the tenant's agent runtime settings (profiles, route assignments by "
    "ticket class, max concurrent agents, default timeout, default provider and model), "
    "with an audit record naming the fields that changed. Operator or owner. 409 when "
    "active_profile or a route assignment names a profile the settings do not define."
    + _REFUSAL_NOTE,
    role="operator",
    response=AgentConfigResponse,
    statuses=(200, 400, 401, 403, 409),
    body=AgentRuntimeConfig,
    tag=_TAG,
)
async def put_agent_config(call: Call[AgentRuntimeConfig, None]) -> tuple[int, AgentConfigResponse]:
    stored = await call.ledger.put_agent_config(call.actor, call.body)
    return 200, AgentConfigResponse(agent_config=stored)


@endpoint(
    "GET",
    AGENTS + "/runner-health",
    summary="Whether the agents SDK imports here and its version, each model provider "
    "configured or not (never its key), whether each configured provider's model API "
    "answers within a short timeout (offline: in process), and the workers seen per "
    "lane (holding a run with a live lease that heartbeat within the window).",
    role="viewer",
    response=RunnerHealthResponse,
    statuses=(200, 401, 403),
    tag=_TAG,
)
async def runner_health(call: Call) -> tuple[int, RunnerHealthResponse]:
    config = (await call.ledger.agent_config(call.actor.tenant_id)).config
    return 200, RunnerHealthResponse(
        runner_health=await call.request.app.state.runner_health.report(),
        default_model_provider=config.default_model_provider,
        default_model=config.default_model,
    )


def _created(agent: AgentTask) -> tuple[int, AgentTaskResponse]:
    return 201, AgentTaskResponse(
        task=agent.created.task,
        policy_verdict=agent.created.verdict,
        profile=agent.profile,
        ticket_id=agent.ticket_id,
    )


_TASK_NOTE = (
    " The answer is the task with its policy verdict: queued for a worker, awaiting "
    "approval, or recorded as denied, as the lane's policy decides. 409 "
    "agent_limit_reached when the tenant's unfinished agent tasks are at its "
    "max_concurrent_agents."
)


@endpoint(
    "POST",
    AGENTS + "/spawn",
    summary="Starts an agent with one of the tenant's profiles on a prompt, for a ticket "
    "when ticket_id is given: a governed task made with the profile's lane, provider, "
    "model, instructions and timeout. 404 for a profile the settings do not define or "
    "another tenant's ticket." + _TASK_NOTE,
    role="operator",
    response=AgentTaskResponse,
    statuses=(201, 400, 401, 403, 404, 409),
    body=SpawnAgentRequest,
    tag=_TAG,
)
async def spawn_agent(call: Call[SpawnAgentRequest, None]) -> tuple[int, AgentTaskResponse]:
    body = call.body
    tenant = call.actor.tenant_id
    profile = await call.ledger.resolve_agent_profile(tenant, body.profile)
    ticket = await call.ledger.get_ticket(tenant, body.ticket_id) if body.ticket_id else None
    return _created(
        await call.ledger.create_agent_task(
            call.actor, profile, body.prompt, title=body.title, ticket=ticket, scope=body.scope
        )
    )


@endpoint(
    "POST",
    AGENTS + "/create-from-prompt",
    summary="Creates a local ticket for a free prompt and starts an agent on it, with the "
    "profile its ticket class is routed to, else the active profile, else the defaults."
    + _TASK_NOTE,
    role="operator",
    response=AgentTaskResponse,
    statuses=(201, 400, 401, 403, 409),
    body=PromptAgentRequest,
    tag=_TAG,
)
async def create_agent_from_prompt(
    call: Call[PromptAgentRequest, None],
) -> tuple[int, AgentTaskResponse]:
    body = call.body
    return _created(
        await call.ledger.agent_task_from_prompt(
            call.actor,
            body.prompt,
            title=body.title,
            ticket_class=body.ticket_class,
            priority=body.priority,
        )
    )


ENDPOINTS: list[Endpoint] = [
    list_models,
    get_agent_config,
    put_agent_config,
    runner_health,
    spawn_agent,
    create_agent_from_prompt,
]
