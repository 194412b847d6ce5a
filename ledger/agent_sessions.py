"""Agent sessions: the identity of a claimed task's agent, and its credential.

Every claim (a worker's, or an external agent's through `claim-next`) binds the task's
session to the claimed run and returns a new credential with it, once. Only the
credential's sha256 is stored, like the claim token's. The credential authenticates
the agent routes (`/api/agent/me`, channels, context, ...) and the SDK tools of a
worker-run agent, and it is scoped to its tenant, its run and its lease: it works only
while the run is still held under the claim it came with. Once the lease ends (the
run finished, was released or reaped, its lease ran out) it is refused, and the next
claim gets a new one.

Why a credential of its own and not the claim token: the claim token fences the
worker's writes (complete, fail, release), which the agent must not be able to make;
the worker keeps the token and hands the agent only the credential.

Both carry a prefix (`wbc_`, `wbs_`) that the redactor knows (`secret_forms.py`), so
one pasted into a message, a trace or a log line is redacted like any key.
"""

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from ledger.errors import LedgerError
from ledger.policy import PolicyConfig
from ledger.runtime_config import MESSAGE_KINDS
from ledger.runtime_models import (
    AgentSession,
    Channel,
    ChannelMessage,
    Lineage,
    MessageMetadata,
    PermissionPolicy,
    SessionState,
    SpawnBudget,
)
from ledger.sql import query
from ledger.states import TERMINAL

CREDENTIAL_PREFIX = "wbs_"
CLAIM_TOKEN_PREFIX = "wbc_"  # noqa: S105 (a prefix, not a token)


def new_credential() -> str:
    return CREDENTIAL_PREFIX + secrets.token_urlsafe(32)


def new_claim_token() -> str:
    return CLAIM_TOKEN_PREFIX + secrets.token_urlsafe(32)


def credential_hash(credential: str) -> str:
    return hashlib.sha256(credential.encode()).hexdigest()


class CredentialRefused(LedgerError):
    """The credential names no session (401 `unauthenticated`)."""

    code = "unauthenticated"


class LeaseEnded(LedgerError):
    """The credential's lease has ended: its run finished, was released, reaped or
    cancelled, or its lease ran out (401 `session_lease_ended`)."""

    code = "session_lease_ended"


@dataclass(frozen=True)
class SessionGrant:
    """What a claim hands its holder besides the fence: the session, its credential
    (shown once) and the run's coordination channel."""

    session: AgentSession
    credential: str
    channel: Channel


@dataclass(frozen=True)
class Caller:
    """An authenticated session: the agent calling the runtime routes or tools."""

    session: AgentSession
    tenant_id: str
    attempt: int

    @property
    def session_id(self) -> UUID:
        return self.session.id


def session_state(stored: str, held: bool, task_status: str) -> SessionState:
    """A session's state as read: as written when stopped on purpose; else `active`
    while its claim holds the run, `stopped` once its task is finished, `starting`
    while it waits for a (next) claim."""
    if stored in ("stopping", "stopped"):
        return stored  # type: ignore[return-value]
    if held:
        return "active"
    return "stopped" if task_status in TERMINAL else "starting"


def session_record(row: Mapping[str, Any], *, held: bool, task_status: str) -> AgentSession:
    return AgentSession(
        id=row["id"],
        name=row["name"],
        type=row["type"],
        state=session_state(row["state"], held, task_status),
        stop_reason=row["stop_reason"],
        agent_name=row["agent_name"],
        model=row["model"],
        provider=row["provider"],
        workspace_id=row["lane"],
        task_id=row["task_id"],
        run_id=row["run_id"],
        channel=row.get("channel_id"),
        lineage=Lineage(
            parent_session_id=row["parent_session_id"],
            root_session_id=row["root_session_id"],
            spawn_depth=row["spawn_depth"],
            spawn_role=row["spawn_role"],
            ttl_expires_at=row["ttl_expires_at"],
            auto_stop_on_parent=row["auto_stop_on_parent"],
            spawn_budget=SpawnBudget.model_validate(row["spawn_budget"]),
            permission_policy=PermissionPolicy.model_validate(row["permission_policy"]),
        ),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def channel_record(row: Mapping[str, Any]) -> Channel:
    return Channel(
        id=row["id"],
        channel=row["name"],
        display_name=row["display_name"],
        purpose=row["purpose"],
        allowed_message_kinds=row["allowed_message_kinds"],
        workspace_id=row["workspace"],
        run_id=row["run_id"],
        task_id=row["task_id"],
        workflow_id=None,
        last_activity_at=row["last_activity_at"],
    )


def message_record(row: Mapping[str, Any]) -> ChannelMessage:
    return ChannelMessage(
        message_id=row["id"],
        channel_id=row["channel_id"],
        seq=row["seq"],
        from_session_id=row["from_session_id"],
        to_session_id=row["to_session_id"],
        reply_to_message_id=row["reply_to_message_id"],
        body=row["body"],
        metadata=MessageMetadata(
            coordination_channel_id=row["channel_id"],
            correlation_id=row["correlation_id"],
            message_kind=row["message_kind"],
            run_id=row["run_id"],
            task_id=row["task_id"],
            workflow_id=row["workflow_id"],
            ext=row["ext"],
        ),
        timestamp=row["created_at"],
    )


@dataclass(frozen=True)
class Claimed:
    """One claim, as `open_sessions` needs it."""

    task_id: UUID
    run_id: UUID
    lane: str
    token_hash: str


class SessionOpening:
    """Opening the sessions of a batch of claims, inside the claim's transaction."""

    policy: PolicyConfig

    @cached_property
    def _root_lineage(self) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
        """Per lane, the permission policy and spawn budget of a session claimed there:
        the lane's tools and channels, its coordinator's budget."""
        lineage = {}
        for name, lane in self.policy.lanes.items():
            coordinator = self.policy.coordinator_for(name)
            policy = PermissionPolicy(
                tools=sorted(lane.tools),
                network_channels=sorted(channel.name for channel in lane.channels),
            )
            budget = SpawnBudget(
                max_children=coordinator.max_children,
                max_depth=coordinator.max_depth,
                max_active_per_workspace=coordinator.max_active_sessions_per_workspace,
                ttl_seconds=coordinator.default_ttl_seconds,
            )
            lineage[name] = (policy.model_dump(), budget.model_dump())
        return lineage

    async def open_sessions(
        self, connection: asyncpg.Connection, claimed: list[Claimed]
    ) -> dict[UUID, SessionGrant]:
        """Each claim's session (made or bound) and channel, by run id."""
        if not claimed:
            return {}
        credentials = {claim.run_id: new_credential() for claim in claimed}
        rows = await connection.fetch(
            query("open_agent_sessions"),
            [claim.task_id for claim in claimed],
            [claim.run_id for claim in claimed],
            [uuid4() for _ in claimed],
            [credential_hash(credentials[claim.run_id]) for claim in claimed],
            [claim.token_hash for claim in claimed],
            [uuid4() for _ in claimed],
            [self._root_lineage[claim.lane][0] for claim in claimed],
            [self._root_lineage[claim.lane][1] for claim in claimed],
            list(MESSAGE_KINDS),
        )
        grants = {}
        for row in rows:
            session, channel = row["session"], row["channel"]
            session["channel_id"] = channel["id"]
            record = session_record(session, held=True, task_status="running")
            grants[record.run_id] = SessionGrant(
                record, credentials[record.run_id], channel_record(channel)
            )
        return grants


class Sessions:
    """Authenticating a session's credential."""

    pool: asyncpg.Pool

    async def authenticate(self, credential: str) -> Caller:
        """The session the credential names while its lease holds; CredentialRefused
        for one that names none, LeaseEnded once the lease is over."""
        row = await self.pool.fetchrow(query("session_by_credential"), credential_hash(credential))
        if row is None:
            raise CredentialRefused("the session credential is not valid")
        session = session_record(row, held=row["held"], task_status=row["task_status"])
        if not row["held"]:
            raise LeaseEnded(
                "the session's lease has ended; its credential no longer works",
                session_id=str(session.id),
                run_id=str(session.run_id),
                run_status=row["run_status"],
                session_state=session.state,
            )
        return Caller(session, row["tenant_id"], row["attempt"])

    async def run_session_channel(
        self, tenant_id: str, run_id: UUID
    ) -> tuple[UUID | None, Channel | None]:
        """The session of a run's task and the run's channel (None, None: never claimed)."""
        row = await self.pool.fetchrow(query("run_session_channel"), run_id, tenant_id)
        if row is None:
            return None, None
        channel = row["channel"]
        return row["session_id"], channel_record(channel) if channel else None
