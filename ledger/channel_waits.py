"""Long-polling channel receives, many at once: one reader per channel and process.

A receive that found nothing unread waits here, registered with its session, where its
read position stood and how far it has looked. When the channel's NOTIFY comes (or
every `POLL_SECONDS`, in case one was lost), the channel's reader reads the new messages
ONCE for all its waiters, picks each waiter's own (from others, to everyone or to it,
after its position, up to its limit), moves every picked waiter's read position in ONE
statement, and hands each its messages. So 200 sessions waiting on one channel cost a
wake-up one read and one write per API replica, not 200 transactions.

What keeps a session's messages neither lost nor given twice:
- A position moves only from where its waiter read it (`move_read_positions` is
  guarded by it): a receive of the same session elsewhere (another request, another
  replica) that moved it first wins, and this waiter reads again from the ledger.
- Only waiters still there when the statement is sent are in it. One that leaves while
  it runs (its request cancelled, its client gone) gets its messages taken back by
  `give_back_read_positions`, guarded the same way, once the statement has answered;
  one whose time runs out while it runs waits for it and takes what it was given. A
  statement that fails moved nothing: its waiters read the ledger again.
- A move cancelled while its statement runs (`move_read_positions` here, for the reader
  and for a receive that found its messages itself) waits for the answer and gives
  back what it moved: a cancelled receive keeps nothing it did not return.
- A process that dies before the statement commits moved nothing: the next receive
  reads the same messages. One that dies after it commits and before the answer reaches
  the client loses them for those sessions, as any receive that moves a position
  before its answer is read does: the guarantee ends where the answer is handed to the
  server to send.
"""

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias
from uuid import UUID

import asyncpg
import structlog

from ledger.agent_sessions import message_record
from ledger.notify import wait_any
from ledger.notify_feed import CHANNELS, NotifyFeed
from ledger.runtime_models import ChannelMessage
from ledger.sql import query
from metrics import CHANNEL_RECEIVES_WAITING

log = structlog.get_logger(__name__)

# How often a channel with waiters is read even without a notification: one lost while
# the LISTEN connection was down delays a message, never loses it.
POLL_SECONDS = 2.0
# The most new messages one wake-up reads; more wait for the next read.
READ_WINDOW = 200

# A waiter's outcome: its messages (its position already past them), or None when its
# position moved elsewhere meanwhile and it must read the ledger again.
Handed: TypeAlias = list[ChannelMessage] | None


@dataclass(frozen=True)
class Move:
    """One session's read position moved past messages handed to it."""

    session_id: UUID
    seen: int  # where the position stood, as its receive read it
    upto: int  # the seq of the last message handed over


async def move_read_positions(
    pool: asyncpg.Pool, channel_id: UUID, moves: Sequence[Move]
) -> set[UUID]:
    """The sessions whose position moved (each only from where it was seen). Cancelled
    while the statement runs, it waits for the answer and gives back what moved."""
    moving = asyncio.ensure_future(
        pool.fetch(query("move_read_positions"), channel_id, *_arrays(moves))
    )
    try:
        rows = await asyncio.shield(moving)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            moved = {row["session_id"] for row in await moving}
            await give_back_read_positions(
                pool, channel_id, [move for move in moves if move.session_id in moved]
            )
        raise
    return {row["session_id"] for row in rows}


async def give_back_read_positions(
    pool: asyncpg.Pool, channel_id: UUID, moves: Sequence[Move]
) -> None:
    """Each position back where it was seen, if it is still where the move put it."""
    if moves:
        await pool.execute(query("give_back_read_positions"), channel_id, *_arrays(moves))


@dataclass(eq=False)
class _Waiter:
    session_id: UUID
    read_seq: int  # its read position, as it read it from the ledger
    scanned_to: int  # every message up to this seq was looked at: none is for it
    limit: int
    handed: "asyncio.Future[Handed]"
    taken: bool = False  # its position is being moved for it now
    left: bool = False  # its receive is over: nothing may be handed to it any more

    def wants(self, message: ChannelMessage) -> bool:
        return (
            message.seq > self.scanned_to
            and message.from_session_id != self.session_id
            and message.to_session_id in (None, self.session_id)
        )


@dataclass(eq=False)
class _Channel:
    # The channel's NOTIFY, followed from the moment its first waiter joins.
    grew: asyncio.Event
    subscription: contextlib.ExitStack
    # Set by a waiter that saw the channel grow before it joined.
    woken: asyncio.Event = field(default_factory=asyncio.Event)
    waiters: list[_Waiter] = field(default_factory=list)


Pick: TypeAlias = tuple[_Waiter, list[ChannelMessage]]


class ChannelWaits:
    """One per process (API replica or worker), shared by its receives."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        # Its own LISTEN connection, made when a receive first waits.
        self.feed = NotifyFeed(pool, CHANNELS)
        self._channels: dict[UUID, _Channel] = {}
        self._readers: dict[UUID, asyncio.Task[None]] = {}
        self._giving_back: set[asyncio.Task[None]] = set()

    @contextlib.contextmanager
    def following(self, channel_id: UUID) -> Iterator[asyncio.Event]:
        """Set when the channel may have grown; entered before the ledger is read, so a
        message committed between that read and `wait` is not missed."""
        with self.feed.subscribe(str(channel_id)) as grew:
            yield grew

    async def wait(
        self,
        channel_id: UUID,
        session_id: UUID,
        read_seq: int,
        scanned_to: int,
        limit: int,
        seconds: float,
        grew: asyncio.Event,
    ) -> Handed:
        """The session's next messages on the channel once they come, its position moved
        past them; [] after `seconds`; None: read the ledger again (see `Handed`).
        `grew` is the event `following` gave before the read that found nothing."""
        loop = asyncio.get_running_loop()
        waiter = _Waiter(session_id, read_seq, scanned_to, limit, loop.create_future())
        channel = self._join(channel_id, waiter)
        if grew.is_set():  # a message since that read: do not wait for the next one
            channel.woken.set()
        CHANNEL_RECEIVES_WAITING.inc()
        try:
            await asyncio.wait((waiter.handed,), timeout=seconds)
            if not waiter.handed.done() and waiter.taken:
                # Its position is moving: take what comes (waited on, not awaited, so a
                # cancellation here leaves the future for the reader to answer).
                await asyncio.wait((waiter.handed,))
            handed = waiter.handed.result() if waiter.handed.done() else []
            waiter.left = True
            return handed
        finally:
            if not waiter.left:  # cancelled, whatever it was given goes back
                waiter.left = True
                self._give_back_unclaimed(channel_id, waiter)
            channel.waiters.remove(waiter)
            CHANNEL_RECEIVES_WAITING.dec()

    async def close(self) -> None:
        """Stops the readers (a move they had under way is given back) and the LISTEN."""
        readers = list(self._readers.values())
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, *self._giving_back, return_exceptions=True)
        await self.feed.listener.close()

    def _join(self, channel_id: UUID, waiter: _Waiter) -> _Channel:
        channel = self._channels.get(channel_id)
        if channel is None:
            subscription = contextlib.ExitStack()
            grew = subscription.enter_context(self.feed.subscribe(str(channel_id)))
            channel = self._channels[channel_id] = _Channel(grew, subscription)
            self._readers[channel_id] = asyncio.create_task(self._read(channel_id, channel))
        channel.waiters.append(waiter)
        return channel

    async def _read(self, channel_id: UUID, channel: _Channel) -> None:
        """The channel's reader, while it has waiters."""
        try:
            while channel.waiters:
                await wait_any(channel.grew, channel.woken, seconds=POLL_SECONDS)
                channel.grew.clear()
                channel.woken.clear()
                await self.feed.ensure()
                try:
                    await self._hand_over(channel_id, channel)
                except Exception as error:  # the next wake-up (or poll) tries again
                    log.warning(
                        "channel_read_failed", channel_id=str(channel_id), error=repr(error)
                    )
        finally:
            # No await between the last look at the waiters and this: a receive that
            # joins after it starts a new reader.
            channel.subscription.close()
            del self._channels[channel_id]
            del self._readers[channel_id]

    async def _hand_over(self, channel_id: UUID, channel: _Channel) -> None:
        waiting = _one_per_session(channel.waiters)
        if not waiting:
            return
        since = min(waiter.scanned_to for waiter in waiting)
        rows = await self.pool.fetch(
            query("channel_messages_after"), channel_id, since, READ_WINDOW
        )
        if len(rows) == READ_WINDOW:  # more may follow: read on at once
            channel.woken.set()
        if not rows:
            return
        messages = [message_record(row) for row in rows]
        picks: list[Pick] = []
        for waiter in waiting:
            if waiter.left:
                continue
            mine = [message for message in messages if waiter.wants(message)][: waiter.limit]
            if mine:
                waiter.taken = True
                picks.append((waiter, mine))
            else:
                waiter.scanned_to = max(waiter.scanned_to, messages[-1].seq)
        if not picks:
            return
        # In session order, so two replicas' moves lock shared rows in the same order.
        picks.sort(key=lambda pick: pick[0].session_id)
        try:
            moved = await move_read_positions(self.pool, channel_id, _moves(picks))
        except BaseException:
            for waiter, _ in picks:  # nothing moved: each reads the ledger again
                waiter.taken = False
                _hand(waiter, None)
            raise
        gone = []
        for waiter, mine in picks:
            waiter.taken = False
            if waiter.session_id not in moved:
                _hand(waiter, None)
            elif waiter.left:
                gone.append((waiter, mine))
            else:
                _hand(waiter, mine)
        await give_back_read_positions(self.pool, channel_id, _moves(gone))

    def _give_back_unclaimed(self, channel_id: UUID, waiter: _Waiter) -> None:
        """A waiter cancelled after its messages were handed to it and before it took
        them: its position goes back, in the background (it is being cancelled)."""
        handed = waiter.handed
        if not handed.done() or handed.cancelled() or not handed.result():
            return
        mine = handed.result()
        assert mine is not None
        task = asyncio.create_task(
            give_back_read_positions(self.pool, channel_id, _moves([(waiter, mine)]))
        )
        self._giving_back.add(task)
        task.add_done_callback(self._giving_back.discard)


def _hand(waiter: _Waiter, handed: Handed) -> None:
    if not waiter.handed.done():
        waiter.handed.set_result(handed)


def _one_per_session(waiters: list[_Waiter]) -> list[_Waiter]:
    """The oldest waiter of each session: two of one session are never handed the same
    messages; the other reads again once the first has moved the position."""
    seen: set[UUID] = set()
    first = []
    for waiter in waiters:
        if waiter.session_id not in seen and not waiter.left:
            seen.add(waiter.session_id)
            first.append(waiter)
    return first


def _moves(picks: list[Pick]) -> list[Move]:
    return [Move(waiter.session_id, waiter.read_seq, mine[-1].seq) for waiter, mine in picks]


def _arrays(moves: Sequence[Move]) -> tuple[list[UUID], list[int], list[int]]:
    """Sessions, where each position stood, where it goes: the statements' arrays."""
    return (
        [move.session_id for move in moves],
        [move.seen for move in moves],
        [move.upto for move in moves],
    )
