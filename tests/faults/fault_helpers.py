"""A deployment for fault tests: `workbench api`, dispatchers and workers as separate
processes against one DATABASE_URL (a database of the session's embedded PostgreSQL,
or a server the test owns and restarts), so the test can read the ledger directly,
kill any process and start helper processes built from the real entry points."""

import asyncio
import contextlib
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import yaml
from process_helpers import ApiServer, Pipeline, Service, fast_lanes, stop_and_check

from api.auth import mint_token
from bench.local_server import LocalServer
from ledger.policy import load_policy

HERE = Path(__file__).parent
RECORDING_WORKER = [sys.executable, str(HERE / "recording_worker.py")]
DIES_BEFORE_SEND = [sys.executable, str(HERE / "dispatcher_dies_before_send.py")]
JWT_SECRET = "faults-secret-that-is-long-enough-for-hs256"
TENANT = "faults"
# How long a HeldServer holds its first request at most.
HOLD_SECONDS = 60.0


def sql(url: str, statement: str, *args: Any) -> list[dict[str, Any]]:
    """Rows of one statement, on a connection of its own, run on a thread of its own so
    a synchronous test never touches pytest's event loop."""

    async def fetch() -> list[dict[str, Any]]:
        connection = await asyncpg.connect(url, timeout=30)
        try:
            return [dict(row) for row in await connection.fetch(statement, *args)]
        finally:
            await connection.close()

    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, fetch()).result(timeout=60)


class Cluster(Pipeline):
    """The pipeline on `database_url`, tokens minted here, executions recorded."""

    def __init__(self, api: ApiServer, root: Path, database_url: str, lanes_file: Path) -> None:
        super().__init__(api, root)
        self.database_url = database_url
        self.lanes_file = lanes_file
        self.invocations_file = root / "invocations.txt"

    def token(self, role: str = "operator", subject: str = "fran") -> str:
        return mint_token(JWT_SECRET, subject=subject, roles=[role], tenant_id=TENANT)

    def sql(self, statement: str, *args: Any) -> list[dict[str, Any]]:
        return sql(self.database_url, statement, *args)

    def dispatcher(self, name: str = "dispatcher") -> Service:
        service = self.spawn(name, ["dispatcher"])
        service.wait_for_event("dispatcher_started")
        return service

    def recording_worker(self, name: str, concurrency: int = 4, wait: bool = True) -> Service:
        """A worker process running recording_worker.py's executor (see there)."""
        service = self.spawn(
            name,
            ["--concurrency", str(concurrency)],
            program=RECORDING_WORKER,
            WORKBENCH_WORKER_NAME=name,
            FAULTS_INVOCATIONS=str(self.invocations_file),
        )
        if wait:
            service.wait_for_event("worker_started")
        return service

    def invocations(self) -> Counter[str]:
        """How many times the recording executor started each task (by task id)."""
        if not self.invocations_file.exists():
            return Counter()
        lines = self.invocations_file.read_text().splitlines()
        return Counter(line.split()[0] for line in lines if line)

    def logs(self) -> dict[str, str]:
        """Every process's output, by name."""
        return {"api": self.api.output()} | {s.name: s.output() for s in self.services}


@contextlib.contextmanager
def running_cluster(
    root: Path, database_url: str, lanes_file: Path, **env: str
) -> Iterator[Cluster]:
    """The API started (it applies the migrations) and ready; every process the test
    started is stopped afterwards with SIGTERM and must exit 0, unless it was killed on
    purpose."""
    api = ApiServer(
        root / "data",
        root / "api.log",
        lanes_file,
        extra_env={
            "DATABASE_URL": database_url,
            "WORKBENCH_JWT_SECRET": JWT_SECRET,
            "WORKBENCH_ARTIFACT_DIR": str(root / "artifacts"),
            **env,
        },
    )
    api.start()
    cluster = Cluster(api, root, database_url, lanes_file)
    try:
        yield cluster
    finally:
        problems = stop_and_check(cluster.services)
        api_returncode, _ = api.stop()
    assert not problems, "\n\n".join(problems)
    assert api_returncode == 0, f"workbench api exited with {api_returncode}:\n{api.output()}"
    # A connection the process lost track of holds its pool's close until a timeout.
    stuck = [name for name, log in cluster.logs().items() if '"pool_close_timed_out"' in log]
    assert not stuck, f"pool close timed out in {stuck}"


class HeldServer(LocalServer):
    """A status page whose first request is held until `released` is set."""

    url_path = "/status"

    def __init__(self) -> None:
        # Before the server starts: a request may arrive as soon as it does.
        self.arrived = threading.Event()
        self.released = threading.Event()
        super().__init__()

    def answer(self, path: str) -> bytes:
        if not self.arrived.is_set():
            self.arrived.set()
            self.released.wait(HOLD_SECONDS)
        return b"checkout: 3 of 4 pods crash-looping"

    def close(self) -> None:
        self.released.set()
        super().close()


def lanes_reaching_localhost(directory: Path) -> Path:
    """Fast lanes whose `analysis` lane lets http_get reach 127.0.0.1 (a HeldServer)."""
    path = fast_lanes(directory)
    policy = load_policy(path)
    analysis = policy.lanes["analysis"].model_copy(update={"allowed_hosts": ["127.0.0.1"]})
    lanes = {**policy.lanes, "analysis": analysis}
    path.write_text(
        yaml.safe_dump(policy.model_copy(update={"lanes": lanes}).model_dump(mode="json"))
    )
    return path
