"""Two `workbench api` replicas on one database: a session long-polling `recv` on one
replica is woken by a message another session sends through the other (the wake-up is
Postgres' NOTIFY, so neither replica needs to know the other); concurrent spawns through
both cannot overshoot the parent's max_children."""

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import JWT_SECRET
from process_helpers import ApiServer, auth

from api.auth import mint_token

TENANT = "replicas"


@pytest.fixture
def replicas(tmp_path: Path, make_database) -> Iterator[list[ApiServer]]:
    env = {"DATABASE_URL": make_database(), "WORKBENCH_JWT_SECRET": JWT_SECRET}
    servers = [
        ApiServer(tmp_path / name, tmp_path / f"{name}.log", extra_env=env)
        for name in ("api-a", "api-b")
    ]
    started: list[ApiServer] = []
    try:
        for server in servers:  # one at a time: the first applies the migrations
            server.start()
            started.append(server)
        yield servers
    finally:
        codes = [server.stop()[0] for server in started]
    assert codes == [0] * len(servers), [server.output() for server in servers]


def _claim(client: httpx.Client, tenant: str = TENANT) -> dict:
    operator = auth(mint_token(JWT_SECRET, subject="olga", roles=["operator"], tenant_id=tenant))
    worker = auth(mint_token(JWT_SECRET, subject="pod", roles=["worker"], tenant_id=tenant))
    task = {"lane": "analysis", "title": "t", "instructions": "x"}
    assert client.post("/api/agents/tasks", json=task, headers=operator).status_code == 201
    claim = client.post("/api/agent/tasks/claim-next", json={}, headers=worker).json()["claim"]
    assert claim is not None
    return claim


def test_a_recv_waiting_on_one_replica_is_woken_by_a_send_through_another(
    replicas: list[ApiServer],
) -> None:
    a, b = replicas
    with (
        httpx.Client(base_url=a.base_url, timeout=30) as on_a,
        httpx.Client(base_url=b.base_url, timeout=30) as on_b,
    ):
        receiver, sender = _claim(on_a), _claim(on_b)
        receiving = {"Authorization": f"Bearer {receiver['session_credential']}"}
        sending = {"Authorization": f"Bearer {sender['session_credential']}"}
        channels = on_a.get("/api/agent/channels", headers=receiving).json()["channels"]
        [room] = [channel["id"] for channel in channels if channel["channel"] == "ops-room"]

        def wait_for_message() -> tuple[list[dict], float]:
            response = on_a.get(
                f"/api/agent/channels/{room}/recv",
                params={"wait": "true", "wait_seconds": 20},
                headers=receiving,
            )
            assert response.status_code == 200, response.text
            return response.json()["messages"], time.monotonic()

        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(wait_for_message)
            # The receive is waiting on replica A. Its fallback poll reads again 2 s
            # after it started: sent now, only the notification brings it within 0.8 s.
            time.sleep(0.7)
            assert not waiting.done()
            sent_at = time.monotonic()
            body = {"body": {"found": "db01"}, "metadata": {"message_kind": "result"}}
            sent = on_b.post(f"/api/agent/channels/{room}/send", json=body, headers=sending)
            assert sent.status_code == 200, sent.text
            messages, received_at = waiting.result(timeout=20)
    assert [m["message_id"] for m in messages] == [sent.json()["message"]["message_id"]]
    assert messages[0]["from_session_id"] == sender["session"]["id"]
    assert received_at - sent_at < 0.8, received_at - sent_at


def test_spawns_through_two_replicas_at_once_stay_within_max_children(
    replicas: list[ApiServer],
) -> None:
    a, b = replicas
    with (
        httpx.Client(base_url=a.base_url, timeout=30) as on_a,
        httpx.Client(base_url=b.base_url, timeout=30) as on_b,
    ):
        parent = _claim(on_a, "spawners")
        headers = {"Authorization": f"Bearer {parent['session_credential']}"}

        def spawn(n: int) -> int:
            client = on_a if n % 2 else on_b
            body = {"instructions": f"part {n}"}
            return client.post("/api/agent/spawn", json=body, headers=headers).status_code

        with ThreadPoolExecutor(12) as pool:
            statuses = sorted(pool.map(spawn, range(12)))
        me = on_b.get("/api/agent/me", headers=headers).json()["me"]
    allowed = me["limits"]["max_children"]
    assert statuses == [200] * allowed + [403] * (12 - allowed)
