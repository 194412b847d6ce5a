"""Real `workbench` processes for the benchmarks: started with their own environment,
output kept in a log file, stopped with SIGTERM (SIGKILL only if that is ignored)."""

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import structlog


def quiet_logs() -> None:
    """Warnings and errors only from the ledger code the benchmark calls in-process:
    thousands of state_change lines would bury the results."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def workbench_command() -> list[str]:
    """The installed console script beside this interpreter, else the same entry point
    through the interpreter (a checkout used without `pip install -e`)."""
    script = Path(sys.executable).with_name("workbench")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from cli.main import main; main()"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_env(database_url: str, secret: str, port: int, data_dir: Path) -> dict[str, str]:
    """The environment of the processes under test: this one's, without any setting of
    ours (or Azure's) it may carry, then the bench's database, secret, address and data
    directory."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("WORKBENCH_", "AZURE_", "SERVICEBUS_", "DATABASE_URL"))
    }
    env.update(
        DATABASE_URL=database_url,
        WORKBENCH_JWT_SECRET=secret,
        WORKBENCH_HOST="127.0.0.1",
        WORKBENCH_PORT=str(port),
        WORKBENCH_DATA_DIR=str(data_dir),
    )
    return env


class Service:
    """One `workbench <args>` subprocess."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.args = args
        self.env = {**os.environ, **env}
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "Service":
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*workbench_command(), *self.args],
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

    def tail(self, chars: int = 3000) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    def check_running(self) -> None:
        if not self.running():
            raise RuntimeError(f"{self.name} exited early:\n{self.tail()}")

    def wait_for_log(self, marker: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while marker not in self.tail(chars=1_000_000):
            self.check_running()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not log {marker!r}:\n{self.tail()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM and wait; the exit code, or None when it had to be killed."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None


@contextlib.contextmanager
def running(service: Service) -> Iterator[Service]:
    service.start()
    try:
        yield service
    finally:
        service.stop()


def wait_until_ready(service: Service, base_url: str, timeout: float = 60.0) -> None:
    """Until the API answers /readyz with 200 (database reachable, schema current)."""
    deadline = time.monotonic() + timeout
    while True:
        service.check_running()
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{service.name} was not ready within {timeout} s:\n{service.tail()}"
            )
        time.sleep(0.1)
