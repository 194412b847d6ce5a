"""Azure Service Bus lanes: one queue per lane, through the real `azure-servicebus` SDK.

Credentials: `SERVICEBUS_CONNECTION_STRING`, or `SERVICEBUS_NAMESPACE`
(`<name>.servicebus.windows.net`) with `DefaultAzureCredential`, which picks up AKS
workload identity. The message id is the run id, so the queue's duplicate detection
drops a second copy of the same hint; application properties carry task_id, run_id,
attempt and lane.
"""

import asyncio
import os
from datetime import datetime
from typing import Any

from azure.servicebus import ServiceBusMessage, ServiceBusReceiveMode
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver, ServiceBusSender
from azure.servicebus.exceptions import MessageLockLostError, SessionLockLostError

from lanes.base import LaneMessage, LockLost, Received


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

    async def receive(self, max_messages: int, max_wait: float) -> list[Received]:
        async with self._receiver_lock:
            if self._receiver is None:
                self._receiver = self.client.get_queue_receiver(
                    self.queue,
                    receive_mode=ServiceBusReceiveMode.PEEK_LOCK,
                    prefetch_count=0,
                )
            messages = await self._receiver.receive_messages(
                max_message_count=max_messages, max_wait_time=max_wait
            )
        return [
            Received(
                message=LaneMessage.from_properties(
                    str(message.message_id), _decoded(message.application_properties or {})
                ),
                delivery_count=message.delivery_count or 0,
                locked_until=message.locked_until_utc or datetime.min,
                handle=message,
            )
            for message in messages
        ]

    async def _settle(self, operation: str, received: Received, **kwargs: Any) -> Any:
        assert self._receiver is not None
        async with self._receiver_lock:
            try:
                return await getattr(self._receiver, operation)(received.handle, **kwargs)
            except (MessageLockLostError, SessionLockLostError) as error:
                raise LockLost(str(error)) from error

    async def complete(self, received: Received) -> None:
        await self._settle("complete_message", received)

    async def abandon(self, received: Received) -> None:
        await self._settle("abandon_message", received)

    async def dead_letter(self, received: Received, reason: str, description: str) -> None:
        await self._settle(
            "dead_letter_message", received, reason=reason, error_description=description
        )

    async def renew_lock(self, received: Received) -> datetime:
        return await self._settle("renew_message_lock", received)

    async def close(self) -> None:
        for link in (self._sender, self._receiver):
            if link is not None:
                await link.close()
        self._sender = self._receiver = None


def _decoded(properties: dict[Any, Any]) -> dict[str, Any]:
    # The SDK hands application properties back with bytes keys and string values as
    # bytes; the hint's fields are plain text and numbers.
    return {
        (key.decode() if isinstance(key, bytes) else str(key)): (
            value.decode() if isinstance(value, bytes) else value
        )
        for key, value in properties.items()
    }
