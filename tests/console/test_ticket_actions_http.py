"""The ticket page's actions over HTTP, in process, with agents assigned through the API
and no worker running (so an agent's task stays queued until the test cancels it): a
note from the console becomes a steering event for the ticket's active agent."""

import html
import re
from collections.abc import Callable

import httpx
from operations_people import TICKETS
from operations_people import person as person  # the fixtures
from operations_people import ticket as ticket
from signed_in import SAME_ORIGIN

AGENTS = "/api/agents"


async def _assign(http: httpx.AsyncClient, auth: Callable, ticket_id: str) -> dict:
    response = await http.post(f"{TICKETS}/{ticket_id}/assign-agent", json={}, headers=auth())
    assert response.status_code == 201, response.text
    assert response.json()["task"]["status"] == "queued"
    return response.json()["agent"]


async def _finish(http: httpx.AsyncClient, auth: Callable, task_id: str) -> None:
    cancelled = await http.post(f"/api/agents/tasks/{task_id}/cancel", json={}, headers=auth())
    assert cancelled.status_code == 200, cancelled.text


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
