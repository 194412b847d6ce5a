"""The real azure-servicebus async SDK against the local Service Bus peer.

These tests prove the peer is faithful enough for lane tests: each one drives the SDK exactly as
a worker would and checks both what the SDK reports and what the peer holds.
"""

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from uuid import uuid4

import pytest
from azure.servicebus import (
    ServiceBusMessage,
    ServiceBusReceivedMessage,
    ServiceBusReceiveMode,
    ServiceBusSubQueue,
)
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver
from azure.servicebus.exceptions import MessageLockLostError
from servicebus_peer import ServiceBusPeer

# Long enough that no lock lapses by accident; tests that want expiry make a short-lock queue.
DEFAULT_LOCK_SECONDS = 10.0
# Upper bound for anything a test waits for; normal runs need a fraction of it.
WAIT_SECONDS = 5.0


@pytest.fixture(scope="module")
def peer() -> Iterator[ServiceBusPeer]:
    with ServiceBusPeer(lock_duration=DEFAULT_LOCK_SECONDS) as running:
        yield running
    # Leaving the block raised if any peer handler failed during the module.


@pytest.fixture
async def client(peer: ServiceBusPeer) -> AsyncIterator[ServiceBusClient]:
    async with ServiceBusClient.from_connection_string(peer.connection_string) as sb_client:
        yield sb_client


@pytest.fixture
def queue_name() -> str:
    return f"lane-{uuid4().hex[:8]}"


async def send(client: ServiceBusClient, queue: str, *messages: ServiceBusMessage) -> None:
    async with client.get_queue_sender(queue) as sender:
        await sender.send_messages(list(messages) if len(messages) > 1 else messages[0])


async def receive(receiver: ServiceBusReceiver, count: int) -> list[ServiceBusReceivedMessage]:
    """Receive exactly `count` messages (the SDK may return them in several chunks)."""
    received: list[ServiceBusReceivedMessage] = []
    async with asyncio.timeout(WAIT_SECONDS):
        while len(received) < count:
            received += await receiver.receive_messages(
                max_message_count=count - len(received), max_wait_time=1
            )
    return received


async def eventually(predicate: Callable[[], bool]) -> None:
    """Poll the peer (it runs on its own thread, so there is nothing to await) until true."""
    poll = 0.05
    for _ in range(int(WAIT_SECONDS / poll)):
        if predicate():
            return
        await asyncio.sleep(poll)
    raise AssertionError("the peer never reached the expected state")


async def test_batch_is_received_with_peek_lock_and_completed(
    peer: ServiceBusPeer, client: ServiceBusClient, queue_name: str
) -> None:
    bodies = [f"task-{i}" for i in range(5)]
    async with client.get_queue_sender(queue_name) as sender:
        batch = await sender.create_message_batch()
        for body in bodies:
            batch.add_message(ServiceBusMessage(body, message_id=body))
        await sender.send_messages(batch)  # one AMQP transfer carrying all five
    assert peer.queue_depth(queue_name) == 5

    async with client.get_queue_receiver(queue_name) as receiver:
        messages = await receive(receiver, 5)
        assert [str(m) for m in messages] == bodies
        assert [m.message_id for m in messages] == bodies
        sequence_numbers = [m.sequence_number for m in messages]
        assert sequence_numbers == sorted(sequence_numbers)
        for message in messages:
            assert message.delivery_count == 0
            assert message.lock_token is not None
            assert message.locked_until_utc is not None
            assert message.enqueued_time_utc is not None
        # Locked messages still count as active until they are completed.
        assert all(m.locked for m in peer.messages(queue_name))
        for message in messages:
            await receiver.complete_message(message)

    assert peer.queue_depth(queue_name) == 0
    assert peer.dead_letter_depth(queue_name) == 0


async def test_abandon_redelivers_with_delivery_count_incremented(
    peer: ServiceBusPeer, client: ServiceBusClient, queue_name: str
) -> None:
    await send(client, queue_name, ServiceBusMessage("retry me", message_id="m-1"))

    async with client.get_queue_receiver(queue_name) as receiver:
        (first,) = await receive(receiver, 1)
        assert first.delivery_count == 0
        await receiver.abandon_message(first)

        (second,) = await receive(receiver, 1)
        assert second.message_id == "m-1"
        assert second.delivery_count == 1
        assert second.lock_token != first.lock_token
        await receiver.complete_message(second)

    assert peer.queue_depth(queue_name) == 0


async def test_dead_letter_with_reason_lands_on_dead_letter_subqueue(
    peer: ServiceBusPeer, client: ServiceBusClient, queue_name: str
) -> None:
    await send(client, queue_name, ServiceBusMessage("poison", message_id="p-1"))

    async with client.get_queue_receiver(queue_name) as receiver:
        (message,) = await receive(receiver, 1)
        await receiver.dead_letter_message(
            message, reason="PolicyDenied", error_description="tool not allowed"
        )

    assert peer.queue_depth(queue_name) == 0
    assert peer.dead_letter_depth(queue_name) == 1
    (held,) = peer.dead_letter_messages(queue_name)
    assert held.dead_letter_reason == "PolicyDenied"
    assert held.dead_letter_error_description == "tool not allowed"

    async with client.get_queue_receiver(
        queue_name, sub_queue=ServiceBusSubQueue.DEAD_LETTER
    ) as dead_letters:
        (dead,) = await receive(dead_letters, 1)
        assert str(dead) == "poison"
        assert dead.message_id == "p-1"
        assert dead.dead_letter_reason == "PolicyDenied"
        assert dead.dead_letter_error_description == "tool not allowed"
        await dead_letters.complete_message(dead)

    assert peer.dead_letter_depth(queue_name) == 0


async def test_renew_lock_extends_locked_until(
    peer: ServiceBusPeer, client: ServiceBusClient, queue_name: str
) -> None:
    await send(client, queue_name, ServiceBusMessage("a"), ServiceBusMessage("b"))

    async with client.get_queue_receiver(queue_name) as receiver:
        messages = await receive(receiver, 2)
        before = [m.locked_until_utc for m in messages]
        await asyncio.sleep(0.3)
        # One at a time: concurrent renewals on one receiver upset the SDK's AMQP sequencing.
        renewed = [await receiver.renew_message_lock(m) for m in messages]
        for old, new, message in zip(before, renewed, messages, strict=True):
            assert old is not None
            assert new > old
            assert message.locked_until_utc == new
        held = {m.locked_until for m in peer.messages(queue_name)}
        assert held == set(renewed)
        for message in messages:
            await receiver.complete_message(message)

    assert peer.queue_depth(queue_name) == 0


async def test_expired_lock_redelivers_with_delivery_count_incremented(
    peer: ServiceBusPeer, client: ServiceBusClient, queue_name: str
) -> None:
    peer.create_queue(queue_name, lock_duration=0.5)
    await send(client, queue_name, ServiceBusMessage("slow worker", message_id="s-1"))

    async with client.get_queue_receiver(queue_name) as receiver:
        (first,) = await receive(receiver, 1)
        assert first.delivery_count == 0
        # Never settled: the peer takes the message back when the lock lapses.
        (second,) = await receive(receiver, 1)
        assert second.message_id == "s-1"
        assert second.delivery_count == 1
        assert second.lock_token != first.lock_token
        # The SDK itself refuses to settle once locked_until_utc has passed.
        with pytest.raises(MessageLockLostError):
            await receiver.complete_message(first)
        await receiver.complete_message(second)

    assert peer.queue_depth(queue_name) == 0


async def test_settling_after_the_service_dropped_the_lock_raises_lock_lost(
    peer: ServiceBusPeer, client: ServiceBusClient, queue_name: str
) -> None:
    await send(client, queue_name, ServiceBusMessage("late", message_id="l-1"))

    async with client.get_queue_receiver(queue_name) as receiver:
        (message,) = await receive(receiver, 1)
        # The SDK still believes the lock is valid; only the service knows it is gone.
        assert peer.expire_locks(queue_name) == 1
        await eventually(lambda: not peer.messages(queue_name)[0].locked)

        with pytest.raises(MessageLockLostError):
            await receiver.renew_message_lock(message)
        with pytest.raises(MessageLockLostError):
            await receiver.complete_message(message)

        (again,) = await receive(receiver, 1)
        assert again.delivery_count == 1
        await receiver.complete_message(again)

    assert peer.queue_depth(queue_name) == 0


async def test_max_delivery_count_moves_message_to_dead_letter_queue(
    peer: ServiceBusPeer, client: ServiceBusClient, queue_name: str
) -> None:
    peer.create_queue(queue_name, lock_duration=0.4, max_delivery_count=3)
    await send(client, queue_name, ServiceBusMessage("crashes workers", message_id="c-1"))

    async with client.get_queue_receiver(queue_name) as receiver:
        first, second = await receive(receiver, 1), await receive(receiver, 1)
        assert [first[0].delivery_count, second[0].delivery_count] == [0, 1]
        await receiver.abandon_message(second[0])  # abandon and lock expiry both count
        (third,) = await receive(receiver, 1)
        assert third.delivery_count == 2
        # Third failure (lock expiry) reaches the limit of 3 deliveries.
        await eventually(lambda: peer.dead_letter_depth(queue_name) == 1)

    assert peer.queue_depth(queue_name) == 0
    async with client.get_queue_receiver(
        queue_name, sub_queue=ServiceBusSubQueue.DEAD_LETTER
    ) as dead_letters:
        (dead,) = await receive(dead_letters, 1)
        assert dead.message_id == "c-1"
        assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"
        assert dead.delivery_count == 3
        await dead_letters.complete_message(dead)


async def test_duplicate_message_id_is_delivered_once(
    peer: ServiceBusPeer, client: ServiceBusClient, queue_name: str
) -> None:
    await send(client, queue_name, ServiceBusMessage("first", message_id="task-7:attempt-1"))
    await send(
        client,
        queue_name,
        ServiceBusMessage("second", message_id="task-7:attempt-1"),
        ServiceBusMessage("other", message_id="task-8:attempt-1"),
    )
    assert [m.body for m in peer.messages(queue_name)] == [b"first", b"other"]

    async with client.get_queue_receiver(queue_name) as receiver:
        messages = await receive(receiver, 2)
        assert [str(m) for m in messages] == ["first", "other"]
        for message in messages:
            await receiver.complete_message(message)
        assert await receiver.receive_messages(max_message_count=1, max_wait_time=0.5) == []

    assert peer.queue_depth(queue_name) == 0


async def test_application_properties_round_trip(
    peer: ServiceBusPeer, client: ServiceBusClient, queue_name: str
) -> None:
    properties = {"task_id": "t-42", "run_id": "r-9", "attempt": 2, "lane": "azure"}
    body = json.dumps({"task_id": "t-42"})
    await send(
        client,
        queue_name,
        ServiceBusMessage(
            body,
            message_id="t-42:2",
            application_properties=properties,
            content_type="application/json",
            correlation_id="r-9",
            subject="task",
        ),
    )
    (held,) = peer.messages(queue_name)
    assert held.application_properties == properties

    async with client.get_queue_receiver(queue_name) as receiver:
        (message,) = await receive(receiver, 1)
        # The SDK (pyamqp) hands back AMQP strings as bytes, keys included.
        assert message.application_properties == {
            b"task_id": b"t-42",
            b"run_id": b"r-9",
            b"attempt": 2,
            b"lane": b"azure",
        }
        assert json.loads(str(message)) == {"task_id": "t-42"}
        assert message.message_id == "t-42:2"
        assert message.content_type == "application/json"
        assert message.correlation_id == "r-9"
        assert message.subject == "task"
        await receiver.complete_message(message)


async def test_peek_and_receive_and_delete(
    peer: ServiceBusPeer, client: ServiceBusClient, queue_name: str
) -> None:
    await send(client, queue_name, ServiceBusMessage("x"), ServiceBusMessage("y"))

    async with client.get_queue_receiver(queue_name) as receiver:
        peeked = await receiver.peek_messages(max_message_count=5)
        assert [str(m) for m in peeked] == ["x", "y"]
    assert peer.queue_depth(queue_name) == 2

    async with client.get_queue_receiver(
        queue_name, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE
    ) as receiver:
        taken = await receive(receiver, 2)
        assert [str(m) for m in taken] == ["x", "y"]

    assert peer.queue_depth(queue_name) == 0
