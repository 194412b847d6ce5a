"""The hooks of an sdk run: the lane's token budget, each tool call's id for its trace,
and the run's status on its live stream.

One class for every run, not one defined per run: a class is always in a reference
cycle (with its own method resolution order), so a class per run, and the run's stream
and context its methods closed over, waited for the collector's rare full collections.
"""

from typing import Any

from agents import RunHooks
from agents.tool_context import ToolContext

from worker.context import RunContext
from worker.executors import ExecutionFailed
from worker.streaming import RunStream
from worker.tracing import LedgerTraceProcessor


class WorkbenchHooks(RunHooks[RunContext]):
    def __init__(self, run: RunContext, processor: LedgerTraceProcessor, stream: RunStream) -> None:
        self._run = run
        self._processor = processor
        self._stream = stream

    async def on_tool_start(self, context: Any, agent: Any, tool: Any) -> None:
        # The SDK's function span does not say which call it runs; its result is
        # paired with the call by this id.
        if isinstance(context, ToolContext):
            self._processor.tool_started(context.tool_call_id)
        self._stream.tool_started(agent.name)

    async def on_llm_start(
        self, context: Any, agent: Any, system_prompt: Any, input_items: Any
    ) -> None:
        self._stream.turn_started(agent.name)

    async def on_llm_end(self, context: Any, agent: Any, response: Any) -> None:
        budget = self._run.lane.token_budget
        spent = context.usage.input_tokens + context.usage.output_tokens
        if budget is not None and spent > budget:
            raise ExecutionFailed(
                "budget_exceeded",
                f"{spent} tokens spent; lane {self._run.task.lane} allows {budget}",
                retryable=False,
            )
