"""The agent runtime's SDK tools: what a worker-run agent does about itself and its
helpers, through the same ledger code as the `/api/agent/*` routes
(`ledger/agent_runtime.py`), as its session: each call presents the session's
credential (from the claim), never the worker's claim token, so it works only while the
run's lease holds.

| tool             | level     | does                                                    |
|------------------|-----------|---------------------------------------------------------|
| `channel_send`   | propose   | a message on a channel (`POST .../send`)                |
| `channel_recv`   | read_only | what the session has not read yet, waiting a bounded    |
|                  |           | time as `GET .../recv` does                            |
| `channel_reply`  | propose   | a reply to a message received (`POST .../reply`)        |
| `agent_context`  | read_only | the context bundle (`GET /api/agent/context`)           |
| `spawn_agent`    | propose   | a child session and its task (`POST /api/agent/spawn`)  |
| `wait_for_child` | read_only | the children's outcomes and final outputs, once settled |

A channel is named by its id, by its name (a channel the workspace declares, or a
run's `coord-run-<run id>`), or as `own` (this run's channel) or `parent` (the channel
of the run that spawned this session): a child answers its parent on the parent's
channel, where the parent's requests are.

Each call first records its verdict (a `tool_verdict` event, a fenced write like every
worker write); the ledger then records what the call did (`channel_message`,
`spawned`, or for a refused spawn `spawn_refused`) in the same transaction as the
change. What the ledger refuses (a kind the channel does not take, a spawn that widens
permissions or overshoots a budget, a lease that ended) is the call's result,
`{"refused": {"code": ..., "message": ..., "details": ...}}`, for the model to read.
Results are redacted. A session's agent is offered these tools only when its lane and
its permissions list them (`worker/session_agent.py`).
"""

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from agents.tool_context import ToolContext
from pydantic import BaseModel, ConfigDict

from ledger.agent_sessions import Caller
from ledger.channels import MAX_RECEIVE, MAX_WAIT_SECONDS, Outgoing
from ledger.errors import BadRequest, LedgerError, NotFound
from ledger.runtime_config import MessageKind
from ledger.runtime_models import ChannelMessage, ChannelView
from ledger.spawns import Child, SpawnOrder
from worker.context import RunContext
from worker.runtime_access import RuntimeAccess
from worker.tools import MAX_READ_CHARS, ToolSpec, verdict

# The longest `wait_for_child` waits in one call; the lane's timeout bounds the run.
MAX_CHILD_WAIT_SECONDS = 300.0


class SpawnPermissions(BaseModel):
    """A child's permissions by kind; a kind left out (null) is the parent's."""

    model_config = ConfigDict(extra="forbid")

    tools: list[str] | None = None
    skills: list[str] | None = None
    mcp_servers: list[str] | None = None
    network_channels: list[str] | None = None
    sandbox_profiles: list[str] | None = None
    workspace_paths: list[str] | None = None


async def channel_send(
    ctx: ToolContext[RunContext],
    body: str,
    channel: str = "own",
    message_kind: MessageKind = "status",
    correlation_id: str = "",
) -> str:
    """Send a message to a coordination channel this session sees.

    Args:
        body: The message.
        channel: A channel id or name, "own" (this run's channel) or "parent" (the
            channel of the run that spawned this session).
        message_kind: One the channel allows: status, request, reply, blocker, handoff,
            result or review_request.
        correlation_id: Ties messages of one exchange together; empty: this run's id.
    """
    await verdict(ctx, "propose", {"channel": channel, "message_kind": message_kind})

    async def send(caller: Caller) -> dict[str, Any]:
        target = await _channel(ctx.context, caller, channel)
        message = Outgoing(body, message_kind, correlation_id=correlation_id or None)
        sent = await _access(ctx.context).runtime.send(caller, target.id, message)
        return {"sent": _message(sent), "channel": target.channel}

    return await _as_session(ctx, send)


async def channel_recv(
    ctx: ToolContext[RunContext],
    channel: str = "own",
    wait_seconds: float = 0.0,
    at_least: int = 1,
    limit: int = 20,
) -> str:
    """Receive the messages on a channel this session has not read yet, in order.

    Args:
        channel: A channel id or name, "own" (this run's channel) or "parent" (the
            channel of the run that spawned this session).
        wait_seconds: How long to wait for messages when fewer than at_least are
            there (at most 30).
        at_least: How many messages to wait for (1 to limit).
        limit: The most messages to return (1 to 100).
    """
    seconds = min(max(wait_seconds, 0.0), MAX_WAIT_SECONDS)
    limit = min(max(limit, 1), MAX_RECEIVE)
    wanted = min(max(at_least, 1), limit)
    await verdict(ctx, "read_only", {"channel": channel, "wait_seconds": seconds})

    async def receive(caller: Caller) -> dict[str, Any]:
        target = await _channel(ctx.context, caller, channel)
        access = _access(ctx.context)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        received: list[ChannelMessage] = []
        while True:  # each wait is the REST recv's long-poll, in the worker's own waits
            left = deadline - loop.time()
            received += await access.runtime.receive_waiting(
                caller, target.id, limit - len(received), max(left, 0.0), access.channel_waits
            )
            if len(received) >= wanted or left <= 0:
                break
        return {"channel": target.channel, "messages": [_message(m) for m in received]}

    return await _as_session(ctx, receive)


async def channel_reply(
    ctx: ToolContext[RunContext],
    body: str,
    reply_to_message_id: str = "",
    message_kind: MessageKind = "reply",
) -> str:
    """Reply to a message this session received: on its channel, to its sender.

    Args:
        body: The reply.
        reply_to_message_id: The message answered; empty: the newest one received.
        message_kind: One the channel allows; reply unless said otherwise.
    """
    await verdict(ctx, "propose", {"reply_to_message_id": reply_to_message_id or "latest"})

    async def reply(caller: Caller) -> dict[str, Any]:
        runtime = _access(ctx.context).runtime
        if reply_to_message_id:
            original = _uuid(reply_to_message_id, "reply_to_message_id")
        else:
            latest = await runtime.latest_received(caller)
            if latest is None:
                raise NotFound("this session has received no message to reply to")
            original = latest.message_id
        sent = await runtime.reply(caller, original, Outgoing(body, message_kind))
        return {"sent": _message(sent)}

    return await _as_session(ctx, reply)


async def agent_context(ctx: ToolContext[RunContext]) -> str:
    """Read this session's context bundle: itself, its session and lineage, its task
    and run, its channel, its unread messages, its peers, capabilities and limits."""
    await verdict(ctx, "read_only", {})

    async def read(caller: Caller) -> dict[str, Any]:
        bundle = await _access(ctx.context).runtime.context(caller)
        return {"context": bundle.model_dump(mode="json")}

    return await _as_session(ctx, read)


async def spawn_agent(
    ctx: ToolContext[RunContext],
    instructions: str,
    title: str = "",
    agent_name: str = "",
    spawn_role: str = "",
    ttl_seconds: int = 0,
    auto_stop_on_parent: bool = True,
    permissions: SpawnPermissions | None = None,
) -> str:
    """Start a helper: a child session with a task of its own, run by a worker, with
    at most this session's permissions and within its spawn budget.

    Args:
        instructions: The helper's task.
        title: A title for its task; empty: one is made.
        agent_name: An agent of this workspace; empty: the workspace's coordinator agent.
        spawn_role: The helper's role (anything but coordinator); empty: none.
        ttl_seconds: How long it may live; 0: the workspace's default.
        auto_stop_on_parent: Whether it stops when this session stops.
        permissions: Its permissions by kind, each a subset of this session's; a kind
            left out is this session's.
    """
    asked = permissions.model_dump(exclude_none=True) if permissions is not None else None
    await verdict(ctx, "propose", {"agent_name": agent_name, "permissions": asked})

    async def spawn(caller: Caller) -> dict[str, Any]:
        if ttl_seconds < 0:  # as POST /api/agent/spawn refuses it
            raise BadRequest("ttl_seconds must be 0 (the default) or more", field="ttl_seconds")
        order = SpawnOrder(
            instructions=instructions,
            title=title or None,
            agent_name=agent_name or None,
            spawn_role=spawn_role or None,
            ttl_seconds=ttl_seconds or None,
            auto_stop_on_parent=auto_stop_on_parent,
            permissions=asked,
        )
        spawned = await _access(ctx.context).runtime.spawn(caller, order)
        lineage = spawned.session.lineage
        return {
            "spawned": {
                "session_id": str(spawned.session.id),
                "task_id": str(spawned.task.id),
                "agent_name": spawned.session.agent_name,
                "task_status": spawned.task.status,
                "spawn_depth": lineage.spawn_depth,
                "ttl_expires_at": lineage.ttl_expires_at,
                "auto_stop_on_parent": lineage.auto_stop_on_parent,
                "permissions": spawned.permissions,
            }
        }

    return await _as_session(ctx, spawn)


async def wait_for_child(
    ctx: ToolContext[RunContext], child: str = "", wait_seconds: float = 120.0
) -> str:
    """Wait until helpers this session spawned have finished (or wait for an operator),
    and read their outcomes and final outputs.

    Args:
        child: A helper's session id or task id; empty: every helper this session spawned.
        wait_seconds: How long to wait at most (up to 300); the helpers still running
            then are returned as they are.
    """
    seconds = min(max(wait_seconds, 0.0), MAX_CHILD_WAIT_SECONDS)
    await verdict(ctx, "read_only", {"child": child or "all", "wait_seconds": seconds})

    async def wait(caller: Caller) -> dict[str, Any]:
        wanted = {_uuid(child, "child")} if child else set()
        access = _access(ctx.context)
        children = await access.runtime.children_settled(caller, wanted, seconds, access.trace_feed)
        if wanted and not children:
            raise NotFound("no helper of this session has that id", child=child)
        return {
            "settled": all(each.settled for each in children),
            "children": [await _child(ctx.context, each) for each in children],
        }

    return await _as_session(ctx, wait)


RUNTIME_TOOLS: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in (
        ToolSpec("channel_send", "propose", channel_send),
        ToolSpec("channel_recv", "read_only", channel_recv),
        ToolSpec("channel_reply", "propose", channel_reply),
        ToolSpec("agent_context", "read_only", agent_context),
        ToolSpec("spawn_agent", "propose", spawn_agent),
        ToolSpec("wait_for_child", "read_only", wait_for_child),
    )
}


def _access(run: RunContext) -> RuntimeAccess:
    assert run.agent_runtime is not None, "the runtime's tools come only with the runtime"
    return run.agent_runtime


async def _as_session(
    ctx: ToolContext[RunContext], act: Callable[[Caller], Awaitable[dict[str, Any]]]
) -> str:
    """`act` as the run's session; a refusal by the ledger is the result. Redacted."""
    run = ctx.context
    try:
        caller = await _access(run).runtime.authenticate(run.claim.grant.credential)
        result = await act(caller)
    except LedgerError as refused:
        result = {
            "refused": {
                "code": refused.code,
                "message": refused.message,
                "details": refused.details,
            }
        }
    return json.dumps(run.leases.redactor.value(result), default=_jsonable)


async def _channel(run: RunContext, caller: Caller, ref: str) -> ChannelView:
    """The channel `ref` names among those the session sees (see the module's text)."""
    channels = await _access(run).runtime.channels(caller)
    if ref in ("", "own"):
        found = [c for c in channels if c.run_id == caller.session.run_id]
    elif ref == "parent":
        spawn = run.task.scope.get("spawn") or {}
        parent_task = spawn.get("parent_task_id")
        if parent_task is None:
            raise NotFound("this session was not spawned: it has no parent channel")
        # The parent's newest run's (channels come in the order they were made).
        found = [c for c in channels if str(c.task_id) == parent_task][-1:]
    else:
        found = [c for c in channels if ref in (str(c.id), c.channel)]
    if not found:
        raise NotFound(
            f"no channel {ref!r} this session sees",
            channel=ref,
            seen=[c.channel for c in channels],
        )
    return found[0]


def _message(message: ChannelMessage) -> dict[str, Any]:
    return {
        "message_id": str(message.message_id),
        "seq": message.seq,
        "from_session_id": str(message.from_session_id),
        "message_kind": message.metadata.message_kind,
        "correlation_id": message.metadata.correlation_id,
        "reply_to_message_id": str(message.reply_to_message_id)
        if message.reply_to_message_id
        else None,
        "body": message.body,
    }


async def _child(run: RunContext, child: Child) -> dict[str, Any]:
    output = None
    if child.output_ref is not None:
        content = await asyncio.to_thread(run.store.get, child.output_ref)
        output = content.decode("utf-8", errors="replace")[:MAX_READ_CHARS]
    return {
        "session_id": str(child.session_id),
        "task_id": str(child.task_id),
        "agent_name": child.agent_name,
        "task_status": child.task_status,
        "session_state": child.session_state,
        "stop_reason": child.stop_reason,
        "terminal_reason": child.terminal_reason,
        "output": output,
    }


def _jsonable(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _uuid(value: str, field: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise BadRequest(f"{field} {value!r} is not an id", field=field) from None
