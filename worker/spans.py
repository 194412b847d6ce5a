"""Finished SDK spans waiting to be written to the ledger, per SDK trace (one per run).

Kept apart from `tracing.py` so that workers running the `noop` or `sleep` executor
never import the SDK.

Bounded, so a run whose spans are never drained (its execution ended between its last
drain and a late span, or its writes keep failing) cannot grow the worker's memory:
at most `MAX_SPANS_PER_TRACE` spans per trace and `MAX_TRACES` traces. Past either,
the oldest go, counted in `workbench_sdk_spans_dropped_total`. A drain removes its
trace and the next span adds it again at the end, so the first trace in line is the
one that has waited longest for a drain: a live run is drained at every heartbeat.
"""

import threading

from ledger.leases import SpanEvent
from metrics import SPANS_DROPPED

# A run's spans are drained at every heartbeat (a third of the lease) and before its
# outcome; an agent turn ends a handful of spans.
MAX_SPANS_PER_TRACE = 1000
# Far above the runs a worker executes at once.
MAX_TRACES = 1024

_lock = threading.Lock()  # the SDK may end spans from worker threads
_pending: dict[str, list[SpanEvent]] = {}


def add(trace_id: str, event: SpanEvent) -> None:
    with _lock:
        _pending_for(trace_id).append(event)
        _keep_newest(trace_id)


def drain(trace_id: str) -> list[SpanEvent]:
    with _lock:
        return _pending.pop(trace_id, [])


def put_back(trace_id: str, events: list[SpanEvent]) -> None:
    """Return spans whose write failed, ahead of any that finished since."""
    with _lock:
        _pending_for(trace_id)[:0] = events
        _keep_newest(trace_id)


def _pending_for(trace_id: str) -> list[SpanEvent]:
    if trace_id not in _pending and len(_pending) >= MAX_TRACES:
        oldest = next(iter(_pending))
        SPANS_DROPPED.labels("too_many_traces").inc(len(_pending.pop(oldest)))
    return _pending.setdefault(trace_id, [])


def _keep_newest(trace_id: str) -> None:
    events = _pending[trace_id]
    excess = len(events) - MAX_SPANS_PER_TRACE
    if excess > 0:
        del events[:excess]
        SPANS_DROPPED.labels("trace_full").inc(excess)
