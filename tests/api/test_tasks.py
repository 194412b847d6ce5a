"""The task endpoints as a frontend uses them: create with a verdict, approve, cancel,
retry, roll back, dispatch, list and read traces."""

from collections.abc import Callable
from typing import Any

import httpx
from conftest import settings_for_tests

from api.app import create_app
from ledger.policy import load_policy

TASKS = "/api/agents/tasks"
PROD_ROLLBACK = {"rollback": "revert deployment 42 with the previous image"}


async def _kinds(http: httpx.AsyncClient, headers: dict[str, str], task_id: str) -> list[str]:
    response = await http.get(f"{TASKS}/{task_id}/traces", headers=headers)
    assert response.status_code == 200
    traces = response.json()["traces"]
    assert [t["seq"] for t in traces] == list(range(1, len(traces) + 1))  # no gaps
    return [t["kind"] for t in traces]


async def test_analysis_task_is_allowed_and_queued(new_task: Callable, http, auth) -> None:
    body = await new_task(source_systems=["servicenow"], mutation_level="propose")
    task, verdict = body["task"], body["policy_verdict"]
    assert verdict["decision"] == "allow"
    assert verdict["profile"] == "standard"
    assert verdict["policy_version"] == "2026-11-24.1"
    assert task["status"] == "queued"
    assert task["attempt"] == 1 and task["current_run_id"]
    assert task["policy_verdict"] == verdict
    assert await _kinds(http, auth(), task["id"]) == ["created", "policy_verdict"]


async def test_change_prod_requires_approval_then_approve_queues(new_task, http, auth) -> None:
    body = await new_task(lane="change-prod", mutation_level="write_prod", scope=PROD_ROLLBACK)
    assert body["policy_verdict"]["decision"] == "require_approval"
    task = body["task"]
    assert task["status"] == "awaiting_approval" and task["current_run_id"] is None

    response = await http.post(
        f"{TASKS}/{task['id']}/approve",
        json={"reason": "change window"},
        headers=auth("operator", subject="bob"),
    )
    assert response.status_code == 200, response.text
    approved = response.json()
    assert approved["task"]["status"] == "queued"
    assert approved["task"]["approval"]["by"] == "bob"
    assert approved["trace"]["kind"] == "approved"
    assert approved["trace"]["from_status"] == "awaiting_approval"
    assert approved["trace"]["actor"] == "bob"


async def test_change_prod_without_rollback_plan_is_denied_but_recorded(new_task, http, auth):
    body = await new_task(lane="change-prod", mutation_level="write_prod")
    assert body["policy_verdict"]["decision"] == "deny"
    assert body["policy_verdict"]["reasons"] == [
        "lane change-prod requires a rollback plan in scope.rollback"
    ]
    task_id = body["task"]["id"]
    stored = (await http.get(f"{TASKS}/{task_id}", headers=auth("viewer"))).json()["task"]
    assert stored["status"] == "denied"
    assert "rollback plan" in stored["terminal_reason"]


async def test_each_policy_violation_is_one_reason(new_task) -> None:
    body = await new_task(
        mutation_level="write_prod",
        model_provider="openai",
        source_systems=["github", "payroll"],
        lane="change-prod",
        scope={},
    )
    reasons = body["policy_verdict"]["reasons"]
    assert body["task"]["status"] == "denied"
    assert reasons == [
        "model provider openai is not allowed by profile production",
        "source system payroll is not allowed in lane change-prod",
        "lane change-prod requires a rollback plan in scope.rollback",
    ]
    over = await new_task(lane="analysis", mutation_level="write_nonprod")
    assert over["policy_verdict"]["reasons"] == [
        "mutation level write_nonprod exceeds lane analysis ceiling propose"
    ]


async def test_illegal_transition_is_409_with_current_status(new_task, http, auth) -> None:
    task = (await new_task())["task"]
    response = await http.post(f"{TASKS}/{task['id']}/approve", json={}, headers=auth())
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "invalid_transition"
    assert error["details"]["current_status"] == "queued"
    # Nothing half-applied: no new trace, status unchanged.
    assert await _kinds(http, auth(), task["id"]) == ["created", "policy_verdict"]


async def test_cancel_then_retry_keeps_history_and_adds_attempt(new_task, http, auth) -> None:
    task = (await new_task())["task"]
    first_run = task["current_run_id"]
    cancelled = await http.post(
        f"{TASKS}/{task['id']}/cancel", json={"reason": "wrong ticket"}, headers=auth()
    )
    assert cancelled.status_code == 200
    assert cancelled.json()["task"]["status"] == "cancelled"
    assert cancelled.json()["task"]["terminal_reason"] == "cancelled by alice: wrong ticket"

    again = await http.post(f"{TASKS}/{task['id']}/cancel", json={}, headers=auth())
    assert again.status_code == 409

    retried = await http.post(
        f"{TASKS}/{task['id']}/retry", json={"reason": "right ticket"}, headers=auth()
    )
    assert retried.status_code == 200
    retried_task = retried.json()["task"]
    assert retried_task["status"] == "queued"
    assert retried_task["attempt"] == 2
    assert retried_task["current_run_id"] != first_run
    assert retried_task["terminal_reason"] is None
    assert await _kinds(http, auth(), task["id"]) == [
        "created",
        "policy_verdict",
        "cancelled",
        "retry_requested",
    ]


async def test_rollback_needs_reason_and_remediation(new_task, http, auth) -> None:
    task = (await new_task())["task"]
    await http.post(f"{TASKS}/{task['id']}/cancel", json={}, headers=auth())
    missing = await http.post(
        f"{TASKS}/{task['id']}/rollback", json={"reason": "x"}, headers=auth()
    )
    assert missing.status_code == 400
    locations = [p["location"] for p in missing.json()["error"]["details"]["problems"]]
    assert ["body", "remediation"] in locations

    response = await http.post(
        f"{TASKS}/{task['id']}/rollback",
        json={"reason": "bad change", "remediation": "restore snapshot"},
        headers=auth(),
    )
    assert response.status_code == 200
    body = response.json()
    assert body["task"]["status"] == "rollback_requested"
    assert body["task"]["rollback"]["remediation"] == "restore snapshot"
    assert body["trace"]["kind"] == "rollback_requested"


async def test_rollback_of_unfinished_task_is_409(new_task, http, auth) -> None:
    task = (await new_task())["task"]
    response = await http.post(
        f"{TASKS}/{task['id']}/rollback",
        json={"reason": "r", "remediation": "m"},
        headers=auth(),
    )
    assert response.status_code == 409


async def test_reject_denies_and_records_who(new_task, http, auth) -> None:
    task = (await new_task(lane="change-prod", mutation_level="write_prod", scope=PROD_ROLLBACK))[
        "task"
    ]
    response = await http.post(
        f"{TASKS}/{task['id']}/reject", json={"reason": "too risky"}, headers=auth(subject="carol")
    )
    assert response.status_code == 200
    assert response.json()["task"]["status"] == "denied"
    assert response.json()["task"]["approval"] == {
        "decision": "rejected",
        "by": "carol",
        "role": "operator",
        "reason": "too risky",
    }


async def test_break_glass_needs_owner_and_acknowledgement(new_task, http, auth) -> None:
    # An operator may not ask for break glass.
    await new_task(
        expected_status=403,
        lane="change-prod",
        mutation_level="write_prod",
        break_glass_acknowledged=True,
    )
    body = await new_task(
        role="owner", lane="change-prod", mutation_level="write_prod", break_glass_acknowledged=True
    )
    task = body["task"]
    assert body["policy_verdict"]["decision"] == "deny"
    assert task["status"] == "awaiting_approval"
    assert task["break_glass"]["requested_by"] == "alice"

    by_operator = await http.post(
        f"{TASKS}/{task['id']}/approve", json={"break_glass_acknowledged": True}, headers=auth()
    )
    assert by_operator.status_code == 403
    unacknowledged = await http.post(
        f"{TASKS}/{task['id']}/approve", json={}, headers=auth("owner")
    )
    assert unacknowledged.status_code == 403
    assert "break_glass_acknowledged" in unacknowledged.json()["error"]["message"]

    approved = await http.post(
        f"{TASKS}/{task['id']}/approve",
        json={"break_glass_acknowledged": True, "reason": "sev1 outage"},
        headers=auth("owner", subject="olivia"),
    )
    assert approved.status_code == 200
    assert approved.json()["task"]["status"] == "queued"
    trace = approved.json()["trace"]
    assert trace["kind"] == "break_glass_approved"
    assert trace["actor"] == "olivia"
    assert trace["data"]["reason"] == "sev1 outage"
    assert "break_glass_requested" in await _kinds(http, auth(), task["id"])


async def test_dispatch_sends_to_the_lane_and_marks_dispatched(new_task, http, auth) -> None:
    task = (await new_task())["task"]
    response = await http.post(f"{TASKS}/{task['id']}/dispatch", headers=auth())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "dispatched"
    assert body["dispatch"] == {
        "lane": "analysis",
        "transport": "postgres",
        "run_id": task["current_run_id"],
        "reason": "sent to the lane",
    }
    assert body["task"]["status"] == "dispatched"
    assert (await _kinds(http, auth(), task["id"]))[-1] == "dispatched"
    again = await http.post(f"{TASKS}/{task['id']}/dispatch", headers=auth())
    assert again.status_code == 409
    assert again.json()["error"]["details"]["current_status"] == "dispatched"


async def test_dispatch_without_transport_is_not_configured_and_traced(
    database_url, pool, auth
) -> None:
    policy = load_policy()
    analysis = policy.lanes["analysis"].model_copy(update={"transport": None})
    policy = policy.model_copy(update={"lanes": {**policy.lanes, "analysis": analysis}})
    app = create_app(settings_for_tests(), database_url=database_url, policy=policy)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://workbench.test"
        ) as http,
    ):
        body = {"lane": "analysis", "title": "t", "instructions": "x"}
        task = (await http.post(TASKS, json=body, headers=auth())).json()["task"]
        response = await http.post(f"{TASKS}/{task['id']}/dispatch", headers=auth())
        assert response.status_code == 200
        assert response.json()["status"] == "not_configured"
        assert response.json()["dispatch"]["transport"] is None
        assert response.json()["task"]["status"] == "queued"
        assert (await _kinds(http, auth(), task["id"]))[-1] == "dispatch_not_configured"


async def test_list_filters_and_keyset_cursor(new_task, http, auth) -> None:
    created = [(await new_task(title=f"task {i}"))["task"]["id"] for i in range(5)]
    denied = (await new_task(lane="change-prod", mutation_level="write_prod"))["task"]["id"]

    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, "status": "queued"}
        if cursor:
            params["cursor"] = cursor
        page = (await http.get(TASKS, params=params, headers=auth("viewer"))).json()
        assert len(page["tasks"]) <= 2
        seen += [task["id"] for task in page["tasks"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(created))  # newest first, each once

    by_lane = (await http.get(TASKS, params={"lane": "change-prod"}, headers=auth())).json()
    assert [task["id"] for task in by_lane["tasks"]] == [denied]


async def test_any_cursor_of_the_documented_shape_pages_from_that_instant(
    new_task, http, auth
) -> None:
    task_id = (await new_task())["task"]["id"]
    # The largest microsecond count lies past the last date Python has: read as the end
    # of time, so every task comes before it; zero is the epoch, before every task.
    for micros, expect_task in (("9" * 19, True), ("0", False)):
        cursor = f"{micros}.{'f' * 32}"
        response = await http.get(TASKS, params={"cursor": cursor}, headers=auth())
        assert response.status_code == 200, response.text
        ids = [task["id"] for task in response.json()["tasks"]]
        assert (task_id in ids) is expect_task


async def test_list_rejects_bad_parameters(http, auth) -> None:
    for params in (
        {"limit": 0},
        {"limit": 201},
        {"limit": "many"},
        {"status": "sleeping"},
        {"cursor": "not-a-cursor"},
        {"cursor": "GET"},
        {"cursor": "1." + "A" * 32},
        {"unknown": "1"},
    ):
        response = await http.get(TASKS, params=params, headers=auth())
        assert response.status_code == 400, params
        assert response.json()["error"]["code"] == "invalid_request"


async def test_unknown_lane_provider_or_level_is_400_and_records_nothing(
    new_task, http, auth
) -> None:
    for fields in ({"lane": "nope"}, {"model_provider": "nope"}, {"mutation_level": "nope"}):
        body = await new_task(expected_status=400, **fields)
        assert body["error"]["code"] == "invalid_request"
        assert body["error"]["details"]["allowed"]
    listing = (await http.get(TASKS, headers=auth())).json()
    assert listing["tasks"] == []


async def test_idempotency_key_replays_and_detects_changed_body(http, auth) -> None:
    body = {"lane": "analysis", "title": "once", "instructions": "do it once"}
    headers = {**auth(), "Idempotency-Key": "req-123"}
    first = await http.post(TASKS, json=body, headers=headers)
    second = await http.post(TASKS, json=body, headers=headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["task"]["id"] == second.json()["task"]["id"]
    changed = await http.post(TASKS, json={**body, "title": "twice"}, headers=headers)
    assert changed.status_code == 409
    assert changed.json()["error"]["details"]["task_id"] == first.json()["task"]["id"]
    assert len((await http.get(TASKS, headers=auth())).json()["tasks"]) == 1


async def test_task_from_it_request_keeps_lineage(http, auth) -> None:
    itr = {
        "request_number": "ITR-1001",
        "title": "Disk full on app-7",
        "description": "Investigate disk usage",
        "requester": "dana",
        "source_system": "servicenow",
        "details": {"priority": "P2"},
    }
    created = await http.post("/api/it-requests", json=itr, headers=auth())
    assert created.status_code == 201
    duplicate = await http.post("/api/it-requests", json=itr, headers=auth())
    assert duplicate.status_code == 409
    fetched = await http.get("/api/it-requests/ITR-1001", headers=auth("viewer"))
    assert fetched.json()["it_request"]["title"] == "Disk full on app-7"

    response = await http.post(
        f"{TASKS}/from-it-request/ITR-1001", json={"lane": "analysis"}, headers=auth()
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["itr_context"]["request_number"] == "ITR-1001"
    task = body["task"]
    assert task["scope"]["source_request"]["request_number"] == "ITR-1001"
    assert task["scope"]["source_request"]["details"] == {"priority": "P2"}
    assert task["source_systems"] == ["servicenow"]
    assert task["title"] == "ITR-1001: Disk full on app-7"

    missing = await http.post(
        f"{TASKS}/from-it-request/ITR-404", json={"lane": "analysis"}, headers=auth()
    )
    assert missing.status_code == 404


async def test_workspaces_describe_lanes_and_caller(http, auth) -> None:
    response = await http.get("/api/agents/workspaces", headers=auth("viewer", subject="vic"))
    assert response.status_code == 200
    body = response.json()
    assert [lane["name"] for lane in body["lanes"]] == ["analysis", "change-nonprod", "change-prod"]
    assert {p["name"] for p in body["providers"]} == {"offline", "openai", "azure", "compatible"}
    assert {p["name"] for p in body["policy_profiles"]} == {"standard", "production"}
    assert "servicenow" in {s["name"] for s in body["sources"]}
    assert body["role"]["subject"] == "vic"
    assert body["role"]["effective_role"] == "viewer"
    assert body["role"]["can_create"] is False
