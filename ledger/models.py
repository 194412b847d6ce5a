"""The ledger's typed vocabulary: what callers send in, and the records they get back.

The API validates request bodies with the `*Request` models (unknown fields and wrong
types are rejected, never coerced) and answers with the record models, which are also
what `/openapi.json` describes.
"""

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from ledger.policy import Verdict
from ledger.states import RunStatus, TaskStatus

Name = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][\w.:-]*$")]
# A name one part of the lanes file defines (a PolicyConfig attribute). `/openapi.json`
# lists that part's names as the field's enum; the ledger refuses any other with a 400.
POLICY_NAMES_KEY = "x-policy-names"
LaneName = Annotated[Name, Field(json_schema_extra={POLICY_NAMES_KEY: "lanes"})]
LevelName = Annotated[Name, Field(json_schema_extra={POLICY_NAMES_KEY: "mutation_levels"})]
ProviderName = Annotated[Name, Field(json_schema_extra={POLICY_NAMES_KEY: "providers"})]
AgentName = Annotated[Name, Field(json_schema_extra={POLICY_NAMES_KEY: "agents"})]
MessageRole = Literal["user", "assistant", "tool_call", "tool_result", "handoff"]
ApprovalStatus = Literal["pending", "approved", "rejected", "cancelled"]
ShortText = Annotated[str, Field(min_length=1, max_length=500)]
LongText = Annotated[str, Field(min_length=1, max_length=100_000)]
Reason = Annotated[str, Field(max_length=2_000)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TaskCreateRequest(_Request):
    lane: LaneName
    title: ShortText
    instructions: LongText
    source_systems: list[Name] = Field(default_factory=list, max_length=50)
    scope: dict[str, Any] = Field(default_factory=dict)
    mutation_level: LevelName = "read_only"
    model_provider: ProviderName = "offline"
    break_glass_acknowledged: bool = False


class TaskFromITRequest(_Request):
    lane: LaneName
    title: ShortText | None = None
    instructions: LongText | None = None
    mutation_level: LevelName = "read_only"
    model_provider: ProviderName = "offline"


class ApproveRequest(_Request):
    reason: Reason = ""
    break_glass_acknowledged: bool = False


class ReasonRequest(_Request):
    reason: Reason = ""


class RollbackRequest(_Request):
    reason: Annotated[str, Field(min_length=1, max_length=2_000)]
    remediation: Annotated[str, Field(min_length=1, max_length=20_000)]


class AgentConfig(_Request):
    """How a conversation turn is run. The provider must be one the agent allows and
    the lane's policy accepts; the worker applies the rest to the agents it runs."""

    provider: ProviderName = "offline"
    model: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    tools_enabled: bool = True


class ThreadCreateRequest(_Request):
    agent_type: AgentName
    title: Annotated[str, Field(max_length=500)] = ""
    metadata: dict[str, Any] = Field(default_factory=dict)


class ThreadRunRequest(_Request):
    """A user's message to a thread's agent, and how to run the turn."""

    message: LongText
    agent_config: AgentConfig | None = None


class ApprovalResolveRequest(_Request):
    status: Literal["approved", "rejected"]
    reason: Reason = ""


class ITRequestCreate(_Request):
    request_number: Name
    title: ShortText
    description: Annotated[str, Field(max_length=100_000)] = ""
    requester: Annotated[str, Field(max_length=200)] = ""
    source_system: Name | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", from_attributes=True)


class Task(_Record):
    id: UUID
    tenant_id: str
    lane: str
    title: str
    instructions: str
    source_systems: list[str]
    scope: dict[str, Any]
    mutation_level: str
    model_provider: str
    status: TaskStatus
    policy_verdict: Verdict
    break_glass: dict[str, Any] | None
    approval: dict[str, Any] | None
    # A tool call waiting for an operator (or the decision taken on it).
    pending_approval: dict[str, Any] | None = None
    rollback: dict[str, Any] | None
    terminal_reason: str | None
    attempt: int
    max_attempts: int
    current_run_id: UUID | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    # A thread run: the thread it answers, the agent the thread was opened for, and the
    # caller's agent_config as checked against the lane's policy.
    thread_id: UUID | None = None
    agent_type: str | None = None
    run_options: dict[str, Any] | None = None


class Run(_Record):
    id: UUID
    task_id: UUID
    lane: str
    attempt: int
    status: RunStatus
    previous_run_id: UUID | None
    claimed_by: str | None
    claim_token_hash: str | None
    lease_until: datetime | None
    heartbeat_at: datetime | None
    failure_kind: str | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class TraceEvent(_Record):
    seq: int
    task_id: UUID
    run_id: UUID | None
    kind: str
    from_status: str | None
    to_status: str | None
    actor: str
    message: str
    data: dict[str, Any]
    created_at: datetime


class Artifact(_Record):
    id: UUID
    task_id: UUID
    run_id: UUID | None
    name: str
    media_type: str
    sha256: str
    size_bytes: int
    metadata: dict[str, Any]
    download_url: str
    created_at: datetime


ThreadKind = Literal["conversation", "client_session"]


class Thread(_Record):
    id: UUID
    session_id: str
    agent_type: str
    # conversation: its runs are agent runs; client_session: its runs are the steps of
    # a client-side agent session (/api/v1/client-sessions/{id}), and only those.
    kind: ThreadKind = "conversation"
    title: str
    metadata: dict[str, Any]
    message_count: int
    last_run_id: UUID | None
    created_by: str
    created_at: datetime
    updated_at: datetime


def thread_record(row: Mapping[str, Any]) -> Thread:
    """A thread row as clients see it: the name they gave it as `session_id`, and its
    latest run (a task) as `last_run_id`."""
    return Thread.model_validate(
        {**row, "session_id": row["session_key"], "last_run_id": row["last_task_id"]}
    )


class ThreadMessage(_Record):
    seq: int
    task_id: UUID
    role: MessageRole
    agent: str | None
    content: str
    data: dict[str, Any]
    created_at: datetime


class ApprovalRequest(_Record):
    id: UUID
    task_id: UUID
    run_id: UUID
    call_id: str
    tool: str
    arguments: Any
    arguments_sha256: str
    deciders: list[str]
    status: ApprovalStatus
    reason: str | None
    resolved_by: str | None
    resolved_at: datetime | None
    created_at: datetime


class ITRequest(_Record):
    request_number: str
    title: str
    description: str
    requester: str
    source_system: str | None
    details: dict[str, Any]
    created_by: str
    created_at: datetime


def artifact_record(row: Mapping[str, Any]) -> Artifact:
    """An artifact row as clients see it: a download route instead of the storage key."""
    return Artifact.model_validate(
        {**row, "download_url": f"/api/agents/tasks/{row['task_id']}/artifacts/{row['id']}/content"}
    )


class ClaimNextRequest(_Request):
    # Lanes to take work from; every lane when omitted.
    lanes: list[LaneName] | None = Field(default=None, max_length=50)


class HeartbeatRequest(_Request):
    pass


class CompleteRequest(_Request):
    result: dict[str, Any] | None = None


class FailRequest(_Request):
    error: Annotated[str, Field(min_length=1, max_length=2_000)]
    failure_kind: Name = "worker_error"
    # False when another attempt cannot help (bad input): the task fails at once.
    retryable: bool = True


class ReleaseRequest(_Request):
    reason: Reason = ""
