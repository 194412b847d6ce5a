"""Spawning over HTTP: a child session and its task within the parent's permissions and
budgets, refusals with diagnostics and audit events and nothing half-created, and the
session reaper stopping children whose TTL passed or whose parent stopped."""

import asyncio
from uuid import UUID

import pytest

from dispatcher.session_reaper import SessionReaper, SessionReaperConfig

CLAIM_NEXT = "/api/agent/tasks/claim-next"
SPAWN = "/api/agent/spawn"


@pytest.fixture
def claimed(http, auth, new_task):
    async def claim() -> dict:
        await new_task()
        response = await http.post(CLAIM_NEXT, json={}, headers=auth("worker"))
        assert response.status_code == 200, response.text
        return response.json()["claim"]

    return claim


def _as(claim: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {claim['session_credential']}"}


async def _spawn(http, claim: dict, status: int = 200, **body) -> dict:
    response = await http.post(
        SPAWN, json={"instructions": "Check db01.", **body}, headers=_as(claim)
    )
    assert response.status_code == status, response.text
    return response.json()


async def _claim_child(http, auth, task_id: str) -> dict:
    """The child's task, claimed (nothing else waits in the tenant by then)."""
    response = await http.post(CLAIM_NEXT, json={}, headers=auth("worker"))
    claim = response.json()["claim"]
    assert claim is not None and claim["task"]["id"] == task_id
    return claim


async def _kinds(http, auth, task_id: str) -> list[dict]:
    traces = await http.get(f"/api/agents/tasks/{task_id}/traces", headers=auth())
    return traces.json()["traces"]


async def test_a_child_is_a_task_a_worker_claims_with_its_session(http, auth, claimed) -> None:
    parent = await claimed()
    spawn = (await _spawn(http, parent, spawn_role="reviewer", ttl_seconds=600))["spawn"]
    lineage = spawn["lineage"]
    assert lineage["parent_session_id"] == parent["session"]["id"]
    assert lineage["root_session_id"] == parent["session"]["id"]
    assert (lineage["spawn_depth"], lineage["spawn_role"]) == (1, "reviewer")
    assert lineage["auto_stop_on_parent"] is True and lineage["ttl_expires_at"]
    assert lineage["spawn_budget"]["ttl_seconds"] == 600
    assert spawn["permissions"] == parent["session"]["lineage"]["permission_policy"]
    assert spawn["session"]["state"] == "starting" and spawn["session"]["type"] == "spawned"
    assert spawn["task_status"] == "queued"
    [event] = [e for e in await _kinds(http, auth, parent["task"]["id"]) if e["kind"] == "spawned"]
    assert event["data"]["child_session_id"] == spawn["session"]["id"]

    child = await _claim_child(http, auth, spawn["task_id"])
    assert child["session"]["id"] == spawn["session"]["id"]  # bound, lineage kept
    assert child["session"]["state"] == "active"
    assert child["session"]["lineage"]["parent_session_id"] == parent["session"]["id"]
    # The tree talks on each other's run channels.
    parent_channel = parent["coordination_channel"]["id"]
    child_sees = {
        c["id"]
        for c in (await http.get("/api/agent/channels", headers=_as(child))).json()["channels"]
    }
    parent_sees = {
        c["id"]
        for c in (await http.get("/api/agent/channels", headers=_as(parent))).json()["channels"]
    }
    assert parent_channel in child_sees and child["coordination_channel"]["id"] in parent_sees
    body = {"body": {"answer": "db01 is fine"}, "metadata": {"message_kind": "result"}}
    sent = await http.post(
        f"/api/agent/channels/{parent_channel}/send", json=body, headers=_as(child)
    )
    assert sent.status_code == 200, sent.text
    got = await http.get(f"/api/agent/channels/{parent_channel}/recv", headers=_as(parent))
    assert [m["body"] for m in got.json()["messages"]] == [{"answer": "db01 is fine"}]
    # The parent's roster lists its child.
    context = (await http.get("/api/agent/context", headers=_as(parent))).json()["context"]
    assert child["session"]["id"] in [p["session_id"] for p in context["peer_roster"]["peers"]]


async def test_widening_is_refused_audited_and_leaves_nothing(
    http, auth, claimed, pool, tenant
) -> None:
    parent = await claimed()
    before = await pool.fetchval("SELECT count(*) FROM tasks WHERE tenant_id = $1", tenant)
    for permissions, widened in (
        (
            {"tools": ["read_artifact", "propose_change"]},
            [{"kind": "tools", "atom": "propose_change"}],
        ),
        ({"skills": ["root_access"]}, [{"kind": "skills", "atom": "root_access"}]),
        (
            {"network_channels": ["ops-room", "exec-room"]},
            [{"kind": "network_channels", "atom": "exec-room"}],
        ),
    ):
        refused = await _spawn(http, parent, 403, permissions=permissions)
        assert refused["diagnostic"]["code"] == "spawn_permission_denied"
        assert refused["diagnostic"]["evidence"]["widened"] == widened
    too_long = await _spawn(http, parent, 403, ttl_seconds=3601)
    assert too_long["diagnostic"]["code"] == "spawn_limit_exceeded"
    assert too_long["diagnostic"]["evidence"]["field"] == "ttl_seconds"
    unknown = await _spawn(http, parent, 404, agent_name="change-planner")  # another lane's
    assert unknown["diagnostic"]["evidence"]["field"] == "agent_name"
    coordinator = await _spawn(http, parent, 403, spawn_role="coordinator")
    assert coordinator["diagnostic"]["code"] == "spawn_role_refused"
    malformed = await _spawn(http, parent, 400, ttl_seconds=0)
    assert malformed["diagnostic"]["evidence"]["field"] == "ttl_seconds"
    assert await pool.fetchval("SELECT count(*) FROM tasks WHERE tenant_id = $1", tenant) == before
    sessions = await pool.fetchval(
        "SELECT count(*) FROM agent_sessions WHERE tenant_id = $1", tenant
    )
    assert sessions == 1
    audit = [
        e for e in await _kinds(http, auth, parent["task"]["id"]) if e["kind"] == "spawn_refused"
    ]
    # Each refusal the ledger made; the malformed request never reached it.
    assert [e["data"]["code"] for e in audit] == ["spawn_permission_denied"] * 3 + [
        "spawn_limit_exceeded",
        "not_found",
        "spawn_role_refused",
    ]
    # A narrower child is fine.
    narrow = await _spawn(
        http, parent, permissions={"tools": ["read_artifact"], "network_channels": []}
    )
    assert narrow["spawn"]["permissions"]["tools"] == ["read_artifact"]
    assert narrow["spawn"]["permissions"]["network_channels"] == []


async def test_concurrent_spawns_cannot_overshoot_max_children(http, claimed, pool) -> None:
    parent = await claimed()
    responses = await asyncio.gather(
        *(
            http.post(SPAWN, json={"instructions": f"part {n}"}, headers=_as(parent))
            for n in range(10)
        )
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] * 5 + [403] * 5
    refused = [r.json()["diagnostic"] for r in responses if r.status_code == 403]
    assert {(d["code"], d["evidence"]["limit"]) for d in refused} == {
        ("spawn_limit_exceeded", "max_children")
    }
    children = await pool.fetchval(
        "SELECT count(*) FROM agent_sessions WHERE parent_session_id = $1",
        UUID(parent["session"]["id"]),
    )
    assert children == 5


async def test_depth_is_limited_across_the_tree(http, auth, claimed) -> None:
    root = await claimed()
    child = await _claim_child(http, auth, (await _spawn(http, root))["spawn"]["task_id"])
    grandchild = await _spawn(http, child)
    assert grandchild["spawn"]["lineage"]["spawn_depth"] == 2
    assert grandchild["spawn"]["lineage"]["root_session_id"] == root["session"]["id"]
    claimed_grandchild = await _claim_child(http, auth, grandchild["spawn"]["task_id"])
    refused = await _spawn(http, claimed_grandchild, 403)
    assert refused["diagnostic"]["evidence"]["limit"] == "max_depth"


async def test_children_stop_with_their_parent_or_their_ttl(http, auth, claimed, app) -> None:
    parent = await claimed()
    stops = (await _spawn(http, parent))["spawn"]
    stays = (await _spawn(http, parent, auto_stop_on_parent=False))["spawn"]
    stopping = await _claim_child(http, auth, stops["task_id"])
    grandchild = (await _spawn(http, stopping))["spawn"]
    short = (await _spawn(http, parent, auto_stop_on_parent=False, ttl_seconds=1))["spawn"]
    reaper = SessionReaper(
        app.state.runtime.pool, app.state.runtime.policy, SessionReaperConfig("reaper")
    )

    await asyncio.sleep(1.1)
    assert (await reaper.run_once())["ttl_expired"] >= 1
    task = await http.get(f"/api/agents/tasks/{short['task_id']}", headers=auth())
    assert task.json()["task"]["status"] == "cancelled"

    done = await http.post(
        f"/api/agent/tasks/{parent['run']['id']}/complete",
        json={},
        headers={**auth("worker"), "X-Claim-Token": parent["claim_token"]},
    )
    assert done.status_code == 200
    assert (await reaper.run_once())["parent_stopped"] >= 2  # the child, then its child
    for spawned, reason in (
        (stops, "parent_stopped"),
        (grandchild, "parent_stopped"),
        (short, "ttl_expired"),
    ):
        status = (await http.get(f"/api/agents/tasks/{spawned['task_id']}", headers=auth())).json()
        assert status["task"]["status"] == "cancelled", spawned
        events = [
            e
            for e in await _kinds(http, auth, spawned["task_id"])
            if e["kind"] == "session_stopped"
        ]
        assert [e["data"]["reason"] for e in events] == [reason]
    # The stopped child's lease was released: its credential no longer works.
    refused = await http.get("/api/agent/me", headers=_as(stopping))
    assert refused.status_code == 401
    assert refused.json()["diagnostic"]["evidence"]["session_state"] == "stopped"
    # Without auto_stop_on_parent, a child outlives its parent.
    kept = await http.get(f"/api/agents/tasks/{stays['task_id']}", headers=auth())
    assert kept.json()["task"]["status"] == "queued"
