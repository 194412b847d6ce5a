"""SDK traces into the ledger.

`LedgerTraceProcessor` is installed with `set_trace_processors([...])`, replacing the
SDK's default exporter (which would send traces to OpenAI); `add_trace_processor` would
keep that exporter, and `set_tracing_disabled` would silence this processor too. The
SDK calls it on the event loop, so it only appends finished spans to an in-memory
buffer per trace; `execute_claim` drains the buffer into the ledger in batches, with the
run's fence, off the SDK's path.
"""

from functools import cache
from typing import Any

from agents.tracing import Span, Trace, TracingProcessor, set_trace_processors

from ledger.leases import SpanEvent
from worker import spans

# How much of a span's input/output text goes into the trace event.
MAX_TEXT = 4000


class LedgerTraceProcessor(TracingProcessor):
    def on_trace_start(self, trace: Trace) -> None:
        pass

    def on_trace_end(self, trace: Trace) -> None:
        pass

    def on_span_start(self, span: Span[Any]) -> None:
        pass

    def on_span_end(self, span: Span[Any]) -> None:
        spans.add(span.trace_id, span_event(span))

    def shutdown(self) -> None:
        pass

    def force_flush(self) -> None:
        pass


@cache
def trace_processor() -> LedgerTraceProcessor:
    """The process's processor, installed on first use."""
    processor = LedgerTraceProcessor()
    set_trace_processors([processor])
    return processor


def span_event(span: Span[Any]) -> SpanEvent:
    exported = span.export() or {}
    data: dict[str, Any] = dict(exported.get("span_data") or {})
    kind = str(data.pop("type", "span"))
    for key in ("input", "output"):
        if key in data and data[key] is not None:
            data[key] = _clip(data[key])
    data["trace_id"] = span.trace_id
    data["parent_id"] = span.parent_id
    data["started_at"] = span.started_at
    data["ended_at"] = span.ended_at
    if span.error:
        data["error"] = span.error
    name = data.get("name") or data.get("model") or ""
    return SpanEvent(
        span_id=span.span_id, kind=f"span.{kind}", message=f"{kind} {name}".strip(), data=data
    )


def _clip(value: Any) -> Any:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "…"
