"""What the ticket agent routes take and return (`ledger/ticket_agents.py`)."""

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from ledger.states import TaskStatus

AgentState = Literal["assigned", "stopped"]
# An agent as listed: `stopped` once stopped, unassigned or replaced, else the status of
# its latest task (queued, running, succeeded, ...).
STOPPED = "stopped"
AGENT_STATUSES: tuple[str, ...] = (STOPPED, *(str(status) for status in TaskStatus))
AgentStatus = Literal[tuple(AGENT_STATUSES)]  # type: ignore[valid-type]

ModelName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][\w.:/@-]*$")]
ProfileName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[a-z0-9][a-z0-9._-]*$")]
Reason = Annotated[str, Field(max_length=2_000)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class AssignAgentRequest(_Request):
    # Each left out is resolved from the runtime profile (`ledger/ticket_agents.py`).
    model: ModelName | None = None
    profile: ProfileName | None = None
    # What the agent is asked to do with the ticket; its title and description when left
    # out.
    prompt: Annotated[str, Field(min_length=1, max_length=20_000)] | None = None


class AgentActionRequest(_Request):
    """The body of unassign, stop, wake and restart: why (in the note and the audit)."""

    reason: Reason = ""


class AgentListQuery(BaseModel):
    # Query parameters arrive as text: not strict, but unknown ones are refused.
    model_config = ConfigDict(extra="forbid")

    status: AgentStatus | None = None
    ticket_id: UUID | None = None
    limit: int = Field(default=50, ge=1, le=200)
    offset: int = Field(default=0, ge=0, le=1_000_000)


class LimitQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=100, ge=1, le=1_000)


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", from_attributes=True)


class TicketAgent(_Record):
    id: UUID
    ticket_id: UUID
    # Its latest task: the one steering reaches and stop cancels.
    task_id: UUID
    state: AgentState
    status: AgentStatus
    stop_reason: str | None
    lane: str
    model_provider: str
    model: str | None
    profile: str | None
    prompt: str
    created_by: str
    replaces_agent_id: UUID | None
    task_attempt: int
    task_terminal_reason: str | None
    created_at: datetime
    updated_at: datetime
    stopped_at: datetime | None


def agent_record(row: Any) -> TicketAgent:
    """An agent row (with its latest task's columns) as the API shows it."""
    values = dict(row)
    values["status"] = STOPPED if values["state"] == STOPPED else values["task_status"]
    return TicketAgent.model_validate(values)


class AgentTask(_Record):
    id: UUID
    title: str
    lane: str
    status: str
    attempt: int
    terminal_reason: str | None
    # Why the agent got it: assigned, wake, user_response, restart.
    reason: str
    created_at: datetime
    updated_at: datetime


class AgentStats(_Record):
    total: int
    # Assigned and not finished: queued, on the way to a worker, running, or waiting.
    active: int
    by_status: dict[str, int]
    finished_runs: int
    # Of the finished runs, from claim to end; None before any has finished.
    average_duration_seconds: float | None


class AutoAssignOutcome(BaseModel):
    """What a ticket created with `auto_assign` got: an agent when the tenant's settings
    route its class to a profile with `auto_assign`, else why not."""

    model_config = ConfigDict(extra="forbid")

    assigned: bool
    reason: str
    profile: str | None = None
    agent_id: UUID | None = None
