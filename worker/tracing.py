"""SDK traces into the ledger.

`LedgerTraceProcessor` is installed with `set_trace_processors([...])`, replacing the
SDK's default exporter (which would send traces to OpenAI); `add_trace_processor` would
keep that exporter, and `set_tracing_disabled` would silence this processor too. The
SDK calls it on the event loop, so it only appends finished spans to an in-memory
buffer per trace; `execute_claim` drains the buffer into the ledger in batches, with the
run's fence, off the SDK's path.

A span's data is stored as JSON: the SDK's objects (pydantic models, lists, dicts) as
the JSON they are, anything else as its text. The assistant's text and its function calls
are read out of a model turn (a generation or response span) into `text` and
`tool_calls`, and a function span names the call it ran (`call_id`), so a reader pairs a
call with its result; a model turn whose text was streamed (`worker/streaming.py`) says
`streamed: true`. Everything is redacted before any string is clipped: a secret cut
at the clip limit would no longer be recognised.
"""

import json
import threading
from collections.abc import Mapping
from typing import Any

from agents.tracing import (
    FunctionSpanData,
    ResponseSpanData,
    Span,
    Trace,
    TracingProcessor,
    get_current_span,
    set_trace_processors,
)
from pydantic import BaseModel

from ledger.leases import SpanEvent
from ledger.redaction import Redactor
from worker import spans

# How much of each string of a span's data goes into the trace event.
MAX_TEXT = 4000
_MODEL_TURNS = ("generation", "response")


class LedgerTraceProcessor(TracingProcessor):
    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor
        # Function span id -> the SDK's id of the tool call it runs, from the call's start
        # until the span ends (as many entries as tool calls in flight).
        self._call_ids: dict[str, str] = {}
        # Model turn span ids whose text went out as `text.delta` events, until they end.
        self._streamed: set[str] = set()
        self._lock = threading.Lock()  # the SDK may end spans from worker threads

    def tool_started(self, call_id: str) -> None:
        """Called as a tool call starts, inside its function span (the run's hooks)."""
        span = get_current_span()
        if span is not None:
            with self._lock:
                self._call_ids[span.span_id] = call_id

    def text_streamed(self) -> None:
        """Called as a model turn's text has been streamed, inside the turn's span: the
        span's event says so, and the live stream does not show that text twice."""
        span = get_current_span()
        if span is not None:
            with self._lock:
                self._streamed.add(span.span_id)

    def on_trace_start(self, trace: Trace) -> None:
        pass

    def on_trace_end(self, trace: Trace) -> None:
        pass

    def on_span_start(self, span: Span[Any]) -> None:
        pass

    def on_span_end(self, span: Span[Any]) -> None:
        with self._lock:
            call_id = self._call_ids.pop(span.span_id, None)
            streamed = span.span_id in self._streamed
            self._streamed.discard(span.span_id)
        spans.add(span.trace_id, span_event(span, self.redactor, call_id, streamed=streamed))

    def shutdown(self) -> None:
        pass

    def force_flush(self) -> None:
        pass


_processor: LedgerTraceProcessor | None = None


def trace_processor(redactor: Redactor) -> LedgerTraceProcessor:
    """The process's processor, installed for each run (so nothing that replaced the
    SDK's processors meanwhile leaves a run untraced). The SDK has one processor list per
    process, so all runs of a process share one redaction policy: the latest given."""
    global _processor
    if _processor is None:
        _processor = LedgerTraceProcessor(redactor)
    else:
        _processor.redactor = redactor
    set_trace_processors([_processor])
    return _processor


def span_event(
    span: Span[Any], redactor: Redactor, call_id: str | None = None, *, streamed: bool = False
) -> SpanEvent:
    exported = span.export() or {}
    data: dict[str, Any] = dict(exported.get("span_data") or {})
    kind = str(data.pop("type", "span"))
    data.update(_unexported(span.span_data))
    data = _jsonable(data)
    if kind in _MODEL_TURNS:
        data.update(_model_output(data.get("output")))
    if kind == "function":
        data["input"] = tool_arguments(data.get("input"))
    if call_id is not None:
        data["call_id"] = call_id
    if streamed:
        data["streamed"] = True
    data["trace_id"] = span.trace_id
    data["parent_id"] = span.parent_id
    data["started_at"] = span.started_at
    data["ended_at"] = span.ended_at
    if span.error:
        data["error"] = _jsonable(span.error)
    name = data.get("name") or data.get("model") or ""
    return SpanEvent(
        span_id=span.span_id,
        kind=f"span.{kind}",
        message=f"{kind} {name}".strip(),
        data=_clipped(redactor.value(data)),
    )


def _unexported(span_data: Any) -> dict[str, Any]:
    """What `export()` leaves out or flattens: a response span's exchange (export keeps
    only its id and usage) and a function's own output (export makes it `str()`)."""
    if isinstance(span_data, ResponseSpanData):
        response = span_data.response
        return {
            "input": span_data.input,
            "output": response.output if response is not None else None,
            "model": response.model if response is not None else None,
        }
    if isinstance(span_data, FunctionSpanData):
        return {"output": span_data.output}
    return {}


def _model_output(items: Any) -> dict[str, Any]:
    """The assistant's text and function calls in a model turn's output: Responses API
    items (`message`, `function_call`), a Chat Completions message (`content`,
    `tool_calls`), or a whole Responses API response holding such items (what the SDK
    records for a streamed Chat Completions turn)."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    listed = items if isinstance(items, list) else []
    responses = [item for item in listed if isinstance(item, dict) and "output" in item]
    for response in responses:
        if response.get("object") == "response" and isinstance(response["output"], list):
            listed = [*listed, *response["output"]]
    for item in listed:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "function_call":
            calls.append(_call(item.get("call_id"), item.get("name"), item.get("arguments")))
            continue
        if item.get("role") != "assistant":
            continue
        content = item.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(
                part["text"]
                for part in content
                if isinstance(part, dict) and isinstance(part.get("text"), str)
            )
        for call in item.get("tool_calls") or []:
            if isinstance(call, dict) and isinstance(call.get("function"), dict):
                function = call["function"]
                calls.append(_call(call.get("id"), function.get("name"), function.get("arguments")))
    found: dict[str, Any] = {}
    if text := "\n".join(text for text in texts if text):
        found["text"] = text
    if calls:
        found["tool_calls"] = calls
    return found


def _call(call_id: Any, tool: Any, arguments: Any) -> dict[str, Any]:
    return {"call_id": call_id, "tool": tool, "arguments": tool_arguments(arguments)}


def tool_arguments(arguments: Any) -> Any:
    """A tool call's arguments as the JSON value they encode, or as given when they are
    not JSON (redaction then reads their keys at every depth)."""
    if not isinstance(arguments, str):
        return arguments
    try:
        return json.loads(arguments)
    except json.JSONDecodeError:
        return arguments


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_none=True)
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return str(value)


def _clipped(value: Any) -> Any:
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else value[:MAX_TEXT] + "…"
    if isinstance(value, dict):
        return {key: _clipped(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_clipped(item) for item in value]
    return value
