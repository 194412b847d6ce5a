"""The console's live updates: Server-Sent Events woken by the ledger's notifications.

The streams follow the notification feeds the API's own event streams and long polls
use, so they cost no query while nothing changes and are woken within a
notification's round trip when something does; a lost LISTEN connection is made again
at the next poll (`POLL_SECONDS`) and every stream then catches up.

- `changes`: the tenant's tasks changed. It carries no data: the page asks again for
  the fragment it shows (the list with its filters, the approvals, the lanes), at most
  once per `THROTTLE_SECONDS`, however many tasks changed.
- `trace`: one task's trace events after a sequence number, each rendered as a row of
  its timeline (the event id is its sequence number, so a reconnect resumes), and a
  `status` event after a batch that moved the task, so the page refreshes its summary.
- `channel`: one coordination channel's messages after a sequence number, the same
  way, woken by the channels' notifications (`app.state.channel_feed`).

The pages (`static/console.js`) close them while the tab is hidden and open them again,
from where they stopped, when it is shown; they poll instead while a stream is down.
None ends by itself: each ends when the process is stopping (`app.state.stopping`),
and the browser connects again to whichever replica serves it next.
"""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from uuid import UUID

from starlette.requests import Request
from starlette.responses import StreamingResponse

from api.routes.events import KEEPALIVE_SECONDS, POLL_SECONDS, STREAM_BATCH
from console.auth import Me
from console.render import render
from ledger.channels import Waker
from ledger.notify import wait_any

THROTTLE_SECONDS = 1.0
# More changed ids than this between two sends: treated as "everything changed".
_MAX_PENDING = 5_000
_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def frame(event: str, data: str, *, event_id: int | None = None) -> str:
    lines = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
    id_line = f"id: {event_id}\n" if event_id is not None else ""
    return f"{id_line}event: {event}\n{lines}\n"


def _stream(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream", headers=_HEADERS)


def changes(request: Request, me: Me) -> StreamingResponse:
    feed = request.app.state.trace_feed
    ledger = request.app.state.ledger
    stopping = request.app.state.stopping

    async def events() -> AsyncIterator[str]:
        pending: set[str] = set()
        everything = False
        wake = asyncio.Event()

        def on_change(task_ids: list[str] | None) -> None:
            nonlocal everything
            if task_ids is None or len(pending) + len(task_ids) > _MAX_PENDING:
                everything = True
            else:
                pending.update(task_ids)
            wake.set()

        yield "retry: 3000\n\n"
        await feed.ensure()
        with feed.watch_all(on_change):
            idle = 0.0
            while not stopping.is_set():
                await wait_any(wake, stopping, seconds=POLL_SECONDS)
                if stopping.is_set():
                    return
                if not wake.is_set():
                    idle += POLL_SECONDS
                    await feed.ensure()  # a lost LISTEN connection is made again
                    if idle >= KEEPALIVE_SECONDS:
                        idle = 0.0
                        yield ": keep-alive\n\n"
                    continue
                wake.clear()
                ids, all_changed = list(pending), everything
                pending.clear()
                everything = False
                mine = all_changed or await ledger.tenant_tasks_among(me.tenant, _uuids(ids))
                if mine:
                    idle = 0.0
                    yield frame("changed", "")
                    # The throttle: whatever changes meanwhile is sent once, after it.
                    await wait_any(stopping, seconds=THROTTLE_SECONDS)

    return _stream(events())


def _uuids(values: list[str]) -> list[UUID]:
    parsed = []
    for value in values:
        try:
            parsed.append(UUID(value))
        except ValueError:
            continue
    return parsed


def trace(request: Request, me: Me, task_id: UUID, after: int) -> StreamingResponse:
    """Task `task_id`'s trace after `after`, live. The caller has read the task (404)."""
    ledger = request.app.state.ledger

    async def read(seq: int) -> tuple[list[str], int, bool]:
        batch = await ledger.list_traces(me.tenant, task_id, after_seq=seq, limit=STREAM_BATCH)
        frames = [
            frame("trace", render("_trace_item.html", {"event": event}), event_id=event.seq)
            for event in batch
        ]
        moved = next((event.to_status for event in reversed(batch) if event.to_status), None)
        if moved:
            frames.append(frame("status", moved))
        return frames, batch[-1].seq if batch else seq, len(batch) == STREAM_BATCH

    return _stream(_follow(request, request.app.state.trace_feed, str(task_id), after, read))


def channel(request: Request, me: Me, channel_id: UUID, after: int) -> StreamingResponse:
    """Channel `channel_id`'s messages after sequence number `after`, live, each a row
    of the channel's page. Woken by the channels' notifications, as a long-polling
    `recv` is. The caller has read the channel (404)."""
    ledger = request.app.state.ledger

    async def read(seq: int) -> tuple[list[str], int, bool]:
        batch = await ledger.channel_messages(
            me.tenant, channel_id, after_seq=seq, limit=STREAM_BATCH
        )
        frames = [
            frame("message", render("_channel_message.html", {"m": m}), event_id=m.message.seq)
            for m in batch
        ]
        return frames, batch[-1].message.seq if batch else seq, len(batch) == STREAM_BATCH

    return _stream(_follow(request, request.app.state.channel_feed, str(channel_id), after, read))


Read = Callable[[int], Awaitable[tuple[list[str], int, bool]]]


async def _follow(
    request: Request, feed: Waker, key: str, after: int, read: Read
) -> AsyncIterator[str]:
    """The frames `read(seq)` makes of what follows `seq` (with the new last `seq`, and
    whether the batch was full), from `after` on, read again each time `key` grows."""
    stopping = request.app.state.stopping
    seq = after
    yield "retry: 3000\n\n"
    await feed.ensure()
    with feed.subscribe(key) as grew:
        idle = 0.0
        while not stopping.is_set():
            grew.clear()
            frames, seq, full = await read(seq)
            for one in frames:
                yield one
            if frames:
                idle = 0.0
            if full:
                continue
            while not grew.is_set() and not stopping.is_set():
                await wait_any(grew, stopping, seconds=POLL_SECONDS)
                if not grew.is_set() and not stopping.is_set():
                    idle += POLL_SECONDS
                    await feed.ensure()
                    if idle >= KEEPALIVE_SECONDS:
                        idle = 0.0
                        yield ": keep-alive\n\n"
