"""`ServiceBusLane` through the real azure-servicebus SDK: the Postgres lane's behaviours
(test_postgres_lane.py), then the dispatcher and a worker on a Service Bus lane.

By default the tests run against the local AMQP peer (servicebus_peer.py), one per
module, with a fresh queue per test created with the settings the test needs.

Set `SERVICEBUS_TEST_CONNECTION_STRING` to run them against a real namespace instead.
Every test then uses one queue, `SERVICEBUS_TEST_QUEUE` (default `workbench-test`),
which must already exist with duplicate detection on and a max delivery count of 3;
the shortest lock duration (5 s) keeps the lock-expiry test short:

    az servicebus queue create -g <group> --namespace-name <namespace> \\
        -n workbench-test --enable-duplicate-detection true \\
        --max-delivery-count 3 --lock-duration PT5S

Each test then starts by emptying that queue and its dead-letter queue, and reads them
through the SDK (peek) instead of the peer's books. Tests that need a peer-only helper
(`expire_locks`: the broker dropping a lock the SDK still believes valid) are skipped.
"""

import asyncio
import contextlib
import os
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from azure.servicebus import (
    ServiceBusMessage,
    ServiceBusReceivedMessage,
    ServiceBusReceiveMode,
    ServiceBusSubQueue,
)
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver
from conftest import fast_policy
from prometheus_client import REGISTRY
from servicebus_peer import ServiceBusPeer

from dispatcher.service import DispatcherConfig, run_dispatcher
from lanes.base import LaneMessage, LockLost, Received
from lanes.servicebus import ServiceBusLane
from ledger.artifact_store import LocalArtifactStore
from ledger.models import TaskCreateRequest
from ledger.policy import PolicyConfig, Transport
from ledger.repository import Actor, Ledger
from worker.context import RunContext
from worker.executors import ExecutionResult
from worker.service import Worker, WorkerConfig

REAL_CONNECTION_STRING = os.environ.get("SERVICEBUS_TEST_CONNECTION_STRING")
REAL_QUEUE = os.environ.get("SERVICEBUS_TEST_QUEUE", "workbench-test")
peer_only = pytest.mark.skipif(
    bool(REAL_CONNECTION_STRING), reason="needs the local peer (expire_locks)"
)

# Queue settings on the peer; on a real namespace the queue's own settings apply.
LOCK_SECONDS = 10.0
SHORT_LOCK_SECONDS = 0.5
MAX_DELIVERY_COUNT = 3
# Upper bound for anything a test waits for; normal runs need a fraction of it.
WAIT_SECONDS = 15.0

OPERATOR = Actor("olga", "t1", "operator")


@dataclass
class Namespace:
    """The namespace under test, and what a test can see of its queues: the peer's own
    books, or (real namespace) what the SDK can peek."""

    connection_string: str
    client: ServiceBusClient
    peer: ServiceBusPeer | None
    _peekers: dict[tuple[str, bool], ServiceBusReceiver] = field(default_factory=dict)

    async def queue(self, *, lock_seconds: float = LOCK_SECONDS) -> str:
        """A queue with no messages: a new one on the peer, the emptied test queue on a
        real namespace."""
        if self.peer is not None:
            name = f"lane-{uuid4().hex[:8]}"
            self.peer.create_queue(
                name,
                lock_duration=lock_seconds,
                max_delivery_count=MAX_DELIVERY_COUNT,
                duplicate_detection=True,
            )
            return name
        await self._purge(REAL_QUEUE)
        return REAL_QUEUE

    async def _purge(self, queue: str) -> None:
        for sub_queue in (None, ServiceBusSubQueue.DEAD_LETTER):
            async with self.client.get_queue_receiver(
                queue, sub_queue=sub_queue, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE
            ) as receiver:
                while await receiver.receive_messages(max_message_count=100, max_wait_time=1):
                    pass

    async def _peek(self, queue: str, dead_letters: bool) -> list[ServiceBusReceivedMessage]:
        key = (queue, dead_letters)
        if key not in self._peekers:
            sub_queue = ServiceBusSubQueue.DEAD_LETTER if dead_letters else None
            self._peekers[key] = self.client.get_queue_receiver(queue, sub_queue=sub_queue)
        # From the first sequence number every time (0 would continue the last peek).
        return await self._peekers[key].peek_messages(max_message_count=100, sequence_number=1)

    async def active(self, queue: str) -> int:
        """Messages on the queue, available or locked."""
        if self.peer is not None:
            return self.peer.queue_depth(queue)
        return len(await self._peek(queue, dead_letters=False))

    async def dead_letters(self, queue: str) -> list[tuple[str, str | None, str | None]]:
        """(message id, dead-letter reason, description) of each dead-lettered message."""
        if self.peer is not None:
            held = self.peer.dead_letter_messages(queue)
            return [
                (str(m.message_id), m.dead_letter_reason, m.dead_letter_error_description)
                for m in held
            ]
        return [
            (str(m.message_id), m.dead_letter_reason, m.dead_letter_error_description)
            for m in await self._peek(queue, dead_letters=True)
        ]

    async def close(self) -> None:
        await asyncio.gather(*(peeker.close() for peeker in self._peekers.values()))


@pytest.fixture(scope="module")
def peer() -> Iterator[ServiceBusPeer | None]:
    if REAL_CONNECTION_STRING:
        yield None
        return
    with ServiceBusPeer() as running:
        yield running
    # Leaving the block raised if any peer handler failed during the module.


@pytest.fixture(scope="module")
def connection_string(peer: ServiceBusPeer | None) -> str:
    """The real namespace's connection string if one is set, else the started peer's."""
    return REAL_CONNECTION_STRING or peer.connection_string  # type: ignore[union-attr]


@pytest.fixture(scope="module")
async def namespace(
    connection_string: str, peer: ServiceBusPeer | None
) -> AsyncIterator[Namespace]:
    async with ServiceBusClient.from_connection_string(connection_string) as client:
        namespace = Namespace(connection_string, client, peer)
        yield namespace
        await namespace.close()


@contextlib.asynccontextmanager
async def open_lane(namespace: Namespace, **queue_settings: float) -> AsyncIterator[ServiceBusLane]:
    lane = ServiceBusLane(namespace.client, "analysis", await namespace.queue(**queue_settings))
    try:
        yield lane
    finally:
        await lane.close()


@pytest.fixture
async def lane(namespace: Namespace) -> AsyncIterator[ServiceBusLane]:
    async with open_lane(namespace) as opened:
        yield opened


def _hint() -> LaneMessage:
    run_id = uuid4()
    return LaneMessage(
        message_id=str(run_id),
        task_id=uuid4(),
        run_id=run_id,
        attempt=1,
        lane="analysis",
    )


async def receive(lane: ServiceBusLane, count: int) -> list[Received]:
    """Exactly `count` messages (the SDK may hand them over in several chunks)."""
    received: list[Received] = []
    async with asyncio.timeout(WAIT_SECONDS):
        while len(received) < count:
            received += await lane.receive(count - len(received), max_wait=1)
    assert len(received) == count
    return received


async def nothing_visible(lane: ServiceBusLane) -> bool:
    return await lane.receive(10, max_wait=0.5) == []


async def test_send_receive_complete(lane: ServiceBusLane, namespace: Namespace) -> None:
    hints = [_hint() for _ in range(3)]
    await lane.send_batch(hints)
    received = await receive(lane, 3)
    assert [r.message for r in received] == hints
    assert all(r.delivery_count == 1 for r in received)  # this delivery included
    assert await nothing_visible(lane)  # locked: invisible
    for message in received:
        await lane.complete(message)
    assert await namespace.active(lane.queue) == 0
    assert await namespace.dead_letters(lane.queue) == []


async def test_duplicate_message_id_is_dropped(lane: ServiceBusLane) -> None:
    hint = _hint()
    await lane.send_batch([hint])
    await lane.send_batch([hint])
    [received] = await receive(lane, 1)
    assert await nothing_visible(lane)
    await lane.complete(received)


async def test_properties_round_trip_into_lane_message(
    lane: ServiceBusLane, namespace: Namespace
) -> None:
    run_id = uuid4()
    hint = LaneMessage(f"{run_id}/2", uuid4(), run_id, 3, "analysis")
    await lane.send_batch([hint])
    if namespace.peer is not None:  # on the wire: plain AMQP strings and an int
        [held] = namespace.peer.messages(lane.queue)
        assert held.application_properties == hint.properties()
    [received] = await receive(lane, 1)
    message = received.message
    assert message == hint
    assert isinstance(message.task_id, UUID)
    assert isinstance(message.run_id, UUID)
    assert type(message.attempt) is int
    assert message.lane == "analysis"
    await lane.complete(received)


async def test_abandon_and_lock_expiry_redeliver_with_count(namespace: Namespace) -> None:
    async with open_lane(namespace, lock_seconds=SHORT_LOCK_SECONDS) as lane:
        await lane.send_batch([_hint()])
        [first] = await receive(lane, 1)
        assert first.delivery_count == 1
        await lane.abandon(first)
        [second] = await receive(lane, 1)
        assert second.delivery_count == 2
        # The lock runs out (the SDK then refuses to settle with it, as the broker would).
        await asyncio.sleep((second.locked_until - datetime.now(UTC)).total_seconds() + 0.2)
        [third] = await receive(lane, 1)
        assert third.delivery_count == 3
        with pytest.raises(LockLost):
            await lane.complete(second)  # its lock is gone; the newer delivery holds it
        await lane.complete(third)
        assert await namespace.active(lane.queue) == 0


@peer_only
async def test_lock_dropped_by_the_broker_raises_lock_lost(
    lane: ServiceBusLane, namespace: Namespace
) -> None:
    assert namespace.peer is not None
    await lane.send_batch([_hint()])
    [first] = await receive(lane, 1)
    # The SDK still believes the lock valid; only the broker knows it is gone.
    assert namespace.peer.expire_locks(lane.queue) == 1
    with pytest.raises(LockLost):
        await lane.renew_lock(first)
    with pytest.raises(LockLost):
        await lane.complete(first)
    [again] = await receive(lane, 1)
    assert again.delivery_count == 2
    await lane.complete(again)


async def test_max_delivery_count_dead_letters(lane: ServiceBusLane, namespace: Namespace) -> None:
    hint = _hint()
    await lane.send_batch([hint])
    counts = []
    for _ in range(MAX_DELIVERY_COUNT):
        [delivery] = await receive(lane, 1)
        counts.append(delivery.delivery_count)
        await lane.abandon(delivery)
    assert counts == [1, 2, 3]
    assert await nothing_visible(lane)
    assert await namespace.active(lane.queue) == 0
    [(message_id, reason, _)] = await namespace.dead_letters(lane.queue)
    assert (message_id, reason) == (hint.message_id, "MaxDeliveryCountExceeded")


async def test_dead_letter_with_reason_and_renew_lock(
    lane: ServiceBusLane, namespace: Namespace
) -> None:
    hint = _hint()
    await lane.send_batch([hint])
    [delivery] = await receive(lane, 1)
    await asyncio.sleep(0.05)  # so the renewed lock ends measurably later
    renewed = await lane.renew_lock(delivery)
    assert renewed > delivery.locked_until
    await lane.dead_letter(delivery, "poison", "executor crashed the worker")
    with pytest.raises(LockLost):  # settled: its lock is gone
        await lane.complete(delivery)
    assert await namespace.active(lane.queue) == 0
    assert await namespace.dead_letters(lane.queue) == [
        (hint.message_id, "poison", "executor crashed the worker")
    ]


async def test_short_waits_receive_on_a_fresh_lane(
    lane: ServiceBusLane, namespace: Namespace
) -> None:
    # The SDK refuses a zero wait and would bound the link open by the wait; the lane
    # opens the link first and always waits a little (MIN_RECEIVE_WAIT).
    hint = _hint()
    await lane.send_batch([hint])
    received = await lane.receive(1, max_wait=0)
    if not received and namespace.peer is None:  # a remote broker may take longer
        received = await receive(lane, 1)
    assert [r.message for r in received] == [hint]
    await lane.complete(received[0])


async def test_settling_after_the_lane_closed_raises_lock_lost(namespace: Namespace) -> None:
    async with open_lane(namespace, lock_seconds=SHORT_LOCK_SECONDS) as lane:
        await lane.send_batch([_hint()])
        [held] = await receive(lane, 1)
        await lane.close()
        with pytest.raises(LockLost):  # the link that holds the lock is gone
            await lane.complete(held)
        # The lock was not released: the message comes back once it runs out.
        [again] = await receive(lane, 1)
        assert again.delivery_count == 2
        await lane.complete(again)


async def test_malformed_message_is_dead_lettered_and_the_rest_delivered(
    lane: ServiceBusLane, namespace: Namespace
) -> None:
    good = [_hint() for _ in range(3)]
    no_run_id = {key: value for key, value in _hint().properties().items() if key != "run_id"}
    bad_attempt = {**_hint().properties(), "attempt": "third"}
    await lane.send_batch(good[:2])
    async with namespace.client.get_queue_sender(lane.queue) as sender:
        await sender.send_messages(
            [
                ServiceBusMessage(b"", message_id="no-run-id", application_properties=no_run_id),
                ServiceBusMessage(
                    b"", message_id="bad-attempt", application_properties=bad_attempt
                ),
            ]
        )
    await lane.send_batch(good[2:])
    dead_before = REGISTRY.get_sample_value(
        "workbench_lane_dead_letters_total", {"lane": lane.name}
    )
    received = await receive(lane, 3)
    assert [r.message for r in received] == good
    for message in received:
        await lane.complete(message)
    assert await namespace.active(lane.queue) == 0
    assert sorted(await namespace.dead_letters(lane.queue)) == [
        (
            "bad-attempt",
            "MalformedMessage",
            "ValueError: invalid literal for int() with base 10: 'third'",
        ),
        ("no-run-id", "MalformedMessage", "KeyError: 'run_id'"),
    ]
    dead_after = REGISTRY.get_sample_value("workbench_lane_dead_letters_total", {"lane": lane.name})
    assert dead_after is not None
    assert dead_after - (dead_before or 0.0) == 2


# -- the pipeline: dispatcher and worker on a Service Bus lane -----------------------


class CountingExecutor:
    """Counts executions per task: the witness that nothing ran twice."""

    def __init__(self) -> None:
        self.runs: Counter[UUID] = Counter()

    async def __call__(self, run: RunContext) -> ExecutionResult:
        self.runs[run.task.id] += 1
        return ExecutionResult(final_output=f"done {run.task.title}")


def servicebus_policy(queue: str) -> PolicyConfig:
    """The fast test lanes, with `analysis` on Service Bus. The dispatch timeout allows
    for the worker's link open (a remote namespace takes a second or more): a redispatch
    would be harmless but add traces."""
    policy = fast_policy(lease_seconds=3.0, dispatch_timeout_seconds=10.0)
    analysis = policy.lanes["analysis"].model_copy(
        update={"transport": Transport(kind="servicebus", queue=queue, lock_seconds=LOCK_SECONDS)}
    )
    return policy.model_copy(update={"lanes": {**policy.lanes, "analysis": analysis}})


@contextlib.asynccontextmanager
async def pipeline(pool, policy: PolicyConfig, executor: CountingExecutor) -> AsyncIterator[None]:
    stop = asyncio.Event()
    worker = Worker(
        pool,
        policy,
        WorkerConfig(lanes=["analysis"], concurrency=8, drain_seconds=5, name="sb-worker"),
        executor,
        LocalArtifactStore(Path(tempfile.mkdtemp(prefix="workbench-sb-artifacts-"))),
    )
    config = DispatcherConfig(poll_interval=0.2, reap_interval=0.2, name="sb-dispatcher")
    tasks = [
        asyncio.create_task(run_dispatcher(pool, policy, stop, config)),
        asyncio.create_task(worker.run(stop)),
    ]
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 20)


async def _create(ledger: Ledger, count: int) -> list[UUID]:
    request = TaskCreateRequest(lane="analysis", title="task", instructions="x")
    return [(await ledger.create_task(OPERATOR, request)).task.id for _ in range(count)]


async def _eventually(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    while not await condition():
        assert loop.time() < deadline, f"not within {WAIT_SECONDS} s: {what}"
        await asyncio.sleep(0.05)


@pytest.fixture
async def servicebus_lanes(namespace: Namespace, monkeypatch: pytest.MonkeyPatch):
    """The lanes policy and the queue behind `analysis`; the dispatcher's and worker's
    lane registries find the namespace through SERVICEBUS_CONNECTION_STRING."""
    queue = await namespace.queue()
    monkeypatch.setenv("SERVICEBUS_CONNECTION_STRING", namespace.connection_string)
    monkeypatch.delenv("SERVICEBUS_NAMESPACE", raising=False)
    return servicebus_policy(queue), queue


async def test_pipeline_runs_every_task_exactly_once_over_servicebus(
    fresh_pool, namespace: Namespace, servicebus_lanes
) -> None:
    policy, queue = servicebus_lanes
    ledger = Ledger(fresh_pool, policy)
    executor = CountingExecutor()
    ids = await _create(ledger, 20)
    async with pipeline(fresh_pool, policy, executor):

        async def all_succeeded() -> bool:
            tasks = [await ledger.get_task("t1", task_id) for task_id in ids]
            return all(task.status == "succeeded" for task in tasks)

        await _eventually(all_succeeded, "every task succeeded")

        async def hints_completed() -> bool:
            return await namespace.active(queue) == 0

        await _eventually(hints_completed, "the worker completed every hint")
    assert executor.runs == Counter({task_id: 1 for task_id in ids})
    for task_id in ids:
        events = await ledger.list_traces("t1", task_id)
        kinds = [event.kind for event in events]
        assert kinds == ["created", "policy_verdict", "dispatched", "worker_receipt", "succeeded"]
        assert events[3].data["via"] == "analysis"
    assert await namespace.active(queue) == 0
    assert await namespace.dead_letters(queue) == []


async def test_duplicated_and_late_hints_for_a_finished_run_execute_nothing(
    fresh_pool, namespace: Namespace, servicebus_lanes
) -> None:
    policy, queue = servicebus_lanes
    ledger = Ledger(fresh_pool, policy)
    executor = CountingExecutor()
    [task_id] = await _create(ledger, 1)
    async with pipeline(fresh_pool, policy, executor):

        async def succeeded() -> bool:
            return (await ledger.get_task("t1", task_id)).status == "succeeded"

        await _eventually(succeeded, "the task succeeded")
        task = await ledger.get_task("t1", task_id)
        # A copy of the hint, as a broker redelivery or a second dispatcher would send it,
        # straight through the SDK (a new message id, so duplicate detection lets it in).
        copy = LaneMessage(
            f"{task.current_run_id}/dup", task.id, task.current_run_id, 1, "analysis"
        )
        async with namespace.client.get_queue_sender(queue) as sender:
            await sender.send_messages(
                ServiceBusMessage(
                    b"", message_id=copy.message_id, application_properties=copy.properties()
                )
            )

        async def hint_completed() -> bool:
            return await namespace.active(queue) == 0

        await _eventually(hint_completed, "the worker completed the copy")
    assert executor.runs == Counter({task_id: 1})
    kinds = [event.kind for event in await ledger.list_traces("t1", task_id)]
    assert kinds == ["created", "policy_verdict", "dispatched", "worker_receipt", "succeeded"]
    assert await namespace.dead_letters(queue) == []
