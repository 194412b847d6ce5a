"""The agent runtime's records, in the shapes `/api/agent/*` returns them (the seed's
field names): sessions with their lineage, coordination channels, messages."""

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from ledger.models import Run, Task
from ledger.runtime_config import MessageKind

SessionState = Literal["starting", "active", "stopping", "stopped"]
SessionType = Literal["task", "spawned"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PermissionPolicy(_Record):
    """What a session may use, in six kinds; a spawned child's must be a subset of its
    parent's in every one."""

    tools: list[str] = Field(default_factory=list)
    skills: list[str] = Field(default_factory=list)
    mcp_servers: list[str] = Field(default_factory=list)
    network_channels: list[str] = Field(default_factory=list)
    sandbox_profiles: list[str] = Field(default_factory=list)
    workspace_paths: list[str] = Field(default_factory=list)


class SpawnBudget(_Record):
    max_children: int
    max_depth: int
    max_active_per_workspace: int
    ttl_seconds: int


class Lineage(_Record):
    parent_session_id: UUID | None
    root_session_id: UUID
    spawn_depth: int
    spawn_role: str | None
    ttl_expires_at: datetime | None
    auto_stop_on_parent: bool
    spawn_budget: SpawnBudget
    permission_policy: PermissionPolicy


class AgentSession(_Record):
    id: UUID
    name: str
    type: SessionType
    state: SessionState
    stop_reason: str | None
    agent_name: str
    model: str
    provider: str
    workspace_id: str
    task_id: UUID
    run_id: UUID | None
    # The session's current run's coordination channel (its id).
    channel: UUID | None
    lineage: Lineage
    created_at: datetime
    updated_at: datetime


class Channel(_Record):
    id: UUID
    channel: str  # its name
    display_name: str
    purpose: str
    allowed_message_kinds: list[MessageKind]
    workspace_id: str
    run_id: UUID | None
    task_id: UUID | None
    workflow_id: str | None
    last_activity_at: datetime | None


class ChannelView(Channel):
    """A channel as one session sees it: how far it has read, and what it has not."""

    message_count: int
    read_seq: int
    unread_count: int


class MessageMetadata(_Record):
    coordination_channel_id: UUID
    correlation_id: str
    message_kind: MessageKind
    run_id: UUID | None
    task_id: UUID | None
    workflow_id: str | None
    ext: dict[str, Any]


class ChannelMessage(_Record):
    message_id: UUID
    channel_id: UUID
    seq: int
    from_session_id: UUID
    to_session_id: UUID | None
    reply_to_message_id: UUID | None
    body: Any
    metadata: MessageMetadata
    timestamp: datetime


class ClaimedBy(_Record):
    kind: Literal["agent"]
    ref: str


class Lease(_Record):
    """A run as its holder sees its claim."""

    run_id: UUID
    task_id: UUID
    status: str
    attempt: int
    max_attempts: int
    previous_run_id: UUID | None
    claim_token_hash: str | None
    claimed_by: ClaimedBy | None
    heartbeat_at: datetime | None
    lease_until: datetime | None
    failure_kind: str | None
    session_id: UUID | None
    coordination_channel_id: UUID | None
    coordination_channel: Channel | None


def lease_record(task: Task, run: Run, session_id: UUID | None, channel: Channel | None) -> Lease:
    return Lease(
        run_id=run.id,
        task_id=task.id,
        status=run.status,
        attempt=run.attempt,
        max_attempts=task.max_attempts,
        previous_run_id=run.previous_run_id,
        claim_token_hash=run.claim_token_hash,
        claimed_by=ClaimedBy(kind="agent", ref=run.claimed_by) if run.claimed_by else None,
        heartbeat_at=run.heartbeat_at,
        lease_until=run.lease_until,
        failure_kind=run.failure_kind,
        session_id=session_id,
        coordination_channel_id=channel.id if channel else None,
        coordination_channel=channel,
    )
