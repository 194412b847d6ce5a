"""Prometheus metrics, one definition per name for every process.

Names follow Prometheus conventions: `_total` counters, `_seconds` in base units, and
only bounded labels (lane, decision, outcome, route template, status code, model) —
never a task or run id. The API serves them at `/metrics`; the dispatcher and workers
on `--metrics-port`.
"""

from prometheus_client import Counter, Gauge, Histogram

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_RUN = (0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)

HTTP_REQUESTS = Counter(
    "workbench_http_requests_total",
    "API requests by route template, method and status.",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "workbench_http_request_duration_seconds",
    "API request latency by route template.",
    ["route", "method"],
    buckets=_LATENCY,
)
TASKS_CREATED = Counter(
    "workbench_tasks_created_total",
    "Tasks created, by lane and policy decision.",
    ["lane", "decision"],
)
DISPATCHED = Counter("workbench_dispatched_total", "Runs sent to their lane.", ["lane"])
DISPATCH_LATENCY = Histogram(
    "workbench_dispatch_latency_seconds",
    "From a run becoming due to its hint being sent to the lane.",
    ["lane"],
    buckets=_LATENCY,
)
RUN_DURATION = Histogram(
    "workbench_run_duration_seconds",
    "From claim to outcome, by lane and outcome.",
    ["lane", "outcome"],
    buckets=_RUN,
)
RETRIES = Counter(
    "workbench_retries_total", "Attempts scheduled after a failure or an expired lease.", ["lane"]
)
LEASE_EXPIRIES = Counter(
    "workbench_lease_expiries_total", "Leases the reaper found expired.", ["lane"]
)
DEAD_LETTERS = Counter(
    "workbench_lane_dead_letters_total", "Lane messages dead-lettered.", ["lane"]
)
FENCE_REFUSALS = Counter(
    "workbench_fence_refusals_total", "Writes refused because the writer no longer held the run."
)
SDK_TOKENS = Counter(
    "workbench_sdk_tokens_total", "Model tokens spent by agent runs.", ["lane", "model", "kind"]
)
SPANS_DROPPED = Counter(
    "workbench_sdk_spans_dropped_total",
    "SDK spans a worker dropped unwritten because its buffer of pending spans was full: "
    "trace_full (too many for one run) or too_many_traces (a trace nobody drained).",
    ["reason"],
)
CHANNEL_RECEIVES_WAITING = Gauge(
    "workbench_channel_receives_waiting",
    "Channel receives (recv?wait=true, channel_recv) in this process waiting for a message.",
)
WORKER_IN_FLIGHT = Gauge("workbench_worker_in_flight", "Runs this worker is executing.")
WORKER_CAPACITY = Gauge("workbench_worker_capacity", "Runs this worker may execute at once.")
LANE_DEPTH = Gauge(
    "workbench_lane_depth",
    "Runs waiting to be claimed (queued or dispatched and due), per lane.",
    ["lane"],
)
OLDEST_RUNNABLE_AGE = Gauge(
    "workbench_lane_oldest_runnable_age_seconds",
    "Age of the oldest run waiting to be claimed, per lane.",
    ["lane"],
)
APPROVALS_PENDING = Gauge(
    "workbench_approvals_pending", "Tasks awaiting approval, per lane.", ["lane"]
)
APPROVAL_OLDEST_AGE = Gauge(
    "workbench_approval_oldest_age_seconds",
    "How long the oldest task awaiting approval has waited, per lane.",
    ["lane"],
)
# The agent runner as the API sees it, refreshed at each scrape of the API's /metrics
# (metrics/runner_health.py).
RUNNER_SDK_AVAILABLE = Gauge(
    "workbench_runner_sdk_available", "1 when the agents SDK imports in this process, else 0."
)
RUNNER_PROVIDER_CONFIGURED = Gauge(
    "workbench_runner_provider_configured",
    "1 when the model provider's settings are present in this process, else 0.",
    ["provider"],
)
RUNNER_MODEL_REACHABLE = Gauge(
    "workbench_runner_model_reachable",
    "1 when the provider's model API answered within the probe's timeout (offline: in "
    "process, always), else 0; 0 for a provider not configured.",
    ["provider"],
)
LANE_WORKERS = Gauge(
    "workbench_lane_workers",
    "Workers seen per lane: those holding a run with a live lease that heartbeat within "
    "the window (WORKBENCH_WORKER_SEEN_SECONDS); an idle worker holds none.",
    ["lane"],
)
