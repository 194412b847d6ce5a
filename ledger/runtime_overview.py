"""What the operator console reads of the agent runtime: the tenant's agent sessions
(a page at a time, by state), one session with its lineage as a tree, the budget it
has used, its leases and its channels; the coordination channels and their messages;
the refused spawns. Read-only, scoped to the tenant, each a named query of
`queries/console_runtime.sql` (or the runtime's own, where the console must show
exactly what the runtime decides with: the channels a session sees, the live spawned
sessions a spawn counts).

Sessions, channels and refusals are read in the same shapes the agent routes return
(`ledger/runtime_models.py`), states computed by the same rule (`session_state`).
Message bodies are shown as stored: redacted before they were written.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, get_args
from uuid import UUID

from ledger.agent_sessions import channel_record, session_record, session_state
from ledger.channels import message_record
from ledger.errors import BadRequest, NotFound
from ledger.models import Task
from ledger.reads import Reads, decode_cursor, encode_cursor
from ledger.runtime_models import (
    AgentSession,
    Channel,
    ChannelMessage,
    ChannelView,
    SessionState,
)
from ledger.sql import query
from ledger.states import TERMINAL

SESSION_STATES: tuple[str, ...] = get_args(SessionState)
# A page filtered by state reads the sessions this many at a time, at most STATE_SCAN.
STATE_BATCH = 500
STATE_SCAN = 5_000
# The most sessions of one tree the lineage shows.
TREE_LIMIT = 500
# The newest messages a channel's page shows.
MESSAGE_LIMIT = 200
# Refused spawns: the sessions whose traces are read, and the most shown.
REFUSAL_SESSIONS = 2_000
REFUSAL_LIMIT = 200
_FINISHED = [str(status) for status in TERMINAL]


@dataclass(frozen=True)
class SessionSummary:
    """A session as the list shows it: with its task, its parent's name and when it
    last did something."""

    session: AgentSession
    task: Task
    parent_name: str | None
    last_activity_at: datetime | None


@dataclass(frozen=True)
class SessionPage:
    sessions: list[SessionSummary]
    next_cursor: str | None


@dataclass
class TreeNode:
    id: UUID
    name: str
    state: SessionState
    spawn_role: str | None
    task_id: UUID
    children: list["TreeNode"] = field(default_factory=list)


@dataclass(frozen=True)
class BudgetUse:
    """What a new spawn of the session would be counted against: its live children
    (`max_children`) and its tree's live spawned sessions in its workspace
    (`max_active_per_workspace`)."""

    children: int
    in_tree: int


@dataclass(frozen=True)
class SessionDetail:
    summary: SessionSummary
    root: TreeNode | None
    tree_truncated: bool
    root_name: str | None
    budget_use: BudgetUse
    channels: list[ChannelView]


@dataclass(frozen=True)
class ChannelInfo:
    """A channel with its message count and, for a run's, its run, task and session."""

    channel: Channel
    message_count: int
    run_attempt: int | None = None
    task_title: str | None = None
    session_id: UUID | None = None
    session_name: str | None = None


@dataclass(frozen=True)
class ChannelPage:
    workspace: list[ChannelInfo]
    runs: list[ChannelInfo]
    next_cursor: str | None


@dataclass(frozen=True)
class MessageView:
    message: ChannelMessage
    from_name: str | None
    to_name: str | None
    reply_to_seq: int | None


@dataclass(frozen=True)
class SpawnRefusal:
    """A refused spawn as the parent's trace records it."""

    task_id: UUID
    seq: int
    task_title: str
    session_id: UUID
    session_name: str
    code: str
    message: str
    asked: dict[str, Any]
    details: dict[str, Any]
    created_at: datetime


def _summary(row: Mapping[str, Any]) -> SessionSummary:
    task = Task.model_validate(dict(row))
    return SessionSummary(
        session=session_record(row["session"], held=row["held"], task_status=task.status),
        task=task,
        parent_name=row["parent_name"],
        last_activity_at=row["last_activity_at"],
    )


def _tree(rows: list[Mapping[str, Any]], root_id: UUID) -> TreeNode | None:
    """The tree from rows shallowest first: every parent comes before its children."""
    nodes: dict[UUID, TreeNode] = {}
    for row in rows:
        node = TreeNode(
            id=row["id"],
            name=row["name"],
            state=session_state(row["state"], row["held"], row["task_status"]),
            spawn_role=row["spawn_role"],
            task_id=row["task_id"],
        )
        nodes[node.id] = node
        parent = nodes.get(row["parent_session_id"])
        if parent is not None:
            parent.children.append(node)
    return nodes.get(root_id)


def _channel_info(row: Mapping[str, Any], channel: Mapping[str, Any]) -> ChannelInfo:
    return ChannelInfo(
        channel=channel_record(channel),
        message_count=channel["message_count"],
        run_attempt=row.get("run_attempt"),
        task_title=row.get("task_title"),
        session_id=row.get("session_id"),
        session_name=row.get("session_name"),
    )


class RuntimeOverview(Reads):
    async def agent_sessions(
        self, tenant_id: str, *, state: str | None, limit: int, cursor: str | None
    ) -> SessionPage:
        """The tenant's sessions, newest task first, in `state` when given. A state is
        read, not stored (`session_state`), so a filtered page reads the sessions in
        batches and keeps those in it, at most `STATE_SCAN` per page: a page cut there
        is short, and its next page goes on from the last session read."""
        if state is not None and state not in SESSION_STATES:
            raise BadRequest(
                f"state must be one of {', '.join(SESSION_STATES)}",
                field="state",
                allowed=list(SESSION_STATES),
            )
        after_created, after_id = decode_cursor(cursor) if cursor else (None, None)
        batch = limit + 1 if state is None else STATE_BATCH
        kept: list[SessionSummary] = []
        read = 0
        while True:
            rows = await self.pool.fetch(
                query("console_agent_sessions"), tenant_id, after_created, after_id, batch
            )
            for row in rows:
                summary = _summary(row)
                read += 1
                if state is None or summary.session.state == state:
                    kept.append(summary)
                if len(kept) > limit:
                    return SessionPage(kept[:limit], encode_cursor(kept[limit - 1].task))
            if len(rows) < batch:
                return SessionPage(kept, None)
            last = _summary(rows[-1]).task
            if read >= STATE_SCAN:
                return SessionPage(kept, encode_cursor(last))
            after_created, after_id = last.created_at, last.id

    async def agent_session(self, tenant_id: str, session_id: UUID) -> SessionDetail:
        row = await self.pool.fetchrow(query("console_agent_session"), session_id, tenant_id)
        if row is None:
            raise NotFound("session not found", session_id=str(session_id))
        summary = _summary(row)
        session = summary.session
        root_id = session.lineage.root_session_id
        tree_rows = await self.pool.fetch(
            query("console_session_tree"), root_id, tenant_id, TREE_LIMIT
        )
        counts = await self.pool.fetchrow(
            query("live_spawned_counts"), root_id, session.workspace_id, session.id, _FINISHED
        )
        channels = await self.pool.fetch(
            query("visible_channels"),
            session.id,
            tenant_id,
            root_id,
            session.workspace_id,
            session.lineage.permission_policy.network_channels,
        )
        root = _tree(tree_rows, root_id)
        return SessionDetail(
            summary=summary,
            root=root,
            tree_truncated=len(tree_rows) == TREE_LIMIT,
            root_name=root.name if root else None,
            budget_use=BudgetUse(children=counts["children"], in_tree=counts["in_tree"]),
            channels=[
                ChannelView(
                    **channel_record(channel).model_dump(),
                    message_count=channel["message_count"],
                    read_seq=channel["read_seq"],
                    unread_count=channel["unread_count"],
                )
                for channel in channels
            ],
        )

    async def task_session(self, tenant_id: str, task_id: UUID) -> tuple[UUID, str] | None:
        """The id and name of the task's session (None: never claimed)."""
        row = await self.pool.fetchrow(query("console_task_session"), tenant_id, task_id)
        return (row["id"], row["name"]) if row else None

    async def coordination_channels(
        self, tenant_id: str, *, limit: int, cursor: str | None
    ) -> ChannelPage:
        """The workspaces' named channels made in the tenant (on the first page), and the
        run channels of the newest `limit` tasks with a session."""
        after_created, after_id = decode_cursor(cursor) if cursor else (None, None)
        declared = [
            (workspace, channel.name)
            for workspace, lane in self.policy.lanes.items()
            for channel in lane.channels
        ]
        workspace = []
        if cursor is None and declared:
            rows = await self.pool.fetch(
                query("console_workspace_channels"),
                tenant_id,
                [lane for lane, _ in declared],
                [name for _, name in declared],
            )
            workspace = [_channel_info(row, row) for row in rows]
        rows = await self.pool.fetch(
            query("console_run_channels"), tenant_id, after_created, after_id, limit + 1
        )
        by_task: dict[UUID, list[Any]] = {}
        for row in rows:
            by_task.setdefault(row["id"], []).append(row)
        page = list(by_task.values())[:limit]
        runs = [_channel_info(row, row["channel"]) for task_rows in page for row in task_rows]
        more = len(by_task) > limit
        next_cursor = encode_cursor(Task.model_validate(dict(page[-1][0]))) if more else None
        return ChannelPage(workspace, runs, next_cursor)

    async def coordination_channel(self, tenant_id: str, channel_id: UUID) -> ChannelInfo:
        row = await self.pool.fetchrow(query("console_channel"), channel_id, tenant_id)
        if row is None:
            raise NotFound("channel not found", channel_id=str(channel_id))
        return _channel_info(row, row)

    async def channel_messages(
        self, tenant_id: str, channel_id: UUID, *, after_seq: int = 0, limit: int = MESSAGE_LIMIT
    ) -> list[MessageView]:
        """The channel's newest `limit` messages after `after_seq`, oldest first."""
        rows = await self.pool.fetch(
            query("console_channel_messages"), channel_id, tenant_id, after_seq, limit
        )
        return [
            MessageView(
                message=message_record(row),
                from_name=row["from_name"],
                to_name=row["to_name"],
                reply_to_seq=row["reply_to_seq"],
            )
            for row in rows
        ]

    async def spawn_refusals(self, tenant_id: str) -> list[SpawnRefusal]:
        """The refused spawns of the tenant's newest `REFUSAL_SESSIONS` sessions."""
        rows = await self.pool.fetch(
            query("console_spawn_refusals"), tenant_id, REFUSAL_SESSIONS, REFUSAL_LIMIT
        )
        refusals = []
        for row in rows:
            details = dict(row["data"])
            code = str(details.pop("code", "spawn_refused"))
            refusals.append(
                SpawnRefusal(
                    task_id=row["task_id"],
                    seq=row["seq"],
                    task_title=row["task_title"],
                    session_id=row["session_id"],
                    session_name=row["session_name"],
                    code=code,
                    message=row["message"],
                    asked=details.pop("asked", None) or {},
                    details=details,
                    created_at=row["created_at"],
                )
            )
        return refusals
