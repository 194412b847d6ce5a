"""The ticket page's actions over HTTP, in process, with agents assigned through the API
and no worker running (so an agent's task stays queued until the test cancels it): a
note from the console becomes a steering event for the ticket's active agent; the
requester is asked a question and their answer recorded, which restores the status and
resumes the agent; the agent is stopped, woken and restarted, each offered only when the
ledger would take it, and a refusal is the API's 409 in words on the ticket's page."""

import html
import re
from collections.abc import Callable
from uuid import uuid4

import httpx
from operations_people import TICKETS, refusal
from operations_people import person as person  # the fixtures
from operations_people import ticket as ticket
from signed_in import SAME_ORIGIN, error_code

AGENTS = "/api/agents"


async def _assign(http: httpx.AsyncClient, auth: Callable, ticket_id: str) -> dict:
    response = await http.post(f"{TICKETS}/{ticket_id}/assign-agent", json={}, headers=auth())
    assert response.status_code == 201, response.text
    assert response.json()["task"]["status"] == "queued"
    return response.json()["agent"]


async def _finish(http: httpx.AsyncClient, auth: Callable, task_id: str) -> None:
    cancelled = await http.post(f"/api/agents/tasks/{task_id}/cancel", json={}, headers=auth())
    assert cancelled.status_code == 200, cancelled.text


async def _agent(http: httpx.AsyncClient, auth: Callable, agent_id: str) -> dict:
    response = await http.get(f"{AGENTS}/{agent_id}", headers=auth())
    assert response.status_code == 200, response.text
    return response.json()


async def _steering(http: httpx.AsyncClient, auth: Callable, agent_id: str) -> list[dict]:
    response = await http.get(f"{AGENTS}/{agent_id}/steering", headers=auth("viewer"))
    assert response.status_code == 200, response.text
    return response.json()["events"]


def _offered(page: httpx.Response) -> list[str]:
    """The agent lifecycle buttons the page offers, in order."""
    return re.findall(
        r'formaction="/console/tickets/[0-9a-f-]+/agents/[0-9a-f-]+/(\w+)"', page.text
    )


def _says(page: httpx.Response, words: str) -> bool:
    return words in html.unescape(page.text)


def _steering_rows(page: httpx.Response) -> list[tuple[str, str, str]]:
    return re.findall(
        r'data-steering-id="([0-9a-f-]{36})" data-state="(\w+)" data-agent-id="([0-9a-f-]{36})"',
        page.text,
    )


async def test_a_note_from_the_console_steers_the_tickets_active_agent(
    person: Callable, ticket: Callable, http: httpx.AsyncClient, auth: Callable
) -> None:
    mine = await ticket()
    agent = await _assign(http, auth, mine["id"])
    operator = await person("operator", subject="olga")
    page = await operator.get(f"/console/tickets/{mine['id']}")
    assert "This ticket has an active agent: a note reaches it at its next turn" in page.text
    assert 'id="no-steering"' in page.text

    added = await operator.post(
        f"/console/tickets/{mine['id']}/notes",
        data={"body": "Check the SPF record first.", "visibility": "internal"},
        headers=SAME_ORIGIN,
    )
    assert added.status_code == 303, added.text
    [event] = await _steering(http, auth, agent["id"])
    assert (event["source"], event["author"], event["body"]) == (
        "dashboard",
        "olga",
        "Check the SPF record first.",
    )
    assert event["state"] == "pending"  # until the agent's next model call
    shown = await operator.get(added.headers["location"])
    assert _says(shown, "The ticket's agent receives it at its next turn.")
    assert _steering_rows(shown) == [(event["id"], "pending", agent["id"])]
    row = shown.text.split(f'data-steering-id="{event["id"]}"')[1].split("</tr>")[0]
    assert "Check the SPF record first." in row and "(current)" in row

    # Its task finished, the agent is not steered: the note stays on the timeline only.
    await _finish(http, auth, agent["task_id"])
    page = await operator.get(f"/console/tickets/{mine['id']}")
    assert "This ticket has no active agent now" in page.text
    await operator.post(
        f"/console/tickets/{mine['id']}/notes", data={"body": "Too late."}, headers=SAME_ORIGIN
    )
    assert [e["id"] for e in await _steering(http, auth, agent["id"])] == [event["id"]]


async def test_ask_the_requester_then_record_the_answer_which_resumes_the_agent(
    person: Callable, ticket: Callable, http: httpx.AsyncClient, auth: Callable
) -> None:
    mine = await ticket()
    url = f"/console/tickets/{mine['id']}"
    moved = await http.post(
        f"{TICKETS}/{mine['id']}/status", json={"status": "in_progress"}, headers=auth()
    )
    assert moved.status_code == 200, moved.text
    agent = await _assign(http, auth, mine["id"])
    await _finish(http, auth, agent["task_id"])
    operator = await person("operator", subject="olga")
    page = await operator.get(url)
    assert 'id="ask-form"' in page.text and 'id="answer-form"' not in page.text

    empty = await operator.post(f"{url}/request-info", data={"question": " "}, headers=SAME_ORIGIN)
    assert (empty.status_code, error_code(empty)) == (400, "invalid_request")
    asked = await operator.post(
        f"{url}/request-info", data={"question": "Which mailbox bounces?"}, headers=SAME_ORIGIN
    )
    assert asked.status_code == 303, asked.text
    assert asked.headers["location"] == f"{url}?done=request-info"
    read = (await http.get(f"{TICKETS}/{mine['id']}", headers=auth())).json()["ticket"]
    assert (read["status"], read["previous_status"]) == ("awaiting_user_response", "in_progress")
    notes = (await http.get(f"{TICKETS}/{mine['id']}/notes", headers=auth())).json()["notes"]
    question = notes[-1]
    assert (question["kind"], question["visibility"], question["body"]) == (
        "request_info",
        "public",
        "Which mailbox bounces?",
    )
    page = await operator.get(asked.headers["location"])
    assert _says(page, "Question sent: the ticket awaits the requester's answer.")
    assert 'id="answer-form"' in page.text and 'id="ask-form"' not in page.text
    assert "the ticket goes back to in_progress" in page.text
    again = await operator.post(
        f"{url}/request-info", data={"question": "And which domain?"}, headers=SAME_ORIGIN
    )
    assert (again.status_code, refusal(again)) == (409, ("409", "conflict"))
    assert "Question not sent." in again.text
    assert "cannot ask about a ticket that is awaiting_user_response" in again.text

    answered = await operator.post(
        f"{url}/user-response",
        data={"body": "ops@example.com, since 09:00", "author": "ann"},
        headers=SAME_ORIGIN,
    )
    assert answered.status_code == 303, answered.text
    read = (await http.get(f"{TICKETS}/{mine['id']}", headers=auth())).json()["ticket"]
    assert read["status"] == "in_progress"
    notes = (await http.get(f"{TICKETS}/{mine['id']}/notes", headers=auth())).json()["notes"]
    answer = next(n for n in notes if n["kind"] == "user_response")
    assert (answer["author"], answer["source"]) == ("ann", "user-response")
    # The agent, its last task finished, is woken with the answer waiting for its run.
    woken = await _agent(http, auth, agent["id"])
    assert [t["reason"] for t in woken["tasks"]] == ["user_response", "assigned"]
    assert woken["agent"]["status"] == "queued"
    [event] = await _steering(http, auth, agent["id"])
    assert (event["source"], event["state"]) == ("user-response", "pending")
    page = await operator.get(answered.headers["location"])
    assert "Answer recorded: the ticket is in_progress again. Its agent receives" in page.text
    assert _steering_rows(page) == [(event["id"], "pending", agent["id"])]

    late = await operator.post(f"{url}/user-response", data={"body": "ok"}, headers=SAME_ORIGIN)
    api = await http.post(
        f"{TICKETS}/{mine['id']}/user-response", json={"body": "ok"}, headers=auth()
    )
    assert (late.status_code, refusal(late)) == (409, ("409", "conflict"))
    assert _says(late, api.json()["error"]["message"])
    assert "Traceback" not in late.text and 'id="answer-form"' not in late.text


async def test_stop_wake_and_restart_are_offered_when_the_ledger_would_take_them(
    person: Callable, ticket: Callable, http: httpx.AsyncClient, auth: Callable
) -> None:
    mine = await ticket()
    url = f"/console/tickets/{mine['id']}"
    agent = await _assign(http, auth, mine["id"])
    operator = await person("operator", subject="olga")
    page = await operator.get(url)
    assert _offered(page) == ["restart", "stop"]  # at work: no wake

    # The page offered no wake; sent anyway, the ledger refuses it, in the API's words.
    early = await operator.post(
        f"{url}/agents/{agent['id']}/wake", data={"reason": "try"}, headers=SAME_ORIGIN
    )
    api = await http.post(f"{AGENTS}/{agent['id']}/wake", json={}, headers=auth())
    assert api.status_code == 409
    assert (early.status_code, refusal(early)) == (409, ("409", "conflict"))
    assert "Agent not woken." in early.text and _says(early, api.json()["error"]["message"])
    assert _offered(early) == ["restart", "stop"]

    await _finish(http, auth, agent["task_id"])
    page = await operator.get(url)
    assert _offered(page) == ["wake", "restart", "stop"]
    woken = await operator.post(
        f"{url}/agents/{agent['id']}/wake",
        data={"reason": "the mailbox is back"},
        headers=SAME_ORIGIN,
    )
    assert woken.status_code == 303, woken.text
    assert woken.headers["location"] == f"{url}?done=wake"
    after_wake = await _agent(http, auth, agent["id"])
    assert [t["reason"] for t in after_wake["tasks"]] == ["wake", "assigned"]
    assert after_wake["agent"]["status"] == "queued"
    page = await operator.get(woken.headers["location"])
    assert "Agent woken: it has a new task." in page.text
    assert _offered(page) == ["restart", "stop"]

    await operator.post(f"{url}/notes", data={"body": "Look at the MX."}, headers=SAME_ORIGIN)
    restarted = await operator.post(
        f"{url}/agents/{agent['id']}/restart", data={"reason": "stuck"}, headers=SAME_ORIGIN
    )
    assert restarted.status_code == 303, restarted.text
    detail = (await http.get(f"{TICKETS}/{mine['id']}", headers=auth())).json()
    new_id = detail["agent"]["agent_id"]
    assert new_id not in (None, agent["id"])
    gone = (await _agent(http, auth, agent["id"]))["agent"]
    assert (gone["status"], gone["stop_reason"]) == ("stopped", "restarted")
    [old_event] = await _steering(http, auth, agent["id"])
    [new_event] = await _steering(http, auth, new_id)
    assert (old_event["state"], new_event["state"]) == ("superseded", "pending")
    page = await operator.get(restarted.headers["location"])
    assert "Agent restarted" in page.text and f'data-agent-id="{new_id}"' in page.text
    assert sorted(_steering_rows(page)) == sorted(
        [(old_event["id"], "superseded", agent["id"]), (new_event["id"], "pending", new_id)]
    )
    assert _offered(page) == ["restart", "stop"]

    stopped = await operator.post(
        f"{url}/agents/{new_id}/stop", data={"reason": "wrong ticket"}, headers=SAME_ORIGIN
    )
    assert stopped.status_code == 303, stopped.text
    assert (await _agent(http, auth, new_id))["agent"]["status"] == "stopped"
    [closed] = await _steering(http, auth, new_id)
    assert (closed["state"], closed["closed_reason"]) == ("expired", "agent_stopped")
    page = await operator.get(stopped.headers["location"])
    assert "Agent stopped" in page.text and "No agent works this ticket now." in page.text
    assert _offered(page) == [] and 'id="agent-form"' not in page.text
    # A form left open on another page: the agent is stopped already.
    again = await operator.post(f"{url}/agents/{new_id}/stop", headers=SAME_ORIGIN)
    assert (again.status_code, refusal(again)) == (409, ("409", "conflict"))
    assert "Agent not stopped." in again.text and "the agent is already stopped" in again.text
    for action in ("wake", "restart"):
        stale = await operator.post(f"{url}/agents/{new_id}/{action}", headers=SAME_ORIGIN)
        assert (stale.status_code, refusal(stale)) == (409, ("409", "conflict")), action
        assert "Traceback" not in stale.text


async def test_the_ticket_actions_are_refused_to_a_viewer_elsewhere_and_for_other_agents(
    person: Callable, ticket: Callable, http: httpx.AsyncClient, auth: Callable, tenant: str
) -> None:
    mine, other = await ticket(), await ticket(title="Another ticket")
    agent = await _assign(http, auth, mine["id"])
    others_agent = await _assign(http, auth, other["id"])
    url = f"/console/tickets/{mine['id']}"
    viewer = await person("viewer")
    page = await viewer.get(url)
    assert _offered(page) == [] and 'id="ask-form"' not in page.text
    for path, data in (
        (f"{url}/request-info", {"question": "forged"}),
        (f"{url}/user-response", {"body": "forged"}),
        (f"{url}/agents/{agent['id']}/stop", {}),
        (f"{url}/agents/{agent['id']}/restart", {}),
    ):
        forged = await viewer.post(path, data=data, headers=SAME_ORIGIN)
        assert (forged.status_code, error_code(forged)) == (403, "forbidden"), path
    operator = await person("operator")
    cross_site = await operator.post(
        f"{url}/agents/{agent['id']}/stop", headers={"origin": "https://evil.example"}
    )
    assert (cross_site.status_code, error_code(cross_site)) == (403, "cross_origin_refused")
    stranger = await person("operator", tenant_id=f"{tenant}-other")
    for client, path in (
        (operator, f"{url}/agents/{others_agent['id']}/stop"),  # not this ticket's agent
        (operator, f"{url}/agents/{uuid4()}/stop"),
        (operator, f"{url}/agents/{agent['id']}/pause"),
        (operator, f"{url}/agents/not-a-uuid/stop"),
        (stranger, f"{url}/agents/{agent['id']}/stop"),
        (stranger, f"{url}/request-info"),
    ):
        refused = await client.post(path, data={"question": "hi"}, headers=SAME_ORIGIN)
        assert (refused.status_code, error_code(refused)) == (404, "not_found"), path
    for agent_id in (agent["id"], others_agent["id"]):
        assert (await _agent(http, auth, agent_id))["agent"]["state"] == "assigned"
