"""`POST /run`: the task runs in process through the real agents SDK Runner with the
offline model; a missing SDK is recorded as an explicit blocked state."""

import hashlib
import sys

import pytest

TASKS = "/api/agents/tasks"


async def test_run_succeeds_with_artifact_and_traces(http, auth, new_task, pool) -> None:
    task = (await new_task(instructions="Summarise the outage of app-7"))["task"]
    response = await http.post(f"{TASKS}/{task['id']}/run", headers=auth())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "succeeded"
    assert body["sdk_available"] is True
    assert body["task"]["status"] == "succeeded"
    kinds = [trace["kind"] for trace in body["traces"]]
    assert kinds[:3] == ["created", "policy_verdict", "worker_receipt"]
    assert kinds[-1] == "succeeded"
    spans = {trace["kind"]: trace for trace in body["traces"] if trace["kind"].startswith("span.")}
    assert spans["span.agent"]["data"]["name"] == "workbench-analysis"
    assert spans["span.generation"]["data"]["model"] == "offline"
    assert spans["span.generation"]["data"]["usage"]["output_tokens"] > 0
    usage = body["traces"][-1]["data"]["usage"]
    assert usage["output_tokens"] > 0
    # The run row keeps the same usage, written with the completion.
    recorded = await pool.fetchrow(
        "SELECT input_tokens, output_tokens FROM runs WHERE id = $1",
        body["task"]["current_run_id"],
    )
    assert dict(recorded) == usage

    [artifact] = body["artifacts"]
    assert artifact["name"] == "final_output.md"
    assert "storage_ref" not in artifact
    content = await http.get(artifact["download_url"], headers=auth("viewer"))
    assert content.status_code == 200
    assert "task: Summarise the outage of app-7" in content.text
    assert hashlib.sha256(content.content).hexdigest() == artifact["sha256"]
    assert len(content.content) == artifact["size_bytes"]

    again = await http.post(f"{TASKS}/{task['id']}/run", headers=auth())
    assert again.status_code == 409
    assert again.json()["error"]["details"]["current_status"] == "succeeded"


async def test_artifact_of_another_tenant_is_404(http, auth, new_task) -> None:
    task = (await new_task())["task"]
    body = (await http.post(f"{TASKS}/{task['id']}/run", headers=auth())).json()
    url = body["artifacts"][0]["download_url"]
    assert (await http.get(url, headers=auth(tenant_id="elsewhere"))).status_code == 404


async def test_run_without_sdk_records_blocked(http, auth, new_task, monkeypatch) -> None:
    # None in sys.modules makes `import agents` raise ImportError, as on a machine
    # where the SDK is not installed.
    monkeypatch.setitem(sys.modules, "agents", None)
    task = (await new_task())["task"]
    response = await http.post(f"{TASKS}/{task['id']}/run", headers=auth())
    assert response.status_code == 200
    body = response.json()
    assert body["sdk_available"] is False
    assert body["status"] == "blocked"
    assert "openai-agents SDK is not importable" in body["task"]["terminal_reason"]
    assert body["traces"][-1]["kind"] == "blocked"
    assert body["artifacts"] == []

    monkeypatch.delitem(sys.modules, "agents")
    retried = await http.post(f"{TASKS}/{task['id']}/retry", json={}, headers=auth())
    assert retried.json()["task"]["status"] == "queued"
    assert retried.json()["task"]["attempt"] == 2


async def test_unconfigured_provider_blocks(http, auth, new_task, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    task = (await new_task(model_provider="openai"))["task"]
    body = (await http.post(f"{TASKS}/{task['id']}/run", headers=auth())).json()
    assert body["status"] == "blocked"
    assert body["task"]["terminal_reason"] == (
        "model provider openai is not configured here: set OPENAI_API_KEY"
    )


@pytest.mark.parametrize("lane", ["change-prod"])
async def test_run_of_task_awaiting_approval_is_refused_and_traced(http, auth, new_task, lane):
    task = (await new_task(lane=lane, mutation_level="write_prod", scope={"rollback": "revert"}))[
        "task"
    ]
    response = await http.post(f"{TASKS}/{task['id']}/run", headers=auth())
    assert response.status_code == 409
    traces = (await http.get(f"{TASKS}/{task['id']}/traces", headers=auth())).json()["traces"]
    assert traces[-1]["kind"] == "run_refused"


async def test_call_lines_run_lane_tools_with_verdicts_and_spans(http, auth, new_task) -> None:
    instructions = (
        "Write the summary down\n"
        '#call write_artifact {"name": "notes.txt", "content": "disk 91% on app-7"}\n'
        '#call read_artifact {"name": "notes.txt"}'
    )
    task = (await new_task(instructions=instructions))["task"]
    body = (await http.post(f"{TASKS}/{task['id']}/run", headers=auth())).json()
    assert body["status"] == "succeeded", body["task"]["terminal_reason"]
    verdicts = [t["data"] for t in body["traces"] if t["kind"] == "tool_verdict"]
    assert [(v["tool"], v["mutation_level"], v["decision"]) for v in verdicts] == [
        ("write_artifact", "propose", "allow"),
        ("read_artifact", "read_only", "allow"),
    ]
    functions = [t["data"] for t in body["traces"] if t["kind"] == "span.function"]
    assert [f["name"] for f in functions] == ["write_artifact", "read_artifact"]
    assert "disk 91% on app-7" in functions[1]["output"]
    names = sorted(a["name"] for a in body["artifacts"])
    assert names == ["final_output.md", "notes.txt"]
