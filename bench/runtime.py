"""Benchmark: the agent runtime API, as running agents call it.

Two real `workbench api` replicas on one fresh migrated database. The bench creates
its sessions' tasks through the ledger and claims each run itself, as a worker would
(the claim opens the task's session and returns its credential), and heartbeats every
lease on its own cycle, spread out, as their workers would. Then, over real HTTP/1.1
keep-alive sockets (an HTTP client library would cost more client CPU than the server
being measured):

1. channel delivery: RECEIVERS sessions, each with its own credential and half on each
   replica, long-poll `GET /api/agent/channels/{id}/recv?wait=true` on the workspace's
   named channel. Each round, one more session sends a message through the ledger code
   the send route calls (in-process, so the commit's time is known exactly); the lag
   is each receiver's answer arriving minus that commit, on the same machine's clock.
   A round starts ROUND_GAP_SECONDS after the last receiver got the previous message,
   so every receiver is waiting again.
2. the context bundle: `GET /api/agent/context`, one request after another, for a
   session with INBOX_MESSAGES unread messages and every other session a live peer on
   its channel: both sections cut to their limit and marked truncated.
3. spawn: `workbench dispatcher` and one `workbench worker` (the sdk executor, idle
   between spawns) join; parent sessions `POST /api/agent/spawn` one child every
   SPAWN_INTERVAL_SECONDS, through either replica; the lag is from sending the request
   to the child run's claim (`runs.started_at`, written by the claim's transaction).

Targets: delivery p99 <= 20 ms, spawn -> claim p99 <= 150 ms, context p99 <= 10 ms.
Run alone: `python -m bench.runtime` (about 2 minutes); BENCH_RUNTIME_RECEIVERS,
BENCH_RUNTIME_ROUNDS and BENCH_RUNTIME_SPAWNS shrink it while developing, and
BENCH_RUNTIME_PHASES (comma-separated, of delivery, context, spawn) runs only some: the
result file then keeps the other phases from its last run, listed in `carried_over`.
"""

import asyncio
import contextlib
import json
import os
import resource
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg

from bench._services import Service, free_port, quiet_logs, server_env, wait_until_ready
from bench.common import (
    RESULTS,
    cpu_seconds_of,
    fresh_database,
    machine,
    migrated_pool,
    percentiles,
    postgres_cpu_seconds,
    write_result,
)
from ledger.agent_runtime import AgentRuntime
from ledger.agent_sessions import Caller
from ledger.channels import Outgoing
from ledger.database import close_pool
from ledger.fencing import Fence
from ledger.leases import Leases
from ledger.models import TaskCreateRequest
from ledger.policy import PolicyConfig, load_policy
from ledger.repository import Actor, Ledger

NAME = "runtime"
DATABASE = "bench_runtime"
TENANT = "bench-runtime"
LANE = "analysis"
ROOM = "ops-room"  # the analysis lane's named channel: every session there sees it
REPLICAS = 2
RECEIVERS = int(os.environ.get("BENCH_RUNTIME_RECEIVERS", "200"))
ROUNDS = int(os.environ.get("BENCH_RUNTIME_ROUNDS", "25"))
WARMUP_ROUNDS = 3  # left out: first requests, cold code paths and pools
ROUND_GAP_SECONDS = 0.75
INBOX_MESSAGES = 1000
CONTEXT_REQUESTS = 1000
CONTEXT_WARMUP = 50
SPAWNS = int(os.environ.get("BENCH_RUNTIME_SPAWNS", "100"))
ALL_PHASES = ("delivery", "context", "spawn")
PHASES = [p for p in os.environ.get("BENCH_RUNTIME_PHASES", ",".join(ALL_PHASES)).split(",") if p]
SPAWN_WARMUP = 5
SPAWN_INTERVAL_SECONDS = 0.25
WORKER_CONCURRENCY = 8
HEARTBEAT_SECONDS = 10.0
SPAWN_SERVERS = "API, dispatcher and worker (the child's agent run too)"
TARGET_DELIVERY_P99_MS = 20.0
TARGET_SPAWN_P99_MS = 150.0
TARGET_CONTEXT_P99_MS = 10.0
STOP = "stop"  # the last message's body: receivers stop asking


class Connection:
    """One HTTP/1.1 keep-alive connection for one caller, for the few requests the
    benchmark makes (answered with a Content-Length); notes when each answer's first
    line arrived, before anything of it is parsed."""

    def __init__(self, port: int, credential: str) -> None:
        self.port = port
        self._headers = f"Host: bench\r\nAuthorization: Bearer {credential}\r\n"
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any, float]:
        """(status, decoded JSON answer, arrival time of its first line)."""
        payload = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {path} HTTP/1.1\r\n{self._headers}"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        message = (head + "\r\n").encode() + payload
        reused = self._streams is not None
        if self._streams is None:
            self._streams = await asyncio.open_connection("127.0.0.1", self.port)
        reader, writer = self._streams
        writer.write(message)
        status_line = await reader.readline()
        arrived = time.time()
        if not status_line:
            self.close()
            # The server closed a keep-alive connection that idled past its timeout.
            if reused:
                return await self.request(method, path, body)
            raise EOFError(f"{method} {path}: closed before an answer")
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        answer = json.loads(await reader.readexactly(length)) if length else None
        return int(status_line.split()[1]), answer, arrived

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


@dataclass
class Held:
    """A claimed run the bench holds: the fence its 'worker' heartbeats, the session's
    credential its 'agent' calls with."""

    fence: Fence
    credential: str
    session_id: UUID


async def hold_sessions(pool: asyncpg.Pool, policy: PolicyConfig, count: int) -> list[Held]:
    ledger, leases = Ledger(pool, policy), Leases(pool, policy)
    actor = Actor(subject="bench", role="operator", tenant_id=TENANT)
    request = TaskCreateRequest(lane=LANE, title="runtime-bench", instructions="hold")
    held = []
    for _ in range(count):
        task = (await ledger.create_task(actor, request)).task
        claim = await leases.claim(
            task_id=task.id, run_id=task.current_run_id, attempt=1, worker="bench", via="bench"
        )
        assert claim is not None
        held.append(Held(claim.fence, claim.grant.credential, claim.grant.session.id))
    return held


async def heartbeat_forever(leases: Leases, held: list[Held], lease_seconds: float) -> None:
    """Every lease once per HEARTBEAT_SECONDS, one at a time and evenly apart."""
    while True:
        for one in held:
            await leases.heartbeat(one.fence, worker="bench", lease_seconds=lease_seconds)
            await asyncio.sleep(HEARTBEAT_SECONDS / len(held))


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def client_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class CpuMeter:
    """CPU seconds spent from `start` to `stop` by our server processes, the bench's
    Postgres server and this process (the client, on the same cores): everything the
    phase cost, heartbeats and a delivery's next waiting request included."""

    def __init__(self, servers: list[Service]) -> None:
        self.servers = servers
        self._started: tuple[float, float, float] = (0.0, 0.0, 0.0)
        self.load_before = 0.0

    def _now(self) -> tuple[float, float, float]:
        api = sum(
            cpu_seconds_of(Path(f"/proc/{server.pid}/stat").read_text()) for server in self.servers
        )
        return api, postgres_cpu_seconds(), client_cpu_seconds()

    def start(self) -> None:
        self.load_before = load_average()
        self._started = self._now()

    def stop(self, per: int) -> dict[str, Any]:
        """What was spent, in CPU ms per one of the `per` operations measured, and the
        machine's load around them."""
        spent = [now - then for now, then in zip(self._now(), self._started, strict=True)]
        return {
            "cpu_ms_per_operation": {
                name: round(seconds * 1000 / max(1, per), 3)
                for name, seconds in zip(("api", "postgres", "client"), spent, strict=True)
            },
            "load_average_1m": {"before": self.load_before, "after": load_average()},
        }


@dataclass
class Delivery:
    """What the receivers got: (round, receiver) -> arrival time; per round, how many."""

    arrivals: dict[tuple[int, int], float] = field(default_factory=dict)
    counts: dict[int, int] = field(default_factory=dict)
    complete: dict[int, asyncio.Event] = field(default_factory=dict)

    def got(self, mark: int, receiver: int, at: float) -> None:
        self.arrivals[(mark, receiver)] = at
        self.counts[mark] = self.counts.get(mark, 0) + 1
        if self.counts[mark] == RECEIVERS:
            self.complete.setdefault(mark, asyncio.Event()).set()


async def receive_until_stop(
    index: int, connection: Connection, room: UUID, delivery: Delivery
) -> None:
    path = f"/api/agent/channels/{room}/recv?wait=true&wait_seconds=30&limit=100"
    while True:
        status, answer, arrived = await connection.request("GET", path)
        if status != 200:
            raise RuntimeError(f"recv refused: {status} {answer}")
        for message in answer["messages"]:
            if message["body"] == STOP:
                return
            delivery.got(message["body"]["mark"], index, arrived)


async def measure_delivery(
    runtime: AgentRuntime, sender: Caller, room: UUID, receivers: list[Connection], cpu: CpuMeter
) -> dict[str, Any]:
    delivery = Delivery()
    listening = [
        asyncio.create_task(receive_until_stop(index, connection, room, delivery))
        for index, connection in enumerate(receivers)
    ]
    committed: dict[int, float] = {}
    send_seconds = []
    try:
        for mark in range(WARMUP_ROUNDS + ROUNDS):
            await asyncio.sleep(ROUND_GAP_SECONDS)
            if mark == WARMUP_ROUNDS:
                cpu.start()
            started = time.time()
            await runtime.send(sender, room, Outgoing(body={"mark": mark}, message_kind="status"))
            committed[mark] = time.time()
            send_seconds.append(committed[mark] - started)
            done = delivery.complete.setdefault(mark, asyncio.Event())
            await asyncio.wait_for(done.wait(), timeout=30.0)
        spent = cpu.stop(per=ROUNDS * len(receivers))
        await runtime.send(sender, room, Outgoing(body=STOP, message_kind="status"))
        await asyncio.wait_for(asyncio.gather(*listening), timeout=30.0)
    finally:
        for task in listening:
            task.cancel()
    lags = [
        max(0.0, at - committed[mark])
        for (mark, _), at in delivery.arrivals.items()
        if mark >= WARMUP_ROUNDS
    ]
    last = [
        max(at for (m, _), at in delivery.arrivals.items() if m == mark) - committed[mark]
        for mark in range(WARMUP_ROUNDS, WARMUP_ROUNDS + ROUNDS)
    ]
    return {
        "receivers": len(receivers),
        "replicas": REPLICAS,
        "rounds": ROUNDS,
        "deliveries": len(lags),
        "lag_ms": percentiles(lags),
        "last_receiver_of_round_ms": percentiles(last),
        "send_commit_ms": percentiles(send_seconds),
        **spent,
    }


async def fill_inbox(runtime: AgentRuntime, sender: Caller, room: UUID) -> None:
    for n in range(INBOX_MESSAGES):
        body = {"finding": n, "detail": "disk latency on db01 above the alert threshold " * 4}
        await runtime.send(sender, room, Outgoing(body=body, message_kind="status"))


async def measure_context(reader: Connection, cpu: CpuMeter) -> dict[str, Any]:
    seconds = []
    answer: Any = None
    for n in range(CONTEXT_WARMUP + CONTEXT_REQUESTS):
        if n == CONTEXT_WARMUP:
            cpu.start()
        started = time.perf_counter()
        status, answer, _ = await reader.request("GET", "/api/agent/context")
        if status != 200:
            raise RuntimeError(f"context refused: {status} {answer}")
        if n >= CONTEXT_WARMUP:
            seconds.append(time.perf_counter() - started)
    context = answer["context"]
    inbox, roster = context["inbox_summary"], context["peer_roster"]["section"]
    return {
        "requests": CONTEXT_REQUESTS,
        "inbox": {"unread_count": inbox["unread_count"], **inbox["section"]},
        "peer_roster": roster,
        "ms": percentiles(seconds),
        **cpu.stop(per=CONTEXT_REQUESTS),
    }


async def measure_spawns(
    pool: asyncpg.Pool, parents: list[list[Connection]], cpu: CpuMeter
) -> dict[str, Any]:
    """One spawn every SPAWN_INTERVAL_SECONDS, each by the next parent through the next
    replica; the parents are enough that none reaches max_children even if no child
    finished."""
    sent: dict[UUID, float] = {}
    answer_seconds = []
    for n in range(SPAWN_WARMUP + SPAWNS):
        if n == SPAWN_WARMUP:
            cpu.start()
        started = time.time()
        parent = parents[n % len(parents)][n % REPLICAS]
        body = {"instructions": "Summarise the open incidents.", "title": f"runtime-bench {n}"}
        status, answer, _ = await parent.request("POST", "/api/agent/spawn", body)
        if status != 200:
            raise RuntimeError(f"spawn refused: {status} {answer}")
        answer_seconds.append(time.time() - started)
        if n >= SPAWN_WARMUP:
            sent[UUID(answer["spawn"]["task_id"])] = started
        await asyncio.sleep(max(0.0, started + SPAWN_INTERVAL_SECONDS - time.time()))
    spent = cpu.stop(per=SPAWNS)
    rows = await claims_of(pool, list(sent))
    return {
        "spawns": len(sent),
        "interval_seconds": SPAWN_INTERVAL_SECONDS,
        "claimed": len(rows),
        "spawn_to_claim_ms": percentiles([row["started"] - sent[row["id"]] for row in rows]),
        "created_to_claim_ms": percentiles([row["started"] - row["created"] for row in rows]),
        "spawn_answer_ms": percentiles(answer_seconds[SPAWN_WARMUP:]),
        **spent,
    }


async def claims_of(pool: asyncpg.Pool, task_ids: list[UUID]) -> list[asyncpg.Record]:
    """The children's creation and claim times, once every one was claimed (or 30 s)."""
    sql = """
        SELECT t.id, extract(epoch FROM t.created_at)::float8 AS created,
               extract(epoch FROM r.started_at)::float8 AS started
        FROM tasks t JOIN runs r ON r.id = t.current_run_id
        WHERE t.id = ANY($1::uuid[]) AND r.started_at IS NOT NULL
    """
    deadline = time.monotonic() + 30.0
    while len(rows := await pool.fetch(sql, task_ids)) < len(task_ids):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    return rows


def _ms(figures: dict[str, float]) -> str:
    return f"{figures.get('p50')}/{figures.get('p95')}/{figures.get('p99')} ms"


def _met(figures: dict[str, float], target: float) -> str:
    return "met" if figures.get("p99", float("inf")) <= target else "NOT met"


def _cpu(phase: dict[str, Any], what: str, servers: str = "API") -> str:
    spent = phase["cpu_ms_per_operation"]
    return (
        f"CPU per {what}: {servers} {spent['api']} ms, Postgres {spent['postgres']} ms, "
        f"client {spent['client']} ms"
    )


def summary_lines(result: dict[str, Any]) -> list[str]:
    channel, context, spawn = result["delivery"], result["context"], result["spawn"]
    inbox, roster = context["inbox"], context["peer_roster"]
    return [
        f"{REPLICAS} `workbench api` replicas on one database; {channel['receivers']} "
        f"sessions, each with its own credential, long-polling recv?wait=true on {ROOM} "
        f"(half on each replica); one message a round from another session, "
        f"{channel['rounds']} rounds",
        f"delivery, send committed -> each receiver's answer ({channel['deliveries']} "
        f"deliveries): p50/p95/p99 {_ms(channel['lag_ms'])} (target p99 <= "
        f"{TARGET_DELIVERY_P99_MS:.0f}: {_met(channel['lag_ms'], TARGET_DELIVERY_P99_MS)}); "
        f"the round's last receiver p50/p99 {channel['last_receiver_of_round_ms'].get('p50')}/"
        f"{channel['last_receiver_of_round_ms'].get('p99')} ms; {_cpu(channel, 'delivery')}",
        f"GET /api/agent/context, {context['requests']} in a row, inbox {inbox['unread_count']} "
        f"unread ({inbox['returned']} returned, truncated {inbox['truncated']}), roster of "
        f"live peers cut to {roster['returned']} (truncated {roster['truncated']}): "
        f"p50/p95/p99 {_ms(context['ms'])} (target p99 <= {TARGET_CONTEXT_P99_MS:.0f}: "
        f"{_met(context['ms'], TARGET_CONTEXT_P99_MS)}); {_cpu(context, 'request')}",
        f"spawn -> child claimed by an idle `workbench worker` (sdk, concurrency "
        f"{WORKER_CONCURRENCY}) through `workbench dispatcher`, one every "
        f"{spawn['interval_seconds']} s ({spawn['claimed']}/{spawn['spawns']} claimed): "
        f"p50/p95/p99 {_ms(spawn['spawn_to_claim_ms'])} (target p99 <= "
        f"{TARGET_SPAWN_P99_MS:.0f}: {_met(spawn['spawn_to_claim_ms'], TARGET_SPAWN_P99_MS)}); "
        f"the spawn's answer p50/p99 {spawn['spawn_answer_ms'].get('p50')}/"
        f"{spawn['spawn_answer_ms'].get('p99')} ms, child created -> claimed p50/p99 "
        f"{spawn['created_to_claim_ms'].get('p50')}/{spawn['created_to_claim_ms'].get('p99')} "
        f"ms; {_cpu(spawn, 'spawn', SPAWN_SERVERS)}",
        "the machine's load average (1 min) at the start of each phase: delivery "
        f"{channel['load_average_1m']['before']}, context {context['load_average_1m']['before']}, "
        f"spawn {spawn['load_average_1m']['before']} (2 cores; the client runs on them too)",
        *(
            [f"not run this time, kept from the last run: {', '.join(result['carried_over'])}"]
            if result.get("carried_over")
            else []
        ),
    ]


async def run(url: str, workdir: Path) -> dict[str, Any]:
    policy = load_policy()
    max_children = policy.coordinator_for(LANE).max_children
    parents_needed = -(-(SPAWN_WARMUP + SPAWNS) // max_children)
    pool = await migrated_pool(url, max_size=10)
    runtime, leases = AgentRuntime(pool, policy), Leases(pool, policy)
    secret = secrets.token_urlsafe(32)
    ports = [free_port() for _ in range(REPLICAS)]
    env = {**server_env(url, secret, ports[0], workdir), "WORKBENCH_DRAIN_SECONDS": "2"}
    replicas = [
        Service(f"api-{n}", ["api"], {**env, "WORKBENCH_PORT": str(port)}, workdir)
        for n, port in enumerate(ports)
    ]
    work = ["--executor", "sdk", "--lanes", LANE, "--concurrency", str(WORKER_CONCURRENCY)]
    background = [
        Service("dispatcher", ["dispatcher"], env, workdir),
        Service("worker", ["worker", *work], env, workdir),
    ]
    held = await hold_sessions(pool, policy, RECEIVERS + 2 + parents_needed)
    heartbeats = asyncio.create_task(
        heartbeat_forever(leases, held, policy.lanes[LANE].lease_seconds)
    )
    receivers = [
        Connection(ports[n % REPLICAS], one.credential) for n, one in enumerate(held[:RECEIVERS])
    ]
    sender = await runtime.authenticate(held[RECEIVERS].credential)
    reader = Connection(ports[0], held[RECEIVERS + 1].credential)
    parents = [
        [Connection(port, one.credential) for port in ports] for one in held[RECEIVERS + 2 :]
    ]
    [room] = [c.id for c in await runtime.channels(sender) if c.channel == ROOM]
    connections = [*receivers, reader, *(c for pair in parents for c in pair)]
    try:
        for replica, port in zip(replicas, ports, strict=True):
            replica.start()  # one at a time: each checks the schema as it starts
            await asyncio.to_thread(wait_until_ready, replica, f"http://127.0.0.1:{port}")
        result: dict[str, Any] = {"machine": await machine(url)}
        cpu = CpuMeter(replicas)
        if "delivery" in PHASES:
            result["delivery"] = await measure_delivery(runtime, sender, room, receivers, cpu)
        if "context" in PHASES:
            await fill_inbox(runtime, sender, room)
            result["context"] = await measure_context(reader, cpu)
        if "spawn" in PHASES:
            for service in background:
                service.start()
            await asyncio.to_thread(background[0].wait_for_log, '"dispatcher_started"')
            await asyncio.to_thread(background[1].wait_for_log, '"worker_started"')
            # The spawn's path runs through all of them: API, dispatcher, worker.
            spawn_cpu = CpuMeter([*replicas, *background])
            result["spawn"] = await measure_spawns(pool, parents, spawn_cpu)
    finally:
        heartbeats.cancel()
        await asyncio.gather(heartbeats, return_exceptions=True)
        for connection in connections:
            connection.close()
        for service in [*background, *replicas]:
            service.stop()
        with contextlib.suppress(Exception):
            await close_pool(pool)
    return result


async def main() -> dict[str, Any]:
    quiet_logs()
    url = fresh_database(DATABASE)
    workdir = Path(tempfile.mkdtemp(prefix="bench-runtime-"))
    try:
        result = await run(url, workdir)
    except BaseException:
        print(f"bench.runtime: server logs kept in {workdir}", file=sys.stderr)
        raise
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    carried = [phase for phase in ALL_PHASES if phase not in result]
    if carried:
        earlier = json.loads((RESULTS / f"{NAME}.json").read_text())
        result |= {phase: earlier[phase] for phase in carried}
        result["carried_over"] = carried
    result["summary"] = summary_lines(result)
    return result


if __name__ == "__main__":
    outcome = asyncio.run(main())
    write_result(NAME, outcome)
    print("\n".join(outcome["summary"]))
