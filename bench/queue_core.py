"""Queue core: JOBS no-op runs claimed and completed through the Postgres lane by W
`workbench worker` processes, then the same JOBS no-op jobs through PgQueuer with the
same W processes, on the same embedded server, in the same run.

Both sides start from a loaded queue and are timed by the database, from the first
claim to the last completion, so process start-up is not counted on either side:
ours from `runs.started_at` / `runs.finished_at`, PgQueuer's from its log table's
`picked` and `successful` rows. Ours does more per job than PgQueuer: each claim and
each completion also moves the task and appends a trace event, fenced by the claim
token, and the lane message is settled.

Then the heartbeat check: claimed runs heartbeat repeatedly, and the share of those
updates of `runs` that were HOT (`n_tup_hot_upd / n_tup_upd`) is reported.
"""

import asyncio
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg

from bench._services import quiet_logs
from bench.common import (
    BENCH_DATA,
    cpu_seconds_of,
    fresh_database,
    machine,
    migrated_pool,
    postgres_cpu_seconds,
    write_result,
)
from dispatcher.outbox import Outbox
from lanes.base import LaneMessage
from lanes.postgres import PostgresLane
from lanes.registry import LaneRegistry
from ledger.database import close_pool
from ledger.leases import Hint, Leases
from ledger.models import TaskCreateRequest
from ledger.policy import load_policy
from ledger.repository import Actor, Ledger

NAME = "queue_core"
JOBS = int(os.environ.get("BENCH_QUEUE_JOBS", "20000"))
WORKERS = int(os.environ.get("BENCH_QUEUE_WORKERS", "2"))
# Runs in flight per worker process; each receive takes up to this many hints at once.
CONCURRENCY = int(os.environ.get("BENCH_QUEUE_CONCURRENCY", "200"))
PGQUEUER_BATCH = int(os.environ.get("BENCH_PGQUEUER_BATCH", "100"))
TARGET_RATIO = 1.5
HEARTBEAT_RUNS = 500
HEARTBEATS_EACH = 10
TENANT = "bench"
LANE = "analysis"

# Copies of a task the API created ($3), each with its own first run.
LOAD_TASKS = """
INSERT INTO tasks (id, tenant_id, lane, title, instructions, source_systems, scope,
                   mutation_level, model_provider, status, policy_verdict,
                   current_run_id, attempt, max_attempts, created_by)
SELECT t.task_id, m.tenant_id, m.lane, 'noop ' || t.n, m.instructions, m.source_systems,
       m.scope, m.mutation_level, m.model_provider, 'queued', m.policy_verdict,
       t.run_id, 1, m.max_attempts, m.created_by
FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS t(task_id, run_id, n),
     tasks m
WHERE m.id = $3;
"""
LOAD_RUNS = """
INSERT INTO runs (id, task_id, tenant_id, lane, attempt, status)
SELECT run_id, task_id, $3, $4, 1, 'queued'
FROM unnest($1::uuid[], $2::uuid[]) AS t(task_id, run_id);
"""
WINDOW = """
SELECT count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
       extract(epoch FROM max(finished_at) - min(started_at))::float8 AS seconds
FROM runs WHERE lane = $1;
"""
TABLE_STATS = """
SELECT relname, n_tup_upd, n_tup_hot_upd, n_live_tup, n_dead_tup,
       pg_total_relation_size(relid) AS bytes
FROM pg_stat_user_tables WHERE relname = ANY($1::text[]);
"""


async def _load_runs(pool: asyncpg.Pool, count: int) -> None:
    """`count` queued tasks with their first run, as the API would leave them: one
    created through the ledger, the rest copied from it in bulk (not timed)."""
    policy = load_policy()
    model = await Ledger(pool, policy).create_task(
        Actor("bench", TENANT, "operator"),
        TaskCreateRequest(lane=LANE, title="noop", instructions="no-op", model_provider="offline"),
    )
    await pool.execute("DELETE FROM trace_events WHERE task_id = $1", model.task.id)
    await pool.execute("UPDATE tasks SET current_run_id = NULL WHERE id = $1", model.task.id)
    await pool.execute("DELETE FROM runs WHERE task_id = $1", model.task.id)
    for start in range(0, count, 5000):
        size = min(5000, count - start)
        task_ids = [uuid4() for _ in range(size)]
        run_ids = [uuid4() for _ in range(size)]
        async with pool.acquire() as connection, connection.transaction():
            await connection.execute(LOAD_TASKS, task_ids, run_ids, model.task.id)
            await connection.execute(LOAD_RUNS, task_ids, run_ids, TENANT, LANE)
    await pool.execute("DELETE FROM tasks WHERE id = $1", model.task.id)


async def _dispatch_all(pool: asyncpg.Pool) -> None:
    """The real outbox sends every queued run to the Postgres lane (not timed)."""
    policy = load_policy()
    lanes = LaneRegistry(pool, policy)
    outbox = Outbox(pool, lanes, actor="bench-dispatcher")
    try:
        while (await outbox.dispatch_once(1000)).sent:
            pass
    finally:
        await lanes.close()


async def _wait_for(
    pool: asyncpg.Pool | asyncpg.Connection, sql: str, goal: int, seconds: float
) -> None:
    deadline = time.monotonic() + seconds
    while (done := await pool.fetchval(sql)) < goal:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {done} of {goal} jobs finished in {seconds} s")
        await asyncio.sleep(0.1)


def _start(command: list[str], url: str, log_name: str) -> subprocess.Popen[bytes]:
    log_path = BENCH_DATA / f"{log_name}.log"
    env = {**os.environ, "DATABASE_URL": url, "WORKBENCH_ARTIFACT_DIR": str(BENCH_DATA)}
    with log_path.open("wb") as output:
        return subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def _process_cpu_seconds(pid: int) -> float:
    return cpu_seconds_of(Path(f"/proc/{pid}/stat").read_text())


class _CpuMeter:
    """CPU spent by the worker processes and Postgres between `start` and `stop`: the
    workers have started and are idle at `start`, so their start-up is not counted.
    Unlike jobs/s, CPU per job hardly depends on what else the machine is doing."""

    def start(self, workers: list[subprocess.Popen[bytes]]) -> None:
        self._workers = workers
        self._before = sum(_process_cpu_seconds(w.pid) for w in workers)
        self._postgres = postgres_cpu_seconds()

    def stop(self, jobs: int) -> dict[str, float]:
        workers = sum(_process_cpu_seconds(w.pid) for w in self._workers) - self._before
        postgres = postgres_cpu_seconds() - self._postgres
        return {
            "worker_cpu_ms_per_job": round(workers * 1000 / jobs, 3),
            "postgres_cpu_ms_per_job": round(postgres * 1000 / jobs, 3),
        }


async def _wait_for_line(path: Path, marker: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while marker not in path.read_text(errors="replace"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path.name} did not log {marker!r} in {seconds} s")
        await asyncio.sleep(0.05)


async def _table_stats(pool: asyncpg.Pool, tables: list[str]) -> dict[str, dict[str, int]]:
    await asyncio.sleep(1.0)  # backends publish their counters when they go idle
    rows = await pool.fetch(TABLE_STATS, tables)
    return {row["relname"]: {k: v for k, v in dict(row).items() if k != "relname"} for row in rows}


async def ours() -> dict[str, Any]:
    url = fresh_database("bench_queue_core")
    pool = await migrated_pool(url)
    try:
        await _load_runs(pool, JOBS)
        await _dispatch_all(pool)
        # Held back until every worker is up, so all of them start on a full queue.
        await pool.execute("UPDATE lane_messages SET visible_at = now() + interval '1 hour'")
        workbench = str(Path(sys.executable).with_name("workbench"))
        command = [workbench, "worker", "--executor", "noop", "--lanes", LANE]
        command += ["--concurrency", str(CONCURRENCY)]
        workers = [_start(command, url, f"queue-core-worker-{n}") for n in range(WORKERS)]
        cpu = _CpuMeter()
        try:
            for n in range(WORKERS):
                await _wait_for_line(BENCH_DATA / f"queue-core-worker-{n}.log", "worker_started")
            await asyncio.sleep(1.0)
            cpu.start(workers)
            await pool.execute("UPDATE lane_messages SET visible_at = now()")
            await pool.execute("SELECT pg_notify('workbench_lanes', $1)", LANE)
            await _wait_for(pool, "SELECT count(*) FROM runs WHERE status = 'succeeded'", JOBS, 300)
            cpu_used = cpu.stop(JOBS)
        finally:
            _stop(workers)
        window = await pool.fetchrow(WINDOW, LANE)
        stats = await _table_stats(pool, ["runs", "tasks", "lane_messages", "trace_events"])
        events = await pool.fetchval("SELECT count(*) FROM trace_events")
    finally:
        await close_pool(pool)
    # On one connection, so its counters can be flushed on demand before each reading.
    pool = await migrated_pool(url, max_size=1)
    try:
        heartbeat = await _heartbeat_hot_ratio(pool)
    finally:
        await close_pool(pool)
    seconds = window["seconds"]
    return {
        "jobs": JOBS,
        "succeeded": window["succeeded"],
        "seconds": round(seconds, 3),
        "jobs_per_second": round(JOBS / seconds),
        "trace_events_written": events,
        **cpu_used,
        "tables_after": stats,
        "heartbeat": heartbeat,
    }


async def _flushed_runs_stats(pool: asyncpg.Pool) -> dict[str, int]:
    """The counters of `runs` once the pool's one backend has published its own: a
    backend publishes at most once a second, and may wait ten while it is idle."""
    await pool.execute("SELECT pg_stat_force_next_flush()")
    return (await _table_stats(pool, ["runs"]))["runs"]


async def _heartbeat_hot_ratio(pool: asyncpg.Pool) -> dict[str, Any]:
    """Claim HEARTBEAT_RUNS runs and heartbeat each HEARTBEATS_EACH times; the share of
    those updates of `runs` that were HOT (no new index entries)."""
    policy = load_policy()
    leases = Leases(pool, policy)
    await pool.execute("DELETE FROM lane_messages")
    await _load_runs(pool, HEARTBEAT_RUNS)
    waiting = await pool.fetch("SELECT id, task_id, attempt FROM runs WHERE status = 'queued'")
    hints = [Hint(row["task_id"], row["id"], row["attempt"]) for row in waiting]
    claims = [c for c in await leases.claim_batch(hints, worker="bench", via="bench") if c]
    before = await _flushed_runs_stats(pool)
    for _ in range(HEARTBEATS_EACH):
        await asyncio.gather(
            *(leases.heartbeat(c.fence, worker="bench", lease_seconds=60) for c in claims)
        )
    after = await _flushed_runs_stats(pool)
    updates = after["n_tup_upd"] - before["n_tup_upd"]
    hot = after["n_tup_hot_upd"] - before["n_tup_hot_upd"]
    return {
        "runs": len(claims),
        "heartbeats": len(claims) * HEARTBEATS_EACH,
        "updates": updates,
        "hot_updates": hot,
        "hot_ratio": round(hot / updates, 3) if updates else None,
    }


async def sql_floor() -> dict[str, Any]:
    """Our claim and completion with no worker process around them: the real ledger
    code (`PostgresLane.take` with `Leases.claim_in`, then `Leases.complete` for the
    batch) called back to back from this process, CONCURRENCY jobs at a time. What
    Postgres spends per job here, every worker design on these statements spends too, so
    the machine's cores over it bound our queue core even if the worker cost nothing."""
    url = fresh_database("bench_queue_floor")
    pool = await migrated_pool(url)
    policy = load_policy()
    lanes = LaneRegistry(pool, policy)
    leases = Leases(pool, policy)
    lane = lanes.get(LANE)
    assert isinstance(lane, PostgresLane)

    async def claim(connection: asyncpg.Connection, messages: list[LaneMessage]) -> list[Any]:
        hints = [Hint(m.task_id, m.run_id, m.attempt) for m in messages]
        claims = await leases.claim_in(connection, hints, worker="floor", via=LANE)
        return [c for c in claims if c is not None]

    try:
        await _load_runs(pool, JOBS)
        await _dispatch_all(pool)
        postgres_before, client_before = postgres_cpu_seconds(), time.process_time()
        done = 0
        while claims := await lane.take(claim, CONCURRENCY, 0):
            await asyncio.gather(*(leases.complete(c.fence, worker="floor") for c in claims))
            done += len(claims)
        postgres = postgres_cpu_seconds() - postgres_before
        client = time.process_time() - client_before
    finally:
        await lanes.close()
        await close_pool(pool)
    postgres_ms = postgres * 1000 / done
    return {
        "jobs": done,
        "postgres_cpu_ms_per_job": round(postgres_ms, 3),
        "client_cpu_ms_per_job": round(client * 1000 / done, 3),
        "postgres_bound_jobs_per_second": round((os.cpu_count() or 1) * 1000 / postgres_ms),
    }


# -- PgQueuer -----------------------------------------------------------------------


async def _pgqueuer_worker(url: str, batch_size: int) -> None:
    """One PgQueuer worker process: no-op jobs until the queue is drained."""
    from pgqueuer import AsyncpgDriver, Queries, QueueManager
    from pgqueuer.types import QueueExecutionMode

    connection = await asyncpg.connect(url)
    manager = QueueManager(Queries(AsyncpgDriver(connection)))

    @manager.entrypoint("noop")
    async def noop(job: object) -> None:
        return None

    print("pgqueuer_worker_started", flush=True)
    await manager.run(
        batch_size=batch_size,
        mode=QueueExecutionMode.drain,
        dequeue_timeout=timedelta(seconds=1),
    )
    await connection.close()


async def pgqueuer() -> dict[str, Any]:
    from pgqueuer import AsyncpgDriver, Queries

    url = fresh_database("bench_pgqueuer")
    connection = await asyncpg.connect(url)
    try:
        queries = Queries(AsyncpgDriver(connection))
        await queries.install()
        for start in range(0, JOBS, 5000):
            size = min(5000, JOBS - start)
            # Due in an hour: held back until every worker is up, as on our side.
            await queries.enqueue(
                ["noop"] * size, [None] * size, [0] * size, [timedelta(hours=1)] * size
            )
        command = [sys.executable, "-m", "bench.queue_core", "pgqueuer-worker", url]
        workers = [_start(command, url, f"queue-core-pgqueuer-{n}") for n in range(WORKERS)]
        cpu = _CpuMeter()
        try:
            for n in range(WORKERS):
                await _wait_for_line(
                    BENCH_DATA / f"queue-core-pgqueuer-{n}.log", "pgqueuer_worker_started"
                )
            await asyncio.sleep(1.0)
            cpu.start(workers)
            await connection.execute("UPDATE pgqueuer SET execute_after = now()")
            await _wait_for(
                connection,
                "SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'",
                JOBS,
                300,
            )
            cpu_used = cpu.stop(JOBS)
            for worker in workers:  # drain mode: each exits once the queue is empty
                worker.wait(timeout=60)
        finally:
            _stop(workers)
        window = await connection.fetchrow(
            """
            SELECT count(*) FILTER (WHERE status = 'successful') AS succeeded,
                   extract(epoch FROM max(created) FILTER (WHERE status = 'successful')
                                    - min(created) FILTER (WHERE status = 'picked'))::float8
                   AS seconds
            FROM pgqueuer_log
            """
        )
    finally:
        await connection.close()
    seconds = window["seconds"]
    return {
        "jobs": JOBS,
        "succeeded": window["succeeded"],
        "batch_size": PGQUEUER_BATCH,
        "seconds": round(seconds, 3),
        "jobs_per_second": round(JOBS / seconds),
        **cpu_used,
    }


async def main() -> dict[str, Any]:
    quiet_logs()
    url = fresh_database("bench_machine")
    facts = await machine(url)
    theirs = await pgqueuer()
    mine = await ours()
    floor = await sql_floor()
    ratio = round(mine["jobs_per_second"] / theirs["jobs_per_second"], 2)
    needed = round(TARGET_RATIO * theirs["jobs_per_second"])
    hot = mine["heartbeat"]["hot_ratio"]
    return {
        "name": NAME,
        "machine": facts,
        "workers": WORKERS,
        "concurrency_per_worker": CONCURRENCY,
        "workbench": mine,
        "pgqueuer": theirs,
        "sql_floor": floor,
        "ratio": ratio,
        "target_ratio": TARGET_RATIO,
        "met": ratio >= TARGET_RATIO,
        "summary": [
            f"{JOBS} no-op jobs, {WORKERS} worker processes on {facts['cores']} cores, "
            f"PostgreSQL {facts['postgres']}",
            f"Agent Workbench (Postgres lane, claim + complete batched, each with task "
            f"move and trace event): {mine['jobs_per_second']} jobs/s "
            f"in {mine['seconds']} s",
            f"PgQueuer {facts['packages']['pgqueuer']} (batch {PGQUEUER_BATCH}): "
            f"{theirs['jobs_per_second']} jobs/s in {theirs['seconds']} s",
            f"ratio {ratio}x (target >= {TARGET_RATIO}x): "
            f"{'met' if ratio >= TARGET_RATIO else 'NOT met'}",
            f"CPU per job, workers + Postgres: ours {mine['worker_cpu_ms_per_job']} + "
            f"{mine['postgres_cpu_ms_per_job']} ms, PgQueuer {theirs['worker_cpu_ms_per_job']}"
            f" + {theirs['postgres_cpu_ms_per_job']} ms",
            f"the SQL alone (ledger code, no worker process): Postgres "
            f"{floor['postgres_cpu_ms_per_job']} ms per job, so at most "
            f"{floor['postgres_bound_jobs_per_second']} jobs/s on {facts['cores']} cores with "
            f"a worker that cost nothing; the target needs {needed} jobs/s",
            f"heartbeat updates of runs that were HOT: {hot} "
            f"({mine['heartbeat']['hot_updates']} of {mine['heartbeat']['updates']})",
        ],
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["pgqueuer-worker"]:
        asyncio.run(_pgqueuer_worker(sys.argv[2], PGQUEUER_BATCH))
    else:
        result = asyncio.run(main())
        write_result(NAME, result)
        print("\n".join(result["summary"]))
