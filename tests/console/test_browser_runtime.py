"""The agent runtime's screens in Chromium against a real `workbench up`, with sessions
made as agents make them: a task in lane `external` claimed through `claim-next`, two
helpers spawned (a third refused for widening its tools), one claimed, messages sent
and answered on the root's channel. A person follows the lineage from the list to a
child and back, sees a new message arrive on a channel without reloading, and a new
refusal arrive on the refusals screen; a secret sent in a message is on no page. Then
axe-core on every new screen at both widths and colour schemes, and their screenshots.

Its own module, so its own stack and browser (module-scoped, as `world.py` explains):
the existing browser tests are not slowed, and Playwright stops before the async
tests that follow."""

from collections.abc import Callable

import httpx
import pytest
from planted_secrets import leaked
from playwright.sync_api import Page, expect
from world import *  # noqa: F403 - the module's fixtures: stack, browser, api, ...
from world import EXTERNAL, check_screens, mark, not_reloaded

CLAIM_NEXT = "/api/agent/tasks/claim-next"
SPAWN = "/api/agent/spawn"
CHANNELS = "/api/agent/channels"
SECRET_NOTE = "config: password: hunter2-yaml and api_key=sk-hunter2-quoted"


def _as(claim: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {claim['session_credential']}"}


@pytest.fixture(scope="module")
def worker(stack, tokens: Callable[..., str]):
    headers = {"Authorization": f"Bearer {tokens('worker')}"}
    with httpx.Client(base_url=stack.base_url, headers=headers, timeout=10.0) as client:
        yield client


def _claim(worker: httpx.Client) -> dict:
    response = worker.post(CLAIM_NEXT, json={"lanes": [EXTERNAL]})
    assert response.status_code == 200, response.text
    claim = response.json()["claim"]
    assert claim is not None
    return claim


def _send(api: httpx.Client, claim: dict, channel: str, body, kind: str = "status") -> dict:
    response = api.post(
        f"{CHANNELS}/{channel}/send",
        json={"body": body, "metadata": {"message_kind": kind}},
        headers=_as(claim),
    )
    assert response.status_code == 200, response.text
    return response.json()["message"]


def _spawn(api: httpx.Client, parent: dict, status: int = 200, **body) -> dict:
    response = api.post(SPAWN, json={"instructions": "Read the logs.", **body}, headers=_as(parent))
    assert response.status_code == status, response.text
    return response.json()


@pytest.fixture(scope="module")
def agents(api: httpx.Client, worker: httpx.Client) -> dict:
    """A root session with two helpers (one claimed), a refused spawn, and a question,
    a secret and an answer on the root's run channel."""
    created = api.post(
        "/api/agents/tasks",
        json={"lane": EXTERNAL, "title": "Investigate the checkout latency", "instructions": "x"},
    )
    assert created.status_code == 201, created.text
    root = _claim(worker)
    first = _spawn(api, root, spawn_role="log-reader", title="Read the checkout logs")
    _spawn(api, root, spawn_role="db-checker", permissions={"tools": ["read_artifact"]})
    _spawn(api, root, 403, permissions={"tools": ["propose_change"]}, title="Too wide")
    child = _claim(worker)
    assert child["session"]["id"] == first["spawn"]["session"]["id"]
    channel = root["coordination_channel"]["id"]
    question = _send(api, root, channel, "What do the logs say?", kind="request")
    _send(api, child, channel, {"notes": SECRET_NOTE})
    answer = api.post(
        f"{CHANNELS}/reply",
        json={"reply_to_message_id": question["message_id"], "body": "p99 doubled at 14:02"},
        headers=_as(child),
    )
    assert answer.status_code == 200, answer.text
    return {"root": root, "child": child, "channel": channel}


def test_follow_a_sessions_lineage_and_its_channel(
    sign_in: Callable[..., Page], agents: dict, api: httpx.Client
) -> None:
    root, child = agents["root"], agents["child"]
    page = sign_in("viewer")
    page.get_by_role("link", name="Agent sessions").click()
    root_row = page.locator(f'tr[data-session-id="{root["session"]["id"]}"]')
    expect(root_row).to_have_attribute("data-state", "active")
    page.get_by_label("State").select_option("starting")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/console/sessions?state=starting")
    expect(page.locator("tr[data-state]")).to_have_count(1)  # the helper not claimed
    expect(page.locator('tr[data-state="starting"]')).to_have_count(1)

    page.goto(f"/console/tasks/{root['task']['id']}")
    page.locator("#task-session").click()
    tree = page.locator("#session-tree")
    expect(tree.locator("li[data-tree-session]")).to_have_count(3)
    expect(tree.locator('a[aria-current="page"]')).to_have_text(root["session"]["name"])
    tree.get_by_role("link", name=child["session"]["name"]).click()
    expect(page.locator("#session-state")).to_have_attribute("data-state", "active")
    expect(page.locator('[data-permission="tools"]')).to_contain_text("read_artifact")
    page.locator("#session-parent").get_by_role("link").click()
    expect(page.locator('tr[data-budget="max_children"] [data-used]')).to_have_text(
        "2 live children"
    )

    page.locator(f'#session-channels tr[data-channel-id="{agents["channel"]}"] a').click()
    messages = page.locator("#messages li")
    expect(messages).to_have_count(3)
    expect(page.locator("#msg-3")).to_have_attribute("data-reply-to", "1")
    expect(page.locator("#msg-3 [data-reply] a")).to_have_attribute("href", "#msg-1")
    expect(page.locator("#msg-2 [data-body]")).to_contain_text("[redacted]")
    assert leaked(page.content()) == []
    mark(page)

    # A new message and a reply to it arrive while the page is open.
    sent = _send(api, child, agents["channel"], "The cache was cold.", kind="result")
    expect(messages).to_have_count(4)
    expect(page.locator("#msg-4 [data-body]")).to_have_text("The cache was cold.")
    api.post(
        f"{CHANNELS}/reply",
        json={"reply_to_message_id": sent["message_id"], "body": "Thanks; warm it."},
        headers=_as(root),
    )
    expect(page.locator("#msg-5")).to_have_attribute("data-reply-to", "4")
    assert not_reloaded(page)


def test_a_refused_spawn_appears_on_its_screen(
    sign_in: Callable[..., Page], agents: dict, api: httpx.Client
) -> None:
    root = agents["root"]
    page = sign_in("viewer")
    page.get_by_role("link", name="Spawn refusals").click()
    rows = page.locator("tr[data-refusal]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-code", "spawn_permission_denied")
    expect(rows.first.locator("[data-asked]")).to_contain_text("Too wide")
    mark(page)
    _spawn(api, root, 403, ttl_seconds=7200)
    expect(rows).to_have_count(2)
    expect(rows.first).to_have_attribute("data-code", "spawn_limit_exceeded")
    expect(rows.first.locator("[data-asked]")).to_contain_text("7200")
    assert not_reloaded(page)
    rows.first.get_by_role("link", name=root["session"]["name"]).click()
    expect(page.locator("h1")).to_have_text(root["session"]["name"])


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", ["desktop", "phone"])
def test_the_runtime_screens_are_accessible_at_both_widths_and_schemes(
    new_context, tokens, agents: dict, screenshots, width: str, scheme: str
) -> None:
    screens = {
        "sessions": "/console/sessions",
        "session": f"/console/sessions/{agents['child']['session']['id']}",
        "channels": "/console/channels",
        "channel": f"/console/channels/{agents['channel']}",
        "spawn-refusals": "/console/spawn-refusals",
    }
    check_screens(new_context, tokens("owner"), screens, screenshots, width, scheme)
