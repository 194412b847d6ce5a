"""Tickets' typed vocabulary: what callers send in (`*Request`, strict, unknown fields
refused) and the records they get back."""

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from ledger.ticket_workflow import TICKET_STATUSES, TicketClass

ShortText = Annotated[str, Field(min_length=1, max_length=500)]
Body = Annotated[str, Field(min_length=1, max_length=100_000)]
Label = Annotated[str, Field(min_length=1, max_length=200)]
Reason = Annotated[str, Field(max_length=2_000)]
# One of the ticket workflow's statuses, as the schema lists them; the ledger refuses any
# other with a 400 naming them (`ledger/ticket_workflow.py`).
StatusName = Annotated[
    str,
    Field(max_length=64),
    WithJsonSchema({"type": "string", "enum": list(TICKET_STATUSES)}),
]


def _known_status(value: str) -> str:
    if value not in TICKET_STATUSES:
        raise ValueError(f"not a ticket status; allowed: {', '.join(TICKET_STATUSES)}")
    return value


# A filter is refused by the model (a request body's status, by the ledger, with the
# allowed ones in its details).
StatusFilter = Annotated[StatusName, AfterValidator(_known_status)]

_PRIORITY_TEXT = {f"{prefix}{n}": n for n in range(1, 5) for prefix in ("", "P", "p")}


def _whole(value: Any) -> Any:
    # JSON Schema's integer takes 2.0 too; anything else not an int is still refused.
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _priority(value: Any) -> Any:
    """P1-P4 or 1-4, as a number or as text (a query parameter is text); any other text
    is refused, a number is left for the range check."""
    if isinstance(value, str):
        if value not in _PRIORITY_TEXT:
            raise ValueError("a priority is P1-P4 or 1-4")
        return _PRIORITY_TEXT[value]
    return _whole(value)


_PRIORITY_SCHEMA = WithJsonSchema(
    {
        "anyOf": [
            {"type": "integer", "minimum": 1, "maximum": 4},
            {"type": "string", "pattern": "^[Pp]?[1-4]$"},
        ],
        "description": "P1-P4 or 1-4 (1 is the most urgent)",
    }
)
# 1 (most urgent) to 4.
Priority = Annotated[int, BeforeValidator(_priority), Field(ge=1, le=4), _PRIORITY_SCHEMA]


def _query_priority(value: str) -> Any:
    """A query parameter is text: P1-P4, or a whole number as a JSON integer is written
    (2 or 2.0); the range check follows."""
    if value in _PRIORITY_TEXT:
        return _PRIORITY_TEXT[value]
    try:
        number = float(value)
    except ValueError:
        raise ValueError("a priority is P1-P4 or 1-4") from None
    if not number.is_integer():
        raise ValueError("a priority is P1-P4 or 1-4")
    return int(number)


QueryPriority = Annotated[
    int, BeforeValidator(_query_priority), Field(ge=1, le=4), _PRIORITY_SCHEMA
]

# Who wrote a note. A person (dashboard), the requester or their answer (requester,
# user-response) or an outside ticketing system (provider, itop, servicenow, jira) may
# steer a ticket's running agent; what agents and the control plane (agent, system)
# write never does.
NoteSource = Literal[
    "dashboard",
    "requester",
    "user-response",
    "provider",
    "itop",
    "servicenow",
    "jira",
    "agent",
    "system",
]
STEERING_SOURCES: frozenset[str] = frozenset(
    {"dashboard", "requester", "user-response", "provider", "itop", "servicenow", "jira"}
)
Visibility = Literal["internal", "public"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TicketCreateRequest(_Request):
    title: ShortText
    description: Annotated[str, Field(max_length=100_000)] = ""
    ticket_class: TicketClass = "Incident"
    status: StatusName = "new"
    priority: Priority = 3
    created_by: Label | None = None
    # Start an agent on the ticket when the agent lifecycle's rules match it.
    auto_assign: bool = False


class TicketListQuery(BaseModel):
    # Query parameters arrive as text: not strict, but unknown ones are refused.
    model_config = ConfigDict(extra="forbid")

    status: StatusFilter | None = None
    priority: QueryPriority | None = None
    assignee: Label | None = None
    # Only tickets an agent is working on now.
    agent_only: bool = False
    limit: int = Field(default=50, ge=1, le=200)
    offset: int = Field(default=0, ge=0, le=1_000_000)


class TicketStatusRequest(_Request):
    status: StatusName
    # Who the change is on behalf of, as the caller names it (the audit record holds the
    # authenticated subject too).
    actor: Label | None = None
    reason: Reason = ""
    # Close the record at the ticket's provider as well (resolved or closed only).
    close_provider: bool = True


class AssignmentRequest(_Request):
    assignee_team: Label | None = None
    owning_group: Label | None = None
    assignee: Label | None = None
    # Evidence in the assignment note, not a column.
    escalation_tier: Label | None = None
    priority: Priority | None = None
    actor: Label | None = None
    reason: Reason = ""


class NoteRequest(_Request):
    body: Body
    author: Label | None = None
    source: NoteSource = "dashboard"
    visibility: Visibility = "internal"


class AttachmentRequest(_Request):
    filename: Annotated[str, Field(min_length=1, max_length=255)]
    content_type: Annotated[str, Field(min_length=1, max_length=200)] = "application/octet-stream"
    size_bytes: Annotated[int, Field(ge=0, le=2**53), BeforeValidator(_whole)]
    storage_ref: Annotated[str, Field(min_length=1, max_length=2_000)]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None


class RequestInfoRequest(_Request):
    question: Body
    actor: Label | None = None


class UserResponseRequest(_Request):
    body: Body
    author: Label | None = None


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", from_attributes=True)


class Ticket(_Record):
    id: UUID
    title: str
    description: str
    ticket_class: str
    status: str
    previous_status: str | None
    priority: int
    created_by: str
    assignee: str | None
    assignee_team: str | None
    owning_group: str | None
    parent_ticket_id: UUID | None
    it_request_number: str | None
    provider: str
    provider_ref: str | None
    provider_sync_status: str
    external_url: str | None
    agent_id: UUID | None
    agent_task_id: UUID | None
    details: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class TicketNote(_Record):
    id: UUID
    ticket_id: UUID
    kind: str
    body: str
    author: str
    source: str
    visibility: Visibility
    data: dict[str, Any]
    created_at: datetime


class TicketAttachment(_Record):
    id: UUID
    ticket_id: UUID
    filename: str
    content_type: str
    size_bytes: int
    storage_ref: str
    sha256: str | None
    uploaded_by: str
    created_at: datetime


class CurrentAgent(_Record):
    """The agent working the ticket now and its current task's status."""

    agent_id: UUID | None
    task_id: UUID | None
    task_status: str | None
