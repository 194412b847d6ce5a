"""Which statuses a ticket may take: one workflow per ticket class (no I/O).

A ticket's status is free to move to any status of its class's workflow, as a service
desk's is, except out of a terminal one: a closed or cancelled ticket stays so (a new
ticket is raised instead). `awaiting_user_response` is entered by a request for
information and left by the requester's response, which restores the status before it.
"""

from typing import Literal, get_args

TicketClass = Literal["Incident", "UserRequest", "Problem", "Change", "AccessRequest"]
TICKET_CLASSES: tuple[str, ...] = get_args(TicketClass)

AWAITING_USER_RESPONSE = "awaiting_user_response"
TERMINAL_STATUSES = frozenset({"closed", "cancelled"})

_SERVICE = (
    "new",
    "assigned",
    "in_progress",
    "on_hold",
    AWAITING_USER_RESPONSE,
    "resolved",
    "closed",
    "cancelled",
)

WORKFLOWS: dict[str, tuple[str, ...]] = {
    "Incident": _SERVICE,
    "UserRequest": _SERVICE,
    "Problem": (
        "new",
        "assessment",
        "root_cause_analysis",
        "fix_in_progress",
        AWAITING_USER_RESPONSE,
        "resolved",
        "closed",
        "cancelled",
    ),
    # ServiceNow's change model; whether the change may proceed is its gate's decision
    # (`ledger/changes.py`), not the ticket's status.
    "Change": (
        "new",
        "assess",
        "authorize",
        "scheduled",
        "implement",
        "review",
        "closed",
        "cancelled",
    ),
    # The child ticket an access request raises for the owning group: it waits for its
    # change gate, which resolves it (granted) or cancels it (rejected, expired).
    "AccessRequest": ("new", "awaiting_approval", "in_progress", "resolved", "closed", "cancelled"),
}

# Every status any workflow has, for filters and the CHECK a reader may want.
ALL_STATUSES: tuple[str, ...] = tuple(
    dict.fromkeys(status for workflow in WORKFLOWS.values() for status in workflow)
)


def allowed_statuses(ticket_class: str) -> tuple[str, ...]:
    return WORKFLOWS[ticket_class]


def in_workflow(ticket_class: str, status: str) -> bool:
    return status in WORKFLOWS[ticket_class]
