"""Executors: what a worker does with a claimed run.

`sdk` runs the task's agent through the OpenAI Agents SDK `Runner`; `noop` and `sleep`
do no agent work, for tests and benchmarks of the queue itself. The SDK is imported
lazily: a deployment without it still serves the ledger, and a task that needs it is
recorded as `blocked` with the import error as the reason.
"""

import asyncio
import importlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache

from ledger.models import Task

MAX_TURNS = 10


class ExecutionBlocked(Exception):
    """Execution is impossible as configured; the task becomes `blocked` with this reason."""


@dataclass(frozen=True)
class ExecutionResult:
    final_output: str
    input_tokens: int = 0
    output_tokens: int = 0


Executor = Callable[[Task], Awaitable[ExecutionResult]]


def sdk_import_error() -> str | None:
    """None when the agents SDK imports, else why it does not."""
    try:
        importlib.import_module("agents")
    except ImportError as error:
        return f"openai-agents SDK is not importable: {error}"
    return None


@cache
def _silence_default_trace_export() -> None:
    # The SDK's default processor exports to OpenAI; trace persistence to the ledger
    # replaces it. Replacing (not disabling) keeps any processor installed later working.
    from agents.tracing import set_trace_processors

    set_trace_processors([])


def _model_provider(task: Task) -> object:
    if task.model_provider == "offline":
        from worker.offline_model import OfflineModelProvider

        return OfflineModelProvider()
    if task.model_provider == "openai" and os.environ.get("OPENAI_API_KEY"):
        from agents.models.openai_provider import OpenAIProvider

        return OpenAIProvider()
    raise ExecutionBlocked(f"model provider {task.model_provider} is not configured here")


async def sdk_executor(task: Task) -> ExecutionResult:
    missing = sdk_import_error()
    if missing:
        raise ExecutionBlocked(missing)
    from agents import Agent, RunConfig, Runner

    provider = _model_provider(task)
    _silence_default_trace_export()
    agent = Agent(
        name=f"workbench-{task.lane}",
        instructions=(
            f"You are an agent working in lane {task.lane} at mutation level "
            f"{task.mutation_level}. Task: {task.title}"
        ),
    )
    result = await Runner.run(
        agent,
        task.instructions,
        max_turns=MAX_TURNS,
        run_config=RunConfig(
            model_provider=provider,  # type: ignore[arg-type]
            group_id=str(task.id),
            workflow_name=f"workbench:{task.lane}",
        ),
    )
    usage = result.context_wrapper.usage
    return ExecutionResult(str(result.final_output), usage.input_tokens, usage.output_tokens)


async def noop_executor(task: Task) -> ExecutionResult:
    return ExecutionResult(final_output="")


MAX_SLEEP_SECONDS = 3600.0


async def sleep_executor(task: Task) -> ExecutionResult:
    """Sleeps `scope.sleep_seconds` (default 0.2): a stand-in for agent work of known
    length, to exercise leases, heartbeats, cancellation and draining."""
    requested = task.scope.get("sleep_seconds")
    seconds = 0.2 if not isinstance(requested, int | float) else max(0.0, float(requested))
    seconds = min(seconds, MAX_SLEEP_SECONDS)
    await asyncio.sleep(seconds)
    return ExecutionResult(final_output=f"slept {seconds} s")


EXECUTORS: dict[str, Executor] = {
    "sdk": sdk_executor,
    "noop": noop_executor,
    "sleep": sleep_executor,
}
