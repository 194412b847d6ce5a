"""What a session reads about itself over HTTP: `me`, its workspace's coordinator
settings, and the context bundle with its fixed section order and limited sections."""

from uuid import UUID

import pytest

from ledger.repository import Actor

CLAIM_NEXT = "/api/agent/tasks/claim-next"
SECTIONS = [
    "self",
    "session",
    "task",
    "coordination_channel",
    "inbox_summary",
    "peer_roster",
    "capabilities",
    "limits",
    "provenance",
]


@pytest.fixture
def claimed(http, auth, new_task):
    async def claim(lane: str = "analysis") -> dict:
        await new_task(lane=lane)
        response = await http.post(CLAIM_NEXT, json={"lanes": [lane]}, headers=auth("worker"))
        assert response.status_code == 200, response.text
        return response.json()["claim"]

    return claim


def _as(claim: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {claim['session_credential']}"}


async def _get(http, claim: dict, url: str, status: int = 200, **params) -> dict:
    response = await http.get(url, params=params, headers=_as(claim))
    assert response.status_code == status, response.text
    return response.json()


async def test_me_describes_the_session_its_lease_channels_and_limits(http, claimed) -> None:
    claim = await claimed()
    me = (await _get(http, claim, "/api/agent/me"))["me"]
    assert list(me) == [
        "active_task_leases",
        "capabilities",
        "channels",
        "coordinator",
        "limits",
        "self",
        "session",
        "workspace",
    ]
    assert me["self"] == {
        "agent_name": "workbench-analysis",
        "model": "default",
        "provider": "offline",
        "session_id": claim["session"]["id"],
    }
    [lease] = me["active_task_leases"]
    assert lease["run_id"] == claim["run"]["id"] and lease["status"] == "running"
    assert lease["coordination_channel_id"] == claim["coordination_channel"]["id"]
    assert {c["channel"] for c in me["channels"]} == {
        claim["coordination_channel"]["channel"],
        "ops-room",
    }
    ids = [capability["id"] for capability in me["capabilities"]]
    assert ids == sorted(ids) and "tool:read_artifact" in ids and "channel:ops-room" in ids
    assert me["limits"] == {
        "context_section_limit": 8,
        "max_active_task_leases": 1,
        "max_children": 5,
        "max_spawn_depth": 2,
    }
    assert me["workspace"]["id"] == "analysis" and me["workspace"]["root_dir"] is None
    assert me["coordinator"]["workspace_id"] == "analysis"
    assert me["session"]["lineage"]["permission_policy"]["network_channels"] == ["ops-room"]


async def test_a_conversation_agents_skills_are_among_its_capabilities(
    http, auth, app, tenant
) -> None:
    thread = await http.post(
        "/api/v1/threads", json={"agent_type": "runbook-agent"}, headers=auth()
    )
    actor = Actor("alice", tenant, "operator")
    await app.state.ledger.start_run(actor, UUID(thread.json()["thread"]["id"]), "Which runbook?")
    claim = (await http.post(CLAIM_NEXT, json={}, headers=auth("worker"))).json()["claim"]
    me = (await _get(http, claim, "/api/agent/me"))["me"]
    assert me["self"]["agent_name"] == "runbook-agent"
    skills = [c for c in me["capabilities"] if c["id"].startswith("skill:")]
    assert {c["id"] for c in skills} == {"skill:knowledge_search", "skill:runbook_guidance"}
    assert all(c["source"] == "agent:runbook-agent" for c in skills)


async def test_coordinator_config_says_where_each_value_came_from(http, claimed) -> None:
    claim = await claimed()
    own = (await _get(http, claim, "/api/agent/coordinator/config"))["coordinator"]
    assert own["workspace_id"] == "analysis" and own["enabled"] is True
    assert own["agent_name"] == "workbench-analysis" and own["provider"] == "offline"
    assert (own["max_children"], own["default_ttl_seconds"]) == (5, 900)
    assert own["source"] == "global"  # the lanes file's top level sets some fields
    assert own["sources"]["max_children"] == "global"
    assert own["sources"]["provider"] == "default"
    prod = await _get(http, claim, "/api/agent/coordinator/config", workspace="change-prod")
    assert prod["coordinator"]["workspace_id"] == "change-prod"
    assert prod["coordinator"]["agent_name"] == "workbench-change-prod"
    unknown = await _get(http, claim, "/api/agent/coordinator/config", 404, workspace="nope")
    assert unknown["diagnostic"]["code"] == "not_found"
    empty = await _get(http, claim, "/api/agent/coordinator/config", 400, workspace="")
    assert empty["diagnostic"]["evidence"]["field"] == "workspace"


async def test_the_context_bundle_has_its_sections_in_order(http, auth, claimed, pool) -> None:
    alice = await claimed()
    context = (await _get(http, alice, "/api/agent/context"))["context"]
    assert list(context) == SECTIONS
    assert context["self"]["session_id"] == alice["session"]["id"]
    assert context["session"]["lineage"]["root_session_id"] == alice["session"]["id"]
    bundle = context["task"]["bundle"]
    assert context["task"]["available"] is True
    assert bundle["task"]["id"] == alice["task"]["id"]
    assert bundle["current_run"]["id"] == alice["run"]["id"]
    assert bundle["current_run"]["coordination_channel_id"] == alice["coordination_channel"]["id"]
    assert bundle["prior_attempts"] == []
    assert bundle["execution_profile"]["worker"]["agent_name"] == "workbench-analysis"
    assert [e["event_type"] for e in bundle["recent_events"]] == [
        "created",
        "policy_verdict",
        "worker_receipt",
    ]
    assert bundle["recent_events_section"] == {"limit": 8, "returned": 3, "truncated": False}
    channel = context["coordination_channel"]
    assert channel["available"] and channel["channel"]["id"] == alice["coordination_channel"]["id"]
    assert context["inbox_summary"] == {
        "section": {"limit": 8, "returned": 0, "truncated": False},
        "unread_count": 0,
        "items": [],
    }
    assert context["provenance"]["source"] == "ledger" and context["provenance"]["generated_at"]


async def test_the_bundle_keeps_the_session_across_attempts(http, auth, claimed, pool) -> None:
    first = await claimed()
    failed = await http.post(
        f"/api/agent/tasks/{first['run']['id']}/fail",
        json={"error": "tool timed out"},
        headers={**auth("worker"), "X-Claim-Token": first["claim_token"]},
    )
    assert failed.status_code == 200, failed.text
    await pool.execute(  # let the backoff pass
        "UPDATE runs SET available_at = now() WHERE task_id = $1 AND status = 'queued'",
        UUID(first["task"]["id"]),
    )
    second = (await http.post(CLAIM_NEXT, json={}, headers=auth("worker"))).json()["claim"]
    assert second["session"]["id"] == first["session"]["id"]
    assert second["coordination_channel"]["id"] != first["coordination_channel"]["id"]
    bundle = (await _get(http, second, "/api/agent/context"))["context"]["task"]["bundle"]
    assert bundle["current_run"]["attempt"] == 2
    [prior] = bundle["prior_attempts"]
    assert (prior["id"], prior["status"]) == (first["run"]["id"], "failed")
    assert prior["coordination_channel_id"] == first["coordination_channel"]["id"]
    assert bundle["prior_attempts_section"] == {"limit": 8, "returned": 1, "truncated": False}
    # Both runs' channels stay the session's.
    channels = (await _get(http, second, "/api/agent/channels"))["channels"]
    assert {first["coordination_channel"]["id"], second["coordination_channel"]["id"]} <= {
        c["id"] for c in channels
    }


async def test_inbox_and_roster_are_cut_the_same_way_every_time(http, claimed) -> None:
    alice, bob = await claimed(), await claimed()
    others = [await claimed() for _ in range(8)]
    nonprod = await claimed(lane="change-nonprod")
    room = next(
        c
        for c in (await _get(http, bob, "/api/agent/channels"))["channels"]
        if c["channel"] == "ops-room"
    )
    for n in range(10):
        body = {"body": f"finding {n}: disk {n}0% full", "metadata": {"message_kind": "status"}}
        sent = await http.post(
            f"/api/agent/channels/{room['id']}/send", json=body, headers=_as(bob)
        )
        assert sent.status_code == 200, sent.text
    first = (await _get(http, alice, "/api/agent/context"))["context"]
    again = (await _get(http, alice, "/api/agent/context"))["context"]
    for section in ("inbox_summary", "peer_roster", "capabilities"):
        assert first[section] == again[section], section
    inbox = first["inbox_summary"]
    assert inbox["unread_count"] == 10
    assert inbox["section"] == {"limit": 8, "returned": 8, "truncated": True}
    assert [item["preview"] for item in inbox["items"]][:2] == [
        "finding 9: disk 90% full",
        "finding 8: disk 80% full",
    ]
    assert {item["channel_id"] for item in inbox["items"]} == {room["id"]}
    roster = first["peer_roster"]
    assert roster["section"] == {"limit": 8, "returned": 8, "truncated": True}  # 9 peers
    sessions = [peer["session_id"] for peer in roster["peers"]]
    expected = sorted(c["session"]["id"] for c in [bob, *others])[:8]
    assert sessions == expected
    assert nonprod["session"]["id"] not in sessions
    assert all(peer["channel_id"] == room["id"] for peer in roster["peers"])
    # Reading the inbox's messages empties it.
    received = await http.get(
        f"/api/agent/channels/{room['id']}/recv", params={"limit": 100}, headers=_as(alice)
    )
    assert len(received.json()["messages"]) == 10
    after = (await _get(http, alice, "/api/agent/context"))["context"]["inbox_summary"]
    assert (after["unread_count"], after["items"]) == (0, [])


async def test_an_ended_lease_gets_401_from_every_view(http, auth, claimed) -> None:
    claim = await claimed()
    released = await http.post(
        f"/api/agent/tasks/{claim['run']['id']}/release",
        json={},
        headers={**auth("worker"), "X-Claim-Token": claim["claim_token"]},
    )
    assert released.status_code == 200
    for url in ("/api/agent/me", "/api/agent/context", "/api/agent/coordinator/config"):
        body = await _get(http, claim, url, 401)
        assert body["diagnostic"]["code"] == "session_lease_ended"
        assert body["diagnostic"]["evidence"]["session_state"] == "starting"
