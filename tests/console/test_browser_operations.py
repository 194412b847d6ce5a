"""The operations screens in Chromium against a real `workbench up`: a person filters
the tickets, opens one and adds a note, which the ticket's timeline then shows with its
source; a change requested by one operator is refused to that operator (the refusal in
words on the change's page) and approved by another; the audit feed is filtered, and
"Verify chain" says the chain holds, then, once a record is altered in Postgres behind
the ledger's back, names that record. Then axe-core on every new screen at both widths
and colour schemes, and their screenshots.

Its own module, so its own stack (module-scoped, as `world.py` explains): `workbench up`
here runs on a database of the tests' embedded Postgres (DATABASE_URL), so the test can
reach the audit trail directly, as an intruder with database access would."""

import asyncio
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import pytest
from conftest import JWT_SECRET
from playwright.sync_api import Page, expect
from process_helpers import Workbench
from world import *  # noqa: F403 - the module's fixtures: browser, api, tokens, ...
from world import TENANT, check_screens, serious

TICKETS = "/api/tickets"
CHANGES = "/api/changes"


@pytest.fixture(scope="module")
def database(make_database: Callable[[], str]) -> str:
    return make_database()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, database: str) -> Iterator[Workbench]:
    """`workbench up` with the default lanes, on the test's own database."""
    root = tmp_path_factory.mktemp("console-operations")
    workbench = Workbench(
        root / "data",
        root / "workbench.log",
        extra_env={"DATABASE_URL": database, "WORKBENCH_JWT_SECRET": JWT_SECRET},
    )
    workbench.start()
    yield workbench
    code, leftover = workbench.stop()
    assert code == 0 and not leftover, workbench.output()[-3000:]


@pytest.fixture(scope="module")
def secret(stack: Workbench) -> str:
    """With DATABASE_URL set, `workbench up` verifies tokens with the secret it is given."""
    return JWT_SECRET


def execute(database: str, statement: str, *args: Any) -> str:
    """One statement on the stack's database, from a thread of its own: Playwright's
    sync API holds this thread's event loop."""

    async def run() -> str:
        connection = await asyncpg.connect(database)
        try:
            return await connection.execute(statement, *args)
        finally:
            await connection.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result()


def _as(tokens: Callable[..., str], subject: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens('operator', subject=subject)}"}


@pytest.fixture(scope="module")
def tickets(api: httpx.Client) -> dict[str, dict]:
    made = {}
    for key, body in (
        ("mail", {"title": "Mail gateway drops messages", "priority": "P1"}),
        ("laptop", {"title": "New laptop for Ann", "ticket_class": "UserRequest", "priority": 4}),
        ("vpn", {"title": "VPN disconnects every hour", "priority": 2}),
    ):
        response = api.post(TICKETS, json={"description": "Reported by the service desk.", **body})
        assert response.status_code == 201, response.text
        made[key] = response.json()["ticket"]
    attached = api.post(
        f"{TICKETS}/{made['mail']['id']}/attachments",
        json={"filename": "bounce.eml", "size_bytes": 5120, "storage_ref": "s3://mail/bounce"},
    )
    assert attached.status_code == 201, attached.text
    return made


# The steering events an agent's ticket shows, as the agent lifecycle and the worker
# leave them: (body, state, the columns that state sets).
STEERING = (
    (
        "Check the TLS certificate first.",
        "acknowledged",
        "deliveries = 1, delivered_attempt = 1, delivered_at = now(),"
        " acknowledged_at = now(), acknowledged_by = 'agent'",
    ),
    (
        "The vendor says the tunnel idles out after 60 min.",
        "delivered",
        "deliveries = 1, delivered_attempt = 1, delivered_at = now()",
    ),
    ("Ann is on leave until Monday.", "pending", "deliveries = 0"),
)


@pytest.fixture(scope="module")
def steered(api: httpx.Client, tickets: dict, database: str) -> dict:
    """An agent on the VPN ticket (its task waits for an approval, so it is active) with
    a steering event in each open and acknowledged state."""
    created = api.post(
        "/api/agents/tasks",
        json={
            "lane": "change-prod",
            "title": "Work the VPN ticket",
            "instructions": "Find why the VPN disconnects.",
            "mutation_level": "write_prod",
            "scope": {"rollback": "nothing to roll back: it only reads"},
        },
    )
    assert created.status_code == 201, created.text
    task = created.json()["task"]
    assert task["status"] == "awaiting_approval"
    ticket_id, agent_id = tickets["vpn"]["id"], str(uuid4())
    execute(
        database,
        "INSERT INTO ticket_agents (id, tenant_id, ticket_id, task_id, state, lane,"
        " model_provider, prompt, created_by) VALUES ($1::uuid, $2, $3::uuid, $4::uuid,"
        " 'assigned', 'change-prod', 'offline', 'Work the ticket.', 'olga')",
        agent_id,
        TENANT,
        ticket_id,
        task["id"],
    )
    execute(
        database,
        "UPDATE tickets SET agent_id = $2::uuid, agent_task_id = $3::uuid WHERE id = $1::uuid",
        ticket_id,
        agent_id,
        task["id"],
    )
    for minutes, (body, state, columns) in enumerate(STEERING):
        execute(
            database,
            "INSERT INTO steering_events (id, tenant_id, agent_id, ticket_id, source, author,"
            " body, state, expires_at, created_at) VALUES ($1::uuid, $2, $3::uuid, $4::uuid,"
            " 'dashboard', 'olga', $5, $6, now() + interval '1 day',"
            " now() - make_interval(mins => $7))",
            str(uuid4()),
            TENANT,
            agent_id,
            ticket_id,
            body,
            state,
            len(STEERING) - minutes,
        )
        execute(
            database,
            f"UPDATE steering_events SET {columns} WHERE body = $1",  # noqa: S608 - the test's
            body,
        )
    return {"ticket": tickets["vpn"], "agent_id": agent_id, "task": task}


@pytest.fixture(scope="module")
def change(api: httpx.Client, tokens: Callable[..., str], tickets: dict) -> dict:
    """A medium-risk change on the mail ticket, requested by operator rita."""
    response = api.post(
        f"{CHANGES}/request",
        json={
            "ticket_id": tickets["mail"]["id"],
            "action": "restart_service",
            "target": "host:mx01/postfix",
            "reason": "The queue is stuck; a restart flushes it.",
            "command": "systemctl restart postfix",
            "risk_level": "medium",
        },
        headers=_as(tokens, "rita"),
    )
    assert response.status_code == 201, response.text
    return response.json()["change"]


def test_filter_the_tickets_open_one_and_add_a_note(
    sign_in: Callable[..., Page], tickets: dict, api: httpx.Client
) -> None:
    mail = tickets["mail"]
    page = sign_in("operator")
    page.get_by_role("link", name="Tickets").click()
    expect(page.locator("tr[data-ticket-id]")).to_have_count(3)
    page.get_by_label("Priority").select_option("1")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/console/tickets?*priority=1*")
    expect(page.locator("tr[data-ticket-id]")).to_have_count(1)
    page.get_by_role("link", name=mail["title"]).click()

    expect(page.locator("h1")).to_have_text(mail["title"])
    expect(page.locator("#ticket-status")).to_have_attribute("data-status", "new")
    expect(page.get_by_text("bounce.eml")).to_be_visible()
    expect(page.locator("#steer-hint")).to_contain_text(
        "A note to a ticket with an active agent reaches it at its next turn"
    )
    page.get_by_label("Note", exact=True).fill("Checked the queue: 1,204 messages deferred.")
    page.get_by_label("Visibility").select_option("public")
    page.get_by_role("button", name="Add note").click()
    expect(page.locator("#done")).to_have_text("Note added.")
    note = page.locator('#notes li[data-kind="note"]')
    expect(note).to_have_count(1)
    expect(note).to_have_attribute("data-source", "dashboard")
    expect(note).to_have_attribute("data-visibility", "public")
    expect(note.locator("[data-body]")).to_have_text("Checked the queue: 1,204 messages deferred.")

    page.get_by_label("New status").select_option("in_progress")
    page.get_by_label("Reason").fill("working on it")
    page.get_by_role("button", name="Set status").click()
    expect(page.locator("#ticket-status")).to_have_attribute("data-status", "in_progress")
    read = api.get(f"{TICKETS}/{mail['id']}").json()["ticket"]
    assert read["status"] == "in_progress"


def test_a_ticket_with_an_active_agent_shows_its_steering(
    sign_in: Callable[..., Page], steered: dict
) -> None:
    page = sign_in("viewer")
    page.goto(f"/console/tickets/{steered['ticket']['id']}")
    expect(page.locator("#ticket-agent [data-agent-id]")).to_have_text(steered["agent_id"])
    rows = page.locator("#steering tr[data-steering-id]")
    expect(rows).to_have_count(len(STEERING))
    # The newest first.
    states = rows.evaluate_all("rows => rows.map(r => r.dataset.state)")
    assert states == [state for _, state, _ in reversed(STEERING)]
    expect(rows.first).to_contain_text("Ann is on leave until Monday.")
    expect(page.locator("#note-form")).to_have_count(0)  # a viewer writes no note


def test_the_requester_is_refused_and_another_operator_approves(
    sign_in: Callable[..., Page],
    new_context: Callable,
    tokens: Callable[..., str],
    change: dict,
    api: httpx.Client,
) -> None:
    requester = new_context().new_page()
    requester.goto("/console/sign-in")
    requester.get_by_label("Token").fill(tokens("operator", subject="rita"))
    requester.get_by_role("button", name="Sign in").click()
    requester.wait_for_url("**/console/tasks")
    requester.get_by_role("link", name="Changes").click()
    row = requester.locator(f'tr[data-change-id="{change["id"]}"]')
    expect(row).to_have_attribute("data-status", "pending")
    row.get_by_role("link").click()
    expect(requester.locator("#own-change")).to_be_visible()
    requester.get_by_role("button", name="Approve change").click()
    refusal = requester.get_by_role("alert")
    expect(refusal).to_contain_text("Not approved.")
    expect(refusal).to_contain_text("the requester of a change may not approve it")
    expect(requester.locator("#refused")).to_have_attribute("data-status-code", "403")
    expect(requester.locator("#change-status")).to_have_attribute("data-status", "pending")

    approver = sign_in("operator")  # olga
    approver.goto(f"/console/changes/{change['id']}")
    expect(approver.locator("#own-change")).to_have_count(0)
    approver.get_by_label("Reason").fill("maintenance window CHG-7")
    approver.get_by_role("button", name="Approve change").click()
    expect(approver.locator("#change-status")).to_have_attribute("data-status", "approved")
    expect(approver.locator('[data-approver="olga"]')).to_contain_text("maintenance window")
    expect(approver.locator("#decide-form")).to_have_count(0)
    read = api.get(f"{CHANGES}/{change['id']}").json()["change"]
    assert (read["status"], read["decided_by"]) == ("approved", "olga")

    # Decided now: the form on the requester's page, sent again, answers 409 in words.
    requester.get_by_role("button", name="Reject change").click()
    expect(requester.locator("#refused")).to_have_attribute("data-status-code", "409")
    expect(requester.get_by_role("alert")).to_contain_text(
        "cannot reject a change that is approved"
    )


def test_filter_the_audit_feed(sign_in: Callable[..., Page], change: dict) -> None:
    page = sign_in("viewer")
    page.get_by_role("link", name="Audit").click()
    expect(page.locator("#audit-feed tr[data-source]")).not_to_have_count(0)
    page.get_by_label("Source").select_option("audit")
    page.get_by_label("Action").fill("change_requested")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"/console/audit\?.*action=change_requested"))
    rows = page.locator("#audit-feed tr[data-source]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-actor", "rita")
    expect(rows.first.get_by_role("link")).to_have_attribute(
        "href", f"/console/changes/{change['id']}"
    )
    page.get_by_role("link", name="Clear").click()
    page.get_by_label("Ticket id").fill(change["ticket_id"])
    page.get_by_label("Source").select_option("note")
    page.get_by_role("button", name="Filter").click()
    # A viewer reads the public notes only: the one added on the ticket's page.
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("1,204 messages deferred")


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", ["desktop", "phone"])
def test_the_operations_screens_are_accessible_at_both_widths_and_schemes(
    new_context,
    tokens,
    tickets: dict,
    steered: dict,
    change: dict,
    screenshots,
    width: str,
    scheme: str,
) -> None:
    screens = {
        "tickets": "/console/tickets",
        "ticket": f"/console/tickets/{tickets['mail']['id']}",
        "ticket-steering": f"/console/tickets/{steered['ticket']['id']}",
        "changes": "/console/changes",
        "change": f"/console/changes/{change['id']}",
        "audit": "/console/audit",
        "audit-verify": "/console/audit/verify",
    }
    check_screens(new_context, tokens("owner"), screens, screenshots, width, scheme)


def test_verify_the_chain_then_see_where_an_altered_record_breaks_it(
    sign_in: Callable[..., Page], database: str, change: dict, screenshots
) -> None:
    page = sign_in("viewer")
    page.goto("/console/audit")
    page.get_by_role("button", name="Verify chain").click()
    chain = page.locator("#verification #chain")
    expect(chain).to_have_attribute("data-intact", "true")
    expect(chain).to_contain_text("The chain holds.")
    assert page.url.endswith("/console/audit")  # answered in place

    # The approval's record, its reason rewritten behind the ledger's back.
    altered = execute(
        database,
        "UPDATE audit_records SET detail = jsonb_set(detail, '{reason}', '\"no window\"')"
        " WHERE tenant_id = $1 AND action = 'change_approved'",
        TENANT,
    )
    assert altered == "UPDATE 1"
    seq = page.locator('#audit-feed tr[data-action="change_approved"]').get_attribute("data-key")
    page.get_by_role("button", name="Verify chain").click()
    expect(chain).to_have_attribute("data-intact", "false")
    expect(chain).to_have_attribute("data-break-seq", seq)
    expect(chain).to_have_attribute("data-break-reason", "hash_mismatch")
    expect(chain).to_contain_text(f"The chain is broken at record #{seq}")
    expect(page.locator("#broken-record")).to_contain_text("change_approved")
    expect(page.locator("#broken-record [data-field=actor]")).to_have_text("olga")
    assert serious(page) == []
    page.screenshot(path=screenshots / "audit-broken-desktop-light.png", full_page=True)
