"""A run's live progress in its trace: the agent's text as `text.delta` events (coalesced,
the last of a turn final, redacted as the whole text so far) and its status as
`agent.status` events (thinking, executing, complete), through the real worker and the
real SDK Runner on the offline model."""

import asyncio
import gc
import re
import weakref

import pytest
from conftest import fast_policy
from pipeline_helpers import pipeline, wait_status
from planted_secrets import WRITTEN_FORMS, leaked

from ledger.models import TaskCreateRequest
from ledger.redaction import Redactor
from ledger.repository import Actor, Ledger
from worker import executors, spans, streaming
from worker.executors import sdk_executor
from worker.streaming import RunStream

OPERATOR = Actor("olga", "t1", "operator")
WRITE = '#call write_artifact {"name": "notes.txt", "content": "checked"}'
WORDS = re.compile(r"\s+|\S+\s*")  # how the offline model splits its text into deltas


async def _run(fresh_pool, *instructions: str) -> list[list]:
    """Each task's trace, its task run by the worker to success."""
    policy = fast_policy()
    ledger = Ledger(fresh_pool, policy)
    ids = []
    for text in instructions:
        request = TaskCreateRequest(lane="analysis", title="Check", instructions=text)
        ids.append((await ledger.create_task(OPERATOR, request)).task.id)
    async with pipeline(fresh_pool, policy, sdk_executor):
        await wait_status(ledger, ids, "succeeded")
    return [await ledger.list_traces("t1", task_id) for task_id in ids]


async def test_a_run_streams_its_text_and_status(fresh_pool, monkeypatch) -> None:
    # An interval no run reaches: each turn's text is then exactly one event, its last.
    monkeypatch.setattr(streaming, "TEXT_INTERVAL_SECONDS", 3600.0)
    [traces] = await _run(fresh_pool, f"Check the disk usage of the build hosts\n{WRITE}")

    [turn, final_turn] = [t.data for t in traces if t.kind == "span.generation"]
    answer = final_turn["text"]
    assert answer.startswith("offline model: completed 1 tool call(s)")
    texts = [t.data for t in traces if t.kind == "text.delta"]
    agent = "workbench-analysis"
    # Far fewer events than the model's deltas (one per word), and together its answer.
    assert len(WORDS.findall(answer)) > 10
    assert texts == [{"text": answer, "is_final": True, "agent": agent}]
    # A task's run is no conversation: its text is written with its outcome.
    [text] = [t for t in traces if t.kind == "text.delta"]
    [succeeded] = [t for t in traces if t.kind == "succeeded"]
    assert text.created_at == succeeded.created_at
    # The turn says its text was streamed; the turn with only a call streamed none.
    assert final_turn["streamed"] is True and "streamed" not in turn

    states = [(t.data["state"], t.data["agent"]) for t in traces if t.kind == "agent.status"]
    assert states == [
        ("thinking", agent),
        ("executing", agent),
        ("thinking", agent),
        ("complete", agent),
    ]
    kinds = [t.kind for t in traces]
    # In the order it happened: the call's turn, the tool, the answer's turn, the outcome.
    order = [
        kind
        for kind in kinds
        if kind in ("agent.status", "span.generation", "span.function", "text.delta")
        or kind == "succeeded"
    ]
    assert order == [
        "agent.status",  # thinking
        "span.generation",  # the call
        "agent.status",  # executing
        "span.function",
        "agent.status",  # thinking
        "text.delta",
        "span.generation",  # the answer
        "agent.status",  # complete
        "succeeded",
    ]


async def test_a_finished_run_is_freed_without_the_collector(fresh_pool, monkeypatch) -> None:
    # What a run leaves in a reference cycle waits for a full collection, rare at the
    # worker's collector thresholds (cli/main.py): 32 streamed runs in flight kept 30 MB.
    results = []

    async def run_agent(*args):
        result = await real_run_agent(*args)
        results.append(weakref.ref(result))
        return result

    real_run_agent = executors.run_agent
    monkeypatch.setattr(executors, "run_agent", run_agent)
    gc.disable()
    try:
        await _run(fresh_pool, f"Check the disk usage of the build hosts\n{WRITE}")
        alive = [ref() for ref in results if ref() is not None]
    finally:
        gc.enable()
    assert len(results) == 1 and alive == []


async def test_text_is_coalesced_and_held_back_to_whole_words() -> None:
    trace_id = "trace_coalesce"
    flushed = asyncio.Event()

    async def flush() -> None:
        flushed.set()

    stream = RunStream(trace_id, Redactor([]), flush, interval=0.0)
    stream.turn_started("writer")
    # Deltas faster than the interval: one event for all of them.
    for word in WORDS.findall("one two three four five six seven eight "):
        stream.text(word)
    await asyncio.wait_for(flushed.wait(), 10)
    flushed.clear()
    # Then one word per write: each event holds the words before the last, which may grow.
    for word in ("nine ", "ten ", "eleven"):
        stream.text(word)
        await asyncio.wait_for(flushed.wait(), 10)
        flushed.clear()
    stream.turn_ended()
    await stream.close()

    events = spans.drain(trace_id)
    texts = [(e.data["text"], e.data["is_final"]) for e in events if e.kind == "text.delta"]
    assert texts == [
        ("one two three four five six seven ", False),
        ("eight ", False),
        ("nine ", False),
        ("ten ", False),
        ("eleven", True),
    ]
    assert [e.data["state"] for e in events if e.kind == "agent.status"] == ["thinking"]


async def test_a_conversations_first_text_is_written_at_once_and_the_rest_coalesced() -> None:
    trace_id = "trace_first_text"
    writes: list[list] = []
    written = asyncio.Event()

    async def flush() -> None:
        writes.append(spans.drain(trace_id))
        written.set()

    # An interval no test reaches: only the first text is due before the run ends.
    stream = RunStream(trace_id, Redactor([]), flush, interval=3600.0, first_text_at_once=True)
    stream.turn_started("incident-analyst")
    for word in WORDS.findall("checkout is down "):
        stream.text(word)
    await asyncio.wait_for(written.wait(), 10)
    for word in WORDS.findall("since the deploy"):
        stream.text(word)
    stream.turn_ended()
    await stream.close()

    # The first write: the status and the whole words so far, the last held back.
    [first] = writes
    assert [(e.kind, e.data.get("state", e.data.get("text"))) for e in first] == [
        ("agent.status", "thinking"),
        ("text.delta", "checkout is "),
    ]
    # The rest waits for the interval (here: the run's outcome), in one event.
    rest = [(e.data["text"], e.data["is_final"]) for e in spans.drain(trace_id)]
    assert rest == [("down since the deploy", True)]


async def test_a_first_text_due_while_a_write_is_in_flight_follows_it(monkeypatch) -> None:
    trace_id = "trace_first_text_after_write"
    clock = [0.0]
    monkeypatch.setattr(streaming, "_now", lambda: clock[0])
    writes: list[list] = []
    first, released, second = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def flush() -> None:
        writes.append(spans.drain(trace_id))
        if len(writes) == 1:
            first.set()
            await released.wait()
        else:
            second.set()

    stream = RunStream(trace_id, Redactor([]), flush, interval=3600.0, first_text_at_once=True)
    clock[0] = 3600.0  # an interval on: the status is due, and written
    stream.turn_started("incident-analyst")
    await asyncio.wait_for(first.wait(), 10)
    # The first text comes while that write is in flight, and the clock stands still:
    # it is written as soon as that write is done, not an interval after it.
    for word in WORDS.findall("checkout is down"):
        stream.text(word)
    released.set()
    await asyncio.wait_for(second.wait(), 10)
    await stream.close()

    assert [e.data["state"] for e in writes[0]] == ["thinking"]
    assert [e.data["text"] for e in writes[1]] == ["checkout is "]


@pytest.mark.parametrize(
    ("form", "text", "secret"), WRITTEN_FORMS, ids=[f[0] for f in WRITTEN_FORMS]
)
async def test_a_secret_streamed_a_character_at_a_time_is_never_written(
    form: str, text: str, secret: str
) -> None:
    trace_id = f"trace_secret_{abs(hash(form))}"
    flushed = asyncio.Event()

    async def flush() -> None:
        flushed.set()

    stream = RunStream(trace_id, Redactor([]), flush, interval=0.0)
    stream.turn_started("writer")
    # A write after every character: every cut a model's deltas could make.
    for character in f"Found this: {text} in the logs":
        stream.text(character)
        await asyncio.wait_for(flushed.wait(), 10)
        flushed.clear()
    stream.turn_ended()
    await stream.close()

    chunks = [e.data["text"] for e in spans.drain(trace_id) if e.kind == "text.delta"]
    assert len(chunks) > 1
    for chunk in (*chunks, "".join(chunks)):
        assert secret not in chunk and leaked(chunk) == [], (form, chunks)


async def test_a_secret_in_a_runs_text_never_reaches_the_ledger(fresh_pool) -> None:
    # The offline model's answer quotes the task's first line: one task per form that
    # fits on one line (and is not itself a directive to the model).
    one_line = [
        (text, secret)
        for _, text, secret in WRITTEN_FORMS
        if "\n" not in text and not text.startswith("#call")
    ]
    traces = await _run(fresh_pool, *(text for text, _ in one_line))

    for (text, secret), trace in zip(one_line, traces, strict=True):
        streamed = "".join(t.data["text"] for t in trace if t.kind == "text.delta")
        assert streamed.startswith("offline model: completed 0 tool call(s)\ntask: "), text
        assert "[redacted]" in streamed and secret not in streamed, streamed
    rows = await fresh_pool.fetch("SELECT t::text AS row FROM trace_events t")
    for row in rows:
        assert leaked(row["row"]) == [], row["row"]
