"""Executors: what a worker does with a claimed run.

`sdk` runs the task's agent through the OpenAI Agents SDK `Runner`; `noop` and `sleep`
do no agent work, for tests and benchmarks of the queue itself. The SDK is imported
lazily: a deployment without it still serves the ledger, and a task that needs it is
recorded as `blocked` with the import error as the reason.
"""

import asyncio
import hashlib
import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from ledger.agent_config import PROFILE_SCOPE_KEY
from ledger.run_writes import NewMessage
from worker.context import RunContext

if TYPE_CHECKING:  # the SDK is imported only by the runs that use it
    from worker.streaming import RunStream

_log = structlog.get_logger(__name__)


class ExecutionBlocked(Exception):
    """Execution is impossible as configured; the task becomes `blocked` with this reason."""


class ExecutionFailed(Exception):
    """The attempt failed for a known reason; `retryable` says whether another may help."""

    def __init__(self, failure_kind: str, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.failure_kind = failure_kind
        self.retryable = retryable


@dataclass(frozen=True)
class Pause:
    """The agent stopped at a tool call that needs an operator's decision."""

    saved_state: str  # RunState.to_string()
    pending: dict[str, Any]  # tool, redacted arguments, arguments_sha256, call_id


@dataclass(frozen=True)
class ExecutionResult:
    final_output: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    paused: Pause | None = field(default=None)
    # A thread run's messages for its thread's history (see worker/conversation.py).
    messages: list[NewMessage] = field(default_factory=list)


Executor = Callable[[RunContext], Awaitable[ExecutionResult]]


def sdk_import_error() -> str | None:
    """None when the agents SDK imports, else why it does not."""
    try:
        importlib.import_module("agents")
    except ImportError as error:
        return f"openai-agents SDK is not importable: {error}"
    return None


def load_sdk() -> None:
    """Import what the sdk executor needs. Call it off the event loop before the first
    run: on a busy machine these imports take seconds, and on the loop they would hold
    up every heartbeat of the worker, long enough to lose short leases. A missing SDK is
    left for the run to report (the task becomes `blocked`)."""
    if sdk_import_error() is None:
        for module in (
            "worker.providers",
            "worker.tools",
            "worker.tracing",
            "worker.conversation",
            "worker.session_agent",
            "worker.client_session",
            "worker.hooks",
            "worker.steering",
        ):
            importlib.import_module(module)


def arguments_sha256(arguments: str | None) -> str:
    return hashlib.sha256((arguments or "").encode()).hexdigest()


def trace_id_for(run: RunContext) -> str:
    """The SDK trace of a run; its spans are drained into the ledger under this id."""
    return f"trace_{run.claim.fence.run_id.hex}"


def _model_provider(name: str) -> tuple[object, str | None]:
    from worker.providers import ProviderNotConfigured, model_name_for, model_provider_for

    try:
        return model_provider_for(name), model_name_for(name)
    except ProviderNotConfigured as error:
        raise ExecutionBlocked(str(error)) from error


@dataclass(frozen=True)
class AgentRun:
    """What `Runner.run_streamed` is given for a run besides its input: the agent with the
    lane's tools, the hooks (the token budget; each tool call's id for its trace; the
    run's status), the run config (model, provider, trace id), and the run's live
    progress (`worker/streaming.py`). bench.pipeline measures the SDK's own ceiling with
    the same."""

    agent: Any
    hooks: Any
    run_config: Any
    stream: "RunStream"


def run_timeout(scope: dict[str, Any], lane_timeout_seconds: float) -> float:
    """Seconds a run may take: its lane's timeout, or the shorter timeout of the agent
    profile its task was made from."""
    minutes = (scope.get(PROFILE_SCOPE_KEY) or {}).get("timeout_minutes")
    return min(lane_timeout_seconds, minutes * 60) if minutes else lane_timeout_seconds


def agent_run(run: RunContext, trace_id: str, flush: Callable[[], Awaitable[object]]) -> AgentRun:
    """`flush` writes the run's buffered trace events (its spans and progress)."""
    from agents import ModelSettings, RunConfig

    from worker.hooks import WorkbenchHooks
    from worker.steering import SteeringInbox, ticket_agent_id
    from worker.streaming import RunStream, StreamingModelProvider
    from worker.tracing import trace_processor

    task = run.task
    options = task.run_options or {}
    provider, model = _model_provider(task.model_provider)
    model = options.get("model") or model
    processor = trace_processor(run.leases.redactor)
    # A thread run is a conversation: someone waits for its first words.
    stream = RunStream(
        trace_id, run.leases.redactor, flush, first_text_at_once=task.thread_id is not None
    )
    if task.thread_id is not None:
        from worker.conversation import conversation_agent

        agent = conversation_agent(run)
    else:
        from worker.session_agent import session_agent

        # The session's agent and permissions: a lane's own for a task claimed from
        # it, at most its parent's for a spawned helper.
        agent = session_agent(run)

    temperature = options.get("temperature")
    config = RunConfig(
        # The model too, not only the provider: otherwise the SDK applies the settings
        # of its own default model, which other servers may reject.
        model=model,
        # Only when there is one to set: the SDK checks given settings against its type
        # hints, resolved anew for each RunConfig (about 1 ms of CPU per run).
        model_settings=None if temperature is None else ModelSettings(temperature=temperature),
        model_provider=StreamingModelProvider(
            provider,  # type: ignore[arg-type]
            stream,
            processor.text_streamed,
        ),
        group_id=str(task.id),
        workflow_name=f"workbench:{task.lane}",
        trace_id=trace_id,
        trace_metadata={"task_id": str(task.id), "lane": task.lane},
        # A ticket's agent hears from the people on the ticket while it works.
        call_model_input_filter=SteeringInbox(run) if ticket_agent_id(run) is not None else None,
    )
    return AgentRun(agent, WorkbenchHooks(run, processor, stream), config, stream)


async def run_agent(prepared: AgentRun, start: Any, run: RunContext) -> Any:
    """One streamed SDK run to its end (its result: output, items, interruptions, usage).
    The events are only read to drive the run: its progress is taken from the model's
    stream and the hooks (see `worker/streaming.py`)."""
    from agents import Runner

    result = Runner.run_streamed(
        prepared.agent,
        start,
        context=run,
        max_turns=run.lane.max_turns,
        hooks=prepared.hooks,
        run_config=prepared.run_config,
    )
    try:
        async for _ in result.stream_events():
            pass
    except asyncio.CancelledError:
        # A timeout or a stop. The reader's cancellation cancels the run but does not wait
        # for it: wait, so the spans it ends as it stops (a tool call cut short) are
        # buffered before the caller writes the run's last spans.
        if result.run_loop_task is not None:
            await asyncio.wait([result.run_loop_task])
        raise
    finally:
        # No write of this run's events may outlive it (or race with its outcome).
        await prepared.stream.close()
    # The stream has ended, so the SDK has run its sandbox cleanup (none here: no sandbox
    # is configured). Its callable closes over the result: dropped, the run's objects are
    # freed as it ends instead of waiting, promoted, for a rare full collection (32 runs
    # in flight kept 30 MB more resident).
    result._sandbox_cleanup = None
    return result


async def sdk_executor(run: RunContext) -> ExecutionResult:
    missing = sdk_import_error()
    if missing:
        raise ExecutionBlocked(missing)
    if (run.task.run_options or {}).get("session_step"):
        # A client-side session's step: one model call or one tool call, not a Runner run.
        from worker.client_session import execute_step

        return await execute_step(run)
    from agents import MaxTurnsExceeded, RunState

    # Here, not at the top: worker.execution imports this module.
    from worker.execution import flush_spans

    task, lane = run.task, run.lane
    prepared = agent_run(run, trace_id_for(run), lambda: flush_spans(run, _log))
    agent = prepared.agent
    # Only a run that stopped at a tool call for an operator has state to resume from,
    # and that left the call on the task: otherwise skip the read.
    saved = await run.leases.saved_state(run.claim.fence) if task.pending_approval else None
    start: Any = task.instructions
    if task.thread_id is not None:
        from worker.conversation import soul_digests

        digests = soul_digests(run)
    else:
        from worker.session_agent import session_souls

        digests = session_souls(run)
    reads: list[Awaitable[Any]] = []
    if digests:  # the trace says which persona each agent ran with
        reads.append(
            run.leases.trace(
                run.claim.fence,
                worker=run.worker,
                kind="soul",
                message="souls: " + ", ".join(f"{a} {d[:19]}" for a, d in digests.items()),
                data={"souls": digests},
            )
        )
    if task.thread_id is not None:
        reads.append(run.leases.thread_history(task.thread_id))
    # Together, not one after the other: someone waits for a thread run's first words.
    done = await asyncio.gather(*reads)
    if task.thread_id is not None:
        from worker.conversation import history_input

        start = history_input(done[-1])
    if saved is not None:
        start = await RunState.from_string(agent, saved, context_deserializer=lambda _: run)
        _apply_decision(start, task.pending_approval or {})
    timeout = run_timeout(task.scope, lane.timeout_seconds)
    try:
        result = await asyncio.wait_for(run_agent(prepared, start, run), timeout)
    except TimeoutError as error:
        raise ExecutionFailed(
            "timeout", f"the agent ran past {timeout:g} s", retryable=True
        ) from error
    except MaxTurnsExceeded as error:
        raise ExecutionFailed("max_turns_exceeded", str(error), retryable=False) from error
    usage = result.context_wrapper.usage
    if result.interruptions:
        item = result.interruptions[0]
        pending = {
            "tool": item.tool_name,
            "call_id": item.call_id,
            "arguments": _redacted_arguments(run, item.arguments),
            "arguments_sha256": arguments_sha256(item.arguments),
        }
        return ExecutionResult(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            # The context is the live run (fence, store); the resuming worker supplies its own.
            paused=Pause(result.to_state().to_string(context_serializer=lambda _: {}), pending),
        )
    prepared.stream.completed()  # written with the outcome
    messages = []
    if task.thread_id is not None:
        from worker.conversation import run_messages

        messages = run_messages(result.new_items)
    return ExecutionResult(
        str(result.final_output), usage.input_tokens, usage.output_tokens, messages=messages
    )


def _redacted_arguments(run: RunContext, arguments: str | None) -> Any:
    """The arguments as an operator may see them, as the call's `tool_call` event shows
    them: the JSON value they encode (else their text), secrets redacted."""
    from worker.tracing import tool_arguments

    return run.leases.redactor.value(tool_arguments(arguments or "{}"))


def _apply_decision(state: Any, pending: dict[str, Any]) -> None:
    """Approve or reject, in the restored SDK state, exactly the call the operator saw:
    same call id and the same arguments (by hash). Anything else is refused."""
    decision = pending.get("decision")
    for item in state.get_interruptions():
        if item.call_id != pending.get("call_id"):
            continue
        if arguments_sha256(item.arguments) != pending.get("arguments_sha256"):
            raise ExecutionFailed(
                "approval_mismatch",
                "the saved tool call's arguments do not match the ones approved",
                retryable=False,
            )
        if decision == "approved":
            state.approve(item)
        else:
            state.reject(item)
        return
    raise ExecutionFailed(
        "approval_mismatch",
        "the approved tool call is not pending in the saved state",
        retryable=False,
    )


async def noop_executor(run: RunContext) -> ExecutionResult:
    return ExecutionResult()


MAX_SLEEP_SECONDS = 3600.0


async def sleep_executor(run: RunContext) -> ExecutionResult:
    """Sleeps `scope.sleep_seconds` (default 0.2): a stand-in for agent work of known
    length, to exercise leases, heartbeats, cancellation and draining."""
    requested = run.task.scope.get("sleep_seconds")
    seconds = 0.2 if not isinstance(requested, int | float) else max(0.0, float(requested))
    seconds = min(seconds, MAX_SLEEP_SECONDS)
    await asyncio.sleep(seconds)
    return ExecutionResult(final_output=f"slept {seconds} s")


EXECUTORS: dict[str, Executor] = {
    "sdk": sdk_executor,
    "noop": noop_executor,
    "sleep": sleep_executor,
}
