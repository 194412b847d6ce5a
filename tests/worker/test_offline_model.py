"""The offline model drives the real Agents SDK runner: real tools, streaming, resume, tracing."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from agents import (
    Agent,
    FunctionTool,
    RunConfig,
    Runner,
    RunResult,
    RunResultStreaming,
    RunState,
    function_tool,
)
from agents.items import ItemHelpers, ModelResponse, ToolCallItem, TResponseInputItem
from agents.model_settings import ModelSettings
from agents.models.interface import ModelTracing
from agents.tool import Tool
from agents.tracing import (
    GenerationSpanData,
    Span,
    Trace,
    TracingProcessor,
    get_trace_provider,
    set_trace_processors,
)
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseTextDeltaEvent,
)

from worker.offline_model import OfflineModel, OfflineModelProvider

ADD_TASK = 'Add two numbers\n#call add {"a": 2, "b": 3}'


class _SpanRecorder(TracingProcessor):
    def __init__(self) -> None:
        self.ended: list[Span[Any]] = []

    def on_trace_start(self, trace: Trace) -> None:
        pass

    def on_trace_end(self, trace: Trace) -> None:
        pass

    def on_span_start(self, span: Span[Any]) -> None:
        pass

    def on_span_end(self, span: Span[Any]) -> None:
        self.ended.append(span)

    def shutdown(self) -> None:
        pass

    def force_flush(self) -> None:
        pass


@pytest.fixture(autouse=True)
def ended_spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Span[Any]]]:
    """Record spans in memory instead of exporting them, and prove no API key is needed."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    # The SDK offers no getter for the installed processors; read them so that exactly the
    # previous set is restored, not just the SDK default.
    previous = list(get_trace_provider()._multi_processor._processors)  # type: ignore[attr-defined]
    recorder = _SpanRecorder()
    set_trace_processors([recorder])
    try:
        yield recorder.ended
    finally:
        set_trace_processors(previous)


def _offline() -> RunConfig:
    return RunConfig(model_provider=OfflineModelProvider())


def _add_tool(calls: list[tuple[int, int]]) -> FunctionTool:
    @function_tool
    def add(a: int, b: int) -> str:
        """Add two integers."""
        calls.append((a, b))
        return f"sum={a + b}"

    return add


def _call_ids(result: RunResult | RunResultStreaming) -> list[str]:
    return [
        item.raw_item.call_id
        for item in result.new_items
        if isinstance(item, ToolCallItem) and isinstance(item.raw_item, ResponseFunctionToolCall)
    ]


def _expected_call_id(index: int, name: str, canonical_arguments: str) -> str:
    seed = f"{index}:{name}:{canonical_arguments}"
    return f"call_{hashlib.sha256(seed.encode()).hexdigest()[:24]}"


async def test_call_line_runs_the_real_tool_and_reports_its_output() -> None:
    calls: list[tuple[int, int]] = []
    agent = Agent(name="adder", instructions="You add numbers.", tools=[_add_tool(calls)])

    result = await Runner.run(agent, ADD_TASK, run_config=_offline())

    assert calls == [(2, 3)]
    assert result.final_output == (
        "offline model: completed 1 tool call(s)\n- add: sum=5\ntask: Add two numbers"
    )
    assert _call_ids(result) == [_expected_call_id(0, "add", '{"a":2,"b":3}')]
    # One response for the call, one for the summary, each counted as a single request.
    assert result.context_wrapper.usage.requests == 2
    assert result.context_wrapper.usage.output_tokens > 0


async def test_calls_from_instructions_run_first_one_per_turn() -> None:
    calls: list[tuple[int, int]] = []
    agent = Agent(
        name="adder",
        instructions='Always warm up.\n  #call add {"b": 1, "a": 1}',
        tools=[_add_tool(calls)],
    )

    result = await Runner.run(agent, ADD_TASK, run_config=_offline())

    assert calls == [(1, 1), (2, 3)]
    assert result.final_output.splitlines()[:3] == [
        "offline model: completed 2 tool call(s)",
        "- add: sum=2",
        "- add: sum=5",
    ]
    assert len(result.raw_responses) == 3


async def test_call_ids_are_identical_across_runs() -> None:
    task = 'Sum twice\n#call add {"a": 1, "b": 2}\n#call add {"a": 1, "b": 2}'
    agent = Agent(name="adder", tools=[_add_tool([])])

    first = await Runner.run(agent, task, run_config=_offline())
    # A fresh provider, as a separate process would have.
    second = await Runner.run(agent, task, run_config=_offline())

    first_ids = _call_ids(first)
    assert first_ids == _call_ids(second)
    # Identical directives still get distinct ids because their position is part of the seed.
    assert first_ids == [
        _expected_call_id(0, "add", '{"a":1,"b":2}'),
        _expected_call_id(1, "add", '{"a":1,"b":2}'),
    ]
    assert [r.response_id for r in first.raw_responses] == [
        r.response_id for r in second.raw_responses
    ]


async def test_resume_from_serialized_state_keeps_the_call_id() -> None:
    deployed: list[str] = []

    @function_tool(needs_approval=True)
    def deploy(env: str) -> str:
        """Deploy to an environment."""
        deployed.append(env)
        return f"deployed to {env}"

    agent = Agent(name="ops", tools=[deploy])
    task = 'Ship the release\n#call deploy {"env": "prod"}'

    interrupted = await Runner.run(agent, task, run_config=_offline())
    assert deployed == []
    assert [i.raw_item.call_id for i in interrupted.interruptions] == [  # type: ignore[union-attr]
        _expected_call_id(0, "deploy", '{"env":"prod"}')
    ]

    # A string round trip stands in for handing the state to another process.
    state = await RunState.from_string(agent, interrupted.to_state().to_string())
    state.approve(state.get_interruptions()[0])
    resumed = await Runner.run(agent, state, run_config=_offline())

    assert deployed == ["prod"]
    assert resumed.final_output == (
        "offline model: completed 1 tool call(s)\n- deploy: deployed to prod\n"
        "task: Ship the release"
    )


async def test_without_call_lines_returns_the_summary() -> None:
    agent = Agent(name="plain", instructions="Be brief.", tools=[_add_tool([])])

    result = await Runner.run(agent, "\nSummarise the queue\nsecond line", run_config=_offline())

    assert result.final_output == (
        "offline model: completed 0 tool call(s)\ntask: Summarise the queue"
    )
    assert _call_ids(result) == []


async def test_streaming_matches_the_non_streamed_run() -> None:
    calls: list[tuple[int, int]] = []
    agent = Agent(name="adder", tools=[_add_tool(calls)])

    plain = await Runner.run(agent, ADD_TASK, run_config=_offline())
    streamed = Runner.run_streamed(agent, ADD_TASK, run_config=_offline())
    raw_types: list[str] = []
    deltas: list[str] = []
    async for event in streamed.stream_events():
        if event.type == "raw_response_event":
            raw_types.append(event.data.type)
            if isinstance(event.data, ResponseTextDeltaEvent):
                deltas.append(event.data.delta)

    assert calls == [(2, 3), (2, 3)]
    assert streamed.final_output == plain.final_output
    assert "".join(deltas) == plain.final_output
    assert len(deltas) == len(plain.final_output.split())  # one per word
    assert raw_types.count("response.created") == raw_types.count("response.completed") == 2
    assert raw_types[0] == "response.created"
    assert raw_types[-1] == "response.completed"
    assert "response.function_call_arguments.done" in raw_types
    assert _call_ids(streamed) == _call_ids(plain)
    assert streamed.context_wrapper.usage.requests == plain.context_wrapper.usage.requests == 2
    assert streamed.context_wrapper.usage.total_tokens == plain.context_wrapper.usage.total_tokens


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        (
            "Do it\n#call missing {}",
            "offline model: tool 'missing' is not available (offered: add)",
        ),
        (
            "Do it\n#call add {not json}",
            "offline model: invalid JSON arguments for tool 'add': "
            "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        ),
        (
            "Do it\n#call add [1, 2]",
            "offline model: invalid JSON arguments for tool 'add': arguments must be a JSON object",
        ),
    ],
)
async def test_unusable_call_ends_with_a_message(task: str, expected: str) -> None:
    calls: list[tuple[int, int]] = []
    agent = Agent(name="adder", tools=[_add_tool(calls)])

    result = await Runner.run(agent, task, run_config=_offline())

    assert result.final_output == expected
    assert calls == []


async def test_generation_span_reports_offline_model_and_usage(
    ended_spans: list[Span[Any]],
) -> None:
    agent = Agent(name="adder", instructions="You add numbers.", tools=[_add_tool([])])

    result = await Runner.run(agent, ADD_TASK, run_config=_offline())

    generations = [s.span_data for s in ended_spans if isinstance(s.span_data, GenerationSpanData)]
    assert len(generations) == 2
    assert {g.model for g in generations} == {"offline"}
    per_request = [r.usage for r in result.raw_responses]
    for generation, usage in zip(generations, per_request, strict=True):
        assert generation.usage is not None
        assert generation.usage["requests"] == 1
        assert generation.usage["input_tokens"] == usage.input_tokens > 0
        assert generation.usage["output_tokens"] == usage.output_tokens > 0
        assert generation.usage["total_tokens"] == usage.input_tokens + usage.output_tokens
    assert generations[0].input is not None
    assert generations[0].input[0] == {"role": "system", "content": "You add numbers."}
    assert generations[0].output is not None
    assert generations[0].output[0]["call_id"] == _expected_call_id(0, "add", '{"a":2,"b":3}')
    assert generations[1].output is not None
    assert generations[1].output[0]["content"][0]["text"] == result.final_output


def test_provider_serves_the_offline_model_for_any_name() -> None:
    provider = OfflineModelProvider()

    for name in ("gpt-4.1", None, "anything"):
        assert isinstance(provider.get_model(name), OfflineModel)


async def _answer(conversation: str | list[TResponseInputItem]) -> ModelResponse:
    """Ask the model directly, bypassing the runner, exactly as the SDK would call it."""
    tools: list[Tool] = [_add_tool([])]
    return await OfflineModel().get_response(
        "Be brief.",
        conversation,
        ModelSettings(),
        tools,
        None,
        [],
        ModelTracing.DISABLED,
        previous_response_id=None,
        conversation_id=None,
        prompt=None,
    )


async def test_string_input_is_read_like_a_user_message() -> None:
    task = 'Add\n#call add {"a": 4, "b": 5}'

    from_string = await _answer(task)
    from_items = await _answer([{"role": "user", "content": task}])

    call = from_string.output[0]
    assert isinstance(call, ResponseFunctionToolCall)
    assert call.arguments == '{"a":4,"b":5}'
    assert from_items.output == [call]
    assert from_string.usage == from_items.usage


async def test_results_are_matched_by_call_id_and_task_comes_from_latest_user() -> None:
    call_id = _expected_call_id(0, "add", '{"a":1,"b":1}')
    latest_task = '#call add {"a": 1, "b": 1}\n\nNew task'

    response = await _answer(
        [
            {"role": "user", "content": "Old task"},
            {"role": "user", "content": [{"type": "input_text", "text": latest_task}]},
            {"type": "function_call", "call_id": call_id, "name": "add", "arguments": "{}"},
            {"type": "function_call_output", "call_id": call_id, "output": "sum=2"},
            {"role": "assistant", "content": "Assistant chatter"},
        ]
    )

    message = response.output[0]
    assert isinstance(message, ResponseOutputMessage)
    assert ItemHelpers.extract_last_text(message) == (
        "offline model: completed 1 tool call(s)\n- add: sum=2\ntask: New task"
    )


async def test_follow_up_turn_runs_only_its_new_call() -> None:
    calls: list[tuple[int, int]] = []
    agent = Agent(name="adder", tools=[_add_tool(calls)])
    first = await Runner.run(agent, ADD_TASK, run_config=_offline())

    follow_up = [
        *first.to_input_list(),
        {"role": "user", "content": 'Once more\n#call add {"a": 10, "b": 1}'},
    ]
    second = await Runner.run(agent, follow_up, run_config=_offline())

    assert calls == [(2, 3), (10, 1)]
    assert second.final_output == (
        "offline model: completed 2 tool call(s)\n- add: sum=5\n- add: sum=11\ntask: Once more"
    )


async def test_a_steering_note_is_acknowledged_before_the_task_goes_on() -> None:
    """The offline model's side of steering (worker/steering.py): a note that joins the
    input mid-run is answered with ack_steering first, and the task's own directives
    (from the latest user message that is not a note) carry on after it."""
    calls: list[tuple[int, int]] = []
    acks: list[str] = []

    @function_tool
    def ack_steering(event_id: str) -> str:
        """Acknowledge a steering note."""
        acks.append(event_id)
        return f"acknowledged {event_id}"

    event_id = "0b6f4f9e-6a53-4c8e-9d3e-8c1f2f7a1b2c"
    note = {"role": "user", "content": f"Steering note {event_id} from dashboard (dana):\nStop."}
    agent = Agent(name="adder", instructions="Add.", tools=[_add_tool(calls), ack_steering])

    result = await Runner.run(
        agent, [{"role": "user", "content": ADD_TASK}, note], run_config=_offline()
    )

    assert acks == [event_id] and calls == [(2, 3)]
    assert _call_ids(result)[1] == _expected_call_id(0, "add", '{"a":2,"b":3}')
    assert result.final_output.endswith("task: Add two numbers")
    # Without the tool offered, a note is only read.
    plain = Agent(name="adder", instructions="Add.", tools=[_add_tool([])])
    unacked = await Runner.run(
        plain, [{"role": "user", "content": ADD_TASK}, note], run_config=_offline()
    )
    assert unacked.final_output.endswith("task: Add two numbers")
