"""Runs one task's agent through the OpenAI Agents SDK `Runner`.

The SDK is imported lazily: a deployment without it still serves the ledger, and a
task that needs it is recorded as `blocked` with the import error as the reason.
"""

import importlib
import os
from dataclasses import dataclass
from functools import cache

from ledger.models import Task

MAX_TURNS = 10


class ExecutionBlocked(Exception):
    """Execution is impossible as configured; the task becomes `blocked` with this reason."""


@dataclass(frozen=True)
class ExecutionResult:
    final_output: str
    input_tokens: int
    output_tokens: int


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


async def execute(task: Task) -> ExecutionResult:
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
