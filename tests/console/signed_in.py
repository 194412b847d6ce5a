"""The in-process console tests' ways in: a client with its own cookie jar (one
browser), signed in with a minted token, and the error code a page shows."""

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from conftest import JWT_SECRET
from starlette.applications import Starlette

from api.auth import mint_token

BASE = "http://workbench.test"
SAME_ORIGIN = {"origin": BASE}


@pytest.fixture
async def browser(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """A client with its own cookie jar, like one browser."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield client


def token(tenant: str, *roles: str, ttl: int = 3600) -> str:
    return mint_token(
        JWT_SECRET, subject="carol", roles=list(roles), tenant_id=tenant, ttl_seconds=ttl
    )


async def sign_in(client: httpx.AsyncClient, value: str) -> httpx.Response:
    return await client.post(
        "/console/sign-in", data={"token": value, "next": "/console/tasks"}, headers=SAME_ORIGIN
    )


def error_code(response: httpx.Response) -> str | None:
    found = re.search(r'data-error-code="(\w+)"', response.text)
    return found.group(1) if found else None
