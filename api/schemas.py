"""Response bodies and query parameters, as the API returns and accepts them and as
`/openapi.json` describes them."""

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from ledger.agent_registry import AgentType
from ledger.models import (
    AgentConfig,
    AgentName,
    ApprovalRequest,
    Artifact,
    ITRequest,
    LevelName,
    LongText,
    Name,
    ProviderName,
    Reason,
    Task,
    Thread,
    ThreadMessage,
    TraceEvent,
)
from ledger.policy import Verdict
from ledger.reads import CURSOR_PATTERN
from ledger.run_steps import ConversationStatus, RunStep, ThreadRun, TokenUsage
from ledger.runtime_config import ChannelDeclaration
from ledger.session_steps import RESPONSE_ID_PATTERN, CallInfo, StepVerdict
from ledger.states import TaskStatus
from ledger.ticket_models import Ticket


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(_Response):
    code: str
    message: str
    details: dict[str, Any]


class ErrorResponse(_Response):
    error: ErrorBody


class Diagnostic(_Response):
    category: str
    code: str
    data_freshness: str
    doc_url: str
    evidence: dict[str, Any]
    id: str
    message: str
    severity: str
    suggested_command: str
    title: str


class DiagnosticErrorResponse(_Response):
    """The worker protocol's error shape."""

    diagnostic: Diagnostic
    error: str


# Trace sequence numbers are Postgres integers.
MAX_SEQ = 2**31 - 1
# A decimal sequence number from 0 to MAX_SEQ (leading zeros allowed), for parameters
# that carry one as text (Last-Event-ID, after_seq).
SEQ_PATTERN = (
    r"^0*([0-9]{1,9}|1[0-9]{9}|20[0-9]{8}|21[0-3][0-9]{7}|214[0-6][0-9]{6}"
    r"|2147[0-3][0-9]{5}|21474[0-7][0-9]{4}|214748[0-2][0-9]{3}|2147483[0-5][0-9]{2}"
    r"|21474836[0-3][0-9]|214748364[0-7])$"
)


# A query parameter the document does not name is refused, not silently ignored: a
# misspelt filter would otherwise return an unfiltered list.
class TaskListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: TaskStatus | None = None
    lane: str | None = Field(default=None, max_length=100)
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = Field(default=None, pattern=CURSOR_PATTERN)


class TraceListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    after_seq: int = Field(default=0, ge=0, le=MAX_SEQ)
    limit: int = Field(default=1000, ge=1, le=5000)


class TaskListResponse(_Response):
    tasks: list[Task]
    next_cursor: str | None


class TaskCreatedResponse(_Response):
    task: Task
    policy_verdict: Verdict


class TaskFromITResponse(TaskCreatedResponse):
    itr_context: ITRequest
    # The IT request's ticket, which the task is worked for.
    ticket_id: UUID


class TaskResponse(_Response):
    task: Task


class TransitionResponse(_Response):
    task: Task
    trace: TraceEvent


class TracesResponse(_Response):
    traces: list[TraceEvent]


class ArtifactsResponse(_Response):
    artifacts: list[Artifact]


class DispatchInfo(_Response):
    lane: str
    transport: str | None
    run_id: str | None
    reason: str


class DispatchResponse(_Response):
    status: Literal["dispatched", "not_configured"]
    dispatch: DispatchInfo
    task: Task


class RunResponse(_Response):
    status: str
    task: Task
    sdk_available: bool
    artifacts: list[Artifact]
    traces: list[TraceEvent]


class LaneInfo(_Response):
    name: str
    description: str
    profile: str
    max_mutation_level: str
    decision: Literal["allow", "require_approval"]
    requires_rollback_plan: bool
    source_systems: list[str]
    max_attempts: int
    transport: str | None  # postgres, servicebus, or None: dispatch is not_configured
    lease_seconds: float
    dispatch_timeout_seconds: float
    tools: list[str]
    allowed_hosts: list[str]
    tool_approval_above: str | None  # tool calls above this level wait for approval
    timeout_seconds: float
    max_turns: int
    token_budget: int | None
    # Named coordination channels its agent sessions see (GET /api/agent/channels).
    channels: list[ChannelDeclaration]


class NamedInfo(_Response):
    name: str
    description: str


class ProfileInfo(_Response):
    name: str
    description: str
    allowed_providers: list[str]
    submit_roles: list[str]


class RoleInfo(_Response):
    subject: str
    tenant_id: str
    roles: list[str]
    effective_role: str
    can_create: bool
    can_approve: bool
    can_break_glass: bool


class WorkspacesResponse(_Response):
    lanes: list[LaneInfo]
    sources: list[NamedInfo]
    role: RoleInfo
    providers: list[NamedInfo]
    policy_profiles: list[ProfileInfo]
    mutation_levels: list[str]
    policy_version: str


class ITRequestResponse(_Response):
    it_request: ITRequest
    # The ticket the request is registered as.
    ticket: Ticket


class HealthResponse(_Response):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)


class AgentInfo(_Response):
    id: str
    type: AgentType
    name: str
    description: str
    capabilities: list[str]
    instructions: str
    tools: list[str]
    lane: str
    allowed_providers: list[str]
    routes_to: list[str]
    keywords: list[str]
    # The digest of its valid soul, which its instructions carry (None: none, or invalid).
    soul_digest: str | None


class AgentListResponse(_Response):
    agents: list[AgentInfo]


class ThreadListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent_type: str | None = Field(default=None, max_length=100)


class ThreadResponse(_Response):
    thread: Thread


class ThreadListResponse(_Response):
    threads: list[Thread]


class ThreadDetailResponse(_Response):
    thread: Thread
    messages: list[ThreadMessage]


# --- Conversations: thread runs, their steps, their approval requests -----------------


class RunDetailResponse(_Response):
    run: ThreadRun
    # Ordered by step_index (0, 1, ...), derived from the run's trace events.
    steps: list[RunStep]
    # The requests still waiting for an operator (resolve them at /api/v1/approvals).
    approval_requests: list[ApprovalRequest]


class ApprovalResolveResponse(_Response):
    approval_request: ApprovalRequest


# --- Agent sessions (`api/routes/agent_sessions.py`) --------------------------------
# A session is a thread the client names by its session_id; each message it sends is a
# thread run (a task), executed by a worker.

# Who the caller says it is, checked against its token.
_Identity = Annotated[str, Field(min_length=1, max_length=200)]


class ProcessRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    session_id: Name
    message: LongText
    tenant_id: _Identity  # must be the token's tenant (tid)
    user_id: _Identity  # must be the token's subject (sub)
    agent_config: AgentConfig | None = None
    # The agent a new session talks to (default: the agents file's first router); an
    # existing session keeps the agent it was opened for.
    agent_type: AgentName | None = None


class ToolCallInfo(_Response):
    call_id: str
    tool: str
    arguments: Any
    # Set on the call that waits for an operator: the id to send to /api/v1/agents/approve.
    approval_id: UUID | None = None


class ToolResultInfo(_Response):
    call_id: str
    tool: str
    output: str


class ProcessResponse(_Response):
    id: UUID  # the run (a task id)
    content: str  # the final answer; empty while a tool call waits for approval
    tool_calls: list[ToolCallInfo]
    tool_results: list[ToolResultInfo]
    reasoning: str  # the router's stated reason for its handoff ("" without one)
    requires_approval: bool
    execution_time_ms: int
    tokens_used: int


class ProcessAcceptedResponse(_Response):
    """The run had not stopped within the wait: follow it on `stream`."""

    run_id: UUID
    session_id: str
    status: TaskStatus
    stream: str


SessionState = Literal["idle", "thinking", "executing", "awaiting_approval"]


class SessionStatusResponse(_Response):
    session_id: str
    status: SessionState
    active_agents: list[str]
    message_count: int
    last_activity: datetime


class SessionApproveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    approval_id: Annotated[UUID, Field(strict=False)]  # JSON has no UUID type: from text
    session_id: Name
    decision: Literal["approved", "rejected"]
    comment: Reason = ""


class SessionApproveResponse(_Response):
    success: bool
    approval_id: UUID
    status: Literal["approved", "rejected"]
    resumed: bool


# --- Client-side agent sessions (`api/routes/client_sessions.py`) -------------------
# The client drives the agent loop: each inference turn and each tool call is a step,
# a thread run (a task) executed by a worker; the session is a thread.

_ModelName = Annotated[str, Field(min_length=1, max_length=200)]
_Listed = Annotated[list[Annotated[str, Field(max_length=10_000)]], Field(max_length=100)]


class ClientSessionCreateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    agent_type: AgentName
    # One the agent allows and the lane's profile accepts.
    provider: ProviderName = "offline"
    # Default: the provider's configured model (see the session's `model`).
    model: _ModelName | None = None


class InferenceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    # Must be the session's model (else 409 naming `model`).
    model: _ModelName
    input: LongText
    # The answered turn this one follows; default: the session's latest.
    previous_response_id: Annotated[str, Field(pattern=RESPONSE_ID_PATTERN)] | None = None
    # The mutation level the turn declares: the policy's verdict for it in the session's
    # lane gates the turn (deny or above the lane's ceiling: 403; require_approval: the
    # turn waits for an operator).
    intent: LevelName | None = None


class InferenceResponse(_Response):
    response_id: str  # pass it as previous_response_id to follow this turn
    output_text: str
    tool_calls: list[CallInfo]  # execute each through /tool-calls
    usage: TokenUsage
    step_index: int
    execution_time_ms: int


class ToolCallRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    # A call the session's model asked for, not executed yet.
    call_id: _ModelName
    name: Name
    arguments: Annotated[str, Field(max_length=100_000)]  # a JSON object, as text


class ToolCallResponse(_Response):
    call_id: str
    name: str
    output: str  # the tool's result as JSON text
    step_index: int
    verdict: StepVerdict


class StepAcceptedResponse(_Response):
    """The step had not finished within the wait: it is queued or running (follow
    `stream`), or it waits for an operator (`approve` says where to decide it)."""

    step_index: int
    task_id: UUID
    status: ConversationStatus
    stream: str
    approval_id: UUID | None = None
    approve: str | None = None


class ClientSessionCompleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    summary: Annotated[str, Field(min_length=1, max_length=20_000)]
    confidence: Annotated[float, Field(ge=0, le=1)]
    # Accepted and not stored.
    evidence: _Listed = Field(default_factory=list)
    next_steps: _Listed = Field(default_factory=list)
