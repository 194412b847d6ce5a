"""The worker protocol over HTTP: claim-next, heartbeat, complete, fail, release, with
the same fences as in-cluster workers and the `diagnostic` error shape; the claim's
agent session, channel and credential."""

from uuid import UUID

import jsonschema

from ledger.leases import Fence

RUNS = "/api/agent/tasks"
TASKS = "/api/agents/tasks"


async def _claim(http, auth, **body) -> dict:
    response = await http.post(
        f"{RUNS}/claim-next", json=body, headers=auth("worker", subject="pod-1")
    )
    assert response.status_code == 200, response.text
    return response.json()["claim"]


def _fenced(auth, token: str, subject: str = "pod-1") -> dict[str, str]:
    return {**auth("worker", subject=subject), "X-Claim-Token": token}


async def test_claim_heartbeat_complete(http, auth, new_task) -> None:
    task = (await new_task())["task"]
    claim = await _claim(http, auth, lanes=["analysis"])
    assert claim["task"]["id"] == task["id"]
    lease = claim["lease"]
    assert lease["status"] == "running" and lease["attempt"] == 1
    assert lease["max_attempts"] == 3
    assert lease["claimed_by"] == {"kind": "agent", "ref": "pod-1"}
    assert lease["claim_token_hash"] and claim["claim_token"] != lease["claim_token_hash"]
    assert await _claim(http, auth) is None  # nothing else waiting in this tenant

    run = f"{RUNS}/{lease['run_id']}"
    beat = await http.post(f"{run}/heartbeat", json={}, headers=_fenced(auth, claim["claim_token"]))
    assert beat.status_code == 200
    assert beat.json()["lease"]["lease_until"] > lease["lease_until"]

    done = await http.post(
        f"{run}/complete",
        json={"result": {"summary": "ok"}},
        headers=_fenced(auth, claim["claim_token"]),
    )
    assert done.status_code == 200
    assert done.json()["lease"]["status"] == "succeeded"
    stored = (await http.get(f"{TASKS}/{task['id']}", headers=auth())).json()["task"]
    assert stored["status"] == "succeeded"
    traces = (await http.get(f"{TASKS}/{task['id']}/traces", headers=auth())).json()["traces"]
    assert [t["kind"] for t in traces][-2:] == ["worker_receipt", "succeeded"]
    assert traces[-2]["data"]["via"] == "http"


async def test_stale_token_gets_diagnostic_409(http, auth, new_task) -> None:
    await new_task()
    claim = await _claim(http, auth)
    run = f"{RUNS}/{claim['lease']['run_id']}"
    response = await http.post(f"{run}/complete", json={}, headers=_fenced(auth, "stolen"))
    assert response.status_code == 409
    body = response.json()
    assert body["error"] == "complete refused: this worker no longer holds the run"
    assert body["diagnostic"]["code"] == "fence_rejected"
    assert body["diagnostic"]["category"] == "conflict"
    document = (await http.get("/openapi.json")).json()
    schema = document["paths"]["/api/agent/tasks/{run_id}/complete"]["post"]["responses"]["409"]
    jsonschema.validate(
        body,
        {**schema["content"]["application/json"]["schema"], "components": document["components"]},
    )
    missing = await http.post(f"{run}/heartbeat", json={}, headers=auth("worker"))
    assert missing.status_code == 400
    assert missing.json()["diagnostic"]["code"] == "claim_token_missing"


async def test_fail_retries_and_release_keeps_attempt(http, auth, new_task, pool) -> None:
    task = (await new_task())["task"]
    claim = await _claim(http, auth)
    run = f"{RUNS}/{claim['lease']['run_id']}"
    failed = await http.post(
        f"{run}/fail", json={"error": "tool timed out"}, headers=_fenced(auth, claim["claim_token"])
    )
    assert failed.status_code == 200
    assert failed.json()["lease"]["status"] == "failed"
    after = (await http.get(f"{TASKS}/{task['id']}", headers=auth())).json()["task"]
    assert (after["status"], after["attempt"]) == ("queued", 2)
    assert await _claim(http, auth) is None  # the retry waits out its backoff
    await pool.execute(  # let the backoff pass
        "UPDATE runs SET available_at = now() WHERE task_id = $1 AND status = 'queued'",
        UUID(task["id"]),
    )

    retry = await _claim(http, auth)
    assert retry["lease"]["attempt"] == 2
    assert retry["lease"]["previous_run_id"] == claim["lease"]["run_id"]
    released = await http.post(
        f"{RUNS}/{retry['lease']['run_id']}/release",
        json={"reason": "node draining"},
        headers=_fenced(auth, retry["claim_token"]),
    )
    assert released.status_code == 200
    assert released.json()["lease"]["status"] == "queued"
    again = await _claim(http, auth)
    assert again["lease"]["attempt"] == 2


async def test_only_workers_and_own_tenant(http, auth, new_task) -> None:
    await new_task()
    operator = await http.post(f"{RUNS}/claim-next", json={}, headers=auth("operator"))
    assert operator.status_code == 403
    assert operator.json()["diagnostic"]["category"] == "auth"
    other = await http.post(
        f"{RUNS}/claim-next", json={}, headers=auth("worker", tenant_id="other-tenant")
    )
    assert other.json()["claim"] is None
    unknown = await http.post(
        f"{RUNS}/claim-next", json={"lanes": ["nope"]}, headers=auth("worker")
    )
    assert unknown.status_code == 400


async def test_a_paused_run_is_refused_with_409(http, auth, new_task, app) -> None:
    # The agent stopped at a tool call that needs approval: the claim ended, and a
    # worker still writing to the run is told it no longer holds it.
    task = (await new_task())["task"]
    claim = await _claim(http, auth)
    lease = claim["lease"]
    fence = Fence(UUID(lease["run_id"]), lease["attempt"], claim["claim_token"])
    pending = {
        "tool": "write_artifact",
        "call_id": "call_1",
        "arguments": {"name": "a.txt"},
        "arguments_sha256": "0" * 64,
    }
    await app.state.leases.pause(fence, worker="pod-1", saved_state="{}", pending=pending)
    run = f"{RUNS}/{lease['run_id']}"
    for write, body in (("heartbeat", {}), ("complete", {}), ("fail", {"error": "late"})):
        response = await http.post(
            f"{run}/{write}", json=body, headers=_fenced(auth, claim["claim_token"])
        )
        assert response.status_code == 409, response.text
        assert response.json()["diagnostic"]["code"] == "fence_rejected"
    stored = (await http.get(f"{TASKS}/{task['id']}", headers=auth())).json()["task"]
    assert stored["status"] == "awaiting_approval"


async def test_the_claim_returns_the_session_its_channel_and_credential_once(
    http, auth, new_task, pool
) -> None:
    await new_task()
    claim = await _claim(http, auth)
    session, channel = claim["session"], claim["coordination_channel"]
    assert session["state"] == "active" and session["run_id"] == claim["run"]["id"]
    assert session["lineage"]["root_session_id"] == session["id"]
    assert session["lineage"]["spawn_depth"] == 0
    assert channel["run_id"] == claim["run"]["id"] and session["channel"] == channel["id"]
    lease = claim["lease"]
    assert lease["session_id"] == session["id"]
    assert lease["coordination_channel_id"] == channel["id"] == lease["coordination_channel"]["id"]
    credential = claim["session_credential"]
    assert credential.startswith("wbs_") and credential != claim["claim_token"]
    stored = await pool.fetchval(
        "SELECT count(*) FROM agent_sessions WHERE credential_hash = encode(sha256($1), 'hex')",
        credential.encode(),
    )
    assert stored == 1
    beat = await http.post(
        f"{RUNS}/{lease['run_id']}/heartbeat",
        json={},
        headers=_fenced(auth, claim["claim_token"]),
    )
    assert beat.json()["lease"]["session_id"] == session["id"]
    assert "session_credential" not in beat.text and credential not in beat.text
