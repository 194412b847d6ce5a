"""Response bodies of the ticket, change request, access request and provider routes."""

from pydantic import BaseModel, ConfigDict

from ledger.change_models import AccessRequest, ChangeRequest, ChangeStatusView
from ledger.ticket_agent_models import AutoAssignOutcome
from ledger.ticket_context import TicketContext
from ledger.ticket_models import CurrentAgent, Ticket, TicketAttachment, TicketNote


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TicketListResponse(_Response):
    tickets: list[Ticket]
    limit: int
    offset: int


class TicketCreatedResponse(_Response):
    ticket: Ticket
    # Only when the ticket was created with `auto_assign`.
    auto_assign: AutoAssignOutcome | None = None


class TicketNoteResponse(_Response):
    """A ticket after a change, and the note on its timeline that records it."""

    ticket: Ticket
    note: TicketNote


class NoteResponse(_Response):
    note: TicketNote


class NotesResponse(_Response):
    notes: list[TicketNote]


class AttachmentResponse(_Response):
    attachment: TicketAttachment


class AttachmentsResponse(_Response):
    attachments: list[TicketAttachment]


class TicketDetailResponse(_Response):
    ticket: Ticket
    agent: CurrentAgent
    change_requests: list[ChangeRequest]


class TicketContextResponse(_Response):
    context: TicketContext


class AccessRequestResponse(_Response):
    access_request: AccessRequest


class AccessRequestsResponse(_Response):
    access_requests: list[AccessRequest]


class ChangeResponse(_Response):
    change: ChangeRequest


class ChangeListResponse(_Response):
    changes: list[ChangeRequest]


class ChangeStatusResponse(_Response):
    change: ChangeStatusView


class ChangeStats(_Response):
    total: int
    pending: int
    by_status: dict[str, int]
    by_risk_level: dict[str, int]


class ChangeStatsResponse(_Response):
    stats: ChangeStats


class ProviderInfo(_Response):
    name: str
    description: str
    configured: bool


class ProvidersResponse(_Response):
    providers: list[ProviderInfo]
