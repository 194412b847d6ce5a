"""Change requests' and access requests' typed vocabulary: what callers send in (strict,
unknown fields refused) and the records they get back."""

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from ledger.policy import RiskLevel
from ledger.ticket_models import Label, Reason

ChangeStatus = Literal["pending", "approved", "rejected", "expired", "completed"]
GrantStatus = Literal["pending", "granted", "rejected", "expired"]
# JSON has no UUID type: from text.
TextUUID = Annotated[UUID, Field(strict=False)]
Text = Annotated[str, Field(max_length=20_000)]
Target = Annotated[str, Field(min_length=1, max_length=2_000)]
Action = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][\w.:-]*$")]


def _whole(value: Any) -> Any:
    # JSON Schema's integer takes 2.0 too; anything else not an int is still refused.
    return int(value) if isinstance(value, float) and value.is_integer() else value


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ApprovalPolicy(_Request):
    """What the requester asks of the gate. It cannot waive the lanes file's rule for
    the risk level; it says how the change is completed once approved."""

    requires_human: bool = True
    # Completed by the agent's write_target once it carries the change out, unless false
    # (`worker/change_tools.py`).
    auto_complete: bool = True
    manual_completion_required: bool = False


class ChangeCreateRequest(_Request):
    ticket_id: TextUUID
    agent_id: TextUUID | None = None
    action: Action
    target: Target
    reason: Reason = ""
    command: Text = ""
    risk_level: RiskLevel = "medium"
    approval_policy: ApprovalPolicy = ApprovalPolicy()
    # How long the change waits for its decision (the lanes file's default and maximum).
    expires_in_seconds: (
        Annotated[int, Field(ge=1, le=30 * 86_400), BeforeValidator(_whole)] | None
    ) = None


class ApproveChangeRequest(_Request):
    # Who the caller says approves; the audit record and the self-approval check use the
    # authenticated subject.
    approved_by: Label | None = None
    reason: Reason = ""


class RejectChangeRequest(_Request):
    rejected_by: Label | None = None
    reason: Reason = ""


class CompleteChangeRequest(_Request):
    completed_by: Label | None = None
    result: Text = ""


class ChangeListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: ChangeStatus | None = None
    agent_id: UUID | None = None
    ticket_id: UUID | None = None
    risk_level: RiskLevel | None = None
    limit: int = Field(default=50, ge=1, le=200)
    offset: int = Field(default=0, ge=0, le=1_000_000)


class AccessRequestCreate(_Request):
    agent_id: TextUUID | None = None
    resource: Target
    permission: Annotated[str, Field(min_length=1, max_length=500)]
    account_ref: Label | None = None
    # The group that grants it; the ticket's owning group when left out.
    assignment_group: Label | None = None
    risk_level: RiskLevel = "medium"
    # Raise the child ticket at the ticket's provider too (only `local` exists: ignored).
    sync_provider: bool = False
    reason: Reason = ""
    expires_in_seconds: (
        Annotated[int, Field(ge=1, le=30 * 86_400), BeforeValidator(_whole)] | None
    ) = None


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", from_attributes=True)


class Approval(_Record):
    by: str
    role: str
    reason: str
    at: datetime


class ChangeRequest(_Record):
    id: UUID
    ticket_id: UUID
    agent_id: UUID | None
    action: str
    target: str
    reason: str
    command: str
    risk_level: RiskLevel
    approval_policy: dict[str, Any]
    status: ChangeStatus
    requested_by: str
    approver_roles: list[str]
    approvals_required: int
    policy_version: str
    approvals: list[Approval]
    decided_by: str | None
    decision_reason: str | None
    decided_at: datetime | None
    completed_by: str | None
    result: str | None
    completed_at: datetime | None
    expires_at: datetime
    created_at: datetime
    updated_at: datetime


class ChangeStatusView(_Record):
    """What an agent polls: is it decided yet, and may it go ahead."""

    id: UUID
    status: ChangeStatus
    approvals: int
    approvals_required: int
    decided_by: str | None
    expires_at: datetime


class AccessRequest(_Record):
    id: UUID
    ticket_id: UUID
    child_ticket_id: UUID
    change_id: UUID
    agent_id: UUID | None
    resource: str
    permission: str
    account_ref: str | None
    assignment_group: str
    reason: str
    requested_by: str
    created_at: datetime
    # From its change gate: pending, granted (approved or completed), rejected, expired.
    grant_status: GrantStatus
    change_status: ChangeStatus
    child_ticket_status: str
