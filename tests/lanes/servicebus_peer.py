"""A local AMQP 1.0 peer that behaves enough like Azure Service Bus for the real SDK.

No Service Bus emulator runs on the development machines (no Docker), and general brokers
(RabbitMQ, ActiveMQ) refuse the `$cbs` node the SDK insists on, so the lane tests run the real
`azure-servicebus` async client against this peer instead.  It is built on python-qpid-proton's
reactor, running in a background thread, and implements only what the SDK exercises:

* `$cbs` put-token (any token is accepted),
* queues created on first use, with peek-lock delivery (the delivery tag is the lock token),
  completion, abandon, dead-lettering, release, lock expiry, max delivery count,
* the `<queue>/$DeadLetterQueue` sub-queue,
* the `<queue>/$management` node: renew-lock, update-disposition and peek-message,
* duplicate detection by message_id,
* receive-and-delete links (pre-settled deliveries).

Every wire detail mirrors what the SDK reads; the comments name the SDK code that needs it.
"""

from __future__ import annotations

import bisect
import datetime
import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar
from urllib.parse import urlsplit

from proton import (
    UNDESCRIBED,
    Array,
    Condition,
    Connection,
    Data,
    Delivery,
    Described,
    Endpoint,
    Handler,
    Link,
    Message,
    symbol,
    timestamp,
    uint,
    ulong,
)
from proton.reactor import Container

__all__ = ["PeerMessage", "ServiceBusPeer"]

_LOG = logging.getLogger(__name__)

# Descriptor codes of the AMQP 1.0 message sections (spec part 3.2).
_HEADER = 0x70
_DELIVERY_ANNOTATIONS = 0x71
_MESSAGE_ANNOTATIONS = 0x72
_PROPERTIES = 0x73
_APPLICATION_PROPERTIES = 0x74
_DATA = 0x75
_AMQP_SEQUENCE = 0x76
_AMQP_VALUE = 0x77
_FOOTER = 0x78
_SYMBOLIC_SECTIONS = {
    "amqp:header:list": 0x70,
    "amqp:delivery-annotations:map": 0x71,
    "amqp:message-annotations:map": 0x72,
    "amqp:properties:list": 0x73,
    "amqp:application-properties:map": 0x74,
    "amqp:data:binary": 0x75,
    "amqp:amqp-sequence:list": 0x76,
    "amqp:amqp-value:*": 0x77,
    "amqp:footer:map": 0x78,
}

# Service Bus vocabulary, spelled as azure/servicebus/_common/constants.py spells it.
_CBS_NODE = "$cbs"
_MANAGEMENT_SUFFIX = "/$management"
_DEAD_LETTER_SUFFIX = "/$deadletterqueue"  # paths are compared lower-cased
_LOCK_LOST = "com.microsoft:message-lock-lost"
_DEAD_LETTER_REASON = "DeadLetterReason"
_DEAD_LETTER_DESCRIPTION = "DeadLetterErrorDescription"
_MAX_DELIVERY_REASON = "MaxDeliveryCountExceeded"

# Credit the peer grants to each client sender link; refilled once half is used.
_INCOMING_CREDIT = 1000


class _NodeKind(Enum):
    CBS = "cbs"
    MANAGEMENT = "management"
    ENTITY = "entity"


@dataclass(frozen=True)
class PeerMessage:
    """A snapshot of one stored message, for test assertions."""

    sequence_number: int
    message_id: Any
    body: Any
    application_properties: dict[str, Any]
    delivery_count: int
    locked: bool
    locked_until: datetime.datetime | None
    enqueued_time: datetime.datetime

    @property
    def dead_letter_reason(self) -> str | None:
        return self.application_properties.get(_DEAD_LETTER_REASON)

    @property
    def dead_letter_error_description(self) -> str | None:
        return self.application_properties.get(_DEAD_LETTER_DESCRIPTION)


@dataclass
class _Entry:
    """A stored message: its bare-message sections are kept byte-for-byte as sent."""

    sequence_number: int
    sections: list[tuple[int, bytes]]
    enqueued_ms: int
    delivery_count: int = 0
    lock_token: uuid.UUID | None = None
    locked_until_ms: int = 0


@dataclass
class _Queue:
    path: str  # lower-case entity path, e.g. "tasks" or "tasks/$deadletterqueue"
    lock_duration_ms: int
    max_delivery_count: int | None  # None: never dead-letter on redelivery (dead-letter queues)
    duplicate_detection: bool
    available: list[_Entry] = field(default_factory=list)  # ordered by sequence number
    locked: dict[uuid.UUID, _Entry] = field(default_factory=dict)
    recent_ids: dict[Any, float] = field(default_factory=dict)  # message_id -> monotonic time
    consumers: list[Link] = field(default_factory=list)

    def make_available(self, entry: _Entry) -> None:
        entry.lock_token = None
        entry.locked_until_ms = 0
        keys = [e.sequence_number for e in self.available]
        self.available.insert(bisect.bisect(keys, entry.sequence_number), entry)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _entity_path(address: str | None) -> str:
    """Reduce a link address to a lower-case entity path.

    The SDK addresses entities as `amqps://<host>/<queue>` (receiver_mixins.py `_entity_uri`),
    management nodes as `<queue>/$management`, and Service Bus names are case-insensitive.
    """
    if not address:
        return ""
    if "://" in address:
        address = urlsplit(address).path
    return address.strip("/").lower()


def _classify(path: str) -> tuple[_NodeKind, str]:
    if path == _CBS_NODE:
        return _NodeKind.CBS, path
    if path.endswith(_MANAGEMENT_SUFFIX):
        return _NodeKind.MANAGEMENT, path[: -len(_MANAGEMENT_SUFFIX)]
    return _NodeKind.ENTITY, path


def _split_sections(payload: bytes) -> list[tuple[int, bytes]]:
    """Split an encoded message into (descriptor code, encoded section) pairs.

    Raises ValueError when the bytes are not a sequence of described sections.
    """
    sections: list[tuple[int, bytes]] = []
    offset = 0
    while offset < len(payload):
        data = Data()
        consumed = data.decode(payload[offset:])
        data.rewind()
        if consumed <= 0 or not data.next() or data.type() != Data.DESCRIBED:
            raise ValueError("not an AMQP message section")
        data.enter()
        data.next()
        descriptor = data.get_object()
        code = _SYMBOLIC_SECTIONS.get(descriptor) if isinstance(descriptor, str) else descriptor
        if not isinstance(code, int) or not _HEADER <= code <= _FOOTER:
            raise ValueError(f"unexpected section descriptor {descriptor!r}")
        sections.append((int(code), payload[offset : offset + consumed]))
        offset += consumed
    return sections


def _section_value(section: bytes) -> Any:
    data = Data()
    data.decode(section)
    data.rewind()
    data.next()
    return _detach(data.get_object().value)


def _detach(value: Any) -> Any:
    """Copy binary values out of proton's buffer.

    proton returns binary values as memoryviews into the Data object's own memory, which is freed
    with that object; they must be copied before it goes out of scope.
    """
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, dict):
        return type(value)({_detach(k): _detach(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_detach(v) for v in value]
    if isinstance(value, Described):
        return Described(value.descriptor, _detach(value.value))
    if isinstance(value, Array):
        return Array(value.descriptor, value.type, *(_detach(v) for v in value.elements))
    return value


def _encode_section(code: int, value: Any) -> bytes:
    data = Data()
    data.put_object(Described(ulong(code), value))
    return bytes(data.encode())


def _unbatch(payload: bytes) -> list[bytes]:
    """Return the messages carried by one transfer.

    `send_messages([...])` and message batches travel as ONE transfer with message-format
    0x80013700 whose body is a series of data sections, each an encoded message
    (azure/servicebus/_pyamqp/utils.py `add_batch`); the envelope itself only carries the first
    message's message-id/group-id and partition key (_pyamqp_transport.py
    `set_batch_envelope_properties`).  python-qpid-proton does not expose a delivery's
    message-format, so a batch is recognised by its shape: no application properties, a body of
    data sections only, and each of them a complete encoded message.
    """
    sections = _split_sections(payload)
    codes = {code for code, _ in sections}
    if _DATA not in codes or codes & {_APPLICATION_PROPERTIES, _AMQP_SEQUENCE, _AMQP_VALUE}:
        return [payload]
    inner: list[bytes] = []
    for code, section in sections:
        if code != _DATA:
            continue
        body = _section_value(section)
        try:
            _split_sections(body)
        except Exception:  # ValueError, or proton's DataException on arbitrary bytes
            return [payload]
        inner.append(body)
    return inner


def _decode(sections: list[tuple[int, bytes]]) -> Message:
    message = Message()
    message.decode(b"".join(section for _, section in sections))
    return message


def _header_section(entry: _Entry) -> bytes:
    """Encode the header with every field present.

    proton's own encoder drops trailing default fields, so a first delivery (delivery-count 0)
    would arrive without one and `ServiceBusReceivedMessage.delivery_count` (message.py) would read
    None instead of 0.
    """
    fields: list[Any] = [None] * 5
    for code, section in entry.sections:
        if code == _HEADER:
            original = list(_section_value(section) or [])
            fields[: len(original)] = original[:5]
    fields[3] = entry.delivery_count == 0  # first-acquirer
    fields[4] = uint(entry.delivery_count)
    return _encode_section(_HEADER, fields)


def _outgoing(entry: _Entry, annotations: dict[symbol, Any]) -> bytes:
    """Build the message as delivered: fresh header, merged annotations, bare message as sent."""
    merged: dict[Any, Any] = {}
    for code, section in entry.sections:
        if code == _MESSAGE_ANNOTATIONS:
            merged.update(_section_value(section) or {})
    merged[symbol("x-opt-sequence-number")] = entry.sequence_number
    merged[symbol("x-opt-enqueued-time")] = timestamp(entry.enqueued_ms)
    merged.update(annotations)
    parts = [_header_section(entry), _encode_section(_MESSAGE_ANNOTATIONS, merged)]
    # Sender-side delivery annotations are per-hop, so they are not forwarded.
    parts += [s for code, s in entry.sections if code >= _PROPERTIES]
    return b"".join(parts)


def _with_application_properties(entry: _Entry, extra: dict[str, str]) -> None:
    """Add application properties, as Service Bus does with the dead-letter reason."""
    props: dict[Any, Any] = {}
    rest: list[tuple[int, bytes]] = []
    for code, section in entry.sections:
        if code == _APPLICATION_PROPERTIES:
            props.update(_section_value(section) or {})
        else:
            rest.append((code, section))
    props.update(extra)
    new = (_APPLICATION_PROPERTIES, _encode_section(_APPLICATION_PROPERTIES, props))
    position = next((i for i, (code, _) in enumerate(rest) if code > _APPLICATION_PROPERTIES), None)
    rest.insert(len(rest) if position is None else position, new)
    entry.sections = rest


def _plain(value: Any) -> Any:
    """Turn proton wrapper types into plain Python values for snapshots."""
    if isinstance(value, symbol):
        return str(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, memoryview):
        return bytes(value)
    return value


def _tokens(value: Any) -> list[uuid.UUID]:
    elements = value.elements if isinstance(value, Array) else list(value or [])
    return [e if isinstance(e, uuid.UUID) else uuid.UUID(str(e)) for e in elements]


_F = TypeVar("_F", bound=Callable[..., None])


def _guarded(method: _F) -> _F:
    """Record handler exceptions instead of letting them kill the reactor thread.

    A crashed peer would otherwise show up as an SDK timeout far away from the cause; the
    recorded errors are raised by `ServiceBusPeer.stop()`.
    """

    @functools.wraps(method)
    def wrapper(self: _Broker, *args: Any) -> None:
        try:
            method(self, *args)
        except Exception as exc:
            _LOG.exception("servicebus peer handler %s failed", method.__name__)
            self.errors.append(exc)

    return wrapper  # type: ignore[return-value]


class _Broker(Handler):
    """The proton handler: every method here runs on the reactor thread."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        lock_duration: float,
        max_delivery_count: int,
        duplicate_detection: bool,
        duplicate_detection_window: float,
        tick_interval: float,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.lock_duration = lock_duration
        self.max_delivery_count = max_delivery_count
        self.duplicate_detection = duplicate_detection
        self.duplicate_detection_window = duplicate_detection_window
        self.tick_interval = tick_interval
        # Test helpers read the store from another thread.
        self.lock = threading.RLock()
        self.queues: dict[str, _Queue] = {}
        self.errors: list[BaseException] = []
        self.port: int | None = None
        self.listening = threading.Event()
        self.stop_requested = threading.Event()
        self._sequence = 0
        self._acceptor: Any = None  # proton.reactor Acceptor (not exported)
        self._connections: set[Connection] = set()

    # ----------------------------------------------------------------- the store

    def queue(
        self,
        path: str,
        *,
        lock_duration: float | None = None,
        max_delivery_count: int | None = None,
        duplicate_detection: bool | None = None,
    ) -> _Queue:
        """Get or create a queue; a dead-letter queue inherits its parent's lock duration."""
        with self.lock:
            existing = self.queues.get(path)
            if existing is not None:
                return existing
            if path.endswith(_DEAD_LETTER_SUFFIX):
                parent = self.queue(path[: -len(_DEAD_LETTER_SUFFIX)])
                created = _Queue(path, parent.lock_duration_ms, None, duplicate_detection=False)
            else:
                if lock_duration is None:
                    lock_duration = self.lock_duration
                if max_delivery_count is None:
                    max_delivery_count = self.max_delivery_count
                if duplicate_detection is None:
                    duplicate_detection = self.duplicate_detection
                created = _Queue(
                    path, int(1000 * lock_duration), max_delivery_count, duplicate_detection
                )
            self.queues[path] = created
            return created

    def _enqueue(self, queue: _Queue, payload: bytes) -> None:
        now = time.monotonic()
        for message_bytes in _unbatch(payload):
            sections = _split_sections(message_bytes)
            message_id = _decode(sections).id
            if queue.duplicate_detection and message_id is not None:
                window = self.duplicate_detection_window
                queue.recent_ids = {k: t for k, t in queue.recent_ids.items() if now - t < window}
                key = (type(message_id).__name__, message_id)
                if key in queue.recent_ids:
                    # Service Bus accepts a duplicate and silently drops it.
                    continue
                queue.recent_ids[key] = now
            self._sequence += 1
            queue.available.append(_Entry(self._sequence, sections, _now_ms()))

    def _dead_letter(self, queue: _Queue, entry: _Entry, reason: Any, description: Any) -> None:
        extra = {}
        if reason is not None:
            extra[_DEAD_LETTER_REASON] = str(reason)
        if description is not None:
            extra[_DEAD_LETTER_DESCRIPTION] = str(description)
        if extra:
            _with_application_properties(entry, extra)
        if queue.path.endswith(_DEAD_LETTER_SUFFIX):
            queue.make_available(entry)  # a dead-letter queue has no dead-letter queue of its own
        else:
            self.queue(queue.path + _DEAD_LETTER_SUFFIX).make_available(entry)

    def _redeliver_later(self, queue: _Queue, entry: _Entry) -> None:
        """A failed delivery (abandon or lock expiry): count it, maybe dead-letter it."""
        entry.delivery_count += 1
        limit = queue.max_delivery_count
        if limit is not None and entry.delivery_count >= limit:
            self._dead_letter(
                queue,
                entry,
                _MAX_DELIVERY_REASON,
                f"Message could not be consumed after {limit} delivery attempts.",
            )
        else:
            queue.make_available(entry)

    def _expire_locks(self) -> None:
        now = _now_ms()
        for queue in list(self.queues.values()):
            for token, entry in list(queue.locked.items()):
                if entry.locked_until_ms <= now:
                    del queue.locked[token]
                    self._redeliver_later(queue, entry)

    def _valid_lock(self, queue: _Queue, token: uuid.UUID) -> _Entry | None:
        entry = queue.locked.get(token)
        if entry is None:
            return None
        if entry.locked_until_ms <= _now_ms():
            # Expired but not yet swept by the tick: settle the sweep now so the answer is final.
            del queue.locked[token]
            self._redeliver_later(queue, entry)
            return None
        return entry

    # ---------------------------------------------------------- reactor events

    @_guarded
    def on_reactor_init(self, event: Any) -> None:
        self._acceptor = event.container.acceptor(self.host, self.requested_port)
        self.port = self._acceptor._selectable._delegate.getsockname()[1]
        event.container.schedule(self.tick_interval, self)
        self.listening.set()

    def on_timer_task(self, event: Any) -> None:
        if self.stop_requested.is_set():
            self._shutdown(event.container)
            return
        try:
            with self.lock:
                self._expire_locks()
                self._pump_all()
        except Exception as exc:
            _LOG.exception("servicebus peer tick failed")
            self.errors.append(exc)
        event.container.schedule(self.tick_interval, self)

    def _shutdown(self, container: Container) -> None:
        """Close the listener and every connection so the reactor runs out of work and returns.

        First pass: send each client a close frame.  Second pass, a moment later: hang up on
        clients that did not answer (closing the transport earlier would replace our close frame
        with proton's "connection aborted" framing error).
        """
        if self._acceptor is not None:
            self._acceptor.close()
            self._acceptor = None
            for connection in self._connections:
                if not connection.state & Endpoint.LOCAL_CLOSED:
                    # pyamqp indexes all three error fields of a close frame
                    # (_pyamqp/aio/_connection_async.py `_incoming_close`) and proton omits a
                    # null info, so the condition carries one.
                    connection.condition = Condition(
                        "amqp:connection:forced",
                        "The Service Bus peer is shutting down.",
                        {symbol("reason"): "shutdown"},
                    )
                    connection.close()
            if self._connections:
                container.schedule(0.2, self)
                return
        for connection in self._connections:
            transport = connection.transport
            if transport is not None:
                transport.close_tail()
                transport.close_head()
        self._connections.clear()

    @_guarded
    def on_connection_remote_open(self, event: Any) -> None:
        connection = event.connection
        self._connections.add(connection)
        if connection.state & Endpoint.LOCAL_UNINIT:
            connection.open()

    @_guarded
    def on_session_remote_open(self, event: Any) -> None:
        if event.session.state & Endpoint.LOCAL_UNINIT:
            event.session.open()

    @_guarded
    def on_link_remote_open(self, event: Any) -> None:
        link: Link = event.link
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        # Echo the settle modes: the SDK's peek-lock receiver asks for rcv-settle-mode second.
        link.snd_settle_mode = link.remote_snd_settle_mode
        link.rcv_settle_mode = link.remote_rcv_settle_mode
        address = link.remote_source.address if link.is_sender else link.remote_target.address
        kind, path = _classify(_entity_path(address))
        link.sb_kind = kind
        link.sb_path = path
        link.sb_node = _entity_path(address)
        link.open()
        if link.is_receiver:
            link.flow(_INCOMING_CREDIT)
        elif kind is _NodeKind.ENTITY:
            with self.lock:
                self.queue(path).consumers.append(link)

    @_guarded
    def on_link_remote_close(self, event: Any) -> None:
        link = event.link
        self._forget_consumer(link)
        if not link.state & Endpoint.LOCAL_CLOSED:
            link.close()

    @_guarded
    def on_session_remote_close(self, event: Any) -> None:
        if not event.session.state & Endpoint.LOCAL_CLOSED:
            event.session.close()

    @_guarded
    def on_connection_remote_close(self, event: Any) -> None:
        connection = event.connection
        self._forget_connection(connection)
        if not connection.state & Endpoint.LOCAL_CLOSED:
            connection.close()

    @_guarded
    def on_transport_closed(self, event: Any) -> None:
        # An abrupt disconnect: no detach arrives, so drop the connection's consumers here.
        # Its locks stay until they expire, as on Service Bus.
        if event.connection is not None:
            self._forget_connection(event.connection)

    def _forget_consumer(self, link: Link) -> None:
        with self.lock:
            for queue in self.queues.values():
                if link in queue.consumers:
                    queue.consumers.remove(link)

    def _forget_connection(self, connection: Connection) -> None:
        self._connections.discard(connection)
        with self.lock:
            for queue in self.queues.values():
                queue.consumers = [c for c in queue.consumers if c.connection != connection]

    @_guarded
    def on_link_flow(self, event: Any) -> None:
        link = event.link
        if link.is_sender and getattr(link, "sb_kind", None) is _NodeKind.ENTITY:
            with self.lock:
                self._pump(self.queue(link.sb_path))
            if link.drain_mode:
                # The SDK drains its receive link on close (drain_and_release_messages_async);
                # answering at once keeps close fast.
                link.drained()

    @_guarded
    def on_delivery(self, event: Any) -> None:
        delivery: Delivery = event.delivery
        link = delivery.link
        if link.is_receiver:
            self._on_transfer(link, delivery)
        elif delivery.updated:
            self._on_outcome(link, delivery)

    # ----------------------------------------------------------- incoming transfers

    def _on_transfer(self, link: Link, delivery: Delivery) -> None:
        if delivery.partial or not delivery.readable:
            return
        payload = bytes(link.recv(delivery.pending))
        link.advance()
        outcome = Delivery.ACCEPTED
        try:
            self._accept_transfer(link, payload)
        except Exception as exc:
            # Refuse the message rather than leave the client waiting on an unsettled send.
            _LOG.exception("servicebus peer could not take a message")
            self.errors.append(exc)
            outcome = Delivery.REJECTED
            delivery.local.condition = Condition("amqp:internal-error", repr(exc))
        if not delivery.settled:
            delivery.update(outcome)
        delivery.settle()
        if link.credit < _INCOMING_CREDIT // 2:
            link.flow(_INCOMING_CREDIT - link.credit)

    def _accept_transfer(self, link: Link, payload: bytes) -> None:
        kind = getattr(link, "sb_kind", _NodeKind.ENTITY)
        if kind is _NodeKind.ENTITY:
            with self.lock:
                queue = self.queue(link.sb_path)
                self._enqueue(queue, payload)
                self._pump(queue)
            return
        request = Message()
        request.decode(payload)
        if kind is _NodeKind.CBS:
            self._reply(link, request, self._cbs(request))
        else:
            self._reply(link, request, self._management(link.sb_path, request))

    def _reply(self, request_link: Link, request: Message, reply: Message) -> None:
        """Answer a request on the client's receiver link for the same node.

        The SDK matches replies by correlation-id == request message-id
        (_pyamqp/aio/_management_link_async.py `_on_message_received`); CBS requests carry no
        reply-to, so the reply link is found by node address on the same connection.
        """
        reply.correlation_id = request.id
        wanted = _entity_path(request.reply_to) if request.reply_to else request_link.sb_node
        link = request_link.connection.link_head(Endpoint.LOCAL_ACTIVE | Endpoint.REMOTE_ACTIVE)
        while link is not None:
            if link.is_sender and getattr(link, "sb_node", None) == wanted:
                delivery = link.send(reply)
                delivery.settle()  # pre-settled: the SDK's management receiver never settles
                return
            link = link.next(Endpoint.LOCAL_ACTIVE | Endpoint.REMOTE_ACTIVE)
        _LOG.warning("no reply link for %s on this connection", wanted)

    @staticmethod
    def _cbs(request: Message) -> Message:
        # _pyamqp/cbs.py reads "status-code"/"status-description" and needs 200..299.
        props = request.properties or {}
        if props.get("operation") != "put-token":
            return Message(properties={"status-code": 400, "status-description": "Bad operation"})
        return Message(properties={"status-code": 202, "status-description": "Accepted"})

    # ------------------------------------------------------------- management node

    def _management(self, entity: str, request: Message) -> Message:
        operation = str((request.properties or {}).get("operation", ""))
        body = request.body if isinstance(request.body, dict) else {}
        with self.lock:
            queue = self.queue(entity)
            if operation == "com.microsoft:renew-lock":
                return self._renew_lock(queue, body)
            if operation == "com.microsoft:update-disposition":
                return self._update_disposition(queue, body)
            if operation == "com.microsoft:peek-message":
                return self._peek(queue, body)
        return _status(501, f"Operation {operation!r} is not supported", "amqp:not-implemented")

    def _renew_lock(self, queue: _Queue, body: dict[Any, Any]) -> Message:
        expirations: list[timestamp] = []
        for token in _tokens(body.get("lock-tokens")):
            entry = self._valid_lock(queue, token)
            if entry is None:
                return _lock_lost_status()
            entry.locked_until_ms = _now_ms() + queue.lock_duration_ms
            expirations.append(timestamp(entry.locked_until_ms))
        # The receiver reads expiry[b"expirations"][0] in milliseconds (renew_message_lock).
        body = {"expirations": Array(UNDESCRIBED, Data.TIMESTAMP, *expirations)}
        return _status(200, "OK", body=body)

    def _update_disposition(self, queue: _Queue, body: dict[Any, Any]) -> Message:
        """The SDK's fallback settlement path when the receiver link cannot confirm an outcome."""
        status = str(body.get("disposition-status", ""))
        if status not in ("completed", "abandoned", "suspended"):
            # "defered" (sic, constants.py) is not modelled.
            unsupported = f"Disposition {status!r} is not supported"
            return _status(501, unsupported, "amqp:not-implemented")
        entries: list[tuple[uuid.UUID, _Entry]] = []
        for token in _tokens(body.get("lock-tokens")):
            entry = self._valid_lock(queue, token)
            if entry is None:
                return _lock_lost_status()
            entries.append((token, entry))
        for token, entry in entries:
            del queue.locked[token]
            if status == "completed":
                continue
            if status == "abandoned":
                self._redeliver_later(queue, entry)
            else:  # "suspended" is the management name for dead-lettering
                reason = body.get("deadletter-reason")
                self._dead_letter(queue, entry, reason, body.get("deadletter-description"))
        self._pump(queue)
        return _status(200, "OK")

    def _peek(self, queue: _Queue, body: dict[Any, Any]) -> Message:
        first = int(body.get("from-sequence-number", 0))
        count = int(body.get("message-count", 1))
        entries = sorted(
            [*queue.available, *queue.locked.values()], key=lambda e: e.sequence_number
        )
        chosen = [e for e in entries if e.sequence_number >= first][:count]
        if not chosen:
            return _status(204, "No messages")
        messages = [{"message": _outgoing(e, {})} for e in chosen]
        return _status(200, "OK", body={"messages": messages})

    # ------------------------------------------------------------ peek-lock delivery

    def _pump_all(self) -> None:
        for queue in list(self.queues.values()):
            self._pump(queue)

    def _pump(self, queue: _Queue) -> None:
        """Hand available messages to consumers that have credit, round-robin."""
        active = Endpoint.LOCAL_ACTIVE | Endpoint.REMOTE_ACTIVE
        queue.consumers = [c for c in queue.consumers if c.state & active == active]
        progress = True
        while queue.available and progress:
            progress = False
            for link in queue.consumers:
                if queue.available and link.credit > 0:
                    self._deliver(queue, link, queue.available.pop(0))
                    progress = True

    def _deliver(self, queue: _Queue, link: Link, entry: _Entry) -> None:
        presettled = link.snd_settle_mode == Link.SND_SETTLED  # receive-and-delete
        token = uuid.uuid4()
        annotations: dict[symbol, Any] = {}
        if not presettled:
            entry.lock_token = token
            entry.locked_until_ms = _now_ms() + queue.lock_duration_ms
            queue.locked[token] = entry
            annotations[symbol("x-opt-lock-token")] = token
            # message.py divides x-opt-locked-until by 1000: a timestamp in milliseconds.
            annotations[symbol("x-opt-locked-until")] = timestamp(entry.locked_until_ms)
        # message.py reads the lock token as uuid.UUID(bytes_le=delivery_tag): .NET GUID byte order.
        delivery = link.delivery(token.bytes_le)
        # proton decodes delivery tags as UTF-8 text, so the token is kept on the delivery itself.
        delivery.sb_lock_token = token
        link.send(_outgoing(entry, annotations))
        link.advance()
        if presettled:
            delivery.settle()

    def _on_outcome(self, link: Link, delivery: Delivery) -> None:
        """Apply the client's settlement and echo the outcome, as Service Bus does.

        With rcv-settle-mode second the SDK sends its disposition unsettled and waits until the
        service settles it with the same outcome (_pyamqp/receiver.py `check_disposition_outcome`);
        an echoed `rejected` carrying an error is what it turns into an exception.
        """
        token: uuid.UUID | None = getattr(delivery, "sb_lock_token", None)
        state = delivery.remote_state
        terminal = (Delivery.ACCEPTED, Delivery.REJECTED, Delivery.RELEASED, Delivery.MODIFIED)
        if token is None or state not in terminal:
            return
        client_settled = delivery.settled
        echo_state = state
        error: Condition | None = None
        with self.lock:
            queue = self.queue(link.sb_path)
            entry = self._valid_lock(queue, token)
            if entry is None:
                echo_state = Delivery.REJECTED
                error = Condition(
                    _LOCK_LOST,
                    "The lock supplied is invalid. Either the lock expired, or the message has "
                    "already been removed from the queue.",
                )
            elif state == Delivery.ACCEPTED:
                del queue.locked[token]
            elif state == Delivery.RELEASED:
                # Release (sent by the SDK for prefetched messages on close) does not count as a
                # failed delivery.
                del queue.locked[token]
                queue.make_available(entry)
            elif state == Delivery.MODIFIED and delivery.remote.undeliverable:
                # Defer is not modelled: say so rather than silently completing.
                echo_state = Delivery.REJECTED
                error = Condition("amqp:not-implemented", "Deferral is not supported by this peer.")
            elif state == Delivery.MODIFIED:
                del queue.locked[token]
                self._redeliver_later(queue, entry)
            else:  # REJECTED, sent with com.microsoft:dead-letter: Service Bus dead-letters
                del queue.locked[token]
                info = (delivery.remote.condition and delivery.remote.condition.info) or {}
                self._dead_letter(
                    queue, entry, info.get(_DEAD_LETTER_REASON), info.get(_DEAD_LETTER_DESCRIPTION)
                )
            self._pump(queue)
        if not client_settled:
            if echo_state == Delivery.MODIFIED:
                delivery.local.failed = delivery.remote.failed
                delivery.local.undeliverable = delivery.remote.undeliverable
            if error is not None:
                delivery.local.condition = error
            delivery.update(echo_state)
        delivery.settle()


def _status(
    code: int, description: str, condition: str | None = None, *, body: Any = None
) -> Message:
    """A management reply: the SDK reads statusCode/statusDescription/errorCondition."""
    props: dict[str, Any] = {"statusCode": code, "statusDescription": description}
    if condition is not None:
        props["errorCondition"] = symbol(condition)
    return Message(properties=props, body=body)


def _lock_lost_status() -> Message:
    return _status(410, "The lock supplied is invalid.", _LOCK_LOST)


class ServiceBusPeer:
    """Run the fake Service Bus namespace on 127.0.0.1 in a background thread.

    Use as a context manager or call `start()` / `stop()`.  Queues are created on first use, with
    the peer's defaults; `create_queue` sets per-queue values beforehand.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        lock_duration: float = 30.0,
        max_delivery_count: int = 10,
        duplicate_detection: bool = True,
        duplicate_detection_window: float = 600.0,
        tick_interval: float = 0.05,
    ) -> None:
        self._broker = _Broker(
            host=host,
            port=port,
            lock_duration=lock_duration,
            max_delivery_count=max_delivery_count,
            duplicate_detection=duplicate_detection,
            duplicate_detection_window=duplicate_detection_window,
            tick_interval=tick_interval,
        )
        self._container = Container(self._broker)
        self._thread: threading.Thread | None = None
        self.host = host

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 5.0) -> ServiceBusPeer:
        if self._thread is not None or self._broker.stop_requested.is_set():
            raise RuntimeError("a peer can be started only once")
        self._thread = threading.Thread(target=self._run, name="servicebus-peer", daemon=True)
        self._thread.start()
        if not self._broker.listening.wait(timeout) or self._broker.port is None:
            raise RuntimeError(f"servicebus peer did not start: {self._broker.errors!r}")
        return self

    def _run(self) -> None:
        try:
            self._container.run()
        except Exception as exc:
            _LOG.exception("servicebus peer reactor stopped")
            self._broker.errors.append(exc)
        finally:
            self._broker.listening.set()  # unblock start() if the reactor died early

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving; raise if any handler failed while the peer ran."""
        if self._thread is None:
            return
        self._broker.stop_requested.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError("servicebus peer did not stop")
        self._thread = None
        if self._broker.errors:
            raise RuntimeError(f"servicebus peer handler errors: {self._broker.errors!r}")

    def __enter__(self) -> ServiceBusPeer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ addresses

    @property
    def port(self) -> int:
        if self._broker.port is None:
            raise RuntimeError("peer not started")
        return self._broker.port

    @property
    def connection_string(self) -> str:
        # UseDevelopmentEmulator must be lower-case "true": _base_handler.py `_parse_conn_str`
        # compares it case-sensitively, and only then drops TLS and keeps the port.
        return (
            f"Endpoint=sb://{self.host}:{self.port};SharedAccessKeyName=k;"
            "SharedAccessKey=v;UseDevelopmentEmulator=true;"
        )

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions raised inside the peer's handlers (empty when healthy)."""
        return list(self._broker.errors)

    # --------------------------------------------------------------- test helpers

    def create_queue(
        self,
        name: str,
        *,
        lock_duration: float | None = None,
        max_delivery_count: int | None = None,
        duplicate_detection: bool | None = None,
    ) -> None:
        """Create a queue with its own settings (otherwise queues get the peer's defaults)."""
        path = _entity_path(name)
        with self._broker.lock:
            if path in self._broker.queues:
                raise ValueError(f"queue {name!r} already exists")
            self._broker.queue(
                path,
                lock_duration=lock_duration,
                max_delivery_count=max_delivery_count,
                duplicate_detection=duplicate_detection,
            )

    def queue_depth(self, name: str) -> int:
        """Active messages: available plus locked (what Service Bus calls active-message-count)."""
        with self._broker.lock:
            queue = self._broker.queues.get(_entity_path(name))
            return 0 if queue is None else len(queue.available) + len(queue.locked)

    def dead_letter_depth(self, name: str) -> int:
        return self.queue_depth(_entity_path(name) + _DEAD_LETTER_SUFFIX)

    def messages(self, name: str) -> list[PeerMessage]:
        """Snapshot of the queue's messages in sequence order (locked ones included)."""
        with self._broker.lock:
            queue = self._broker.queues.get(_entity_path(name))
            if queue is None:
                return []
            entries = sorted(
                [*queue.available, *queue.locked.values()], key=lambda e: e.sequence_number
            )
            return [_snapshot(e) for e in entries]

    def dead_letter_messages(self, name: str) -> list[PeerMessage]:
        return self.messages(_entity_path(name) + _DEAD_LETTER_SUFFIX)

    def expire_locks(self, name: str) -> int:
        """Make every lock on the queue lapse now, as if lock_duration had passed.

        Lets a test reach the service-side lock-lost path while the SDK still believes its lock
        is valid (the SDK refuses to settle locally once `locked_until_utc` has passed).
        Returns the number of locks expired.
        """
        with self._broker.lock:
            queue = self._broker.queues.get(_entity_path(name))
            if queue is None:
                return 0
            for entry in queue.locked.values():
                entry.locked_until_ms = 0
            return len(queue.locked)


def _snapshot(entry: _Entry) -> PeerMessage:
    message = _decode(entry.sections)
    props = {str(k): _plain(v) for k, v in (message.properties or {}).items()}
    locked_until = (
        datetime.datetime.fromtimestamp(entry.locked_until_ms / 1000, tz=datetime.UTC)
        if entry.lock_token is not None
        else None
    )
    return PeerMessage(
        sequence_number=entry.sequence_number,
        message_id=message.id,
        body=_plain(message.body),
        application_properties=props,
        delivery_count=entry.delivery_count,
        locked=entry.lock_token is not None,
        locked_until=locked_until,
        enqueued_time=datetime.datetime.fromtimestamp(entry.enqueued_ms / 1000, tz=datetime.UTC),
    )
