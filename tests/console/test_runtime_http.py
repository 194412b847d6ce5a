"""The console's agent runtime screens over HTTP, in process: sessions (filtered by
state) and one session's lineage, permissions, budget, leases and channels; channels
and their messages with replies threaded; refused spawns with what was asked; the
task page's link to its session. The data is made as agents make it: claims, spawns,
sends and replies through the agent routes. Everything is the tenant's only (another
tenant's session or channel is 404), and a secret sent in a message never reaches a
page or a live stream."""

import asyncio
import html
import re
from collections.abc import Callable
from uuid import uuid4

import httpx
import pytest
from planted_secrets import WRITTEN_FORMS, forms_text, leaked
from signed_in import browser as browser  # the fixture
from signed_in import error_code, sign_in, token
from starlette.applications import Starlette

from ledger import runtime_overview

CLAIM_NEXT = "/api/agent/tasks/claim-next"
SPAWN = "/api/agent/spawn"
CHANNELS = "/api/agent/channels"


def _as(claim: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {claim['session_credential']}"}


@pytest.fixture
def claim(http: httpx.AsyncClient, auth: Callable) -> Callable:
    """Claims the tenant's oldest waiting run as an external agent would (a new task's
    first, unless `new` is False: a spawned child's)."""

    async def claimed(new: bool = True, tenant_id: str | None = None, **task: object) -> dict:
        if new:
            body = {"lane": "analysis", "title": "Check db01", "instructions": "Check.", **task}
            created = await http.post(
                "/api/agents/tasks", json=body, headers=auth(tenant_id=tenant_id)
            )
            assert created.status_code == 201, created.text
        response = await http.post(CLAIM_NEXT, json={}, headers=auth("worker", tenant_id=tenant_id))
        assert response.status_code == 200, response.text
        found = response.json()["claim"]
        assert found is not None
        return found

    return claimed


async def _spawn(http: httpx.AsyncClient, parent: dict, status: int = 200, **body) -> dict:
    response = await http.post(
        SPAWN, json={"instructions": "Look at the logs.", **body}, headers=_as(parent)
    )
    assert response.status_code == status, response.text
    return response.json()


async def _send(http, claim: dict, channel_id: str, body, kind: str = "status") -> dict:
    response = await http.post(
        f"{CHANNELS}/{channel_id}/send",
        json={"body": body, "metadata": {"message_kind": kind}},
        headers=_as(claim),
    )
    assert response.status_code == 200, response.text
    return response.json()["message"]


async def _operator(browser: httpx.AsyncClient, tenant: str, role: str = "viewer") -> None:
    assert (await sign_in(browser, token(tenant, role))).status_code == 303


def _flat(text: str) -> str:
    """A page without the white space between its tags."""
    return re.sub(r">\s+<", "><", text)


def _states(page: httpx.Response) -> dict[str, str]:
    return dict(re.findall(r'data-session-id="([0-9a-f-]{36})" data-state="(\w+)"', page.text))


async def test_the_list_shows_each_session_and_filters_by_state(
    browser: httpx.AsyncClient, tenant: str, http: httpx.AsyncClient, claim: Callable
) -> None:
    root = await claim(title="Investigate <script>alert(1)</script>")
    child = (await _spawn(http, root, spawn_role="reviewer", ttl_seconds=600))["spawn"]
    await _operator(browser, tenant)

    everything = await browser.get("/console/sessions")
    assert everything.status_code == 200
    root_id, child_id = root["session"]["id"], child["session"]["id"]
    assert _states(everything) == {root_id: "active", child_id: "starting"}
    row = everything.text.split(f'id="session-{child_id}"')[1].split("</tr>")[0]
    assert f'href="/console/sessions/{root_id}"' in row  # its parent
    assert ">1</td>" in row and "spawned" in row and "in 9 min" in row  # depth, type, TTL
    assert f'href="/console/tasks/{child["task_id"]}"' in row
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in everything.text
    assert "<script>alert" not in everything.text

    for state, shown in (("active", {root_id}), ("starting", {child_id}), ("stopped", set())):
        page = await browser.get(f"/console/sessions?state={state}")
        assert page.status_code == 200 and set(_states(page)) == shown, state
        assert set(_states(page).values()) <= {state}
    # The live part reads the same filter.
    rows = await browser.get("/console/sessions/rows?state=active")
    assert set(_states(rows)) == {root_id}
    for bad in ("state=bogus", "colour=red", "cursor=nope"):
        page = await browser.get(f"/console/sessions?{bad}")
        assert (page.status_code, error_code(page)) == (400, "invalid_request"), bad
        assert "Traceback" not in page.text


async def test_a_session_shows_its_lineage_permissions_budget_leases_and_channels(
    browser: httpx.AsyncClient, tenant: str, http: httpx.AsyncClient, claim: Callable
) -> None:
    root = await claim()
    first = (await _spawn(http, root, permissions={"tools": ["read_artifact"]}))["spawn"]
    await _spawn(http, root)
    child = await claim(new=False)
    assert child["session"]["id"] == first["session"]["id"]
    grandchild = (await _spawn(http, child, spawn_role="checker"))["spawn"]
    await _operator(browser, tenant)

    page = await browser.get(f"/console/sessions/{child['session']['id']}")
    assert page.status_code == 200, page.text
    text = _flat(page.text)
    root_id, grandchild_id = root["session"]["id"], grandchild["session"]["id"]
    assert 'data-state="active"' in text
    parent = text.split('id="session-parent"')[1].split("</dd>")[0]
    assert f'href="/console/sessions/{root_id}"' in parent
    assert f'href="/console/sessions/{root_id}"' in text.split('id="session-root"')[1]
    # The whole tree, the grandchild under this session, this session marked.
    tree = text.split('id="session-tree"')[1].split('<div class="grid">')[0]
    assert re.findall(r'data-tree-session="([0-9a-f-]{36})"', tree)[:2] == [
        root_id,
        child["session"]["id"],
    ]
    under_child = tree.split(f'data-tree-session="{child["session"]["id"]}"')[1]
    assert f'data-tree-session="{grandchild_id}"' in under_child.split("</li>")[0]
    assert tree.count('aria-current="page"') == 1
    assert len(re.findall(r"data-tree-session=", tree)) == 4
    # Narrowed permissions, and what a new spawn of it would be counted against.
    assert re.search(r'data-permission="tools"><code>read_artifact</code></dd>', text)
    assert re.search(r'data-permission="network_channels"><code>ops-room</code>', text)
    budget = text.split('id="session-budget"')[1].split("</table>")[0]
    assert re.search(r'data-budget="max_children">.*?<td>5</td><td data-used>1 live', budget)
    assert re.search(r'data-budget="max_active_per_workspace">.*?3 live in the tree', budget)
    assert re.search(r'data-budget="max_depth">.*?<td>2</td><td data-used>at depth 1', budget)
    # Its lease, held, and the channels it sees: its own run's, its parent's, ops-room.
    leases = text.split('id="session-leases"')[1].split("</table>")[0]
    assert 'data-current><td>1</td><td><span class="badge running">' in leases
    assert "<td>yes</td>" in leases
    channels = text.split('id="session-channels"')[1].split("</table>")[0]
    for channel_id in (child["coordination_channel"]["id"], root["coordination_channel"]["id"]):
        assert f'data-channel-id="{channel_id}"' in channels

    root_page = _flat((await browser.get(f"/console/sessions/{root_id}")).text)
    assert "none: a root session" in root_page and "this session" in root_page
    assert re.search(r'data-budget="max_children">.*?data-used>2 live children', root_page)
    fragment = await browser.get(
        f"/console/sessions/{root_id}/body", headers={"hx-request": "true"}
    )
    assert fragment.status_code == 200 and "<html" not in fragment.text


async def test_another_tenants_session_and_channel_are_not_found(
    browser: httpx.AsyncClient, tenant: str, claim: Callable
) -> None:
    theirs = await claim(tenant_id=f"{tenant}-other")
    await claim()
    await _operator(browser, tenant)
    channel = theirs["coordination_channel"]["id"]
    for path in (
        f"/console/sessions/{theirs['session']['id']}",
        f"/console/sessions/{theirs['session']['id']}/body",
        f"/console/channels/{channel}",
        f"/console/channels/{channel}/live",
        f"/console/sessions/{uuid4()}",
        "/console/sessions/not-a-uuid",
        "/console/channels/not-a-uuid",
    ):
        page = await browser.get(path)
        assert (page.status_code, error_code(page)) == (404, "not_found"), path
    for path in ("/console/sessions", "/console/channels", "/console/spawn-refusals"):
        page = await browser.get(path)
        assert page.status_code == 200
        assert theirs["session"]["id"] not in page.text and channel not in page.text


async def test_a_channel_shows_its_messages_threaded_and_never_a_secret(
    browser: httpx.AsyncClient,
    tenant: str,
    http: httpx.AsyncClient,
    claim: Callable,
    app: Starlette,
) -> None:
    alice, bob = await claim(), await claim()
    room = {
        c["channel"]: c for c in (await http.get(CHANNELS, headers=_as(alice))).json()["channels"]
    }["ops-room"]["id"]
    question = await _send(http, alice, room, "Is db01 healthy? <b>bold</b>", kind="request")
    secret_body = {
        "notes": forms_text(WRITTEN_FORMS[:-1]),
        "config": {"db_password": "hunter2-nested"},
        "credential": bob["session_credential"],
    }
    await _send(http, alice, room, secret_body)
    received = await http.get(f"{CHANNELS}/{room}/recv", headers=_as(bob))
    assert len(received.json()["messages"]) == 2
    answer = await http.post(
        f"{CHANNELS}/reply",
        json={"reply_to_message_id": question["message_id"], "body": "db01 is fine"},
        headers=_as(bob),
    )
    assert answer.status_code == 200, answer.text
    await _operator(browser, tenant)

    listing = await browser.get("/console/channels")
    assert listing.status_code == 200
    row = _flat(listing.text).split(f'data-channel-id="{room}"')[1].split("</tr>")[0]
    assert "Operations room" in row and "<td data-count>3</td>" in row
    assert "<code>blocker</code>" in row
    assert f'data-channel-id="{alice["coordination_channel"]["id"]}"' in listing.text

    page = await browser.get(f"/console/channels/{room}")
    assert page.status_code == 200
    text = page.text
    assert re.findall(r'data-seq="(\d+)"', text) == ["1", "2", "3"]  # newest last
    reply = text.split('id="msg-3"')[1].split("</li>")[0]
    assert 'data-reply-to="1"' in text.split('id="msg-3"')[1].split(">")[0]
    assert 'href="#msg-1"' in reply and f'href="/console/sessions/{alice["session"]["id"]}"' in (
        reply
    )  # to the asker
    assert "&lt;b&gt;bold&lt;/b&gt;" in text and "<b>bold" not in text
    assert "[redacted]" in text
    assert leaked(text) == [] and "hunter2-nested" not in text
    assert bob["session_credential"] not in text
    for path in (f"/console/sessions/{alice['session']['id']}", "/console/channels"):
        other = (await browser.get(path)).text
        assert leaked(other) == [] and "hunter2-nested" not in other

    # The live stream: what follows a sequence number, as rows, redacted the same.
    streamed = await _stream_once(browser, app, f"/console/channels/{room}/live?after_seq=1")
    assert streamed.status_code == 200
    assert re.findall(r"^id: (\d+)$", streamed.text, re.MULTILINE) == ["2", "3"]
    assert "event: message" in streamed.text
    assert leaked(streamed.text) == [] and "hunter2-nested" not in streamed.text


async def _stream_once(browser: httpx.AsyncClient, app: Starlette, path: str) -> httpx.Response:
    """A live stream's answer up to the moment the process is asked to stop (streams
    never end by themselves)."""
    stopping = app.state.stopping

    async def stop_soon() -> None:
        await asyncio.sleep(0.5)
        stopping.set()

    stopper = asyncio.create_task(stop_soon())
    try:
        async with asyncio.timeout(10):
            return await browser.get(path)
    finally:
        await stopper
        app.state.stopping = asyncio.Event()  # the session's app goes on serving


async def test_refused_spawns_show_the_code_the_parent_and_what_was_asked(
    browser: httpx.AsyncClient, tenant: str, http: httpx.AsyncClient, claim: Callable
) -> None:
    parent = await claim()
    await _spawn(http, parent, 403, permissions={"tools": ["propose_change"]}, title="Wide")
    await _spawn(http, parent, 403, ttl_seconds=3601, agent_name="workbench-analysis")
    await _spawn(http, parent, 404, agent_name="x", title="rotate it: password: hunter2-yaml")
    await _operator(browser, tenant)

    page = await browser.get("/console/spawn-refusals")
    assert page.status_code == 200
    rows = re.findall(r"<tr data-refusal=.*?</tr>", _flat(page.text), re.DOTALL)
    assert leaked(page.text) == [] and "[redacted]" in rows[0]
    assert [re.search(r'data-code="(\w+)"', row).group(1) for row in rows] == [
        "not_found",  # newest first
        "spawn_limit_exceeded",
        "spawn_permission_denied",
    ]
    for row in rows:
        assert f'href="/console/sessions/{parent["session"]["id"]}"' in row
        assert f'href="/console/tasks/{parent["task"]["id"]}#seq-' in row
    _, ttl, widened = rows
    assert '<li data-asked-field="ttl_seconds">ttl_seconds: 3601</li>' in ttl
    assert "agent_name: workbench-analysis</li>" in ttl
    assert "max_ttl_seconds" in ttl
    assert "title: Wide</li>" in widened
    assert re.findall(r'data-asked-permission="(\w+)">[^<]*<code>(\w+)</code>', widened) == [
        ("tools", "propose_change")
    ]
    assert "tools propose_change" in widened  # the diagnostic's message
    empty = await browser.get("/console/spawn-refusals?x=1")
    assert (empty.status_code, error_code(empty)) == (400, "invalid_request")


async def test_a_tasks_page_links_its_session(
    browser: httpx.AsyncClient, tenant: str, claim: Callable, new_task: Callable
) -> None:
    claimed = await claim()
    waiting = (await new_task(lane="change-nonprod"))["task"]
    await _operator(browser, tenant)
    page = await browser.get(f"/console/tasks/{claimed['task']['id']}")
    assert f'href="/console/sessions/{claimed["session"]["id"]}" id="task-session"' in page.text
    unclaimed = await browser.get(f"/console/tasks/{waiting['id']}")
    assert "none yet: made when a run is claimed" in unclaimed.text
    nav = (await browser.get("/console/tasks")).text
    for path in ("/console/sessions", "/console/channels", "/console/spawn-refusals"):
        assert f'href="{path}"' in nav


async def test_a_filtered_page_cut_short_goes_on_from_where_it_stopped(
    browser: httpx.AsyncClient,
    tenant: str,
    http: httpx.AsyncClient,
    claim: Callable,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = await claim()
    child = (await _spawn(http, root))["spawn"]  # newer than its parent's task
    await _operator(browser, tenant)
    monkeypatch.setattr(runtime_overview, "STATE_BATCH", 1)
    monkeypatch.setattr(runtime_overview, "STATE_SCAN", 1)

    first = await browser.get("/console/sessions?state=active")
    assert _states(first) == {} and 'id="page-cut"' in first.text
    assert child["session"]["id"] not in first.text
    next_link = html.unescape(re.search(r'href="(\?[^"]+)" rel="next"', first.text).group(1))
    second = await browser.get("/console/sessions" + next_link)
    assert _states(second) == {root["session"]["id"]: "active"}
