"""The agent runner as this process sees it: whether the agents SDK imports and its
version, which model providers are configured (never a key), whether each configured
provider's model API answers within a short timeout, and the workers seen per lane.

The ledger records no heartbeat of a worker that holds nothing: a worker is seen while
it holds a run with a live lease whose heartbeat falls within the window
(`WORKBENCH_WORKER_SEEN_SECONDS`, default 60). An idle worker polling its lane is not
counted.

A probe is a plain GET of the model API's `/models`, without a credential: any HTTP
answer, a 401 included, means the API is reachable; no answer within
`WORKBENCH_MODEL_PROBE_TIMEOUT_SECONDS` (default 2) or a refused connection means it is
not. Answers are kept for a few seconds so that scrapes and page loads do not probe
each time. Served as `GET /api/agents/runner-health` and as the `workbench_runner_*`
and `workbench_lane_workers` gauges, refreshed at each scrape of the API's /metrics.
"""

import asyncio
import importlib.metadata
import os
import time
from datetime import UTC, datetime
from typing import Literal

import asyncpg
import httpx
import structlog
from pydantic import BaseModel, ConfigDict

from ledger.database import DATABASE_TROUBLE
from ledger.policy import PolicyConfig
from ledger.sql import query
from metrics import (
    LANE_WORKERS,
    RUNNER_MODEL_REACHABLE,
    RUNNER_PROVIDER_CONFIGURED,
    RUNNER_SDK_AVAILABLE,
)
from worker.executors import sdk_import_error
from worker.providers import ProviderNotConfigured, default_model_name, model_api_url

log = structlog.get_logger(__name__)

SDK_DISTRIBUTION = "openai-agents"
# How long a probe's answer is reused.
_PROBE_MEMORY_SECONDS = 10.0
WORKERS_SOURCE = (
    "runs holding a live lease whose heartbeat is within the window; the ledger keeps "
    "no heartbeat of an idle worker"
)


def probe_timeout_seconds() -> float:
    return float(os.environ.get("WORKBENCH_MODEL_PROBE_TIMEOUT_SECONDS", "2"))


def worker_window_seconds() -> float:
    return float(os.environ.get("WORKBENCH_WORKER_SEEN_SECONDS", "60"))


class _Report(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SdkHealth(_Report):
    available: bool
    version: str | None
    # Why it does not import, when it does not.
    error: str | None


class ProviderHealth(_Report):
    name: str
    configured: bool
    # What to set, when it is not configured (variable names, never values).
    detail: str | None
    default_model: str | None
    # The model API's URL without credentials, query or fragment; None for offline.
    endpoint: str | None
    # `in_process` (offline), `http` (a probe of the endpoint), `not_configured`.
    probe: Literal["in_process", "http", "not_configured"]
    # None when not configured (nothing to reach).
    reachable: bool | None
    # The probe's HTTP status, or why no answer came (the error's kind).
    status_code: int | None
    error: str | None


class LaneWorkers(_Report):
    lane: str
    workers: int
    last_heartbeat_at: datetime | None


class RunnerHealth(_Report):
    sdk: SdkHealth
    providers: list[ProviderHealth]
    lanes: list[LaneWorkers]
    worker_window_seconds: float
    workers_source: str
    checked_at: datetime


class _Probe(_Report):
    reachable: bool
    status_code: int | None
    error: str | None


class RunnerHealthCheck:
    def __init__(self, pool: asyncpg.Pool, policy: PolicyConfig) -> None:
        self.pool = pool
        self.policy = policy
        self._probes: dict[str, tuple[float, _Probe]] = {}

    async def report(self) -> RunnerHealth:
        return RunnerHealth(
            sdk=_sdk(),
            providers=await self._providers(),
            lanes=await self._lanes(),
            worker_window_seconds=worker_window_seconds(),
            workers_source=WORKERS_SOURCE,
            checked_at=datetime.now(UTC),
        )

    async def refresh_gauges(self) -> None:
        """Set the gauges from a fresh report. The lanes keep their last values while
        the database is out of reach (a scrape waits no longer than a probe for it);
        the rest needs none."""
        RUNNER_SDK_AVAILABLE.set(1 if _sdk().available else 0)
        for provider in await self._providers():
            RUNNER_PROVIDER_CONFIGURED.labels(provider.name).set(1 if provider.configured else 0)
            RUNNER_MODEL_REACHABLE.labels(provider.name).set(1 if provider.reachable else 0)
        try:
            async with asyncio.timeout(probe_timeout_seconds()):
                lanes = await self._lanes()
        except (*DATABASE_TROUBLE, TimeoutError) as error:
            log.warning("runner_gauges_refresh_failed", error=type(error).__name__)
            return
        for lane in lanes:
            LANE_WORKERS.labels(lane.lane).set(lane.workers)

    async def _providers(self) -> list[ProviderHealth]:
        # Probed together: a scrape waits for the slowest probe, not for their sum.
        return list(await asyncio.gather(*map(self._provider, self.policy.providers)))

    async def _provider(self, name: str) -> ProviderHealth:
        try:
            endpoint = model_api_url(name)
        except ProviderNotConfigured as error:
            return ProviderHealth(
                name=name,
                configured=False,
                detail=str(error),
                default_model=default_model_name(name),
                endpoint=None,
                probe="not_configured",
                reachable=None,
                status_code=None,
                error=None,
            )
        if endpoint is None:  # offline: the model runs in the worker's process
            probe, kind = _Probe(reachable=True, status_code=None, error=None), "in_process"
        else:
            probe, kind = await self._probe(endpoint), "http"
        return ProviderHealth(
            name=name,
            configured=True,
            detail=None,
            default_model=default_model_name(name),
            endpoint=endpoint,
            probe=kind,
            reachable=probe.reachable,
            status_code=probe.status_code,
            error=probe.error,
        )

    async def _probe(self, endpoint: str) -> _Probe:
        remembered = self._probes.get(endpoint)
        if remembered is not None and time.monotonic() - remembered[0] < _PROBE_MEMORY_SECONDS:
            return remembered[1]
        try:
            async with httpx.AsyncClient(timeout=probe_timeout_seconds()) as client:
                response = await client.get(endpoint.rstrip("/") + "/models")
            probe = _Probe(reachable=True, status_code=response.status_code, error=None)
        except httpx.HTTPError as error:
            probe = _Probe(reachable=False, status_code=None, error=type(error).__name__)
        self._probes[endpoint] = (time.monotonic(), probe)
        return probe

    async def _lanes(self) -> list[LaneWorkers]:
        rows = await self.pool.fetch(query("lane_workers_seen"), worker_window_seconds())
        seen = {row["lane"]: row for row in rows}
        return [
            LaneWorkers(
                lane=lane,
                workers=seen[lane]["workers"] if lane in seen else 0,
                last_heartbeat_at=seen[lane]["last_heartbeat_at"] if lane in seen else None,
            )
            for lane in self.policy.lanes
        ]


def _sdk() -> SdkHealth:
    error = sdk_import_error()
    try:
        version: str | None = importlib.metadata.version(SDK_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        version = None
    return SdkHealth(available=error is None, version=version, error=error)
