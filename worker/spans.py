"""Finished SDK spans waiting to be written to the ledger, per SDK trace (one per run).

Kept apart from `tracing.py` so that workers running the `noop` or `sleep` executor
never import the SDK.
"""

import threading
from collections import defaultdict

from ledger.leases import SpanEvent

_lock = threading.Lock()  # the SDK may end spans from worker threads
_pending: defaultdict[str, list[SpanEvent]] = defaultdict(list)


def add(trace_id: str, event: SpanEvent) -> None:
    with _lock:
        _pending[trace_id].append(event)


def drain(trace_id: str) -> list[SpanEvent]:
    with _lock:
        return _pending.pop(trace_id, [])


def put_back(trace_id: str, events: list[SpanEvent]) -> None:
    """Return spans whose write failed, ahead of any that finished since."""
    with _lock:
        _pending[trace_id][:0] = events
