"""Whether this process's loops still turn: the answer `/healthz` gives.

A process can look alive (its port answers, it logs nothing wrong) while one of its
loops waits forever on something that will not come. Each long-running loop (the
dispatcher's, the ledger gauges', a worker's receive loop per lane) reports every turn
here, whether the turn did work, found none, or met an error it will retry. `/healthz`
answers 503, naming the loops, once one has not turned for `WORKBENCH_LIVENESS_SECONDS`
(default 120): Kubernetes then restarts the pod. It says nothing about the database, so
an outage does not get every pod restarted: a loop waiting out an outage still turns.

The dispatcher and workers serve it beside `/metrics` on `--metrics-port`, from a thread
of its own, so it answers even when the event loop is blocked; the API (and `up`) serve
it on their HTTP port.
"""

import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import Gauge, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

LOOP_LAST_TURN = Gauge(
    "workbench_loop_last_turn_timestamp_seconds",
    "When each long-running loop of this process last turned (Unix time).",
    ["loop"],
)


def liveness_seconds() -> float:
    return float(os.environ.get("WORKBENCH_LIVENESS_SECONDS", "120"))


class Loops:
    """The loops of this process and when each last turned. Written from the event loop,
    read from the metrics thread: each write replaces one dict entry, which is atomic."""

    def __init__(self) -> None:
        self._turned: dict[str, float] = {}

    def turned(self, loop: str) -> None:
        self._turned[loop] = time.monotonic()
        LOOP_LAST_TURN.labels(loop).set_to_current_time()

    def ended(self, loop: str) -> None:
        """The loop returned as asked (a stop); it is no longer expected to turn."""
        if self._turned.pop(loop, None) is not None:  # stopped before its first turn: none
            LOOP_LAST_TURN.remove(loop)

    def stalled(self, seconds: float) -> dict[str, float]:
        """Loops that have not turned for `seconds`, with how long it has been."""
        now = time.monotonic()
        ages = {loop: now - last for loop, last in list(self._turned.items())}
        return {loop: round(age, 1) for loop, age in ages.items() if age > seconds}


LOOPS = Loops()


def health() -> tuple[int, dict[str, Any]]:
    """The status code and body of `/healthz`."""
    stalled = LOOPS.stalled(liveness_seconds())
    if stalled:
        checks = {loop: f"stalled: no turn for {age} s" for loop, age in stalled.items()}
        return 503, {"status": "unavailable", "checks": checks}
    return 200, {"status": "ok", "checks": {}}


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes and probes every few seconds would drown the structured log."""


def serve_metrics_and_health(port: int) -> None:
    """`/metrics` and `/healthz` on `port`, from a daemon thread."""
    metrics = make_wsgi_app()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/healthz":
            return metrics(environ, start_response)
        status, body = health()
        reason = "OK" if status == 200 else "Service Unavailable"
        start_response(f"{status} {reason}", [("Content-Type", "application/json")])
        return [json.dumps(body).encode()]

    server = make_server("0.0.0.0", port, app, ThreadingWSGIServer, handler_class=_QuietHandler)  # noqa: S104 - a pod's probe and scrape port
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
