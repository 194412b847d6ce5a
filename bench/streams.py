"""Benchmark: one API process holding 1,000 open event streams on active runs.

A real `workbench api` process on a fresh migrated database. The bench creates STREAMS
tasks through the ledger (the API's own code path) and claims each run itself, as a
worker would, so every task stays `running` and its stream stays open. It opens one
Server-Sent Events stream per task (plain sockets: an HTTP client library would cost
more client CPU than the server being measured), then:

1. memory: the API's resident memory (VmRSS) with WARM_STREAMS streams open and with
   all STREAMS open and idle; the difference per stream is the cost of holding one;
2. delivery lag: for ROUNDS rounds, a trace event on PER_ROUND random runs, written by
   their claim holder (the worker's write path: fenced, one transaction each) with its
   wall-clock write time in the message; the client notes when each arrives. The lag is
   arrival minus the commit, on the same machine's clock, so it holds the
   notification, the stream's read from Postgres and the socket.

Targets: lag p99 <= 100 ms, <= 50 KB of API memory per idle stream.
Run alone: `python -m bench.streams` (about a minute).
"""

import asyncio
import contextlib
import random
import re
import resource
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from api.auth import mint_token
from bench._services import Service, free_port, quiet_logs, running, server_env, wait_until_ready
from bench.common import fresh_database, machine, migrated_pool, percentiles, write_result
from bench.memory import tree_rss_mb
from ledger.database import close_pool
from ledger.fencing import Fence
from ledger.leases import Leases
from ledger.models import TaskCreateRequest
from ledger.policy import load_policy
from ledger.repository import Actor, Ledger

NAME = "streams"
DATABASE = "bench_streams"
TENANT = "bench-streams"
LANE = "analysis"
STREAMS = 1000
WARM_STREAMS = 20  # open before the baseline, so code paths and pools are warm
ROUNDS = 20
PER_ROUND = 50  # trace events a round, each on its own run
ROUND_SECONDS = 0.5
TARGET_LAG_P99_MS = 100.0
TARGET_KB_PER_STREAM = 50.0
MARK = re.compile(rb"bench-mark:(\d+):(\d+)")


@dataclass
class Stream:
    """One open event stream, read by a plain socket; marks are (round, task index)."""

    index: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    first_byte: asyncio.Event = field(default_factory=asyncio.Event)

    async def read(self, arrivals: dict[tuple[int, int], float]) -> None:
        tail = b""
        while chunk := await self.reader.read(65536):
            now = time.time()
            self.first_byte.set()
            text = tail + chunk
            for match in MARK.finditer(text):
                arrivals.setdefault((int(match[1]), int(match[2])), now)
            tail = text[-64:]

    def close(self) -> None:
        self.writer.close()


async def open_stream(index: int, port: int, token: str, task_id: str) -> Stream:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        (
            f"GET /api/agents/tasks/{task_id}/events HTTP/1.1\r\nHost: bench\r\n"
            f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    return Stream(index, reader, writer)


@dataclass
class Runs:
    """The tasks whose runs the bench holds, with the fences that let it write to them."""

    ids: list[str]
    fences: list[Fence]


async def hold_runs(ledger: Ledger, leases: Leases, count: int) -> Runs:
    actor = Actor(subject="bench", role="operator", tenant_id=TENANT)
    request = TaskCreateRequest(lane=LANE, title="streams-bench", instructions="stay running")
    ids, fences = [], []
    for _ in range(count):
        task = (await ledger.create_task(actor, request)).task
        claim = await leases.claim(
            task_id=task.id, run_id=task.current_run_id, attempt=1, worker="bench", via="bench"
        )
        assert claim is not None
        ids.append(str(task.id))
        fences.append(claim.fence)
    return Runs(ids, fences)


async def measure(
    port: int, token: str, runs: Runs, api: Service, leases: Leases
) -> dict[str, Any]:
    arrivals: dict[tuple[int, int], float] = {}
    streams: list[Stream] = []
    readers: list[asyncio.Task[None]] = []

    async def open_more(upto: int) -> None:
        while len(streams) < upto:
            stream = await open_stream(len(streams), port, token, runs.ids[len(streams)])
            streams.append(stream)
            readers.append(asyncio.create_task(stream.read(arrivals)))
        await asyncio.gather(*(stream.first_byte.wait() for stream in streams))

    try:
        await open_more(WARM_STREAMS)
        await asyncio.sleep(2.0)  # let the replayed history drain and memory settle
        baseline_mb = tree_rss_mb(api.pid)
        opened = time.monotonic()
        await open_more(STREAMS)
        open_seconds = time.monotonic() - opened
        await asyncio.sleep(2.0)
        loaded_mb = tree_rss_mb(api.pid)
        kb_per_stream = (loaded_mb - baseline_mb) * 1024 / (STREAMS - WARM_STREAMS)

        written: dict[tuple[int, int], float] = {}
        for round_number in range(ROUNDS):
            started = time.monotonic()
            picked = random.sample(range(STREAMS), PER_ROUND)

            async def write(index: int, round_number: int = round_number) -> None:
                await leases.trace(
                    runs.fences[index],
                    worker="bench",
                    kind="bench.mark",
                    message=f"bench-mark:{round_number}:{index}",
                    data={},
                )
                written[(round_number, index)] = time.time()

            await asyncio.gather(*(write(index) for index in picked))
            await asyncio.sleep(max(0.0, ROUND_SECONDS - (time.monotonic() - started)))
        deadline = time.monotonic() + 10.0
        while set(written) - set(arrivals) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        lags = [max(0.0, arrivals[key] - at) for key, at in written.items() if key in arrivals]
        return {
            "streams": STREAMS,
            "open_seconds": round(open_seconds, 2),
            "api_rss_mb": {"warm": baseline_mb, "all_open": loaded_mb},
            "kb_per_idle_stream": round(kb_per_stream, 1),
            "events_written": len(written),
            "events_delivered": sum(1 for key in written if key in arrivals),
            "lag_ms": percentiles(lags),
            "events_per_second": round(PER_ROUND / ROUND_SECONDS, 1),
        }
    finally:
        for stream in streams:
            stream.close()
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)


def summary_lines(result: dict[str, Any]) -> list[str]:
    lag, kb = result["lag_ms"], result["kb_per_idle_stream"]
    lag_met = "met" if lag.get("p99", float("inf")) <= TARGET_LAG_P99_MS else "NOT met"
    kb_met = "met" if kb <= TARGET_KB_PER_STREAM else "NOT met"
    return [
        f"1 `workbench api` process holding {result['streams']} open event streams on "
        f"running tasks (opened in {result['open_seconds']} s)",
        f"delivery lag, trace write committed -> event at the client "
        f"({result['events_delivered']}/{result['events_written']} events, "
        f"{result['events_per_second']}/s): p50/p95/p99 {lag.get('p50')}/{lag.get('p95')}/"
        f"{lag.get('p99')} ms (target p99 <= {TARGET_LAG_P99_MS:.0f}: {lag_met})",
        f"API memory per idle stream: {kb} KB (target <= {TARGET_KB_PER_STREAM:.0f}: "
        f"{kb_met}); API RSS {result['api_rss_mb']['warm']} MB with {WARM_STREAMS} streams, "
        f"{result['api_rss_mb']['all_open']} MB with {result['streams']}",
    ]


async def main() -> dict[str, Any]:
    quiet_logs()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * STREAMS)), hard))
    url = fresh_database(DATABASE)
    policy = load_policy()
    pool = await migrated_pool(url, max_size=10)
    workdir = Path(tempfile.mkdtemp(prefix="bench-streams-"))
    secret = secrets.token_urlsafe(32)
    port = free_port()
    env = server_env(url, secret, port, workdir)
    token = mint_token(secret, subject="bench", roles=["viewer"], tenant_id=TENANT)
    try:
        leases = Leases(pool, policy)
        runs = await hold_runs(Ledger(pool, policy), leases, STREAMS)
        with running(Service("api", ["api"], env, workdir)) as api:
            await asyncio.to_thread(wait_until_ready, api, f"http://127.0.0.1:{port}")
            result = {
                "machine": await machine(url),
                **await measure(port, token, runs, api, leases),
            }
    except BaseException:
        print(f"bench.streams: server logs kept in {workdir}", file=sys.stderr)
        raise
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    finally:
        with contextlib.suppress(Exception):
            await close_pool(pool)
    result["summary"] = summary_lines(result)
    return result


if __name__ == "__main__":
    outcome = asyncio.run(main())
    write_result(NAME, outcome)
    print("\n".join(outcome["summary"]))
