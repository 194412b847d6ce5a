"""The ticket page's actions over HTTP, in process, with agents assigned through the API
and no worker running (so an agent's task stays queued until the test cancels it): a
note from the console becomes a steering event for the ticket's active agent; the
requester is asked a question and their answer recorded, which restores the status and
resumes the agent; a refusal is the API's 409 in words on the ticket's page."""

import html
import re
from collections.abc import Callable

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
