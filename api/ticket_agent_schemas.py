"""Response bodies of the ticket agent routes (`api/routes/ticket_agents.py`)."""

from pydantic import BaseModel, ConfigDict

from ledger.audit_feed import FeedEntry
from ledger.change_models import ChangeRequest
from ledger.models import Task, TraceEvent
from ledger.steering import SteeringEvent
from ledger.ticket_agent_models import AgentStats, AgentTask, TicketAgent


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AgentResponse(_Response):
    agent: TicketAgent


class AgentTaskResponse(_Response):
    """An agent and the task just made for it, with the policy's verdict on the task
    (`status` says whether it is queued, waits for an approval, or was denied)."""

    agent: TicketAgent
    task: Task


class AgentListResponse(_Response):
    agents: list[TicketAgent]
    limit: int
    offset: int


class ActiveAgentsResponse(_Response):
    agents: list[TicketAgent]


class AgentStatsResponse(_Response):
    stats: AgentStats


class AgentDetailResponse(_Response):
    agent: TicketAgent
    # The latest first; the first is the one the agent works now.
    tasks: list[AgentTask]
    change_requests: list[ChangeRequest]
    audit: list[FeedEntry]


class AgentLogsResponse(_Response):
    events: list[TraceEvent]


class SteeringListResponse(_Response):
    events: list[SteeringEvent]


class SteeringEventResponse(_Response):
    event: SteeringEvent
