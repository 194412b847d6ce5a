"""Benchmark: a steering note reaches a running ticket agent.

One real `workbench up` process (API, dispatcher and an `sdk` worker, offline model) on
a fresh migrated database. AGENTS tickets each get an agent (`assign-agent`) whose
prompt has it call `http_get` CALLS times on a local server that answers each request
after TOOL_SECONDS: an agent busy with a tool call, as agents mostly are. While its run
goes, a note is added to the ticket at a random moment (`POST /api/tickets/{id}/notes`,
source `dashboard`), and the agent's steering events are polled until the note is
`delivered`.

Measured per note: from the note's steering event being written (its `created_at`, in
the note's transaction) to its delivery into the model input of the agent's next turn
(`delivered_at`), both the database's clock, so polling adds nothing. A note waits for
the tool call in progress to end (at most TOOL_SECONDS) and then for the next model
call: that bound is what the target says. Target: p99 <= 1 s.

Run alone: `python -m bench.steering`; `WORKBENCH_BENCH_STEERING_AGENTS=5` for fewer.
"""

import asyncio
import json
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from api.auth import mint_token
from bench._services import Service, free_port, running, server_env, wait_until_ready
from bench.common import fresh_database, machine, migrated_pool, percentiles, write_result
from bench.local_server import LocalServer
from ledger.policy import load_policy

NAME = "steering"
DATABASE = "bench_steering"
TENANT = "bench-steering"
AGENTS = int(os.environ.get("WORKBENCH_BENCH_STEERING_AGENTS", "20"))
CALLS = 8
TOOL_SECONDS = 0.2
TARGET_P99_MS = 1000.0
WAIT_SECONDS = 60.0


class SlowStatusPage(LocalServer):
    """A status page whose every answer takes TOOL_SECONDS: the agents' tool."""

    url_path = "/status"

    def answer(self, path: str) -> bytes:
        time.sleep(TOOL_SECONDS)
        return b"partner MX: mx1.partner.example"


def lanes_file(directory: Path) -> Path:
    """The default lanes, the `analysis` lane's http_get allowed to reach 127.0.0.1 and
    enough turns for every call."""
    policy = load_policy()
    analysis = policy.lanes["analysis"].model_copy(
        update={"allowed_hosts": ["127.0.0.1"], "max_turns": CALLS * 2 + 4}
    )
    path = directory / "lanes.yaml"
    lanes = {**policy.lanes, "analysis": analysis}
    path.write_text(
        yaml.safe_dump(policy.model_copy(update={"lanes": lanes}).model_dump(mode="json"))
    )
    return path


async def steer_one(client: httpx.AsyncClient, url: str, n: int) -> float:
    """Assign an agent, steer it mid-run; milliseconds from the event to its delivery."""
    ticket = (await client.post("/api/tickets", json={"title": f"Partner mail {n}"})).json()
    ticket_id = ticket["ticket"]["id"]
    calls = "\n".join(
        f"#call http_get {json.dumps({'url': f'{url}?call={i}'})}" for i in range(CALLS)
    )
    assigned = await client.post(
        f"/api/tickets/{ticket_id}/assign-agent", json={"prompt": f"Check the MX.\n{calls}"}
    )
    agent_id = assigned.json()["agent"]["id"]
    await _until(client, f"/api/agents/{agent_id}", lambda d: d["agent"]["status"] == "running")
    await asyncio.sleep(random.uniform(0, CALLS * TOOL_SECONDS / 2))
    note = await client.post(
        f"/api/tickets/{ticket_id}/notes",
        json={"body": "Leave the firewall alone.", "source": "dashboard"},
    )
    if note.status_code != 201:
        raise RuntimeError(f"note refused: {note.status_code} {note.text}")
    events = await _until(
        client,
        f"/api/agents/{agent_id}/steering",
        lambda d: d["events"] and d["events"][0]["state"] != "pending",
    )
    event = events["events"][0]
    if event["delivered_at"] is None:
        raise RuntimeError(f"the note was not delivered: {event}")
    delivered = datetime.fromisoformat(event["delivered_at"])
    return (delivered - datetime.fromisoformat(event["created_at"])).total_seconds()


async def _until(client: httpx.AsyncClient, path: str, done: Any) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        body = (await client.get(path)).json()
        if done(body):
            return body
        await asyncio.sleep(0.02)
    raise RuntimeError(f"{path}: not done within {WAIT_SECONDS} s")


async def measure(base_url: str, token: str, url: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=60.0) as client:
        # A few at a time, as notes arrive on a desk's tickets: the worker's slots and
        # the machine are not what is measured.
        latencies: list[float] = []
        for start in range(0, AGENTS, 5):
            batch = range(start, min(start + 5, AGENTS))
            latencies += await asyncio.gather(*(steer_one(client, url, n) for n in batch))
    return {
        "agents": AGENTS,
        "tool_seconds": TOOL_SECONDS,
        "calls_per_run": CALLS,
        "note_to_model_input_ms": percentiles(latencies),
    }


def summary_lines(result: dict[str, Any]) -> list[str]:
    latency = result["note_to_model_input_ms"]
    met = "met" if latency.get("p99", float("inf")) <= TARGET_P99_MS else "NOT met"
    return [
        f"1 `workbench up` process (--executor sdk, offline model); {result['agents']} ticket "
        f"agents, each calling http_get {result['calls_per_run']} times on a server that "
        f"answers in {result['tool_seconds']} s, steered once mid-run",
        f"steering note -> in the agent's next model input p50/p95/p99 {latency.get('p50')}/"
        f"{latency.get('p95')}/{latency.get('p99')} ms (target p99 <= {TARGET_P99_MS:.0f}: "
        f"{met}; bounded by the tool call in progress)",
    ]


async def main() -> dict[str, Any]:
    url = fresh_database(DATABASE)
    await (await migrated_pool(url, max_size=1)).close()
    workdir = Path(tempfile.mkdtemp(prefix="bench-steering-"))
    secret = secrets.token_urlsafe(32)
    port = free_port()
    env = {
        **server_env(url, secret, port, workdir),
        "WORKBENCH_DRAIN_SECONDS": "2",
        "WORKBENCH_LANES_FILE": str(lanes_file(workdir)),
    }
    base_url = f"http://127.0.0.1:{port}"
    token = mint_token(secret, subject="bench", roles=["operator"], tenant_id=TENANT)
    page = SlowStatusPage()
    command = ["up", "--executor", "sdk", "--concurrency", "8"]
    try:
        with running(Service("up", command, env, workdir)) as system:
            await asyncio.to_thread(wait_until_ready, system, base_url)
            await asyncio.to_thread(system.wait_for_log, '"worker_started"')
            result = {"machine": await machine(url), **await measure(base_url, token, page.url)}
    except BaseException:
        print(f"bench.steering: server logs kept in {workdir}", file=sys.stderr)
        raise
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    finally:
        page.close()
    result["summary"] = summary_lines(result)
    return result


if __name__ == "__main__":
    outcome = asyncio.run(main())
    write_result(NAME, outcome)
    print("\n".join(outcome["summary"]))
