"""`/api/agent/channels`: the calling session's coordination channels.

The caller is the session its credential names (`Authorization: Bearer wbs_...`, from
the claim): these routes answer about it and for it only, while its lease holds (401
`session_lease_ended` after). A channel it does not see, another tenant's included, is
404. See `ledger/channels.py` for which channels a session sees and how reading works.
"""

import asyncio
from collections.abc import Awaitable
from typing import TypeVar
from uuid import UUID

from starlette.requests import Request

from api.endpoints import AGENT, Call, Endpoint, endpoint
from api.runtime_schemas import (
    ChannelRecvQuery,
    ChannelReplyRequest,
    ChannelSendRequest,
    ChannelsResponse,
    MessageMetadataRequest,
    MessageResponse,
    MessagesResponse,
)
from ledger.agent_runtime import AgentRuntime
from ledger.channels import MAX_WAIT_SECONDS, Outgoing
from ledger.runtime_models import ChannelMessage

CHANNELS = "/api/agent/channels"
ONE_CHANNEL = CHANNELS + "/{channel:uuid}"
# A channel route's statuses: bad input, no or an ended credential, a kind the channel
# refuses, not found, metadata naming another channel, run or task.
AGENT_STATUSES = (200, 400, 401, 403, 404, 409)
T = TypeVar("T")
CREDENTIAL = (
    "Authenticated by the session credential the claim returned (Authorization: Bearer wbs_...)."
)


def runtime(call: Call) -> AgentRuntime:
    runtime: AgentRuntime = call.request.app.state.runtime
    return runtime


def _outgoing(body: object, metadata: MessageMetadataRequest) -> Outgoing:
    return Outgoing(
        body=body,
        message_kind=metadata.message_kind,
        correlation_id=metadata.correlation_id,
        coordination_channel_id=metadata.coordination_channel_id,
        run_id=metadata.run_id,
        task_id=metadata.task_id,
        workflow_id=metadata.workflow_id,
        ext=metadata.ext,
    )


async def _disconnected(request: Request) -> None:
    """Returns once the client has gone. The server only says so (`http.disconnect`):
    it never cancels the request's handler itself."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _while_connected(request: Request, work: Awaitable[T]) -> T | None:
    """What `work` returns, or None when the client goes first: `work` is cancelled
    then, and awaited, so a receive has given back what it took before this returns."""
    working = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait((working, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not working.done():
            working.cancel()
            await asyncio.wait((working,))
    return None if working.cancelled() else working.result()


def _channel_id(call: Call) -> UUID:
    channel: UUID = call.request.path_params["channel"]
    return channel


@endpoint(
    "GET",
    CHANNELS,
    summary="The coordination channels the calling session sees: its run's channel (one "
    "per task run, made at the claim), the run channels of its session tree, and the "
    "named channels its workspace declares that its permissions list; each with its "
    "allowed message kinds, purpose, last activity, and the session's own read "
    "position and unread count. " + CREDENTIAL,
    role=AGENT,
    response=ChannelsResponse,
    statuses=(200, 401),
    tag="agent-runtime",
)
async def list_channels(call: Call) -> tuple[int, ChannelsResponse]:
    return 200, ChannelsResponse(channels=await runtime(call).channels(call.session))


@endpoint(
    "POST",
    ONE_CHANNEL + "/send",
    summary="Sends a message to a channel the session sees. The message kind must be one "
    "the channel allows (else 403 message_kind_not_allowed); metadata left out is the "
    "sender's own run and task, and given must be (else 409 metadata_mismatch). The "
    "body and metadata are stored with secrets and claim tokens redacted, at most 64 KiB. "
    + CREDENTIAL,
    role=AGENT,
    response=MessageResponse,
    statuses=AGENT_STATUSES,
    body=ChannelSendRequest,
    tag="agent-runtime",
)
async def send_message(call: Call[ChannelSendRequest, None]) -> tuple[int, MessageResponse]:
    message = _outgoing(call.body.body, call.body.metadata)
    sent = await runtime(call).send(call.session, _channel_id(call), message)
    return 200, MessageResponse(message=sent)


@endpoint(
    "GET",
    ONE_CHANNEL + "/recv",
    summary="What the session has not read on the channel yet (from others, to everyone or "
    "to it), in order, up to `limit` (1-100); its read position moves past them. With "
    f"wait=true and nothing unread, waits up to wait_seconds (at most {MAX_WAIT_SECONDS:g} "
    "s) for the next message, sent through any API replica or worker; an empty list "
    "when none came. A client that goes away while it waits loses nothing: what had "
    "come for it stays unread. " + CREDENTIAL,
    role=AGENT,
    response=MessagesResponse,
    statuses=(200, 400, 401, 404),
    query=ChannelRecvQuery,
    tag="agent-runtime",
)
async def receive_messages(call: Call[None, ChannelRecvQuery]) -> tuple[int, MessagesResponse]:
    agents, channel, limit = runtime(call), _channel_id(call), call.query.limit
    if call.query.wait:
        seconds = min(call.query.wait_seconds, call.request.app.state.settings.recv_wait_seconds)
        waits = call.request.app.state.channel_waits
        waiting = agents.receive_waiting(call.session, channel, limit, seconds, waits)
        # No one reads the answer to a client that has gone: it gets nothing.
        messages: list[ChannelMessage] = await _while_connected(call.request, waiting) or []
    else:
        messages = await agents.receive(call.session, channel, limit)
    return 200, MessagesResponse(messages=messages)


@endpoint(
    "POST",
    CHANNELS + "/reply",
    summary="Replies to a message the session received: on its channel, to its sender, with "
    "its correlation_id unless the reply names one; message_kind defaults to reply. " + CREDENTIAL,
    role=AGENT,
    response=MessageResponse,
    statuses=AGENT_STATUSES,
    body=ChannelReplyRequest,
    tag="agent-runtime",
)
async def reply_message(call: Call[ChannelReplyRequest, None]) -> tuple[int, MessageResponse]:
    sent = await runtime(call).reply(
        call.session, call.body.reply_to_message_id, _outgoing(call.body.body, call.body.metadata)
    )
    return 200, MessageResponse(message=sent)


ENDPOINTS: list[Endpoint] = [list_channels, send_message, receive_messages, reply_message]
