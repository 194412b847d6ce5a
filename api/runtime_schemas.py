"""Request and response bodies of the agent runtime routes (`/api/agent/*` about the
calling session), with the seed's field names."""

from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from agentdefs.soul import Diagnostic, Frontmatter, SoulLimits, ValidationStatus
from ledger.channels import MAX_RECEIVE, MAX_WAIT_SECONDS
from ledger.context_models import ContextBundle, Me
from ledger.models import LongText, Name, ShortText
from ledger.runtime_config import Coordinator, MessageKind
from ledger.runtime_models import AgentSession, ChannelMessage, ChannelView, Lineage

Correlation = Annotated[str, Field(min_length=1, max_length=200)]
# JSON has no UUID type: from text.
TextUUID = Annotated[UUID, Field(strict=False)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MessageMetadataRequest(_Request):
    """What a message says about itself. Left out: the sender's own run and task, and
    its run as the correlation; given, they must be the sender's (else 400)."""

    message_kind: MessageKind
    correlation_id: Correlation | None = None
    coordination_channel_id: TextUUID | None = None
    run_id: TextUUID | None = None
    task_id: TextUUID | None = None
    workflow_id: Correlation | None = None
    ext: dict[str, Any] = Field(default_factory=dict)


class ReplyMetadataRequest(MessageMetadataRequest):
    message_kind: MessageKind = "reply"


class ChannelSendRequest(_Request):
    body: Any  # any JSON value; stored with its secrets redacted
    metadata: MessageMetadataRequest


class ChannelReplyRequest(_Request):
    reply_to_message_id: TextUUID
    body: Any
    metadata: ReplyMetadataRequest = Field(default_factory=ReplyMetadataRequest)


class ChannelRecvQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # With wait=true and nothing unread, the answer waits for the next message, up to
    # wait_seconds (at most MAX_WAIT_SECONDS).
    wait: bool = False
    wait_seconds: float = Field(default=MAX_WAIT_SECONDS, gt=0, le=MAX_WAIT_SECONDS)
    limit: int = Field(default=20, ge=1, le=MAX_RECEIVE)


class ChannelsResponse(_Response):
    channels: list[ChannelView]


class MessageResponse(_Response):
    message: ChannelMessage


class MessagesResponse(_Response):
    messages: list[ChannelMessage]


class CoordinatorQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # A workspace (lane) name; the calling session's own when left out.
    workspace: str | None = Field(default=None, min_length=1, max_length=100)


class MeResponse(_Response):
    me: Me


class CoordinatorResponse(_Response):
    coordinator: Coordinator


class ContextResponse(_Response):
    context: ContextBundle


class SoulValidateRequest(_Request):
    # Markdown with YAML frontmatter; past the document limit it is a diagnostic.
    content: Annotated[str, Field(max_length=64 * 1024)]
    source_path: Annotated[str, Field(min_length=1, max_length=200)] = "SOUL.md"


class SoulConfigProvenance(_Response):
    enabled: bool
    max_body_bytes: int
    context_projection_bytes: int
    source: str
    digest: str  # of these settings


class SoulResponse(_Response):
    """A soul document as the agent runs with it (GET) or as it would (validate)."""

    agent_name: str
    enabled: bool
    present: bool
    valid: bool
    # Present, valid and enabled: projected into the agent's instructions.
    active: bool
    validation_status: ValidationStatus
    source_path: str
    digest: str | None
    snapshot_id: str | None  # the digest: a soul's content is its identity
    revision_id: str | None  # its frontmatter's version
    frontmatter: Frontmatter
    body: str
    # The projection into the instructions was cut to context_projection_bytes.
    truncated: bool
    diagnostics: list[Diagnostic]
    limits: SoulLimits
    config_provenance: SoulConfigProvenance


# JSON Schema's integer takes 2.0 too; anything else not an int is still refused.
WholeNumber = Annotated[
    int,
    Field(ge=1, le=7 * 86_400),
    BeforeValidator(lambda v: int(v) if isinstance(v, float) and v.is_integer() else v),
]
Atom = Annotated[str, Field(min_length=1, max_length=200)]
AtomList = Annotated[list[Atom], Field(max_length=100)]


class PermissionsRequest(_Request):
    """A child's permissions by kind; a kind left out is its parent's."""

    tools: AtomList | None = None
    skills: AtomList | None = None
    mcp_servers: AtomList | None = None
    network_channels: AtomList | None = None
    sandbox_profiles: AtomList | None = None
    workspace_paths: AtomList | None = None


class SpawnRequest(_Request):
    instructions: LongText
    title: ShortText | None = None
    # The lane's own agent or an agents-file agent of the lane; the coordinator's when
    # left out.
    agent_name: Name | None = None
    spawn_role: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    # Left out: the workspace's default_ttl_seconds; over its max_ttl_seconds: 403.
    ttl_seconds: WholeNumber | None = None
    auto_stop_on_parent: bool = True
    permissions: PermissionsRequest | None = None


class SpawnBody(_Response):
    session: AgentSession
    lineage: Lineage
    permissions: dict[str, list[str]]
    task_id: UUID
    task_status: str


class SpawnResponse(_Response):
    spawn: SpawnBody
