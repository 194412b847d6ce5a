"""Gauges read from the ledger: backlog per lane, the oldest runnable run's age, and
approvals waiting. The dispatcher refreshes them every few seconds; every replica
reports the same values, so dashboards and alerts aggregate them with max()."""

import asyncio

import asyncpg
import structlog

from ledger.database import DATABASE_TROUBLE
from ledger.notify import wait_any
from ledger.sql import query
from metrics import APPROVAL_OLDEST_AGE, APPROVALS_PENDING, LANE_DEPTH, OLDEST_RUNNABLE_AGE
from metrics.liveness import LOOPS

log = structlog.get_logger(__name__)

LOOP = "ledger_gauges"


async def refresh_ledger_gauges(pool: asyncpg.Pool, lanes: list[str]) -> None:
    backlog = {row["lane"]: row for row in await pool.fetch(query("lane_backlog"))}
    waiting = {row["lane"]: row for row in await pool.fetch(query("approvals_waiting"))}
    for lane in lanes:
        # A lane with nothing waiting reports 0, not a stale value from before.
        row = backlog.get(lane)
        LANE_DEPTH.labels(lane).set(row["depth"] if row else 0)
        OLDEST_RUNNABLE_AGE.labels(lane).set(row["oldest_age_seconds"] if row else 0)
        row = waiting.get(lane)
        APPROVALS_PENDING.labels(lane).set(row["pending"] if row else 0)
        APPROVAL_OLDEST_AGE.labels(lane).set(row["oldest_age_seconds"] if row else 0)


async def keep_ledger_gauges_fresh(
    pool: asyncpg.Pool, lanes: list[str], stop: asyncio.Event, interval: float = 5.0
) -> None:
    try:
        while not stop.is_set():
            LOOPS.turned(LOOP)
            try:
                await refresh_ledger_gauges(pool, lanes)
            except DATABASE_TROUBLE as error:
                log.warning("gauge_refresh_failed", error=type(error).__name__)
            await wait_any(stop, seconds=interval)
    finally:
        LOOPS.ended(LOOP)
