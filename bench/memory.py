"""Benchmark 4: worker memory at concurrency 32.

A real `workbench worker --concurrency 32` process, beside a real `workbench dispatcher`,
each on a fresh migrated database, works through a backlog of tasks created through
the ledger (the same code path as the API). Its resident memory (VmRSS from
/proc/<pid>/status, its children included; the kernel's high-water mark VmHWM for the
peak) is sampled while the runs are in flight:

1. `sleep` executor: every run sleeps SLEEP_SECONDS, so 32 runs are in flight at once
   for most of the window: the cost of the worker itself (claims, leases, heartbeats).
2. `sdk` executor with the `offline` model: real agent runs (the Agents SDK `Runner`, a
   tool call writing an artifact, the ledger's trace processor), 32 slots fed from a
   backlog; runs are short, so the number in flight is reported beside the memory.

Also: the memory of a bare interpreter and of the imports alone, to tell what the
worker's own state costs from what loading its code costs.

Target: <= 150 MB. Run alone: `python -m bench.memory` (about 2.5 minutes).
"""

import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from bench._services import Service, quiet_logs
from bench.common import fresh_database, machine, migrated_pool, server, write_result
from ledger.database import close_pool
from ledger.models import TaskCreateRequest
from ledger.policy import load_policy
from ledger.repository import Actor, Ledger

NAME = "memory"
TARGET_MB = 150.0
CONCURRENCY = 32
LANE = "analysis"
TENANT = "bench-memory"
SLEEP_SECONDS = 3.0
# Sampled while work is in flight. The sdk worker's memory climbs over its first few
# thousand runs before it levels off (seen: +14 MB from 1,000 to 4,000 runs, flat from
# there to 6,000), so its window is longer.
WINDOW_SECONDS = {"sleep": 30.0, "sdk": 90.0}
# Runs kept waiting beyond the ones in flight, so a slot never waits for the feeder.
BACKLOG = {"sleep": 2 * CONCURRENCY, "sdk": 8 * CONCURRENCY}
IDLE_SECONDS = 2.0  # sampled after start-up, before any task exists
SAMPLE_EVERY = 0.25
# The offline model follows `#call` directives: one tool call (an artifact written
# through the store, a tool_verdict trace event), then the final answer.
SDK_INSTRUCTIONS = (
    "Summarise the incident and keep notes.\n"
    '#call write_artifact {"name": "notes.md", "content": "Timeline: 09:12 alert, '
    '09:20 rollback, 09:31 recovered. Next step: add a canary."}'
)

# What `workbench` loads, measured in a fresh interpreter: the CLI imports everything
# (API, dispatcher, worker); `agents` and the offline model come in with the first sdk
# run.
IMPORT_PROBES = {
    "python": "",
    "cli": "import cli.main",
    "cli_and_agents_sdk": "import cli.main, agents, worker.offline_model, worker.tools, "
    "worker.tracing",
}


def _status_kb(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
            values[key] = int(rest.split()[0])
    return values


def tree_rss_mb(pid: int) -> float:
    """VmRSS of the process and all its descendants, in MB."""
    pids = [pid]
    with contextlib.suppress(psutil.NoSuchProcess):
        pids += [child.pid for child in psutil.Process(pid).children(recursive=True)]
    total = 0
    for each in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += _status_kb(each)["VmRSS"]
    return round(total / 1024, 1)


def import_footprint() -> dict[str, float]:
    """VmRSS (MB) of a fresh interpreter after each probe's imports."""
    report = "import re; print(re.search(r'VmRSS:\\s+(\\d+)', open('/proc/self/status').read())[1])"
    found = {}
    for name, imports in IMPORT_PROBES.items():
        output = subprocess.run(
            [sys.executable, "-c", f"{imports}\n{report}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        found[name] = round(int(output.split()[-1]) / 1024, 1)
    return found


@dataclass
class Samples:
    rss_mb: list[float] = field(default_factory=list)
    in_flight: list[int] = field(default_factory=list)

    def at_least(self, in_flight: int) -> list[float]:
        """The samples taken while at least `in_flight` runs were going."""
        return [
            rss
            for rss, running in zip(self.rss_mb, self.in_flight, strict=True)
            if running >= in_flight
        ]

    def settled(self) -> "Samples":
        """The samples after the first third of the window: the backlog is being worked
        through and every code path a run takes has been loaded."""
        skip = len(self.rss_mb) // 3
        return Samples(self.rss_mb[skip:], self.in_flight[skip:])


@contextlib.asynccontextmanager
async def _pipeline(
    database: str, executor: str, work_dir: Path
) -> AsyncIterator[tuple[asyncpg.Pool, Service]]:
    """A fresh database with a dispatcher and a worker on it, stopped at the end."""
    url = fresh_database(database)
    pool = await migrated_pool(url)
    env = {
        "DATABASE_URL": url,
        "WORKBENCH_DATA_DIR": str(work_dir / "data"),
        "WORKBENCH_ARTIFACT_DIR": str(work_dir / "artifacts"),
        # Stopping at the end of the window: release what is in flight at once.
        "WORKBENCH_DRAIN_SECONDS": "1",
        "WORKBENCH_EXECUTOR": executor,
    }
    dispatcher = Service(f"dispatcher-{executor}", ["dispatcher"], env, work_dir).start()
    worker = Service(
        f"worker-{executor}",
        ["worker", "--concurrency", str(CONCURRENCY), "--executor", executor, "--lanes", LANE],
        env,
        work_dir,
    ).start()
    try:
        worker.wait_for_log('"event":"worker_started"')
        dispatcher.check_running()
        yield pool, worker
    finally:
        worker.stop()
        dispatcher.stop()
        await close_pool(pool)


class Feeder:
    """Creates tasks through the ledger whenever fewer than `backlog` runs wait."""

    def __init__(self, pool: asyncpg.Pool, request: TaskCreateRequest, backlog: int) -> None:
        self.pool = pool
        self.ledger = Ledger(pool, load_policy())
        self.actor = Actor("bench-memory", TENANT, "operator")
        self.request = request
        self.backlog = backlog
        self.created = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            waiting = await self.pool.fetchval(
                "SELECT count(*) FROM runs WHERE status IN ('queued', 'dispatched')"
            )
            if waiting >= self.backlog:
                await asyncio.sleep(0.1)
                continue
            batch = min(50, self.backlog - waiting)
            await asyncio.gather(
                *(self.ledger.create_task(self.actor, self.request) for _ in range(batch))
            )
            self.created += batch


async def _sample(pool: asyncpg.Pool, worker: Service, seconds: float) -> Samples:
    samples = Samples()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        worker.check_running()
        samples.rss_mb.append(tree_rss_mb(worker.pid))
        samples.in_flight.append(
            await pool.fetchval("SELECT count(*) FROM runs WHERE status = 'running'")
        )
        await asyncio.sleep(SAMPLE_EVERY)
    return samples


async def run_phase(executor: str, work_dir: Path) -> dict[str, Any]:
    if executor == "sleep":
        request = TaskCreateRequest(
            lane=LANE,
            title="bench memory: sleep",
            instructions="sleep",
            scope={"sleep_seconds": SLEEP_SECONDS},
        )
    else:
        request = TaskCreateRequest(
            lane=LANE,
            title="bench memory: offline agent",
            instructions=SDK_INSTRUCTIONS,
            model_provider="offline",
        )
    async with _pipeline(f"bench_memory_{executor}", executor, work_dir) as (pool, worker):
        idle = await _sample(pool, worker, IDLE_SECONDS)
        feeder = Feeder(pool, request, BACKLOG[executor])
        stop = asyncio.Event()
        began = time.monotonic()
        feeding = asyncio.create_task(feeder.run(stop))
        try:
            busy = await _sample(pool, worker, WINDOW_SECONDS[executor])
        finally:
            stop.set()
            await feeding
        status = _status_kb(worker.pid)
        finished = await pool.fetchval(
            "SELECT count(*) FROM runs WHERE status = 'succeeded' AND finished_at IS NOT NULL"
        )
        failed = await pool.fetch(
            "SELECT status, count(*) AS n FROM tasks WHERE status NOT IN "
            "('succeeded', 'queued', 'dispatched', 'running') GROUP BY status"
        )
        elapsed = time.monotonic() - began
    settled = busy.settled()
    at_full = busy.at_least(CONCURRENCY)
    return {
        "executor": executor,
        "idle_rss_mb": round(statistics.median(idle.rss_mb), 1),
        "steady_rss_mb": round(statistics.median(settled.rss_mb), 1),
        "peak_rss_mb": round(max(status["VmHWM"] / 1024, *busy.rss_mb), 1),
        "max_sampled_rss_mb": max(busy.rss_mb),
        "max_rss_with_all_slots_busy_mb": max(at_full) if at_full else None,
        # Still growing at the end of the window would point at a leak, not a plateau.
        "settled_first_last_rss_mb": [settled.rss_mb[0], settled.rss_mb[-1]],
        "rss_breakdown_mb_at_end": {
            key: round(value / 1024, 1) for key, value in status.items() if key != "VmHWM"
        },
        "in_flight": {
            "max": max(busy.in_flight),
            "median": statistics.median(settled.in_flight),
            "samples_at_concurrency": len(at_full),
            "samples": len(busy.in_flight),
        },
        "tasks_created": feeder.created,
        "runs_succeeded": finished,
        "other_outcomes": {row["status"]: row["n"] for row in failed},
        "window_seconds": round(elapsed, 1),
    }


async def main() -> dict[str, Any]:
    began = time.perf_counter()
    quiet_logs()
    imports = await asyncio.to_thread(import_footprint)
    phases = {}
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as work_dir:
        for executor in ("sleep", "sdk"):
            phase_dir = Path(work_dir) / executor
            phase_dir.mkdir()
            phases[executor] = await run_phase(executor, phase_dir)
    met = all(phase["peak_rss_mb"] <= TARGET_MB for phase in phases.values())
    summary = [
        f"{name} executor, concurrency {CONCURRENCY}: steady {phase['steady_rss_mb']} MB, "
        f"peak {phase['peak_rss_mb']} MB (idle {phase['idle_rss_mb']} MB; in flight: median "
        f"{phase['in_flight']['median']}, max {phase['in_flight']['max']})"
        for name, phase in phases.items()
    ]
    summary.append(
        "RSS of the imports alone: " + ", ".join(f"{name} {mb} MB" for name, mb in imports.items())
    )
    summary.append(f"target: peak <= {TARGET_MB:.0f} MB: {'met' if met else 'NOT met'}")
    return {
        "name": NAME,
        "target": f"worker RSS <= {TARGET_MB:.0f} MB at concurrency {CONCURRENCY}",
        "met": met,
        "summary": summary,
        "phases": phases,
        "import_rss_mb": imports,
        "machine": await machine(server().get_uri()),
        "seconds": round(time.perf_counter() - began, 1),
    }


if __name__ == "__main__":
    outcome = asyncio.run(main())
    path = write_result(NAME, outcome)
    print("\n".join(outcome["summary"]))
    print(json.dumps(outcome["phases"], indent=2), file=sys.stderr)
    print(f"written to {path}", file=sys.stderr)
