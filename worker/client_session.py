"""The steps of client-side agent sessions (`ledger/client_sessions.py`), executed by a
worker under the step's lease like any run.

- An inference step is ONE model call through the SDK's `Model` interface, not
  `Runner`: the client runs the loop. The model gets the agent's instructions, the
  session's context (`worker/session_context.py`) and the gateway's tools as function
  definitions, which are not executed here: the client asks for each call it wants.
  Its text and calls become the step's messages, with the step's response id.
- A tool-call step runs the gateway's tool (the real `FunctionTool` of
  `worker/tools.py`, with a `ToolContext` of this run), once. A tool above the lane's
  `tool_approval_above` pauses the step first, with an approval request, exactly as an
  agent's call does; the worker that claims it after the decision runs it (approved)
  or records the refusal as its result (rejected).

Both write SDK spans into the step's trace (a generation or response span, a function
span with the call's id), so a step reads and streams like any thread run.
"""

import asyncio
import json
from typing import Any

import structlog
from agents import ModelSettings
from agents.models.interface import ModelTracing
from agents.tool_context import ToolContext
from agents.tracing import function_span, trace

from ledger.models import ThreadMessage
from ledger.run_writes import NewMessage
from ledger.session_steps import INFERENCE, SESSION_STEP, TOOL_CALL, response_id
from worker.context import RunContext
from worker.conversation import agents_registry
from worker.executors import (
    ExecutionBlocked,
    ExecutionFailed,
    ExecutionResult,
    Pause,
    arguments_sha256,
    trace_id_for,
)
from worker.providers import ProviderNotConfigured, model_provider_for
from worker.session_context import CONTEXTS, Chain, Entry, answers, chain, entry, items
from worker.tools import TOOLS, tools_for
from worker.tracing import tool_arguments, trace_processor

log = structlog.get_logger(__name__)


async def execute_step(run: RunContext) -> ExecutionResult:
    step = (run.task.run_options or {}).get(SESSION_STEP)
    if step == INFERENCE:
        return await _inference(run)
    if step == TOOL_CALL:
        return await _tool_call(run)
    raise ExecutionFailed("unknown_session_step", f"no such session step {step!r}", retryable=False)


def _trace(run: RunContext) -> Any:
    """The step's SDK trace: its spans are drained into the run's trace events."""
    trace_processor(run.leases.redactor)
    task = run.task
    return trace(
        workflow_name=f"workbench:{task.lane}",
        trace_id=trace_id_for(run),
        group_id=str(task.thread_id),
        metadata={"task_id": str(task.id), "lane": task.lane, "session_step": "1"},
    )


def _stored(run: RunContext, message: NewMessage) -> NewMessage:
    """A message as the ledger will store it (redacted): what a cached context holds
    must be what a rebuild from the ledger reads."""
    redactor = run.leases.redactor
    return NewMessage(
        message.role, redactor.text(message.content), message.agent, redactor.value(message.data)
    )


async def _context(run: RunContext, previous: str | None) -> tuple[list[Entry], int]:
    """The entries of this turn's context, through its own input, and that input's
    sequence number: from the cached chain of the previous response when this worker
    has it, else rebuilt from the thread's whole history."""
    task = run.task
    assert task.thread_id is not None
    cached = CONTEXTS.get(previous) if previous is not None else Chain()
    messages: list[ThreadMessage]
    if cached is not None:
        messages = await run.leases.thread_messages_after(task.thread_id, cached.after_seq)
        base = cached
    else:
        messages = await run.leases.thread_history(task.thread_id)
        rebuilt = chain(messages, previous or "")
        if rebuilt is None:
            raise ExecutionFailed(
                "unknown_previous_response",
                f"the session has no answered turn {previous}",
                retryable=False,
            )
        base = rebuilt
    own = next(m for m in messages if m.task_id == task.id and m.role == "user")
    results = answers(messages, base.calls, base.after_seq, own.seq)
    log.info(
        "client_session_context",
        task_id=str(task.id),
        previous_response_id=previous,
        source="ledger" if cached is None else "cache",
        messages_read=len(messages),
    )
    return [*base.entries, *results, entry(own)], own.seq


async def _inference(run: RunContext) -> ExecutionResult:
    task, lane = run.task, run.lane
    options = task.run_options or {}
    registry = agents_registry(run)
    agent = registry[task.agent_type or ""]
    try:
        provider = model_provider_for(task.model_provider)
    except ProviderNotConfigured as error:
        raise ExecutionBlocked(str(error)) from error
    model = provider.get_model(options.get("model"))
    tools = tools_for(run, lane=registry.lane_of(agent.id), names=registry.tools_of(agent.id))
    entries, input_seq = await _context(run, options.get("previous_response_id"))
    with _trace(run):
        try:
            response = await asyncio.wait_for(
                model.get_response(
                    agent.instructions,
                    items(entries),  # type: ignore[arg-type]
                    ModelSettings(),
                    tools,  # type: ignore[arg-type]
                    None,
                    [],
                    ModelTracing.ENABLED,
                    previous_response_id=None,
                    conversation_id=None,
                    prompt=None,
                ),
                lane.timeout_seconds,
            )
        except TimeoutError as error:
            raise ExecutionFailed(
                "timeout", f"the model ran past {lane.timeout_seconds} s", retryable=True
            ) from error
    usage = response.usage
    spent = usage.input_tokens + usage.output_tokens
    if lane.token_budget is not None and spent > lane.token_budget:
        raise ExecutionFailed(
            "budget_exceeded",
            f"{spent} tokens spent; lane {task.lane} allows {lane.token_budget}",
            retryable=False,
        )
    answer = response_id(task.id, run.claim.fence.attempt)
    messages = [_stored(run, message) for message in _answer(response.output, agent.id, answer)]
    outputs = [Entry(m.role, m.content, m.data) for m in messages]
    calls = tuple(str(m.data["call_id"]) for m in messages if m.role == "tool_call")
    # Kept before the completion is written: if it never is (the lease was lost), the
    # API never accepts this attempt's response id, so the entry is never asked for.
    CONTEXTS.put(answer, Chain((*entries, *outputs), calls, input_seq))
    return ExecutionResult(
        input_tokens=usage.input_tokens, output_tokens=usage.output_tokens, messages=messages
    )


def _answer(output: list[Any], agent: str, answer: str) -> list[NewMessage]:
    """The model's text and calls as the step's messages, in the order it gave them;
    an empty assistant message when it gave neither, so the answer has a message."""
    marked = {SESSION_STEP: INFERENCE, "response_id": answer}
    messages = []
    for item in output:
        kind = getattr(item, "type", None)
        if kind == "message":
            text = "".join(
                part.text for part in item.content if getattr(part, "type", "") == "output_text"
            )
            messages.append(NewMessage("assistant", text, agent, dict(marked)))
        elif kind == "function_call":
            data = {
                **marked,
                "call_id": item.call_id,
                "tool": item.name,
                "arguments": tool_arguments(item.arguments),
            }
            messages.append(NewMessage("tool_call", item.name, agent, data))
    return messages or [NewMessage("assistant", "", agent, dict(marked))]


async def _tool_call(run: RunContext) -> ExecutionResult:
    task, lane = run.task, run.lane
    options = task.run_options or {}
    name, call_id = str(options.get("name")), str(options.get("call_id"))
    arguments = str(options.get("arguments"))
    registry = agents_registry(run)
    agent = task.agent_type or ""
    if name not in registry.tools_of(agent):
        raise ExecutionFailed(
            "not_in_gateway", f"tool {name} is not in agent {agent}'s gateway", retryable=False
        )
    above = lane.tool_approval_above
    decision = "approved"
    if above is not None and run.policy.exceeds(TOOLS[name].mutation_level, above):
        decided = _decision(run, call_id, arguments)
        if decided is None:
            pending = {
                "tool": name,
                "call_id": call_id,
                "arguments": run.leases.redactor.value(tool_arguments(arguments)),
                "arguments_sha256": arguments_sha256(arguments),
            }
            # Nothing to resume but the call itself, which the task holds.
            state = json.dumps({SESSION_STEP: TOOL_CALL, "call_id": call_id})
            return ExecutionResult(paused=Pause(state, pending))
        decision = decided
    if decision == "approved":
        output = await _invoke(run, name, call_id, arguments)
    else:
        reason = (task.pending_approval or {}).get("reason")
        output = "the operator rejected this tool call" + (f": {reason}" if reason else "")
    marked = {SESSION_STEP: TOOL_CALL, "call_id": call_id, "tool": name}
    messages = [
        NewMessage("tool_call", name, agent, {**marked, "arguments": tool_arguments(arguments)}),
        NewMessage("tool_result", output, agent, marked),
    ]
    return ExecutionResult(messages=[_stored(run, message) for message in messages])


def _decision(run: RunContext, call_id: str, arguments: str) -> str | None:
    """The operator's decision on this call: the approval of the task itself (in a lane
    whose verdict asks for one, the task is this call), else the decision on its
    approval request, bound to the call's id and exact arguments; None before one."""
    task = run.task
    if (task.approval or {}).get("decision") == "approved":
        return "approved"
    pending = task.pending_approval
    if pending is None or "decision" not in pending:
        return None
    if pending.get("call_id") != call_id or pending.get("arguments_sha256") != arguments_sha256(
        arguments
    ):
        raise ExecutionFailed(
            "approval_mismatch",
            "the decision is not on this tool call with these arguments",
            retryable=False,
        )
    return str(pending["decision"])


async def _invoke(run: RunContext, name: str, call_id: str, arguments: str) -> str:
    """The tool, invoked as the SDK invokes it, inside a function span naming the call."""
    [tool] = tools_for(run, names=[name])
    context = ToolContext(run, tool_name=name, tool_call_id=call_id, tool_arguments=arguments)
    processor = trace_processor(run.leases.redactor)
    with _trace(run), function_span(name, input=arguments) as span:
        processor.tool_started(call_id)
        try:
            output = await asyncio.wait_for(
                tool.on_invoke_tool(context, arguments), run.lane.timeout_seconds
            )
        except TimeoutError as error:
            raise ExecutionFailed(
                "timeout", f"tool {name} ran past {run.lane.timeout_seconds} s", retryable=True
            ) from error
        span.span_data.output = output
    return str(output)
