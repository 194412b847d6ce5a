"""Coordination channels: where a run's agent, its helpers and its peers talk.

Which channels a session sees: the run channels of its session tree (every run of its
task, and of the tasks spawned from the same root), and the named channels its
workspace declares that its permission policy lists (`network_channels`). Any other
channel, another tenant's included, is not found.

A message is stored with its body and metadata redacted (a secret or a claim token
sent never reaches the ledger), numbered in its channel, and recorded as a
`channel_message` event in the sender's trace. Each session keeps its own read
position per channel: `receive` returns what it has not read yet (from others, to
everyone or to it), in order, and moves the position past it. A channel message never
changes a task or run: ownership stays with the fenced worker protocol.
"""

import asyncio
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from ledger.agent_sessions import Caller, channel_record, message_record
from ledger.channel_waits import ChannelWaits, Move, move_read_positions
from ledger.errors import BadRequest, Conflict, NotFound, PolicyError
from ledger.policy import PolicyConfig
from ledger.redaction import Redactor
from ledger.runtime_config import MessageKind
from ledger.runtime_models import (
    Channel,
    ChannelMessage,
    ChannelView,
)
from ledger.sql import query
from ledger.traces import append_trace

# A message's body and ext together, as JSON, at most.
MAX_MESSAGE_BYTES = 64 * 1024
# The longest a long-polling receive waits for a message (`wait=true`).
MAX_WAIT_SECONDS = 30.0
MAX_RECEIVE = 100


class MessageKindRefused(PolicyError):
    """The channel does not take messages of this kind (403)."""

    code = "message_kind_not_allowed"


class MetadataMismatch(Conflict):
    """The metadata names another channel, run or task than the message's own (409)."""

    code = "metadata_mismatch"


@dataclass(frozen=True)
class Outgoing:
    """A message as an agent sends it; the metadata left out is the sender's own."""

    body: Any
    message_kind: MessageKind
    correlation_id: str | None = None
    coordination_channel_id: UUID | None = None
    run_id: UUID | None = None
    task_id: UUID | None = None
    workflow_id: str | None = None
    ext: dict[str, Any] = field(default_factory=dict)


class Channels:
    pool: asyncpg.Pool
    policy: PolicyConfig
    redactor: Redactor
    # (tenant, workspace) pairs whose named channels this process has made sure of:
    # channels are never deleted, so once is enough.
    _ensured: set[tuple[str, str]]

    async def channels(self, caller: Caller) -> list[ChannelView]:
        """The channels the session sees, with its read position and unread count."""
        session = caller.session
        await self._ensure_named(caller.tenant_id, session.workspace_id)
        rows = await self.pool.fetch(
            query("visible_channels"),
            session.id,
            caller.tenant_id,
            session.lineage.root_session_id,
            session.workspace_id,
            session.lineage.permission_policy.network_channels,
        )
        return [
            ChannelView(
                **channel_record(row).model_dump(),
                message_count=row["message_count"],
                read_seq=row["read_seq"],
                unread_count=row["unread_count"],
            )
            for row in rows
        ]

    async def channel(self, caller: Caller, channel_id: UUID) -> Channel:
        return channel_record(await self._visible(self.pool, caller, channel_id))

    async def send(self, caller: Caller, channel_id: UUID, message: Outgoing) -> ChannelMessage:
        async with self.pool.acquire() as connection, connection.transaction():
            channel = await self._visible(connection, caller, channel_id)
            return await self._append(connection, caller, channel, message, None, None)

    async def reply(
        self, caller: Caller, reply_to_message_id: UUID, message: Outgoing
    ) -> ChannelMessage:
        """A reply on the replied-to message's channel, to its sender, with its
        correlation unless the reply names its own."""
        async with self.pool.acquire() as connection, connection.transaction():
            original = await connection.fetchrow(
                query("get_channel_message"), reply_to_message_id, caller.tenant_id
            )
            visible = original is not None and (
                original["to_session_id"] in (None, caller.session_id)
                or original["from_session_id"] == caller.session_id
            )
            if not visible:
                raise NotFound("message not found", message_id=str(reply_to_message_id))
            channel = await self._visible(connection, caller, original["channel_id"])
            if message.correlation_id is None:
                message = dataclasses.replace(message, correlation_id=original["correlation_id"])
            # To the sender; a session answering its own message answers its audience.
            to = original["from_session_id"]
            if to == caller.session_id:
                to = original["to_session_id"]
            return await self._append(connection, caller, channel, message, to, original["id"])

    async def receive(self, caller: Caller, channel_id: UUID, limit: int) -> list[ChannelMessage]:
        """What the session has not read on the channel yet, up to `limit`, in order;
        its read position moves past what is returned."""
        messages, _ = await self._take(caller, channel_id, limit)
        return messages

    async def latest_received(self, caller: Caller) -> ChannelMessage | None:
        """The newest message the session has received on any channel (None: none
        yet): what a reply that names no message answers."""
        row = await self.pool.fetchrow(
            query("latest_received_message"), caller.session_id, caller.tenant_id
        )
        return None if row is None else message_record(row)

    async def receive_waiting(
        self, caller: Caller, channel_id: UUID, limit: int, seconds: float, waits: ChannelWaits
    ) -> list[ChannelMessage]:
        """`receive`, waiting up to `seconds` for a message when there is none yet: the
        process's reader of the channel hands it over (`ledger/channel_waits.py`). The
        wake-up is Postgres' NOTIFY, so a message sent through any API replica or worker
        wakes it. Followed before each read: a message between the read and the wait
        wakes it."""
        await waits.feed.ensure()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        with waits.following(channel_id) as grew:
            while True:
                grew.clear()
                messages, (read_seq, scanned_to) = await self._take(caller, channel_id, limit)
                left = deadline - loop.time()
                if messages or left <= 0:
                    return messages
                handed = await waits.wait(
                    channel_id, caller.session_id, read_seq, scanned_to, limit, left, grew
                )
                if handed is not None:
                    return handed

    async def _take(
        self, caller: Caller, channel_id: UUID, limit: int
    ) -> tuple[list[ChannelMessage], tuple[int, int]]:
        """What `receive` returns, and where the session's read position stands and how
        far the read looked (both its seq) when it returns nothing. A read with no
        write; when it finds messages, the position moves past them only if it is
        still where the read found it, else it reads again: two receives of one
        session never return the same message."""
        while True:
            rows = await self.pool.fetch(
                query("unread_for_session"), caller.session_id, channel_id, caller.tenant_id, limit
            )
            channel = rows[0] if rows else None
            if channel is None or not _sees(caller, channel, channel["channel_run_id"]):
                raise NotFound("channel not found", channel_id=str(channel_id))
            read_seq = channel["read_seq"]
            if channel["seq"] is None:
                return [], (read_seq, channel["message_count"])
            move = Move(caller.session_id, read_seq, rows[-1]["seq"])
            if await move_read_positions(self.pool, channel_id, [move]):
                return [message_record(row) for row in rows], (read_seq, read_seq)

    async def _ensure_named(self, tenant_id: str, workspace: str) -> None:
        if (tenant_id, workspace) in self._ensured:
            return
        declared = self.policy.lanes[workspace].channels
        if declared:
            await self.pool.execute(
                query("ensure_workspace_channels"),
                tenant_id,
                workspace,
                [channel.name for channel in declared],
                [uuid4() for _ in declared],
                [channel.display_name or channel.name for channel in declared],
                [channel.purpose for channel in declared],
                [",".join(channel.allowed_message_kinds) for channel in declared],
            )
        self._ensured.add((tenant_id, workspace))

    @staticmethod
    async def _visible(
        connection: asyncpg.Connection | asyncpg.Pool, caller: Caller, channel_id: UUID
    ) -> asyncpg.Record:
        row = await connection.fetchrow(query("get_channel"), channel_id, caller.tenant_id)
        if row is None or not _sees(caller, row, row["run_id"]):
            raise NotFound("channel not found", channel_id=str(channel_id))
        return row

    async def _append(
        self,
        connection: asyncpg.Connection,
        caller: Caller,
        channel: asyncpg.Record,
        message: Outgoing,
        to_session_id: UUID | None,
        reply_to: UUID | None,
    ) -> ChannelMessage:
        session = caller.session
        _check(message, channel, caller)
        row = await connection.fetchrow(
            query("append_channel_message"),
            channel["id"],
            uuid4(),
            caller.tenant_id,
            session.id,
            to_session_id,
            reply_to,
            message.message_kind,
            self.redactor.text(message.correlation_id or str(session.run_id)),
            message.run_id or session.run_id,
            message.task_id or session.task_id,
            self.redactor.text(message.workflow_id) if message.workflow_id else None,
            self.redactor.value(message.ext),
            self.redactor.value(message.body),
        )
        sent = message_record(row)
        await append_trace(
            connection,
            self.redactor,
            session.task_id,
            "channel_message",
            actor=f"session:{session.id}",
            run_id=session.run_id,
            message=f"{message.message_kind} message {sent.seq} on {channel['name']}",
            data={
                "channel_id": str(sent.channel_id),
                "message_id": str(sent.message_id),
                "seq": sent.seq,
                "message_kind": message.message_kind,
                "to_session_id": str(to_session_id) if to_session_id else None,
                "reply_to_message_id": str(reply_to) if reply_to else None,
            },
        )
        return sent


def _sees(caller: Caller, channel: asyncpg.Record, run_id: UUID | None) -> bool:
    """Whether the session sees the channel (see the module's text); `run_id` is the
    channel's, None for a named channel."""
    lineage = caller.session.lineage
    return channel["root_session_id"] == lineage.root_session_id or (
        run_id is None
        and channel["workspace"] == caller.session.workspace_id
        and channel["name"] in lineage.permission_policy.network_channels
    )


def _check(message: Outgoing, channel: asyncpg.Record, caller: Caller) -> None:
    """Refuses a message the channel does not take, and metadata that names another
    channel, run or task than the sender's own."""
    if message.message_kind not in channel["allowed_message_kinds"]:
        raise MessageKindRefused(
            f"channel {channel['name']} does not take {message.message_kind} messages",
            field="metadata.message_kind",
            allowed=list(channel["allowed_message_kinds"]),
        )
    session = caller.session
    for name, given, own in (
        ("coordination_channel_id", message.coordination_channel_id, channel["id"]),
        ("run_id", message.run_id, session.run_id),
        ("task_id", message.task_id, session.task_id),
    ):
        if given is not None and given != own:
            raise MetadataMismatch(
                f"metadata.{name} is not this message's {name.removesuffix('_id')}",
                field=f"metadata.{name}",
            )
    size = len(json.dumps([message.body, message.ext], default=str).encode())
    if size > MAX_MESSAGE_BYTES:
        raise BadRequest(
            f"the message is {size} bytes; at most {MAX_MESSAGE_BYTES} are taken",
            field="body",
            max_bytes=MAX_MESSAGE_BYTES,
        )
