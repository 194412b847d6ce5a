"""/metrics moves by exactly what happened, and every metric the dashboard and alerts
use exists."""

from pathlib import Path

from conftest import fast_policy
from pipeline_helpers import CountingExecutor, pipeline
from pipeline_helpers import create_tasks as _create
from pipeline_helpers import wait_status as _wait_status
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from ledger.repository import Ledger
from metrics.ledger_gauges import refresh_ledger_gauges

ROOT = Path(__file__).resolve().parents[2]


async def _scrape(http) -> dict[tuple[str, tuple], float]:
    response = await http.get("/metrics")
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _delta(before: dict, after: dict, name: str, **labels: str) -> float:
    """How far a sample moved. It must be there afterwards; before, a labelled series
    that had never moved is not exported yet, and counts as 0."""
    key = (name, tuple(sorted(labels.items())))
    assert key in after, f"{name}{labels} missing from /metrics"
    return after[key] - before.get(key, 0.0)


def _sample(name: str, **labels: str) -> float:
    """A sample of this process's registry, which must exist."""
    value = REGISTRY.get_sample_value(name, labels)
    assert value is not None, f"no sample {name}{labels}"
    return value


def _sample_before(name: str, **labels: str) -> float:
    """A counter's value before a test moves it: a labelled series that never moved is
    not exported yet, and counts as 0."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_api_counters_move_by_the_right_amounts(http, auth, new_task) -> None:
    before = await _scrape(http)
    for _ in range(3):
        await new_task()
    await new_task(lane="change-prod", mutation_level="write_prod")  # denied: no rollback
    await http.get("/api/agents/tasks/00000000-0000-0000-0000-000000000000", headers=auth())
    after = await _scrape(http)

    assert (
        _delta(before, after, "workbench_tasks_created_total", lane="analysis", decision="allow")
        == 3
    )
    assert (
        _delta(before, after, "workbench_tasks_created_total", lane="change-prod", decision="deny")
        == 1
    )
    assert (
        _delta(
            before,
            after,
            "workbench_http_requests_total",
            route="/api/agents/tasks",
            method="POST",
            status="201",
        )
        == 4
    )
    # The route template, never the id: the label set stays bounded.
    assert (
        _delta(
            before,
            after,
            "workbench_http_requests_total",
            route="/api/agents/tasks/{task_id:uuid}",
            method="GET",
            status="404",
        )
        == 1
    )
    assert (
        _delta(
            before,
            after,
            "workbench_http_request_duration_seconds_count",
            route="/api/agents/tasks",
            method="POST",
        )
        == 4
    )
    assert not [key for key in after if "00000000" in str(key)]


async def test_pipeline_metrics_and_ledger_gauges(fresh_pool) -> None:
    policy = fast_policy(lease_seconds=3.0)
    ledger = Ledger(fresh_pool, policy)

    ids = await _create(ledger, 5)
    await refresh_ledger_gauges(fresh_pool, list(policy.lanes))
    assert _sample("workbench_lane_depth", lane="analysis") == 5
    assert _sample("workbench_lane_oldest_runnable_age_seconds", lane="analysis") > 0

    dispatched = _sample_before("workbench_dispatched_total", lane="analysis")
    finished = _sample_before(
        "workbench_run_duration_seconds_count", lane="analysis", outcome="succeeded"
    )
    async with pipeline(fresh_pool, policy, CountingExecutor()):
        await _wait_status(ledger, ids, "succeeded")
    assert _sample("workbench_dispatched_total", lane="analysis") - dispatched == 5
    assert (
        _sample("workbench_run_duration_seconds_count", lane="analysis", outcome="succeeded")
        - finished
        == 5
    )
    assert _sample("workbench_worker_in_flight") == 0
    await refresh_ledger_gauges(fresh_pool, list(policy.lanes))
    assert _sample("workbench_lane_depth", lane="analysis") == 0


def test_dashboard_and_alerts_name_metrics_that_exist() -> None:
    names_file = ROOT / "deploy" / "metric-names.txt"
    used = [
        line.strip()
        for line in names_file.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    exported = {metric.name for metric in REGISTRY.collect()}
    exported |= {f"{name}_total" for name in exported}  # counters are collected unsuffixed
    for suffix in ("_bucket", "_count", "_sum"):
        exported |= {f"{name}{suffix}" for name in exported}
    assert used, "no metric names listed"
    missing = [name for name in used if name not in exported]
    assert missing == []
