"""Azure Service Bus lanes: one queue per lane, through the real `azure-servicebus` SDK.

Credentials: `SERVICEBUS_CONNECTION_STRING`, or `SERVICEBUS_NAMESPACE`
(`<name>.servicebus.windows.net`) with `DefaultAzureCredential`, which picks up AKS
workload identity. The message id is the run id, so the queue's duplicate detection
drops a second copy of the same hint; application properties carry task_id, run_id,
attempt and lane.

The queue's own settings govern lock duration, max delivery count and duplicate
detection; the transport's `lock_seconds` and `max_delivery_count` only configure the
Postgres lane. Create the queues with duplicate detection on and a lock duration of
10 s: a worker holds a hint only from receive to claim, and one killed in between
leaves it locked for the lock duration (the README's Reliability section measures it).

A received message whose properties are not a hint is dead-lettered as
`MalformedMessage` with the error, and the rest of the batch is delivered.

`Received.delivery_count` counts deliveries so far including this one (1 on the first),
as the Postgres lane does. Service Bus puts "delivery count - 1" in the AMQP header and
leaves the + 1 to the SDK; the Python SDK passes the header through (0 on the first
delivery), so this lane adds the one.
"""

import asyncio
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage, ServiceBusReceiveMode
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver, ServiceBusSender
from azure.servicebus.exceptions import (
    MessageAlreadySettled,
    MessageLockLostError,
    SessionLockLostError,
)

from lanes.base import LaneMessage, LockLost, Received
from metrics import DEAD_LETTERS

log = structlog.get_logger(__name__)

# The SDK refuses a zero wait, and even "look now" needs a round trip to the broker.
MIN_RECEIVE_WAIT = 0.1
# Settlements queue behind a receive in progress (one operation at a time on the
# receiver, see below), so a long wait is cut into slices: a settlement waits at most one.
RECEIVE_SLICE = 0.25
# The dead-letter reason of a message whose properties are not a hint (the Postgres
# lane's word for it too).
MALFORMED = "MalformedMessage"


def client_from_env() -> ServiceBusClient:
    connection_string = os.environ.get("SERVICEBUS_CONNECTION_STRING")
    if connection_string:
        return ServiceBusClient.from_connection_string(connection_string)
    namespace = os.environ.get("SERVICEBUS_NAMESPACE")
    if not namespace:
        raise LookupError(
            "a servicebus lane needs SERVICEBUS_CONNECTION_STRING or SERVICEBUS_NAMESPACE"
        )
    from azure.identity.aio import DefaultAzureCredential

    return ServiceBusClient(namespace, DefaultAzureCredential())


@dataclass(frozen=True)
class _Delivery:
    """`Received.handle`: the message and the receiver (link) that holds its lock."""

    receiver: ServiceBusReceiver
    message: ServiceBusReceivedMessage


class ServiceBusLane:
    def __init__(self, client: ServiceBusClient, name: str, queue: str | None = None) -> None:
        self.client = client
        self.name = name
        self.queue = queue or name
        self._sender: ServiceBusSender | None = None
        self._receiver: ServiceBusReceiver | None = None
        # The SDK's AMQP links are not safe for concurrent operations (concurrent lock
        # renewals on one receiver broke AMQP sequencing): one operation at a time.
        self._receiver_lock = asyncio.Lock()
        self._sender_lock = asyncio.Lock()

    async def send_batch(self, messages: list[LaneMessage]) -> None:
        if not messages:
            return
        async with self._sender_lock:
            if self._sender is None:
                self._sender = self.client.get_queue_sender(self.queue)
            batch = await self._sender.create_message_batch()
            for message in messages:
                outgoing = ServiceBusMessage(
                    body=b"",
                    message_id=message.message_id,
                    application_properties=message.properties(),  # type: ignore[arg-type]
                )
                try:
                    batch.add_message(outgoing)
                except ValueError:  # the batch is full: send it and start another
                    await self._sender.send_messages(batch)
                    batch = await self._sender.create_message_batch()
                    batch.add_message(outgoing)
            await self._sender.send_messages(batch)

    async def _open_receiver(self) -> ServiceBusReceiver:
        if self._receiver is None:
            self._receiver = self.client.get_queue_receiver(
                self.queue, receive_mode=ServiceBusReceiveMode.PEEK_LOCK, prefetch_count=0
            )
        # Entering the receiver opens its link (again, after a connection error) under
        # the SDK's own retry budget, and does nothing while it is open. Left to
        # receive_messages, the open must fit in max_wait_time: shorter waits than a
        # link open (connect, authenticate, attach) fail with OperationTimeoutError on
        # every call, and the lane never receives anything.
        await self._receiver.__aenter__()
        return self._receiver

    async def receive(self, max_messages: int, max_wait: float) -> list[Received]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait
        while True:
            async with self._receiver_lock:
                receiver = await self._open_receiver()
                wait = min(max(deadline - loop.time(), MIN_RECEIVE_WAIT), RECEIVE_SLICE)
                messages = await receiver.receive_messages(
                    max_message_count=max_messages, max_wait_time=wait
                )
            if messages or loop.time() >= deadline:
                break
        received = []
        for message in messages:
            delivery = _Delivery(receiver, message)
            try:
                hint = LaneMessage.from_properties(
                    str(message.message_id), _decoded(message.application_properties or {})
                )
            except (KeyError, TypeError, ValueError) as error:
                # One message no worker can read must not cost the others their delivery.
                await self._bury(delivery, f"{type(error).__name__}: {error}")
                continue
            received.append(
                Received(
                    message=hint,
                    delivery_count=(message.delivery_count or 0) + 1,
                    locked_until=message.locked_until_utc or datetime.min.replace(tzinfo=UTC),
                    handle=delivery,
                )
            )
        return received

    async def _bury(self, delivery: _Delivery, description: str) -> None:
        """Dead-letters a message no receiver can read, as `MalformedMessage` with the
        error, as the Postgres lane does. If its lock is lost first, the message comes
        back and is buried then."""
        message_id = str(delivery.message.message_id)
        try:
            await self._settle(
                "dead_letter_message",
                delivery,
                reason=MALFORMED,
                error_description=description[:4096],  # the broker's limit
            )
        except LockLost:
            log.warning("lane_message_bury_failed", lane=self.name, message_id=message_id)
            return
        DEAD_LETTERS.labels(self.name).inc()
        log.warning(
            "lane_message_dead_lettered", lane=self.name, message_id=message_id, reason=MALFORMED
        )

    async def _settle(self, operation: str, delivery: _Delivery, **kwargs: Any) -> Any:
        async with self._receiver_lock:
            if delivery.receiver is not self._receiver:
                # Settling needs the link the message came on; the lane has closed it.
                raise LockLost(f"the receiver of message {delivery.message.message_id} closed")
            try:
                return await getattr(delivery.receiver, operation)(delivery.message, **kwargs)
            except (MessageLockLostError, SessionLockLostError, MessageAlreadySettled) as error:
                raise LockLost(str(error)) from error

    async def complete(self, received: Received) -> None:
        await self._settle("complete_message", received.handle)

    async def complete_batch(self, batch: list[Received]) -> list[Received]:
        # Service Bus settles one message per call; the calls share one link.
        outcomes = await asyncio.gather(
            *(self.complete(item) for item in batch), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, LockLost):
                raise outcome
        return [item for item, outcome in zip(batch, outcomes, strict=True) if outcome]

    async def abandon(self, received: Received) -> None:
        await self._settle("abandon_message", received.handle)

    async def dead_letter(self, received: Received, reason: str, description: str) -> None:
        DEAD_LETTERS.labels(self.name).inc()
        await self._settle(
            "dead_letter_message", received.handle, reason=reason, error_description=description
        )

    async def renew_lock(self, received: Received) -> datetime:
        return await self._settle("renew_message_lock", received.handle)

    async def close(self) -> None:
        async with self._sender_lock, self._receiver_lock:
            links = [link for link in (self._sender, self._receiver) if link is not None]
            self._sender = self._receiver = None
            # Each close takes up to a second (the SDK's keep-alive task sleeps in 1 s
            # steps and the close waits for it): close both at once.
            await asyncio.gather(*(link.close() for link in links))


def _decoded(properties: dict[Any, Any]) -> dict[str, Any]:
    # The SDK hands application properties back with bytes keys and string values as
    # bytes; the hint's fields are plain text and numbers.
    return {
        (key.decode() if isinstance(key, bytes) else str(key)): (
            value.decode() if isinstance(value, bytes) else value
        )
        for key, value in properties.items()
    }
