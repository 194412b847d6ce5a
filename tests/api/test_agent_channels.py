"""Coordination channels over HTTP, as the claimed sessions' agents use them: list,
send, recv (read positions, unread counts, long-polling), reply; every refusal with
the `diagnostic` error shape."""

import asyncio
import json
import time

import pytest
from planted_secrets import WRITTEN_FORMS, forms_text, leaked

CLAIM_NEXT = "/api/agent/tasks/claim-next"
CHANNELS = "/api/agent/channels"


@pytest.fixture
def claimed(http, auth, new_task):
    """Claims a new task's run (lane `analysis` unless given) with a worker token; returns
    the claim."""

    async def claim(lane: str = "analysis", tenant_id: str | None = None) -> dict:
        await new_task(lane=lane) if tenant_id is None else await _task_in(http, auth, tenant_id)
        response = await http.post(
            CLAIM_NEXT, json={"lanes": [lane]}, headers=auth("worker", tenant_id=tenant_id)
        )
        assert response.status_code == 200, response.text
        claim = response.json()["claim"]
        assert claim is not None
        return claim

    return claim


async def _task_in(http, auth, tenant_id: str) -> None:
    body = {"lane": "analysis", "title": "t", "instructions": "x"}
    response = await http.post("/api/agents/tasks", json=body, headers=auth(tenant_id=tenant_id))
    assert response.status_code == 201, response.text


def _as(claim: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {claim['session_credential']}"}


async def _channels(http, claim: dict) -> dict[str, dict]:
    response = await http.get(CHANNELS, headers=_as(claim))
    assert response.status_code == 200, response.text
    return {channel["channel"]: channel for channel in response.json()["channels"]}


async def _send(http, claim: dict, channel_id: str, body, kind: str = "status", **metadata):
    return await http.post(
        f"{CHANNELS}/{channel_id}/send",
        json={"body": body, "metadata": {"message_kind": kind, **metadata}},
        headers=_as(claim),
    )


async def _recv(http, claim: dict, channel_id: str, **params) -> list[dict]:
    response = await http.get(f"{CHANNELS}/{channel_id}/recv", params=params, headers=_as(claim))
    assert response.status_code == 200, response.text
    return response.json()["messages"]


def _diagnostic(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["diagnostic"]["code"] == code and body["error"] == body["diagnostic"]["message"]
    return body["diagnostic"]


async def test_a_session_sees_its_run_channel_and_its_workspace_channels(http, claimed) -> None:
    analysis = await claimed()
    seen = await _channels(http, analysis)
    run_channel = analysis["coordination_channel"]
    assert set(seen) == {run_channel["channel"], "ops-room"}
    assert seen[run_channel["channel"]]["id"] == run_channel["id"]
    assert seen[run_channel["channel"]]["run_id"] == analysis["run"]["id"]
    room = seen["ops-room"]
    assert room["allowed_message_kinds"] == ["status", "request", "reply", "blocker", "result"]
    assert room["purpose"] and room["workspace_id"] == "analysis" and room["run_id"] is None
    assert (room["read_seq"], room["unread_count"]) == (0, 0)
    nonprod = await claimed(lane="change-nonprod")
    assert set(await _channels(http, nonprod)) == {nonprod["coordination_channel"]["channel"]}
    # Sessions of the same workspace share its named channels, not each other's runs'.
    other = await _channels(http, await claimed())
    assert other["ops-room"]["id"] == room["id"] and run_channel["channel"] not in other


async def test_send_recv_keeps_each_sessions_read_position(http, claimed) -> None:
    alice, bob = await claimed(), await claimed()
    room = (await _channels(http, alice))["ops-room"]["id"]
    sent = []
    for n in range(3):
        response = await _send(http, alice, room, {"step": n}, correlation_id=f"c{n}")
        assert response.status_code == 200, response.text
        sent.append(response.json()["message"])
    first = sent[0]
    assert first["from_session_id"] == alice["session"]["id"] and first["to_session_id"] is None
    assert first["metadata"]["run_id"] == alice["run"]["id"]
    assert first["metadata"]["task_id"] == alice["task"]["id"]
    assert first["metadata"]["coordination_channel_id"] == room
    assert [m["seq"] for m in sent] == [1, 2, 3]
    assert (await _channels(http, bob))["ops-room"]["unread_count"] == 3

    got = await _recv(http, bob, room, limit=2)
    assert [m["body"] for m in got] == [{"step": 0}, {"step": 1}]
    assert [m["message_id"] for m in got] == [m["message_id"] for m in sent[:2]]
    assert [m["body"] for m in await _recv(http, bob, room)] == [{"step": 2}]
    assert await _recv(http, bob, room) == []  # all read
    listed = (await _channels(http, bob))["ops-room"]
    assert (listed["read_seq"], listed["unread_count"], listed["message_count"]) == (3, 0, 3)
    assert await _recv(http, alice, room) == []  # a session does not receive its own
    carol = await claimed()
    assert len(await _recv(http, carol, room)) == 3  # a newcomer reads from the start


async def test_a_reply_goes_to_the_sender_with_the_messages_correlation(
    http, auth, claimed
) -> None:
    alice, bob, carol = await claimed(), await claimed(), await claimed()
    room = (await _channels(http, alice))["ops-room"]["id"]
    asked = await _send(http, alice, room, "which host?", kind="request", correlation_id="q-1")
    question = asked.json()["message"]
    [received] = await _recv(http, bob, room)
    answer = await http.post(
        f"{CHANNELS}/reply",
        json={"reply_to_message_id": received["message_id"], "body": "db01"},
        headers=_as(bob),
    )
    assert answer.status_code == 200, answer.text
    reply = answer.json()["message"]
    assert reply["reply_to_message_id"] == question["message_id"]
    assert reply["to_session_id"] == alice["session"]["id"]
    assert reply["metadata"]["message_kind"] == "reply"
    assert reply["metadata"]["correlation_id"] == "q-1"
    assert reply["channel_id"] == room
    [got] = await _recv(http, alice, room)
    assert got["message_id"] == reply["message_id"] and got["body"] == "db01"
    # A reply is for its addressee: carol, on the same channel, gets only the question.
    assert [m["message_id"] for m in await _recv(http, carol, room)] == [question["message_id"]]
    traces = await http.get(f"/api/agents/tasks/{bob['task']['id']}/traces", headers=auth())
    [event] = [t for t in traces.json()["traces"] if t["kind"] == "channel_message"]
    assert event["data"]["reply_to_message_id"] == question["message_id"]
    assert event["actor"] == f"session:{bob['session']['id']}" and "db01" not in json.dumps(event)


async def test_a_waiting_recv_is_woken_by_a_send(http, claimed) -> None:
    alice, bob = await claimed(), await claimed()
    room = (await _channels(http, alice))["ops-room"]["id"]
    waiting = asyncio.create_task(_recv(http, bob, room, wait="true", wait_seconds=20))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    started = time.monotonic()
    await _send(http, alice, room, "wake up")
    got = await asyncio.wait_for(waiting, 10)
    assert [m["body"] for m in got] == ["wake up"]
    assert time.monotonic() - started < 2  # woken, not polled
    # Nothing comes: the wait ends empty after wait_seconds.
    started = time.monotonic()
    assert await _recv(http, bob, room, wait="true", wait_seconds=0.3) == []
    assert 0.3 <= time.monotonic() - started < 5


async def test_bad_input_is_refused_with_the_field(http, claimed) -> None:
    alice, bob = await claimed(), await claimed()
    room = (await _channels(http, alice))["ops-room"]["id"]
    url = f"{CHANNELS}/{room}/recv"
    for params, field in (
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"wait": "true", "wait_seconds": 31}, "wait_seconds"),
        ({"wait": "maybe"}, "wait"),
        ({"after": 3}, "after"),
    ):
        response = await http.get(url, params=params, headers=_as(alice))
        diagnostic = _diagnostic(response, 400, "invalid_request")
        assert diagnostic["evidence"]["field"] == field, params
        assert diagnostic["category"] == "validation"
    # A kind the channel does not take.
    refused = _diagnostic(
        await _send(http, alice, room, "over to you", kind="handoff"),
        403,
        "message_kind_not_allowed",
    )
    assert refused["evidence"]["field"] == "metadata.message_kind"
    assert "handoff" not in refused["evidence"]["allowed"]
    # Metadata naming another run, or another channel.
    for metadata, field in (
        ({"run_id": bob["run"]["id"]}, "metadata.run_id"),
        (
            {"coordination_channel_id": alice["coordination_channel"]["id"]},
            "metadata.coordination_channel_id",
        ),
    ):
        response = await _send(http, alice, room, "x", **metadata)
        assert _diagnostic(response, 409, "metadata_mismatch")["evidence"]["field"] == field
    missing = await http.post(f"{CHANNELS}/{room}/send", json={"body": 1}, headers=_as(alice))
    assert _diagnostic(missing, 400, "invalid_request")["evidence"]["field"] == "metadata"
    too_big = await _send(http, alice, room, "x" * (65 * 1024))
    assert _diagnostic(too_big, 400, "invalid_request")["evidence"]["field"] == "body"
    assert (await _channels(http, bob))["ops-room"]["unread_count"] == 0  # nothing stored


async def test_channels_of_other_sessions_and_tenants_are_not_found(http, auth, claimed) -> None:
    alice, bob = await claimed(), await claimed()
    foreign = await claimed(tenant_id="another-tenant")
    elsewhere = (await _channels(http, foreign))["ops-room"]["id"]
    for channel in (
        elsewhere,  # another tenant's ops-room
        bob["coordination_channel"]["id"],  # another session's run channel
        "00000000-0000-0000-0000-000000000000",
    ):
        _diagnostic(await _send(http, alice, channel, "hi"), 404, "not_found")
        response = await http.get(f"{CHANNELS}/{channel}/recv", headers=_as(alice))
        _diagnostic(response, 404, "not_found")
    sent = (await _send(http, foreign, elsewhere, "hi")).json()["message"]
    reply = await http.post(
        f"{CHANNELS}/reply",
        json={"reply_to_message_id": sent["message_id"], "body": "x"},
        headers=_as(alice),
    )
    _diagnostic(reply, 404, "not_found")


async def test_the_credential_is_refused_once_the_lease_ended(http, auth, claimed) -> None:
    alice = await claimed()
    room = alice["coordination_channel"]["id"]
    assert (await _send(http, alice, room, "working")).status_code == 200
    for headers in ({}, auth("worker"), {"Authorization": "Bearer wbs_not-a-credential"}):
        response = await http.get(CHANNELS, headers=headers)
        assert response.headers["WWW-Authenticate"] == "Bearer"
        _diagnostic(response, 401, "unauthenticated")
    done = await http.post(
        f"/api/agent/tasks/{alice['run']['id']}/complete",
        json={},
        headers={**auth("worker"), "X-Claim-Token": alice["claim_token"]},
    )
    assert done.status_code == 200, done.text
    for response in (
        await http.get(CHANNELS, headers=_as(alice)),
        await _send(http, alice, room, "still here?"),
        await http.get(f"{CHANNELS}/{room}/recv", headers=_as(alice)),
    ):
        diagnostic = _diagnostic(response, 401, "session_lease_ended")
        assert diagnostic["category"] == "auth" and diagnostic["suggested_command"]
        assert diagnostic["evidence"]["run_status"] == "succeeded"
        assert diagnostic["evidence"]["session_id"] == alice["session"]["id"]


async def test_secrets_in_a_message_are_redacted_before_it_is_stored(http, claimed, pool) -> None:
    alice, bob = await claimed(), await claimed()
    room = (await _channels(http, alice))["ops-room"]["id"]
    every_form = forms_text(WRITTEN_FORMS[:-1])
    body = {
        "notes": every_form,
        "config": {"db_password": "hunter2-nested"},
        "leaked_claim": f"my claim token is {alice['claim_token']}",
        "credential": bob["session_credential"],
    }
    response = await _send(
        http, alice, room, body, correlation_id="c-1", ext={"api_key": "hunter2-ext"}
    )
    assert response.status_code == 200, response.text
    texts = [response.text, json.dumps(await _recv(http, bob, room))]
    rows = await pool.fetch(
        "SELECT m::text AS row FROM channel_messages m WHERE channel_id = $1::uuid", room
    )
    texts += [row["row"] for row in rows]
    for text in texts:
        assert leaked(text) == []
        for secret in ("hunter2-nested", "hunter2-ext", alice["claim_token"]):
            assert secret not in text
        assert bob["session_credential"] not in text
    assert "[redacted]" in texts[1]
