"""The operations screens' in-process tests' ways in (test_tickets_http.py and
test_changes_audit_http.py import them): people signed in with their own cookie jar
under a name and a role, tickets and change requests made through the REST API, and
what a page shows of them."""

import re
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from conftest import JWT_SECRET
from signed_in import BASE, SAME_ORIGIN
from starlette.applications import Starlette

from api.auth import mint_token

TICKETS = "/api/tickets"
CHANGES = "/api/changes"


def _token(tenant: str, role: str, subject: str) -> str:
    return mint_token(JWT_SECRET, subject=subject, roles=[role], tenant_id=tenant)


async def _sign_in(client: httpx.AsyncClient, tenant: str, role: str, subject: str) -> None:
    response = await client.post(
        "/console/sign-in",
        data={"token": _token(tenant, role, subject), "next": "/console/tickets"},
        headers=SAME_ORIGIN,
    )
    assert response.status_code == 303, response.text


@pytest.fixture
async def person(app: Starlette, tenant: str) -> AsyncIterator[Callable]:
    """A signed-in browser (its own cookie jar) for `role` named `subject`."""
    clients: list[httpx.AsyncClient] = []

    async def signed_in(role: str = "operator", subject: str = "olga", tenant_id: str = tenant):
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)
        clients.append(client)
        await _sign_in(client, tenant_id, role, subject)
        return client

    yield signed_in
    for client in clients:
        await client.aclose()


@pytest.fixture
def ticket(http: httpx.AsyncClient, auth: Callable) -> Callable:
    async def create(tenant_id: str | None = None, **fields: object) -> dict:
        body = {"title": "Phishing report", "description": "A user forwarded a mail.", **fields}
        response = await http.post(TICKETS, json=body, headers=auth(tenant_id=tenant_id))
        assert response.status_code == 201, response.text
        return response.json()["ticket"]

    return create


@pytest.fixture
def change(http: httpx.AsyncClient, auth: Callable) -> Callable:
    async def request(ticket_id: str, subject: str = "rita", **fields: object) -> dict:
        body = {
            "ticket_id": ticket_id,
            "action": "block_url",
            "target": "https://example.invalid/phish",
            "reason": "Confirmed phishing URL.",
            "risk_level": "medium",
            **fields,
        }
        response = await http.post(f"{CHANGES}/request", json=body, headers=auth(subject=subject))
        assert response.status_code == 201, response.text
        return response.json()["change"]

    return request


def ids(page: httpx.Response, attribute: str) -> list[str]:
    return re.findall(rf'{attribute}="([0-9a-f-]{{36}})"', page.text)


def refusal(page: httpx.Response) -> tuple[str, str] | None:
    found = re.search(r'id="refused" data-status-code="(\d+)" data-code="(\w+)"', page.text)
    return (found.group(1), found.group(2)) if found else None
