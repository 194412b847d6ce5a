"""LISTEN on a channel with a connection held for the purpose, reconnecting after the
connection is lost. Notifications are wake-ups only: every loop that listens also
polls, so a notification lost while reconnecting delays work, never loses it."""

import asyncio
import contextlib
from collections.abc import Callable

import asyncpg
import structlog

from ledger.database import DATABASE_TROUBLE

log = structlog.get_logger(__name__)


def is_open(connection: asyncpg.Connection | None) -> bool:
    """Whether a connection held from the pool is still usable. When the server ends
    a connection (a restart, a failover), asyncpg hands it back to the pool itself and
    detaches the proxy the holder kept: asking that proxy anything then raises
    InterfaceError instead of answering "closed"."""
    if connection is None:
        return False
    try:
        return not connection.is_closed()
    except asyncpg.InterfaceError:
        return False


class Listener:
    def __init__(self, pool: asyncpg.Pool, channel: str, on_payload: Callable[[str], None]) -> None:
        self.pool = pool
        self.channel = channel
        self.on_payload = on_payload
        self._connection: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()  # several loops may call ensure() at once

    def _notified(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        self.on_payload(payload)

    async def ensure(self) -> None:
        """(Re)connect if needed; cheap when already listening. Failures are logged and
        left to the caller's polling."""
        async with self._lock:
            if is_open(self._connection):
                return
            await self.close()
            try:
                self._connection = await self.pool.acquire(timeout=5)
                await self._connection.add_listener(self.channel, self._notified)
            except (*DATABASE_TROUBLE, TimeoutError) as error:
                log.warning("listen_failed", channel=self.channel, error=type(error).__name__)
                await self.close()

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        with contextlib.suppress(Exception):  # a dead connection is released all the same
            await connection.remove_listener(self.channel, self._notified)
        with contextlib.suppress(Exception):
            await self.pool.release(connection)


async def wait_any(*events: asyncio.Event, seconds: float) -> None:
    """Return when one of `events` is set, or after `seconds`."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
