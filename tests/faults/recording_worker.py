"""`workbench worker` with one more executor, `recording`, for fault tests.

The process is the real CLI entry point (`cli.main.main`) and so the real `Worker`, its
lanes, leases and pool: only the executor is the test's. It appends one line per
invocation to the file named by FAULTS_INVOCATIONS (the test's witness of how many
times each task really ran), then:

- a task whose scope has `"poison": true` kills this worker process with SIGKILL, as a
  segfaulting library or the OOM killer would;
- any other task sleeps `scope.sleep_seconds` (default 0.1) and succeeds.

Usage: python recording_worker.py [workbench worker options...]
"""

import asyncio
import os
import signal
import sys

from cli.main import main
from worker.context import RunContext
from worker.executors import EXECUTORS, ExecutionResult


def record(run: RunContext) -> None:
    line = f"{run.task.id} {run.claim.fence.attempt} {run.worker}\n"
    # One write on an O_APPEND descriptor: whole lines even with several writers, and
    # in the page cache before the process can be killed.
    descriptor = os.open(os.environ["FAULTS_INVOCATIONS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(descriptor, line.encode())
    finally:
        os.close(descriptor)


async def recording_executor(run: RunContext) -> ExecutionResult:
    record(run)
    if run.task.scope.get("poison") is True:
        os.kill(os.getpid(), signal.SIGKILL)
    requested = run.task.scope.get("sleep_seconds")
    await asyncio.sleep(float(requested) if isinstance(requested, int | float) else 0.1)
    return ExecutionResult(final_output=f"done {run.task.title}")


if __name__ == "__main__":
    EXECUTORS["recording"] = recording_executor
    main(["worker", "--executor", "recording", *sys.argv[1:]])
