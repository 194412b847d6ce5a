"""What a session reads about itself: `me`, its workspace's coordinator settings, and
the context bundle.

The bundle's sections come in one fixed order (`ContextBundle`'s fields). Each list in
it is sorted by a fixed key before it is cut to its limit, so the same ledger gives the
same bundle every time: capabilities by id; the inbox newest first (then by message
id); peers by the channel they share, then session id; prior attempts newest first;
recent events the latest, in order. Everything in it was redacted when it was stored.
"""

import asyncio
import json
from datetime import UTC, datetime
from functools import cached_property
from typing import Any
from uuid import UUID

import asyncpg

from ledger.agent_registry import AgentRegistry, load_agents
from ledger.agent_sessions import Caller, message_record
from ledger.channels import Channels
from ledger.context_models import (
    CONTEXT_BODY_MAX_CHARS,
    CONTEXT_SECTION_LIMIT,
    PREVIEW_MAX_CHARS,
    Actor,
    BundleLimits,
    Capability,
    CapabilitySection,
    ChannelSection,
    ContextBundle,
    ExecutionProfile,
    Identity,
    InboxItem,
    InboxSection,
    Limits,
    Me,
    Peer,
    PeerSection,
    ProfileAgent,
    Provenance,
    RunSummary,
    SectionMeta,
    TaskBundle,
    TaskEvent,
    TaskSection,
    TaskSummary,
    Workspace,
    cut,
)
from ledger.errors import NotFound
from ledger.models import Run, Task, TraceEvent
from ledger.runtime_config import Coordinator
from ledger.runtime_models import ChannelView, lease_record
from ledger.sql import query


class SelfViews(Channels):
    @cached_property
    def agents(self) -> AgentRegistry:
        return load_agents(self.policy)

    def coordinator(self, caller: Caller, workspace: str | None = None) -> Coordinator:
        """The coordinator settings of `workspace` (the session's own when None)."""
        name = workspace or caller.session.workspace_id
        if name not in self.policy.lanes:
            raise NotFound("workspace not found", workspace=name)
        return self.policy.coordinator_for(name)

    async def me(self, caller: Caller) -> Me:
        session = caller.session
        task, runs = await self._task_and_runs(caller)
        channels = await self.channels(caller)
        run = runs[0]
        own = next((channel for channel in channels if channel.run_id == run.id), None)
        return Me(
            # One: the credential works only while its claim holds the run.
            active_task_leases=[lease_record(task, run, session.id, own)],
            capabilities=self._capabilities(caller, channels),
            channels=channels,
            coordinator=self.coordinator(caller),
            limits=self._limits(caller),
            self=_identity(caller),
            session=session,
            workspace=self._workspace(session.workspace_id),
        )

    async def context(self, caller: Caller) -> ContextBundle:
        session = caller.session
        # Reads that need nothing of each other (each always was a statement of its own,
        # on a connection of its own) go at once: the bundle waits for the slowest of
        # them, not for their sum.
        (task, runs), channels, events = await asyncio.gather(
            self._task_and_runs(caller),
            self.channels(caller),
            self.pool.fetch(
                query("latest_traces"), session.task_id, caller.tenant_id, CONTEXT_SECTION_LIMIT + 1
            ),
        )
        inbox, peers = await asyncio.gather(
            self._inbox(caller, channels), self._peers(caller, channels)
        )
        own = next((channel for channel in channels if channel.run_id == runs[0].id), None)
        capabilities, capabilities_meta = cut(self._capabilities(caller, channels))
        return ContextBundle(
            self=_identity(caller),
            session=session,
            task=TaskSection(
                available=True, bundle=self._bundle(caller, task, runs, events, channels)
            ),
            coordination_channel=ChannelSection(available=own is not None, channel=own),
            inbox_summary=inbox,
            peer_roster=peers,
            capabilities=CapabilitySection(section=capabilities_meta, capabilities=capabilities),
            limits=self._limits(caller),
            provenance=Provenance(
                generated_at=datetime.now(UTC), source="ledger", data_freshness="live"
            ),
        )

    async def _task_and_runs(self, caller: Caller) -> tuple[Task, list[Run]]:
        session = caller.session
        row, runs = await asyncio.gather(
            self.pool.fetchrow(query("get_task"), caller.tenant_id, session.task_id),
            self.pool.fetch(query("task_runs_newest_first"), session.task_id, caller.tenant_id),
        )
        if row is None or not runs:  # a session is made with its task's first claim
            raise NotFound("the session's task is gone", task_id=str(session.task_id))
        return Task.model_validate(dict(row)), [Run.model_validate(dict(r)) for r in runs]

    def _capabilities(self, caller: Caller, channels: list[ChannelView]) -> list[Capability]:
        session = caller.session
        source = f"workspace:{session.workspace_id}"
        found = [
            Capability(id=f"tool:{tool}", source=source, summary=f"the {tool} tool")
            for tool in session.lineage.permission_policy.tools
        ]
        found += [
            Capability(id=f"channel:{c.channel}", source=source, summary=c.purpose)
            for c in channels
            if c.run_id is None
        ]
        if session.agent_name in self.agents:
            agent = self.agents[session.agent_name]
            found += [
                Capability(
                    id=f"skill:{skill}", source=f"agent:{agent.id}", summary=agent.description
                )
                for skill in agent.capabilities
            ]
        return sorted(found, key=lambda capability: capability.id)

    @staticmethod
    def _limits(caller: Caller) -> Limits:
        budget = caller.session.lineage.spawn_budget
        return Limits(
            context_section_limit=CONTEXT_SECTION_LIMIT,
            max_active_task_leases=1,  # a session holds the lease of its current run
            max_children=budget.max_children,
            max_spawn_depth=budget.max_depth,
        )

    def _workspace(self, lane: str) -> Workspace:
        return Workspace(
            id=lane, name=lane, description=self.policy.lanes[lane].description, root_dir=None
        )

    def _bundle(
        self,
        caller: Caller,
        task: Task,
        runs: list[Run],
        events: list[asyncpg.Record],
        channels: list[ChannelView],
    ) -> TaskBundle:
        session = caller.session
        coordinator = self.coordinator(caller)
        agents = {run.claimed_by for run in runs if run.claimed_by}
        run_channels = {channel.run_id: channel.id for channel in channels if channel.run_id}
        summaries = [_run_summary(task, run, session.id, run_channels.get(run.id)) for run in runs]
        prior, prior_meta = cut(summaries[1:])
        # Read one more than the limit, newest first: the extra one says it was cut.
        latest, events_meta = cut([TraceEvent.model_validate(dict(row)) for row in events])
        instructions = task.instructions[:CONTEXT_BODY_MAX_CHARS]
        latest_seq = max((event.seq for event in latest), default=0)
        return TaskBundle(
            task=TaskSummary(
                id=task.id,
                title=task.title,
                status=task.status,
                workspace_id=task.lane,
                mutation_level=task.mutation_level,
                owner=Actor(kind="human", ref=task.created_by),
                latest_event_seq=latest_seq,
                instructions=instructions,
                instructions_truncated=len(instructions) < len(task.instructions),
            ),
            current_run=summaries[0],
            execution_profile=ExecutionProfile(
                task_id=task.id,
                worker=ProfileAgent(
                    mode="inherit",
                    agent_name=session.agent_name,
                    model=session.model,
                    provider=session.provider,
                ),
                coordinator=ProfileAgent(
                    mode="inherit",
                    agent_name=coordinator.agent_name,
                    model=coordinator.model,
                    provider=coordinator.provider,
                ),
                runtime={"mode": "default"},
                sandbox={"mode": "inherit", "sandbox_ref": None},
            ),
            latest_event_seq=latest_seq,
            limits=BundleLimits(
                context_body_max_bytes=CONTEXT_BODY_MAX_CHARS,
                max_runtime_seconds=self.policy.lanes[task.lane].timeout_seconds,
                summary_max_bytes=PREVIEW_MAX_CHARS,
            ),
            prior_attempts=prior,
            prior_attempts_section=prior_meta,
            recent_events=[_event(task, event, agents) for event in reversed(latest)],
            recent_events_section=events_meta,
        )

    async def _inbox(self, caller: Caller, channels: list[ChannelView]) -> InboxSection:
        rows = await self.pool.fetch(
            query("inbox_messages"),
            caller.session_id,
            [channel.id for channel in channels],
            CONTEXT_SECTION_LIMIT,
        )
        unread = sum(channel.unread_count for channel in channels)
        items = [
            InboxItem(
                channel_id=message.channel_id,
                kind=message.metadata.message_kind,
                message_id=message.message_id,
                metadata=message.metadata,
                preview=_preview(message.body),
                timestamp=message.timestamp,
            )
            for message in map(message_record, rows)
        ]
        # The query read the newest CONTEXT_SECTION_LIMIT; the unread count says how
        # many there are in all.
        meta = SectionMeta(
            limit=CONTEXT_SECTION_LIMIT, returned=len(items), truncated=unread > len(items)
        )
        return InboxSection(section=meta, unread_count=unread, items=items)

    async def _peers(self, caller: Caller, channels: list[ChannelView]) -> PeerSection:
        session = caller.session
        lineage = session.lineage
        named = sorted(
            (channel.channel, channel.id) for channel in channels if channel.run_id is None
        )
        # Sorted and cut by the query, one more than the limit: the extra one says it was
        # cut. A roster of hundreds costs the rows it returns, not the hundreds.
        rows = await self.pool.fetch(
            query("peer_sessions"),
            caller.tenant_id,
            session.id,
            lineage.root_session_id,
            session.workspace_id,
            [name for name, _ in named],
            [channel_id for _, channel_id in named],
            CONTEXT_SECTION_LIMIT + 1,
        )
        peers = [
            Peer(
                peer_id=row["agent_name"],
                session_id=row["id"],
                display_name=row["name"],
                channel_id=row["channel_id"],
                capabilities=[f"tool:{tool}" for tool in row["tools"]],
            )
            for row in rows
        ]
        kept, meta = cut(peers)
        return PeerSection(section=meta, peers=kept)


def _identity(caller: Caller) -> Identity:
    session = caller.session
    return Identity(
        agent_name=session.agent_name,
        model=session.model,
        provider=session.provider,
        session_id=session.id,
    )


def _run_summary(task: Task, run: Run, session_id: UUID, channel_id: UUID | None) -> RunSummary:
    return RunSummary(
        id=run.id,
        task_id=run.task_id,
        attempt=run.attempt,
        max_attempts=task.max_attempts,
        status=run.status,
        previous_run_id=run.previous_run_id,
        claimed_by=Actor(kind="agent", ref=run.claimed_by) if run.claimed_by else None,
        claim_token_hash=run.claim_token_hash,
        coordination_channel_id=channel_id,
        session_id=session_id,
        queued_at=run.created_at,
        started_at=run.started_at,
        heartbeat_at=run.heartbeat_at,
        lease_until=run.lease_until,
        ended_at=run.finished_at,
        failure_kind=run.failure_kind,
        error=run.error,
    )


def _event(task: Task, event: TraceEvent, agents: set[str]) -> TaskEvent:
    if event.actor == task.created_by:
        kind = "human"
    elif event.actor.startswith("session:") or event.actor in agents:
        kind = "agent"
    else:
        kind = "system"
    return TaskEvent(
        event_id=f"{event.task_id}:{event.seq}",
        event_type=event.kind,
        sequence=event.seq,
        timestamp=event.created_at,
        actor=Actor(kind=kind, ref=event.actor),
        message=event.message,
        payload=event.data,
    )


def _preview(body: Any) -> str:
    """A body on one line, cut to PREVIEW_MAX_CHARS (after redaction: it was stored so)."""
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    return " ".join(text.split())[:PREVIEW_MAX_CHARS]
