"""End to end: the real `workbench up` process, driven over TCP on 127.0.0.1 exactly as a
new user would drive it. Nothing here imports the project: the server runs as a
subprocess with its own data directory and embedded PostgreSQL, and tokens come from
`workbench token`."""

import hashlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from process_helpers import TASKS, Workbench, auth

from ledger.policy import load_policy

SECRET_API_KEY = "sk-live-SECRET123456789012345"
SECRET_PASSWORD = "hunter2hunter2"
SECRET_BEARER = "abcdefghijklmnopqrstuvwxyz"
SECRETS = (SECRET_API_KEY, SECRET_PASSWORD, SECRET_BEARER)


def _assert_stopped_cleanly(outcome: tuple[int | None, bool], output: str) -> None:
    returncode, postgres_left_running = outcome
    assert returncode == 0, (
        f"workbench up exited with {returncode} after SIGTERM (0 expected):\n{output[-3000:]}"
    )
    assert not postgres_left_running, "the embedded PostgreSQL kept running after workbench up"


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Every error is JSON: {"error": {"code", "message", "details"}}."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    return body["error"]


def ledger_only_lanes(directory: Path) -> Path:
    """The default lanes without transports: tasks stay where the API puts them, so
    these tests see the ledger's own transitions without a worker racing them."""
    policy = load_policy()
    lanes = {
        name: lane.model_copy(update={"transport": None}) for name, lane in policy.lanes.items()
    }
    path = directory / "lanes.yaml"
    path.write_text(yaml.safe_dump(policy.model_copy(update={"lanes": lanes}).model_dump()))
    return path


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workbench]:
    root = tmp_path_factory.mktemp("workbench")
    workbench = Workbench(root / "data", root / "server.log", ledger_only_lanes(root))
    workbench.start()
    yield workbench
    _assert_stopped_cleanly(workbench.stop(), workbench.output())


@pytest.fixture(scope="module")
def tokens(server: Workbench) -> dict[str, str]:
    return {
        "viewer": server.token("viewer", "t1", "vera"),
        "operator": server.token("operator", "t1", "olga"),
        "owner": server.token("owner", "t1", "oscar"),
        "t2_operator": server.token("operator", "t2", "tom"),
    }


@pytest.fixture
def client(server: Workbench) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30.0) as http:
        yield http


def create(client: httpx.Client, token: str, expected: int = 201, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "lane": "analysis",
        "title": "Disk full on app-7",
        "instructions": "Summarise the alert history",
    }
    body.update(fields)
    response = client.post(TASKS, json=body, headers=auth(token))
    assert response.status_code == expected, response.text
    return response.json()


# --------------------------------------------------------------------------- scenarios


def test_printed_operator_token_works(server: Workbench, client: httpx.Client) -> None:
    deadline = time.monotonic() + 10
    while "Operator token" not in server.output() and time.monotonic() < deadline:
        time.sleep(0.1)
    match = re.search(r"Operator token \(tenant 'local'.*\):\s+(\S+)", server.output())
    assert match, server.output()
    response = client.get("/api/agents/workspaces", headers=auth(match.group(1)))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["role"]["tenant_id"] == "local"
    assert body["role"]["effective_role"] == "operator"
    assert [lane["name"] for lane in body["lanes"]] == ["analysis", "change-nonprod", "change-prod"]
    secret = server.data_dir / "jwt-secret"
    assert secret.stat().st_mode & 0o077 == 0, oct(secret.stat().st_mode)


def test_each_lane_gets_its_verdict(client: httpx.Client, tokens: dict[str, str]) -> None:
    operator = tokens["operator"]

    analysis = create(client, operator, lane="analysis")
    assert analysis["policy_verdict"]["decision"] == "allow"
    assert analysis["task"]["status"] == "queued"
    assert analysis["task"]["tenant_id"] == "t1"
    assert analysis["task"]["created_by"] == "olga"
    assert analysis["task"]["attempt"] == 1
    assert analysis["task"]["current_run_id"] is not None

    nonprod = create(client, operator, lane="change-nonprod", mutation_level="write_nonprod")
    assert nonprod["policy_verdict"]["decision"] == "allow"
    assert nonprod["task"]["status"] == "queued"
    assert nonprod["task"]["mutation_level"] == "write_nonprod"

    prod = create(
        client,
        operator,
        lane="change-prod",
        mutation_level="write_prod",
        scope={"rollback": "redeploy the previous release"},
    )
    assert prod["policy_verdict"]["decision"] == "require_approval"
    assert prod["policy_verdict"]["profile"] == "production"
    assert prod["task"]["status"] == "awaiting_approval"

    denied = create(client, operator, lane="change-prod", mutation_level="write_prod")
    assert denied["policy_verdict"]["decision"] == "deny"
    assert denied["policy_verdict"]["reasons"]
    assert denied["task"]["status"] == "denied"

    for created in (analysis, nonprod, prod, denied):
        fetched = client.get(f"{TASKS}/{created['task']['id']}", headers=auth(tokens["viewer"]))
        assert fetched.status_code == 200
        assert fetched.json()["task"]["status"] == created["task"]["status"]
        assert fetched.json()["task"]["policy_verdict"] == created["policy_verdict"]

    # The prod task cannot run before approval: refused with the current status.
    refused = client.post(f"{TASKS}/{prod['task']['id']}/run", headers=auth(operator))
    assert assert_error(refused, 409, "invalid_transition")["details"]["current_status"] == (
        "awaiting_approval"
    )


def test_approve_prod_task(client: httpx.Client, tokens: dict[str, str]) -> None:
    prod = create(
        client,
        tokens["operator"],
        lane="change-prod",
        mutation_level="write_prod",
        scope={"rollback": "git revert and redeploy"},
    )["task"]
    assert prod["status"] == "awaiting_approval"

    as_viewer = client.post(
        f"{TASKS}/{prod['id']}/approve", json={"reason": "ok"}, headers=auth(tokens["viewer"])
    )
    assert_error(as_viewer, 403, "forbidden")

    approved = client.post(
        f"{TASKS}/{prod['id']}/approve",
        json={"reason": "change window CHG-42"},
        headers=auth(tokens["operator"]),
    )
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert body["task"]["status"] == "queued"
    assert body["task"]["approval"] is not None
    assert body["trace"]["from_status"] == "awaiting_approval"
    assert body["trace"]["to_status"] == "queued"

    again = client.post(f"{TASKS}/{prod['id']}/approve", json={}, headers=auth(tokens["operator"]))
    assert assert_error(again, 409, "invalid_transition")["details"]["current_status"] == "queued"


def test_cancel_retry_rollback(client: httpx.Client, tokens: dict[str, str]) -> None:
    operator = auth(tokens["operator"])
    task = create(client, tokens["operator"])["task"]
    url = f"{TASKS}/{task['id']}"

    cancelled = client.post(f"{url}/cancel", json={"reason": "duplicate"}, headers=operator)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["task"]["status"] == "cancelled"
    assert "duplicate" in cancelled.json()["task"]["terminal_reason"]

    retried = client.post(f"{url}/retry", json={"reason": "needed after all"}, headers=operator)
    assert retried.status_code == 200, retried.text
    assert retried.json()["task"]["status"] == "queued"
    assert retried.json()["task"]["attempt"] == 2
    assert retried.json()["task"]["current_run_id"] != task["current_run_id"]

    cancelled = client.post(f"{url}/cancel", json={}, headers=operator)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["task"]["status"] == "cancelled"

    missing = client.post(f"{url}/rollback", json={"reason": "bad change"}, headers=operator)
    problems = assert_error(missing, 400, "invalid_request")["details"]["problems"]
    assert ["body", "remediation"] in [problem["location"] for problem in problems]
    assert client.get(url, headers=operator).json()["task"]["status"] == "cancelled"

    rolled = client.post(
        f"{url}/rollback",
        json={"reason": "bad change", "remediation": "restore the snapshot"},
        headers=operator,
    )
    assert rolled.status_code == 200, rolled.text
    rolled_task = rolled.json()["task"]
    assert rolled_task["status"] == "rollback_requested"
    assert rolled_task["rollback"]["reason"] == "bad change"
    assert rolled_task["rollback"]["remediation"] == "restore the snapshot"
    assert rolled.json()["trace"]["kind"] == "rollback_requested"

    terminal = client.post(f"{url}/retry", json={}, headers=operator)
    assert assert_error(terminal, 409, "invalid_transition")["details"]["current_status"] == (
        "rollback_requested"
    )

    traces = client.get(f"{url}/traces", headers=operator).json()["traces"]
    assert [trace["seq"] for trace in traces] == list(range(1, len(traces) + 1))
    assert [trace["kind"] for trace in traces] == [
        "created",
        "policy_verdict",
        "cancelled",
        "retry_requested",
        "cancelled",
        "rollback_requested",
    ]


def test_run_produces_a_downloadable_artifact(client: httpx.Client, tokens: dict[str, str]) -> None:
    task = create(client, tokens["operator"], instructions="Summarise the outage")["task"]
    assert task["status"] == "queued"

    response = client.post(f"{TASKS}/{task['id']}/run", headers=auth(tokens["operator"]))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "succeeded"
    assert body["sdk_available"] is True
    assert body["task"]["status"] == "succeeded"
    assert len(body["artifacts"]) >= 1

    artifact = body["artifacts"][0]
    assert "storage_ref" not in artifact
    assert artifact["download_url"].startswith(f"{TASKS}/{task['id']}/artifacts/")
    content = client.get(artifact["download_url"], headers=auth(tokens["viewer"]))
    assert content.status_code == 200, content.text
    assert content.content
    assert hashlib.sha256(content.content).hexdigest() == artifact["sha256"]
    assert len(content.content) == artifact["size_bytes"]
    assert "Summarise the outage" in content.text

    listed = client.get(f"{TASKS}/{task['id']}/artifacts", headers=auth(tokens["viewer"]))
    assert listed.status_code == 200
    assert [item["id"] for item in listed.json()["artifacts"]] == [
        item["id"] for item in body["artifacts"]
    ]

    traces = client.get(f"{TASKS}/{task['id']}/traces", headers=auth(tokens["viewer"]))
    assert traces.status_code == 200
    events = traces.json()["traces"]
    assert [event["seq"] for event in events] == list(range(1, len(events) + 1))
    assert events == body["traces"]
    assert events[-1]["kind"] == "succeeded"
    assert all(event["task_id"] == task["id"] for event in events)

    later = client.get(
        f"{TASKS}/{task['id']}/traces", params={"after_seq": 2}, headers=auth(tokens["viewer"])
    )
    assert [event["seq"] for event in later.json()["traces"]] == list(range(3, len(events) + 1))

    again = client.post(f"{TASKS}/{task['id']}/run", headers=auth(tokens["operator"]))
    assert assert_error(again, 409, "invalid_transition")["details"]["current_status"] == (
        "succeeded"
    )


def test_cursor_walks_every_queued_task_once(client: httpx.Client, tokens: dict[str, str]) -> None:
    operator = tokens["operator"]
    mine = {create(client, operator, title=f"page task {n}")["task"]["id"] for n in range(4)}
    mine.add(
        create(client, operator, lane="change-nonprod", mutation_level="write_nonprod")["task"][
            "id"
        ]
    )
    denied = create(client, operator, lane="change-prod", mutation_level="write_prod")["task"]
    assert denied["status"] == "denied"

    walked: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(500):
        params = {"status": "queued", "limit": "1"} | ({"cursor": cursor} if cursor else {})
        response = client.get(TASKS, params=params, headers=auth(tokens["viewer"]))
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["tasks"]) <= 1
        walked += page["tasks"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    else:
        pytest.fail("the cursor never ended")

    ids = [task["id"] for task in walked]
    assert len(ids) == len(set(ids)), "a task came back twice"
    assert all(task["status"] == "queued" for task in walked)
    assert all(task["tenant_id"] == "t1" for task in walked)
    assert mine <= set(ids)
    assert denied["id"] not in ids
    created = [task["created_at"] for task in walked]
    assert created == sorted(created, reverse=True), "not newest first"

    everything = client.get(
        TASKS, params={"status": "queued", "limit": "200"}, headers=auth(tokens["viewer"])
    ).json()
    assert everything["next_cursor"] is None
    assert [task["id"] for task in everything["tasks"]] == ids


def test_tenants_are_isolated(client: httpx.Client, tokens: dict[str, str]) -> None:
    task = create(client, tokens["operator"])["task"]
    other = auth(tokens["t2_operator"])

    assert_error(client.get(f"{TASKS}/{task['id']}", headers=other), 404, "not_found")
    assert_error(client.get(f"{TASKS}/{task['id']}/traces", headers=other), 404, "not_found")
    assert_error(
        client.post(f"{TASKS}/{task['id']}/cancel", json={}, headers=other), 404, "not_found"
    )
    listed = client.get(TASKS, headers=other)
    assert listed.status_code == 200
    assert listed.json() == {"tasks": [], "next_cursor": None}

    still = client.get(f"{TASKS}/{task['id']}", headers=auth(tokens["operator"]))
    assert still.json()["task"]["status"] == "queued"


def test_auth_errors(client: httpx.Client, tokens: dict[str, str]) -> None:
    body = {"lane": "analysis", "title": "t", "instructions": "i"}

    viewer = client.post(TASKS, json=body, headers=auth(tokens["viewer"]))
    assert assert_error(viewer, 403, "forbidden")["details"]["required_role"] == "operator"

    anonymous = client.get(TASKS)
    assert_error(anonymous, 401, "unauthenticated")
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert_error(client.post(TASKS, json=body), 401, "unauthenticated")

    header, claims, _ = tokens["operator"].split(".")
    forged = ".".join([header, claims, "A" * 43])  # a signature that does not match
    assert_error(client.get(TASKS, headers=auth(forged)), 401, "unauthenticated")

    owner = client.get("/api/agents/workspaces", headers=auth(tokens["owner"]))
    assert owner.status_code == 200
    assert owner.json()["role"]["can_break_glass"] is True


def test_request_errors_are_json(
    server: Workbench, client: httpx.Client, tokens: dict[str, str]
) -> None:
    operator = auth(tokens["operator"])
    json_headers = operator | {"Content-Type": "application/json"}
    valid = {"lane": "analysis", "title": "t", "instructions": "i"}

    assert_error(
        client.post(TASKS, content=b'{"lane": ', headers=json_headers), 400, "invalid_json"
    )

    wrong_type = client.post(TASKS, json=valid | {"title": 5}, headers=operator)
    problems = assert_error(wrong_type, 400, "invalid_request")["details"]["problems"]
    assert [problem["location"] for problem in problems] == [["body", "title"]]

    unknown = client.post(TASKS, json=valid | {"colour": "blue"}, headers=operator)
    problems = assert_error(unknown, 400, "invalid_request")["details"]["problems"]
    assert [problem["location"] for problem in problems] == [["body", "colour"]]

    unknown_lane = client.post(TASKS, json=valid | {"lane": "no-such-lane"}, headers=operator)
    assert unknown_lane.status_code == 400, unknown_lane.text

    big = json.dumps(valid | {"instructions": "x" * (2 * 1024 * 1024)}).encode()
    assert_error(client.post(TASKS, content=big, headers=json_headers), 413, "body_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the server must count
        yield big[: len(big) // 2]
        yield big[len(big) // 2 :]

    chunked = client.post(TASKS, content=chunks(), headers=json_headers)
    assert_error(chunked, 413, "body_too_large")

    assert_error(client.get("/api/agents/nothing-here", headers=operator), 404, "not_found")
    assert_error(client.get("/nothing", headers=operator), 404, "not_found")
    assert_error(client.delete(TASKS, headers=operator), 405, "method_not_allowed")
    assert_error(client.put("/healthz"), 405, "method_not_allowed")

    # None of the rejected bodies was recorded.
    titles = [task["title"] for task in client.get(TASKS, headers=operator).json()["tasks"]]
    assert "t" not in titles
    assert "Traceback" not in server.output()


def test_openapi_lists_every_path_used(client: httpx.Client) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    expected = {
        TASKS: {"get", "post"},
        TASKS + "/{task_id}": {"get"},
        TASKS + "/{task_id}/approve": {"post"},
        TASKS + "/{task_id}/cancel": {"post"},
        TASKS + "/{task_id}/retry": {"post"},
        TASKS + "/{task_id}/rollback": {"post"},
        TASKS + "/{task_id}/run": {"post"},
        TASKS + "/{task_id}/traces": {"get"},
        TASKS + "/{task_id}/artifacts": {"get"},
        TASKS + "/{task_id}/artifacts/{artifact_id}/content": {"get"},
        "/api/agents/workspaces": {"get"},
    }
    for path, methods in expected.items():
        assert path in paths, f"{path} missing from /openapi.json"
        assert methods <= set(paths[path]), (path, sorted(paths[path]))


def test_secrets_never_leave_the_backend(
    server: Workbench, client: httpx.Client, tokens: dict[str, str]
) -> None:
    operator = auth(tokens["operator"])
    created = client.post(
        TASKS,
        json={
            "lane": "analysis",
            "title": "Rotate credentials",
            "instructions": f"use Bearer {SECRET_BEARER} to call the API",
            "scope": {"api_key": SECRET_API_KEY, "nested": {"db_password": SECRET_PASSWORD}},
        },
        headers=operator,
    )
    assert created.status_code == 201, created.text
    task = created.json()["task"]
    assert task["scope"]["api_key"] == "[redacted]"
    assert task["scope"]["nested"]["db_password"] == "[redacted]"
    assert "[redacted]" in task["instructions"]
    url = f"{TASKS}/{task['id']}"

    # A few more requests that touch the secret-bearing task, and one rejected body that
    # carries a secret, so every path that logs has had the chance to leak it.
    ran = client.post(f"{url}/run", headers=operator)
    assert ran.status_code == 200, ran.text
    rejected = client.post(
        TASKS,
        json={"lane": "analysis", "title": 5, "instructions": SECRET_API_KEY},
        headers=operator,
    )
    assert rejected.status_code == 400

    texts = {
        "create response": created.text,
        "GET task": client.get(url, headers=operator).text,
        "traces": client.get(f"{url}/traces", headers=operator).text,
        "list": client.get(TASKS, headers=operator).text,
        "run response": ran.text,
        "artifacts": client.get(f"{url}/artifacts", headers=operator).text,
        "rejected body": rejected.text,
    }
    for artifact in json.loads(texts["artifacts"])["artifacts"]:
        texts[artifact["name"]] = client.get(artifact["download_url"], headers=operator).text
    for where, text in texts.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} leaked in the {where}"

    time.sleep(0.5)  # let the server's last log lines reach the file
    output = server.output()
    assert '"kind":"created"' in output  # the log really is captured
    for secret in (*SECRETS, tokens["operator"]):
        assert secret not in output, f"{secret[:12]}... leaked in the server's output"


# --------------------------------------------------------------------------- restart


def test_restart_keeps_tasks_traces_and_tokens(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    lanes_file = ledger_only_lanes(tmp_path)
    first = Workbench(data_dir, tmp_path / "first.log", lanes_file)
    first.start()
    try:
        token = first.token("operator", "t1", "rita")
        with httpx.Client(base_url=first.base_url, timeout=30.0) as client:
            task = create(client, token, title="survives a restart")["task"]
            cancelled = client.post(
                f"{TASKS}/{task['id']}/cancel", json={"reason": "pause"}, headers=auth(token)
            )
            assert cancelled.status_code == 200, cancelled.text
            before = client.get(f"{TASKS}/{task['id']}", headers=auth(token)).json()["task"]
            traces_before = client.get(f"{TASKS}/{task['id']}/traces", headers=auth(token)).json()
    finally:
        first_stop = first.stop()
    assert before["status"] == "cancelled"
    assert [trace["seq"] for trace in traces_before["traces"]] == [1, 2, 3]

    second = Workbench(data_dir, tmp_path / "second.log", lanes_file)
    second.start()
    try:
        with httpx.Client(base_url=second.base_url, timeout=30.0) as client:
            after = client.get(f"{TASKS}/{task['id']}", headers=auth(token))
            assert after.status_code == 200, after.text
            assert after.json()["task"] == before
            traces_after = client.get(f"{TASKS}/{task['id']}/traces", headers=auth(token))
            assert traces_after.json() == traces_before

            retried = client.post(f"{TASKS}/{task['id']}/retry", json={}, headers=auth(token))
            assert retried.status_code == 200, retried.text
            assert retried.json()["task"]["attempt"] == 2
            assert retried.json()["trace"]["seq"] == 4
    finally:
        second_stop = second.stop()

    # Checked last so a failing shutdown does not hide whether the data survived.
    _assert_stopped_cleanly(first_stop, first.output())
    _assert_stopped_cleanly(second_stop, second.output())
