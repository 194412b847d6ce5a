"""Fault: the worker running a parent agent is killed with SIGKILL while two helpers it
spawned run on another worker, one with `auto_stop_on_parent`, one without. Real
processes: `workbench api`, a dispatcher and two `sdk` workers running the real Agents
SDK with the offline model, whose `#call` lines drive the runtime's tools.

The parent's lane gives each task one attempt, so once its lease expires the reaper
ends the parent (`failed`): the parent has stopped. The session reaper then stops the
helper that stops with its parent, `parent_stopped`, its task cancelled first (the
worker running it is told and lets go of its lease); the other helper keeps running
and finishes. No lease is left held past its expiry.
"""

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fault_helpers import Cluster, running_cluster
from process_helpers import TASKS, auth, fast_lanes, wait_until

WAIT_SECONDS = 60.0


@pytest.fixture
def cluster(tmp_path: Path, make_database: Callable[[], str]) -> Iterator[Cluster]:
    with running_cluster(tmp_path, make_database(), fast_lanes(tmp_path, max_attempts=1)) as c:
        yield c


def _call(tool: str, **arguments: Any) -> str:
    return f"#call {tool} {json.dumps(arguments)}"


def _helper(title: str, auto_stop: bool, listen_seconds: int, listens: int) -> str:
    """A spawn directive for a helper that listens on its own channel (where nobody
    writes) `listens` times, `listen_seconds` each, then finishes."""
    listening = [_call("channel_recv", wait_seconds=listen_seconds)] * listens
    return _call(
        "spawn_agent",
        title=title,
        auto_stop_on_parent=auto_stop,
        instructions="\n".join([f"Be the {title}.", *listening]),
    )


def _task(cluster: Cluster, task_id: str) -> dict[str, Any]:
    [row] = cluster.sql(
        "SELECT t.status, t.terminal_reason, s.id AS session_id, s.state, s.stop_reason,"
        " r.status AS run_status"
        " FROM tasks t LEFT JOIN agent_sessions s ON s.task_id = t.id"
        " LEFT JOIN runs r ON r.id = t.current_run_id WHERE t.id = $1::uuid",
        task_id,
    )
    return row


def _traces(cluster: Cluster, task_id: str) -> list[dict[str, Any]]:
    return cluster.sql(
        "SELECT kind, data FROM trace_events WHERE task_id = $1::uuid ORDER BY seq", task_id
    )


def _spawned(cluster: Cluster, parent_id: str) -> dict[str, str] | None:
    """The helpers' task ids by title once both are spawned and the parent waits."""
    traces = _traces(cluster, parent_id)
    waiting = any(
        t["kind"] == "tool_verdict" and json.loads(t["data"])["tool"] == "wait_for_child"
        for t in traces
    )
    children = [json.loads(t["data"])["child_task_id"] for t in traces if t["kind"] == "spawned"]
    if not waiting or len(children) != 2:
        return None
    rows = cluster.sql("SELECT id::text, title FROM tasks WHERE id = ANY($1::uuid[])", children)
    return {row["title"]: row["id"] for row in rows}


def test_a_killed_parent_stops_the_helpers_that_stop_with_it_and_keeps_the_others(
    cluster: Cluster,
) -> None:
    cluster.dispatcher()
    # One slot: the parent's worker runs the parent and nothing else.
    parent_worker = cluster.worker("parent-worker", concurrency=1, executor="sdk")
    instructions = "\n".join(
        [
            "Coordinate two helpers.",
            _helper("stopper", auto_stop=True, listen_seconds=30, listens=4),
            _helper("keeper", auto_stop=False, listen_seconds=15, listens=1),
            _call("wait_for_child", wait_seconds=300),
        ]
    )
    with httpx.Client(base_url=cluster.api.base_url, timeout=30.0) as client:
        created = client.post(
            TASKS,
            json={"lane": "analysis", "title": "coordinator", "instructions": instructions},
            headers=auth(cluster.token()),
        )
    assert created.status_code == 201, created.text
    parent_id = created.json()["task"]["id"]
    helpers = wait_until(
        lambda: _spawned(cluster, parent_id), WAIT_SECONDS, "the parent to spawn and wait"
    )
    cluster.worker("helper-worker", concurrency=4, executor="sdk")
    wait_until(
        lambda: all(_task(cluster, t)["run_status"] == "running" for t in helpers.values()),
        WAIT_SECONDS,
        "both helpers to run on the helper worker",
    )

    parent_worker.kill()

    stopper = wait_until(
        lambda: (row := _task(cluster, helpers["stopper"]))["state"] == "stopped" and row,
        WAIT_SECONDS,
        "the helper that stops with its parent to stop",
    )
    # By then the parent's lease has expired and the reaper ended it: it has stopped.
    parent = _task(cluster, parent_id)
    assert (parent["status"], parent["run_status"]) == ("failed", "lost")
    assert "lease_expired" in [t["kind"] for t in _traces(cluster, parent_id)]
    assert stopper["stop_reason"] == "parent_stopped"
    assert (stopper["status"], stopper["run_status"]) == ("cancelled", "cancelled")
    [stopped] = [t for t in _traces(cluster, helpers["stopper"]) if t["kind"] == "session_stopped"]
    assert json.loads(stopped["data"])["reason"] == "parent_stopped"
    # The other helper runs on, on its lease.
    assert _task(cluster, helpers["keeper"])["run_status"] == "running"
    assert _expired_leases_held(cluster) == []

    keeper = wait_until(
        lambda: (row := _task(cluster, helpers["keeper"]))["status"] == "succeeded" and row,
        WAIT_SECONDS,
        "the helper that outlives its parent to finish",
    )
    assert keeper["stop_reason"] in (None, "completed")
    assert _expired_leases_held(cluster) == []


def _expired_leases_held(cluster: Cluster) -> list[dict[str, Any]]:
    return cluster.sql(
        "SELECT id, task_id, lease_until FROM runs WHERE status = 'running' AND lease_until < now()"
    )
