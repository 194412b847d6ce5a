"""`workbench dispatcher`: the outbox, the reaper (`reaper.py`), the session reaper
(`session_reaper.py`) and the change expiry sweeper (`change_expiry.py`) in one bounded,
cancellable loop.

Several replicas may run: the outbox locks with SKIP LOCKED and the reaper guards each
rescue in SQL, so they share the work rather than repeat it.
"""

import asyncio
import socket
from dataclasses import dataclass

import asyncpg
import structlog

from dispatcher.change_expiry import ChangeExpiry, ChangeExpiryConfig
from dispatcher.outbox import Outbox
from dispatcher.reaper import Reaper, ReaperConfig
from dispatcher.session_reaper import SessionReaper, SessionReaperConfig
from lanes.registry import LaneRegistry
from ledger.database import DATABASE_TROUBLE
from ledger.notify import Listener, unless_stopped, wait_any
from ledger.policy import PolicyConfig
from metrics.ledger_gauges import keep_ledger_gauges_fresh
from metrics.liveness import LOOPS

log = structlog.get_logger(__name__)

LOOP = "dispatcher"


@dataclass(frozen=True)
class DispatcherConfig:
    batch_size: int = 500
    # Polling fallback when no NOTIFY arrives (lost while reconnecting, or a retry
    # whose backoff just ended: those are not notified).
    poll_interval: float = 0.5
    reap_interval: float = 1.0
    name: str = f"dispatcher:{socket.gethostname()}"


async def run_dispatcher(
    pool: asyncpg.Pool, policy: PolicyConfig, stop: asyncio.Event, config: DispatcherConfig
) -> None:
    lanes = LaneRegistry(pool, policy)
    outbox = Outbox(pool, lanes, config.name)
    reaper = Reaper(pool, policy, ReaperConfig(actor=config.name))
    sessions = SessionReaper(pool, policy, SessionReaperConfig(actor=config.name))
    changes = ChangeExpiry(pool, policy, ChangeExpiryConfig(actor=config.name))
    wake = asyncio.Event()
    listener = Listener(pool, "workbench_runs", lambda _: wake.set())
    loop = asyncio.get_running_loop()
    next_reap = 0.0

    async def turn() -> int:
        """Dispatch a batch and, when due, reap; the number of runs sent."""
        nonlocal next_reap
        await listener.ensure()
        result = await outbox.dispatch_once(config.batch_size)
        if loop.time() >= next_reap:
            reaped = await reaper.run_once()
            next_reap = loop.time() + config.reap_interval
            if reaped.lost or reaped.redispatched:
                log.info("reaped", **reaped.__dict__)
            stopped = await sessions.run_once()
            if stopped:
                log.info("sessions_stopped", **stopped)
            expired = await changes.run_once()
            if expired:
                log.info("changes_expired", count=expired)
        return result.sent

    log.info("dispatcher_started", lanes=lanes.configured(), batch_size=config.batch_size)
    gauges = asyncio.create_task(keep_ledger_gauges_fresh(pool, list(policy.lanes), stop))
    try:
        while not stop.is_set():
            LOOPS.turned(LOOP)
            wake.clear()
            try:
                # A turn abandoned at SIGTERM leaves nothing half done: a batch not yet
                # marked rolls back, and one marked but not sent is put back to queued
                # (the outbox's own cleanup), or rescued by the dispatch timeout.
                sent = await unless_stopped(turn(), stop)
            except DATABASE_TROUBLE as error:
                # The database is away: keep the loop, try again shortly.
                log.warning("dispatcher_database_error", error=f"{type(error).__name__}: {error}")
                await wait_any(stop, seconds=config.poll_interval * 4)
                continue
            if sent is not None and sent < config.batch_size:
                await wait_any(wake, stop, seconds=config.poll_interval)
    finally:
        LOOPS.ended(LOOP)
        gauges.cancel()
        await asyncio.gather(gauges, return_exceptions=True)
        await listener.close()
        await lanes.close()
        log.info("dispatcher_stopped")
