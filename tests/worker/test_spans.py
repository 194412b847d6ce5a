"""The worker's buffer of SDK spans waiting for the ledger stays bounded: per trace and
in the number of traces, dropping the oldest and counting what it dropped."""

from collections.abc import Iterator
from uuid import uuid4

import pytest
from prometheus_client import REGISTRY

from ledger.leases import SpanEvent
from worker import spans


def _span(n: int) -> SpanEvent:
    return SpanEvent(span_id=f"span-{n}", kind="span.function", message=f"function {n}", data={})


def _dropped(reason: str) -> float | None:
    return REGISTRY.get_sample_value("workbench_sdk_spans_dropped_total", {"reason": reason})


@pytest.fixture
def traces() -> Iterator[list[str]]:
    """Trace ids of this test, drained afterwards so no other test sees them."""
    made: list[str] = []
    yield made
    for trace_id in made:
        spans.drain(trace_id)


def _trace(traces: list[str]) -> str:
    traces.append(f"trace_{uuid4().hex}")
    return traces[-1]


def test_a_trace_keeps_its_newest_spans(traces: list[str]) -> None:
    trace_id = _trace(traces)
    before = _dropped("trace_full") or 0.0
    for n in range(spans.MAX_SPANS_PER_TRACE + 5):
        spans.add(trace_id, _span(n))
    after = _dropped("trace_full")
    assert after is not None
    assert after - before == 5
    kept = spans.drain(trace_id)
    assert [s.span_id for s in kept] == [
        f"span-{n}" for n in range(5, spans.MAX_SPANS_PER_TRACE + 5)
    ]
    # Put back after a failed write, ahead of newer spans, within the same bound.
    spans.add(trace_id, _span(-1))
    spans.put_back(trace_id, kept)
    assert _dropped("trace_full") == after + 1
    again = spans.drain(trace_id)
    assert len(again) == spans.MAX_SPANS_PER_TRACE
    assert again[0].span_id == "span-6" and again[-1].span_id == "span--1"


def test_the_trace_waiting_longest_for_a_drain_goes_first(traces: list[str]) -> None:
    stale = _trace(traces)
    spans.add(stale, _span(1))
    spans.add(stale, _span(2))
    live = _trace(traces)
    spans.add(live, _span(1))
    spans.drain(live)  # a heartbeat's flush; its next span puts it at the end of the line
    spans.add(live, _span(2))
    # Newer traces until the buffer holds the stale one and MAX_TRACES - 1 after it
    # (any older, from other tests, are gone by then).
    for _ in range(spans.MAX_TRACES - 2):
        spans.add(_trace(traces), _span(0))
    before = _dropped("too_many_traces") or 0.0
    spans.add(_trace(traces), _span(0))  # one trace too many
    after = _dropped("too_many_traces")
    assert after is not None
    assert after - before == 2  # the stale trace's two spans
    assert spans.drain(stale) == []
    assert [s.span_id for s in spans.drain(live)] == ["span-2"]
