"""The ticket page's actions in Chromium against a real `workbench up`, with an agent
assigned through the API on a profile whose lane (`external`) no worker of the stack
serves, so its task stays queued until the test finishes it: a note from the console
becomes the agent's steering event; the requester is asked a question and their answer
recorded; the agent is woken once its task has finished, restarted, and stopped, and a
form left open on another tab answers the API's 409 in words. Then axe-core on the
ticket page in each of its states, at both widths and colour schemes.

Its own module, so its own stack and browser (module-scoped, as `world.py` explains)."""

import re
from collections.abc import Callable

import httpx
import pytest
from planted_secrets import leaked
from playwright.sync_api import Page, expect
from world import *  # noqa: F403 - the module's fixtures: stack, browser, api, ...
from world import DESKTOP, EXTERNAL, PHONE, serious

TICKETS = "/api/tickets"
AGENTS = "/api/agents"
HELD_PROFILE = "held"
STEERED = re.compile("pending|delivered|acknowledged")


@pytest.fixture(scope="module")
def held_profile(api: httpx.Client) -> str:
    """A profile whose agents run in lane `external`, which no worker here takes."""
    # Held agents stay live: room for every one the module starts.
    settings = {
        "profiles": {HELD_PROFILE: {"lane": EXTERNAL, "description": "Held."}},
        "max_concurrent_agents": 50,
    }
    stored = api.put(f"{AGENTS}/config", json=settings)
    assert stored.status_code == 200, stored.text
    return HELD_PROFILE


def _ticket_with_agent(api: httpx.Client, profile: str, title: str) -> tuple[dict, dict]:
    made = api.post(TICKETS, json={"title": title, "description": "Reported by Ann."})
    assert made.status_code == 201, made.text
    ticket = made.json()["ticket"]
    assigned = api.post(f"{TICKETS}/{ticket['id']}/assign-agent", json={"profile": profile})
    assert assigned.status_code == 201, assigned.text
    assert assigned.json()["task"]["status"] == "queued"
    return ticket, assigned.json()["agent"]


def _finish(api: httpx.Client, task_id: str) -> None:
    cancelled = api.post(f"/api/agents/tasks/{task_id}/cancel", json={})
    assert cancelled.status_code == 200, cancelled.text


def _agent(api: httpx.Client, agent_id: str) -> dict:
    return api.get(f"{AGENTS}/{agent_id}").json()


def test_a_note_steers_the_agent_then_ask_the_requester_and_record_the_answer(
    sign_in: Callable[..., Page], api: httpx.Client, held_profile: str
) -> None:
    ticket, agent = _ticket_with_agent(api, held_profile, "Mail bounces for one partner")
    page = sign_in("operator")
    page.goto(f"/console/tickets/{ticket['id']}")
    expect(page.locator("#ticket-agent [data-agent-id]")).to_have_text(agent["id"])
    expect(page.locator("#steer-hint")).to_contain_text("This ticket has an active agent")
    expect(page.get_by_role("button", name="Wake agent")).to_have_count(0)  # at work

    page.get_by_label("Note", exact=True).fill("Check the partner's SPF record first.")
    page.get_by_role("button", name="Add note").click()
    expect(page.locator("#done")).to_contain_text("The ticket's agent receives it")
    row = page.locator(f'#steering tr[data-agent-id="{agent["id"]}"]')
    expect(row).to_have_count(1)
    expect(row).to_have_attribute("data-state", STEERED)
    expect(row).to_contain_text("Check the partner's SPF record first.")
    [event] = api.get(f"{AGENTS}/{agent['id']}/steering").json()["events"]
    assert event["id"] == row.get_attribute("data-steering-id")
    assert (event["source"], event["author"]) == ("dashboard", "olga")
    assert STEERED.fullmatch(event["state"])

    page.get_by_label("Question").fill("Which partner domain bounces?")
    page.get_by_role("button", name="Ask the requester").click()
    expect(page.locator("#done")).to_have_text(
        "Question sent: the ticket awaits the requester's answer."
    )
    expect(page.locator("#ticket-status")).to_have_attribute(
        "data-status", "awaiting_user_response"
    )
    expect(page.locator('#notes li[data-kind="request_info"]')).to_have_attribute(
        "data-visibility", "public"
    )
    expect(page.locator("#ask-form")).to_have_count(0)
    assert serious(page) == []

    page.get_by_label("Answer", exact=True).fill("partner.example, since 09:00")
    page.get_by_label("Answered by").fill("ann")
    page.get_by_role("button", name="Record answer").click()
    expect(page.locator("#done")).to_contain_text("Answer recorded: the ticket is new again.")
    expect(page.locator("#ticket-status")).to_have_attribute("data-status", "new")
    answer = page.locator('#notes li[data-kind="user_response"]')
    expect(answer).to_have_attribute("data-source", "user-response")
    expect(answer).to_contain_text("ann")
    # The answer reaches the agent too, as a steering event of its own.
    expect(page.locator(f'#steering tr[data-agent-id="{agent["id"]}"]')).to_have_count(2)
    sources = [e["source"] for e in api.get(f"{AGENTS}/{agent['id']}/steering").json()["events"]]
    assert sources == ["user-response", "dashboard"]


def test_wake_restart_and_stop_the_agent_and_a_stale_form_says_why_it_is_refused(
    sign_in: Callable[..., Page], api: httpx.Client, held_profile: str
) -> None:
    ticket, agent = _ticket_with_agent(api, held_profile, "VPN drops every hour")
    url = f"/console/tickets/{ticket['id']}"
    _finish(api, agent["task_id"])
    page = sign_in("operator")
    page.goto(url)
    expect(page.locator("#lifecycle-hint")).to_contain_text("Its last task has finished")
    page.get_by_label("Why").fill("the tunnel logs are in")
    page.get_by_role("button", name="Wake agent").click()
    expect(page.locator("#done")).to_have_text("Agent woken: it has a new task.")
    expect(page.get_by_role("button", name="Wake agent")).to_have_count(0)
    woken = _agent(api, agent["id"])
    assert [t["reason"] for t in woken["tasks"]] == ["wake", "assigned"]
    assert woken["agent"]["status"] == "queued"

    # A second tab, left open on the agent as it is now.
    stale = sign_in("operator")
    stale.goto(url)
    expect(stale.get_by_role("button", name="Stop agent")).to_be_visible()

    page.get_by_label("Why").fill("stuck on a tool call")
    page.get_by_role("button", name="Restart agent").click()
    expect(page.locator("#done")).to_contain_text("Agent restarted")
    replacement = page.locator("#ticket-agent [data-agent-id]")
    expect(replacement).not_to_have_text(agent["id"])
    assert _agent(api, agent["id"])["agent"]["stop_reason"] == "restarted"

    stale.get_by_role("button", name="Stop agent").click()
    refusal = stale.get_by_role("alert")
    expect(refusal).to_contain_text("Agent not stopped.")
    expect(refusal).to_contain_text("the agent is already stopped")
    expect(stale.locator("#refused")).to_have_attribute("data-status-code", "409")
    assert serious(stale) == []

    new_id = replacement.inner_text()
    page.get_by_role("button", name="Stop agent").click()
    expect(page.locator("#done")).to_contain_text("Agent stopped")
    expect(page.locator("#ticket-agent")).to_contain_text("No agent works this ticket now.")
    expect(page.locator("#agent-form")).to_have_count(0)
    stopped = _agent(api, new_id)["agent"]
    assert (stopped["status"], stopped["stop_reason"]) == ("stopped", "stopped")


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", ["desktop", "phone"])
def test_the_ticket_page_with_its_forms_is_accessible(
    new_context,
    tokens,
    api: httpx.Client,
    held_profile: str,
    screenshots,
    width: str,
    scheme: str,
) -> None:
    at_work, _ = _ticket_with_agent(api, held_profile, f"Printer offline ({width}, {scheme})")
    waiting, finished = _ticket_with_agent(api, held_profile, f"Disk full ({width}, {scheme})")
    _finish(api, finished["task_id"])
    asked = api.post(f"{TICKETS}/{waiting['id']}/request-info", json={"question": "Which host?"})
    assert asked.status_code == 200, asked.text
    context = new_context(viewport=DESKTOP if width == "desktop" else PHONE, color_scheme=scheme)
    page = context.new_page()
    page.goto("/console/sign-in")
    page.get_by_label("Token").fill(tokens("operator"))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console/tasks")
    problems = []
    for name, ticket, form in (
        ("ticket-agent-at-work", at_work, "#ask-form"),
        ("ticket-awaiting-answer", waiting, "#answer-form"),
    ):
        page.goto(f"/console/tickets/{ticket['id']}")
        expect(page.locator(form)).to_be_visible()
        expect(page.locator("#agent-form")).to_be_visible()
        problems += [f"{name}: {problem}" for problem in serious(page)]
        assert leaked(page.content()) == [], name
        page.screenshot(path=screenshots / f"{name}-{width}-{scheme}.png", full_page=True)
    assert problems == []
