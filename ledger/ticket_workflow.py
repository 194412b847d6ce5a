"""The statuses a ticket may take: one workflow for every ticket class (no I/O).

`/openapi.json` lists exactly these, and a status outside them is refused with a 400
naming them, so what a client may send is what the schema says. A ticket moves freely
between them, as a service desk's does, except out of a terminal one.
"""

from typing import Literal, get_args

TicketClass = Literal["Incident", "UserRequest", "Problem", "Change", "AccessRequest"]
TICKET_CLASSES: tuple[str, ...] = get_args(TicketClass)

AWAITING_USER_RESPONSE = "awaiting_user_response"

TICKET_STATUSES: tuple[str, ...] = (
    # Created; nobody works it yet.
    "new",
    # An owning group or assignee took it.
    "assigned",
    # Someone (a person or an agent) works it.
    "in_progress",
    # Paused on purpose (a vendor, a maintenance window).
    "on_hold",
    # Waits for a change gate: an access request's child ticket, until its gate is
    # decided (granted: resolved; rejected or expired: cancelled).
    "awaiting_approval",
    # A question was put to the requester (request-info); their answer (user-response)
    # restores the status the ticket had before.
    AWAITING_USER_RESPONSE,
    # The work is done and verified; may still be reopened or closed.
    "resolved",
    # Terminal: the ticket's record is final (a new ticket is raised instead).
    "closed",
    # Terminal: it will not be worked.
    "cancelled",
)
TERMINAL_STATUSES = frozenset({"closed", "cancelled"})


def in_workflow(status: str) -> bool:
    return status in TICKET_STATUSES
