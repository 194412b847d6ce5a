"""What `GET /api/agent/me`, `/api/agent/context` and `/api/agent/coordinator/config`
return: the calling session's view of itself, with the seed's field names.

The context bundle's sections are its fields, in this fixed order; every list in it
is cut to its section's limit after a fixed sort, and says so (`SectionMeta`)."""

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from ledger.runtime_config import Coordinator, MessageKind
from ledger.runtime_models import AgentSession, Channel, ChannelView, Lease, MessageMetadata

# Items in each list section of the context bundle, at most.
CONTEXT_SECTION_LIMIT = 8
# A task's instructions in the bundle, and an inbox item's preview, at most (characters).
CONTEXT_BODY_MAX_CHARS = 4_000
PREVIEW_MAX_CHARS = 180


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SectionMeta(_Model):
    limit: int
    returned: int
    truncated: bool


def cut(items: list[Any], limit: int = CONTEXT_SECTION_LIMIT) -> tuple[list[Any], SectionMeta]:
    """The first `limit` items (the caller sorted them) and what was left out."""
    kept = items[:limit]
    return kept, SectionMeta(limit=limit, returned=len(kept), truncated=len(items) > limit)


class Identity(_Model):
    agent_name: str
    model: str
    provider: str
    session_id: UUID


class Workspace(_Model):
    id: str
    name: str
    description: str
    root_dir: str | None  # a lane has no directory of its own


class Capability(_Model):
    id: str
    source: str
    summary: str


class Limits(_Model):
    context_section_limit: int
    max_active_task_leases: int
    max_children: int
    max_spawn_depth: int


class Me(_Model):
    active_task_leases: list[Lease]
    capabilities: list[Capability]
    channels: list[ChannelView]
    coordinator: Coordinator
    limits: Limits
    self: Identity
    session: AgentSession
    workspace: Workspace


class Actor(_Model):
    kind: Literal["human", "agent", "system"]
    ref: str


class TaskSummary(_Model):
    id: UUID
    title: str
    status: str
    workspace_id: str
    mutation_level: str
    owner: Actor
    latest_event_seq: int
    instructions: str
    instructions_truncated: bool


class RunSummary(_Model):
    id: UUID
    task_id: UUID
    attempt: int
    max_attempts: int
    status: str
    previous_run_id: UUID | None
    claimed_by: Actor | None
    claim_token_hash: str | None
    coordination_channel_id: UUID | None
    session_id: UUID | None
    queued_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None
    lease_until: datetime | None
    ended_at: datetime | None
    failure_kind: str | None
    error: str | None


class TaskEvent(_Model):
    event_id: str
    event_type: str
    sequence: int
    timestamp: datetime
    actor: Actor
    message: str
    payload: dict[str, Any]


class ProfileAgent(_Model):
    mode: Literal["inherit"]
    agent_name: str
    model: str
    provider: str


class ExecutionProfile(_Model):
    task_id: UUID
    worker: ProfileAgent
    coordinator: ProfileAgent
    runtime: dict[str, str]
    sandbox: dict[str, str | None]


class BundleLimits(_Model):
    context_body_max_bytes: int
    max_runtime_seconds: float
    summary_max_bytes: int


class TaskBundle(_Model):
    task: TaskSummary
    current_run: RunSummary
    execution_profile: ExecutionProfile
    latest_event_seq: int
    limits: BundleLimits
    prior_attempts: list[RunSummary]
    prior_attempts_section: SectionMeta
    recent_events: list[TaskEvent]
    recent_events_section: SectionMeta


class TaskSection(_Model):
    available: bool
    bundle: TaskBundle


class ChannelSection(_Model):
    available: bool
    channel: Channel | None


class InboxItem(_Model):
    channel_id: UUID
    kind: MessageKind
    message_id: UUID
    metadata: MessageMetadata
    preview: str
    timestamp: datetime


class InboxSection(_Model):
    section: SectionMeta
    unread_count: int
    items: list[InboxItem]


class Peer(_Model):
    peer_id: str
    session_id: UUID
    display_name: str
    channel_id: UUID | None
    capabilities: list[str]


class PeerSection(_Model):
    section: SectionMeta
    peers: list[Peer]


class CapabilitySection(_Model):
    section: SectionMeta
    capabilities: list[Capability]


class Provenance(_Model):
    generated_at: datetime
    source: str
    data_freshness: Literal["live"]


class ContextBundle(_Model):
    self: Identity
    session: AgentSession
    task: TaskSection
    coordination_channel: ChannelSection
    inbox_summary: InboxSection
    peer_roster: PeerSection
    capabilities: CapabilitySection
    limits: Limits
    provenance: Provenance
