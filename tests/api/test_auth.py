"""Tenancy and token verification: another tenant's task does not exist; RS256 tokens
are verified against a JWKS document fetched over HTTP."""

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from api.auth import Authenticator
from api.errors import ApiError

TASKS = "/api/agents/tasks"


async def test_other_tenant_sees_nothing(http, auth, new_task) -> None:
    task = (await new_task())["task"]
    other = auth("owner", tenant_id="someone-else")
    for path in ("", "/traces", "/artifacts"):
        response = await http.get(f"{TASKS}/{task['id']}{path}", headers=other)
        assert response.status_code == 404, path
    for action in ("cancel", "approve", "retry", "dispatch"):
        response = await http.post(f"{TASKS}/{task['id']}/{action}", json={}, headers=other)
        assert response.status_code == 404, action
    assert (await http.get(TASKS, headers=other)).json()["tasks"] == []
    # Untouched by the attempts above.
    mine = await http.get(f"{TASKS}/{task['id']}", headers=auth())
    assert mine.json()["task"]["status"] == "queued"


async def test_expired_token_and_missing_tenant_are_rejected() -> None:
    authenticator = Authenticator(secret="s" * 40)
    expired = jwt.encode({"sub": "a", "tid": "t", "roles": ["owner"], "exp": 1}, "s" * 40)
    no_tenant = jwt.encode({"sub": "a", "roles": ["owner"], "exp": time.time() + 60}, "s" * 40)
    for token in (expired, no_tenant):
        with pytest.raises(ApiError) as raised:
            await authenticator.authenticate(f"Bearer {token}")
        assert raised.value.status_code == 401


async def test_a_token_accepted_once_is_refused_once_it_expires() -> None:
    # Verified tokens are remembered; the memory must not outlive the token.
    authenticator = Authenticator(secret="s" * 40)
    claims = {"sub": "a", "tid": "t", "roles": ["viewer"], "exp": int(time.time()) + 2}
    token = jwt.encode(claims, "s" * 40)
    for _ in range(2):
        assert (await authenticator.authenticate(f"Bearer {token}")).subject == "a"
    await asyncio.sleep(claims["exp"] - time.time() + 0.1)
    with pytest.raises(ApiError) as raised:
        await authenticator.authenticate(f"Bearer {token}")
    assert raised.value.status_code == 401
    forged = jwt.encode(claims, "x" * 40)  # same claims, another key: still checked
    with pytest.raises(ApiError):
        await authenticator.authenticate(f"Bearer {forged}")


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, rsa.RSAPrivateKey]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    document = json.dumps({"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(document.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/keys", key
    server.shutdown()
    server.server_close()


async def test_rs256_tokens_verified_against_jwks(jwks_server) -> None:
    url, key = jwks_server
    authenticator = Authenticator(
        jwks_url=url, audience="api://workbench", issuer="https://login.example/tenant"
    )
    claims = {
        "sub": "user-1",
        "tid": "tenant-a",
        "roles": ["operator", "viewer"],
        "aud": "api://workbench",
        "iss": "https://login.example/tenant",
        "exp": int(time.time()) + 300,
    }
    token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
    principal = await authenticator.authenticate(f"Bearer {token}")
    assert principal.subject == "user-1"
    assert principal.tenant_id == "tenant-a"
    assert principal.actor_for("operator").role == "operator"

    wrong_audience = jwt.encode(
        {**claims, "aud": "api://other"}, key, algorithm="RS256", headers={"kid": "k1"}
    )
    with pytest.raises(ApiError) as raised:
        await authenticator.authenticate(f"Bearer {wrong_audience}")
    assert raised.value.status_code == 401

    # An HS256 token signed with anything must not pass an RS256 deployment.
    forged = jwt.encode(
        claims, "a-guessed-secret-of-thirty-two-bytes!", algorithm="HS256", headers={"kid": "k1"}
    )
    with pytest.raises(ApiError):
        await authenticator.authenticate(f"Bearer {forged}")
