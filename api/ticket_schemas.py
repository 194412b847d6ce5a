"""Response bodies of the ticket, change request, access request and provider routes."""

from pydantic import BaseModel, ConfigDict

from ledger.ticket_models import CurrentAgent, Ticket, TicketAttachment, TicketNote


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TicketListResponse(_Response):
    tickets: list[Ticket]
    limit: int
    offset: int


class TicketResponse(_Response):
    ticket: Ticket


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
