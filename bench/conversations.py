"""Benchmark: 50 concurrent conversations with the offline model.

One real `workbench up` process (API, dispatcher and an `sdk` worker with a slot per
conversation) on a fresh migrated database. CONVERSATIONS clients each open a thread
with the router agent and then, for SECONDS, send a message, read the run's event
stream (`POST /api/v1/threads/{id}/runs`) to its `done` event, pause THINK_SECONDS as a
person would (0.5 to 1.5 times THINK_SECONDS, the first pause before the first turn),
and send the next. The pause keeps the offered load (about CONVERSATIONS /
THINK_SECONDS runs a second) under what the process can run, so the latency measured is
the pipeline's and not a queue's: with 0.5 s the runs queue behind each other. Each run
goes the whole governed way: verdict, lane, claim, the router's handoff to a
specialist, the specialist's answer, the history.

Measured per run: from sending the message to the first `text` event, and to `done`;
and thread runs per second. Target: first text p99 <= 100 ms. A run starts when the user
sends the message: that request records the run (its verdict, its message, the task in
its lane) before the stream's first event, `run_created`, so that event is not the start
but the API's answer to it. The time from `run_created` to the first text is reported
beside it, to tell the API's part from the rest.
Run alone: `python -m bench.conversations` (about a minute).
"""

import asyncio
import random
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from api.auth import mint_token
from bench._services import Service, free_port, running, server_env, wait_until_ready
from bench.common import fresh_database, machine, migrated_pool, percentiles, write_result

NAME = "conversations"
DATABASE = "bench_conversations"
TENANT = "bench-conversations"
CONVERSATIONS = 50
SECONDS = 20.0
WARMUP_SECONDS = 3.0  # runs that start before this are left out (imports, pools)
THINK_SECONDS = 2.0
TARGET_FIRST_TEXT_P99_MS = 100.0
# Routed by their keywords to two different specialists, turn by turn.
MESSAGES = (
    "checkout is down with 5xx errors since the last deploy, what is the incident?",
    "which runbook explains how to restart the payment service?",
)


# When a run was started (its message sent), created (its `run_created` event read), gave
# its first text and was done.
Sample = tuple[float, float, float, float]


async def converse(client: httpx.AsyncClient, stop_at: float, samples: list[Sample]) -> int:
    """One conversation until `stop_at`; each run's times."""
    thread = (await client.post("/api/v1/threads", json={"agent_type": "it-router"})).json()
    thread_id = thread["thread"]["id"]
    turns = 0
    # People do not type in step: conversations start apart and pause for a while
    # around THINK_SECONDS, so runs arrive spread out, not in waves of fifty.
    await asyncio.sleep(random.uniform(0, THINK_SECONDS))
    while time.monotonic() < stop_at:
        message = MESSAGES[turns % len(MESSAGES)]
        started = time.monotonic()
        created = first_text = 0.0
        async with client.stream(
            "POST", f"/api/v1/threads/{thread_id}/runs", json={"message": message}
        ) as response:
            if response.status_code != 200:
                raise RuntimeError(f"run refused: {response.status_code} {await response.aread()}")
            async for line in response.aiter_lines():
                if line == "event: run_created":
                    created = time.monotonic()
                elif line == "event: text" and not first_text:
                    first_text = time.monotonic()
                elif line == "event: done":
                    break
        samples.append((started, created, first_text, time.monotonic()))
        turns += 1
        await asyncio.sleep(random.uniform(0.5, 1.5) * THINK_SECONDS)
    return turns


async def measure(base_url: str, token: str) -> dict[str, Any]:
    samples: list[Sample] = []
    limits = httpx.Limits(max_connections=CONVERSATIONS + 10)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, limits=limits, timeout=60.0
    ) as client:
        began = time.monotonic()
        stop_at = began + WARMUP_SECONDS + SECONDS
        await asyncio.gather(*(converse(client, stop_at, samples) for _ in range(CONVERSATIONS)))
    counted = [sample for sample in samples if sample[0] >= began + WARMUP_SECONDS]
    window = max(end for *_, end in counted) - (began + WARMUP_SECONDS)
    with_text = [sample for sample in counted if sample[2]]
    return {
        "conversations": CONVERSATIONS,
        "think_seconds": THINK_SECONDS,
        "runs": len(counted),
        "runs_without_text": len(counted) - len(with_text),
        "thread_runs_per_second": round(len(counted) / window, 1),
        "first_text_ms": percentiles([text - start for start, _, text, _ in with_text]),
        "run_created_ms": percentiles([created - start for start, created, *_ in counted]),
        "run_created_to_first_text_ms": percentiles(
            [text - created for _, created, text, _ in with_text]
        ),
        "done_ms": percentiles([end - start for start, *_, end in counted]),
    }


def summary_lines(result: dict[str, Any]) -> list[str]:
    first, done = result["first_text_ms"], result["done_ms"]
    created, after = result["run_created_ms"], result["run_created_to_first_text_ms"]
    met = "met" if first.get("p99", float("inf")) <= TARGET_FIRST_TEXT_P99_MS else "NOT met"
    return [
        f"1 `workbench up` process (--executor sdk, offline model); {result['conversations']} "
        f"concurrent conversations with the router, {result['think_seconds']} s between turns",
        f"thread runs: {result['thread_runs_per_second']}/s ({result['runs']} runs, each a "
        f"handoff to a specialist and its answer)",
        f"message sent -> first text event p50/p95/p99 {first.get('p50')}/{first.get('p95')}/"
        f"{first.get('p99')} ms (target p99 <= {TARGET_FIRST_TEXT_P99_MS:.0f}: {met}); "
        f"-> done p50/p99 {done.get('p50')}/{done.get('p99')} ms",
        f"split at run_created: message sent -> run_created p50/p99 {created.get('p50')}/"
        f"{created.get('p99')} ms (the API recording the run); run_created -> first text "
        f"p50/p99 {after.get('p50')}/{after.get('p99')} ms",
    ]


async def main() -> dict[str, Any]:
    url = fresh_database(DATABASE)
    await (await migrated_pool(url, max_size=1)).close()
    workdir = Path(tempfile.mkdtemp(prefix="bench-conversations-"))
    secret = secrets.token_urlsafe(32)
    port = free_port()
    env = {**server_env(url, secret, port, workdir), "WORKBENCH_DRAIN_SECONDS": "2"}
    base_url = f"http://127.0.0.1:{port}"
    token = mint_token(secret, subject="bench", roles=["operator"], tenant_id=TENANT)
    command = ["up", "--executor", "sdk", "--concurrency", str(CONVERSATIONS)]
    try:
        with running(Service("up", command, env, workdir)) as system:
            await asyncio.to_thread(wait_until_ready, system, base_url)
            await asyncio.to_thread(system.wait_for_log, '"worker_started"')
            result = {"machine": await machine(url), **await measure(base_url, token)}
    except BaseException:
        print(f"bench.conversations: server logs kept in {workdir}", file=sys.stderr)
        raise
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    result["summary"] = summary_lines(result)
    return result


if __name__ == "__main__":
    outcome = asyncio.run(main())
    write_result(NAME, outcome)
    print("\n".join(outcome["summary"]))
