"""Long-polling channel receives waiting together (`ledger/channel_waits.py`), over real
HTTP against two API instances on one database, each with its own waits and LISTEN
connection, as two replicas are: every waiting session gets every message meant for it
exactly once and in order (and nothing else: not its own, not one to another session),
even with two receives of one session on both replicas at once; a client that goes away
while it waits leaves its message unread, also when it goes while its read position is
being moved past the message (by the replica's reader or by its own receive); and a
receive that finds nothing new writes nothing."""

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import uvicorn
from conftest import settings_for_tests
from prometheus_client import REGISTRY

from api.app import create_app

CLAIM_NEXT = "/api/agent/tasks/claim-next"
CHANNELS = "/api/agent/channels"
RECEIVERS = 8
BURST = 3  # messages sent at once, more than a receive takes (LIMIT)
LIMIT = 2


@pytest.fixture(scope="module")
async def replicas(database_url: str, pool, artifact_dir) -> AsyncIterator[list[str]]:
    """Two API instances served by uvicorn on 127.0.0.1; `pool` has migrated the database."""
    urls, stops = [], []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WORKBENCH_ARTIFACT_DIR", str(artifact_dir))
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(2):
                app = create_app(settings_for_tests(), database_url=database_url)
                await stack.enter_async_context(app.router.lifespan_context(app))
                sock = socket.socket()
                sock.bind(("127.0.0.1", 0))
                server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
                serving = asyncio.create_task(server.serve(sockets=[sock]))
                while not server.started:
                    await asyncio.sleep(0.01)
                urls.append(f"http://127.0.0.1:{sock.getsockname()[1]}")
                stops.append((server, serving, sock))
            yield urls
            for server, serving, sock in stops:
                server.should_exit = True
                await serving
                sock.close()


@pytest.fixture
def claimed(http, auth, new_task) -> Callable[[], "asyncio.Future[dict]"]:
    async def claim() -> dict:
        await new_task()
        response = await http.post(CLAIM_NEXT, json={"lanes": ["analysis"]}, headers=auth("worker"))
        assert response.status_code == 200, response.text
        return response.json()["claim"]

    return claim  # type: ignore[return-value]


def _as(claim: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {claim['session_credential']}"}


async def _room(client: httpx.AsyncClient, claim: dict) -> str:
    response = await client.get(CHANNELS, headers=_as(claim))
    assert response.status_code == 200, response.text
    [room] = [c["id"] for c in response.json()["channels"] if c["channel"] == "ops-room"]
    return room


async def _send(client: httpx.AsyncClient, claim: dict, room: str, body: object) -> dict:
    response = await client.post(
        f"{CHANNELS}/{room}/send",
        json={"body": body, "metadata": {"message_kind": "status"}},
        headers=_as(claim),
    )
    assert response.status_code == 200, response.text
    message: dict = response.json()["message"]
    return message


async def _reply(client: httpx.AsyncClient, claim: dict, message_id: str, body: object) -> int:
    response = await client.post(
        f"{CHANNELS}/reply",
        json={"reply_to_message_id": message_id, "body": body},
        headers=_as(claim),
    )
    assert response.status_code == 200, response.text
    return response.json()["message"]["seq"]


async def _recv(client: httpx.AsyncClient, claim: dict, room: str, **params) -> list[dict]:
    response = await client.get(f"{CHANNELS}/{room}/recv", params=params, headers=_as(claim))
    assert response.status_code == 200, response.text
    return response.json()["messages"]


def _waiting() -> float:
    return REGISTRY.get_sample_value("workbench_channel_receives_waiting") or 0.0


async def _until(condition: Callable[[], bool], seconds: float = 15.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.02)


async def test_every_waiter_on_both_replicas_gets_each_message_once_in_order(
    replicas, claimed
) -> None:
    sender, *receivers = [await claimed() for _ in range(RECEIVERS + 1)]
    clients = [httpx.AsyncClient(base_url=url, timeout=30) for url in replicas]
    room = await _room(clients[0], sender)
    # Per session, what each of its two receives (one on each replica) got, in order.
    got: dict[int, list[list[int]]] = {n: [[], []] for n in range(len(receivers) + 1)}
    expected: list[int] = []
    sent: list[dict] = []
    baseline = _waiting()

    async def receive(n: int, claim: dict, replica: int) -> None:
        while True:
            for message in await _recv(
                clients[replica], claim, room, wait="true", wait_seconds=20, limit=LIMIT
            ):
                got[n][replica].append(message["seq"])

    def everyone_has(seqs: list[int]) -> bool:
        return all(sorted(a + b) == seqs for n, (a, b) in got.items() if n < len(receivers))

    # The sender waits too: it must never be handed its own messages.
    sessions = [*receivers, sender]
    loops = [
        asyncio.create_task(receive(n, claim, replica))
        for n, claim in enumerate(sessions)
        for replica in (0, 1)
    ]
    try:
        await _until(lambda: _waiting() - baseline == 2 * len(sessions))
        for n in range(3):  # one at a time, each once every receive waits again
            sent.append(await _send(clients[n % 2], sender, room, {"n": n}))
            expected.append(sent[-1]["seq"])
            await _until(lambda: everyone_has(expected))
        for n in range(BURST):
            expected.append((await _send(clients[n % 2], sender, room, {"burst": n}))["seq"])
        await _until(lambda: everyone_has(expected))
        # A reply goes to the sender alone, also waiting on both replicas.
        answer = await _reply(clients[1], receivers[0], sent[0]["message_id"], "an answer")
        await _until(lambda: sorted(got[len(receivers)][0] + got[len(receivers)][1]) == [answer])
    finally:
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
    for n, (first, second) in got.items():
        assert first == sorted(set(first)) and second == sorted(set(second))  # in order
        if n < len(receivers):
            assert sorted(first + second) == expected  # each exactly once, none lost
    # The receives cancelled while waiting kept nothing: nothing is left unread either.
    await _until(lambda: _waiting() == baseline)
    for claim in receivers:
        assert await _recv(clients[0], claim, room) == []
    for client in clients:
        await client.aclose()


async def test_a_client_gone_while_waiting_leaves_its_message_unread(replicas, claimed) -> None:
    alice, bob = await claimed(), await claimed()
    baseline = _waiting()
    async with httpx.AsyncClient(base_url=replicas[0], timeout=30) as client:
        room = await _room(client, alice)
        waiting = asyncio.create_task(_recv(client, bob, room, wait="true", wait_seconds=20))
        await _until(lambda: _waiting() == baseline + 1)
        waiting.cancel()  # the connection is dropped mid-request
        await asyncio.gather(waiting, return_exceptions=True)
    await _until(lambda: _waiting() == baseline)  # the server saw the client go
    async with httpx.AsyncClient(base_url=replicas[1], timeout=30) as client:
        seq = (await _send(client, alice, room, "for bob"))["seq"]
        [message] = await _recv(client, bob, room)
        assert (message["seq"], message["body"]) == (seq, "for bob")


async def test_a_receive_that_finds_nothing_new_writes_nothing(http, claimed, pool) -> None:
    alice, bob = await claimed(), await claimed()
    room = await _room(http, alice)
    await _send(http, alice, room, "once")
    assert len(await _recv(http, bob, room)) == 1

    async def read_row(claim: dict) -> tuple[str, int] | None:
        row = await pool.fetchrow(
            "SELECT xmin::text AS version, read_seq FROM channel_reads"
            " WHERE session_id = $1 AND channel_id = $2",
            claim["session"]["id"],
            room,
        )
        return None if row is None else (row["version"], row["read_seq"])

    bobs = await read_row(bob)
    assert bobs is not None and bobs[1] == 1
    assert await _recv(http, bob, room) == []
    assert await _recv(http, bob, room, wait="true", wait_seconds=0.2) == []
    assert await read_row(bob) == bobs  # not even rewritten in place
    # A session that has received nothing yet gets no read position made for it.
    assert await _recv(http, alice, room) == []  # its own message only
    assert await read_row(alice) is None


@contextlib.asynccontextmanager
async def _position_locked(pool, claim: dict, room: str) -> AsyncIterator[None]:
    """The session's read position locked by another transaction for the block: a move
    of it waits until the block ends."""
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute(
            "SELECT 1 FROM channel_reads WHERE session_id = $1 AND channel_id = $2 FOR UPDATE",
            claim["session"]["id"],
            room,
        )
        yield


async def _until_a_statement_waits_on_a_lock(pool) -> None:
    async with asyncio.timeout(15):
        while not await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ):
            await asyncio.sleep(0.02)


async def _position(pool, claim: dict, room: str) -> tuple[str, int]:
    """The row's version and the read position."""
    row = await pool.fetchrow(
        "SELECT xmin::text AS version, read_seq FROM channel_reads"
        " WHERE session_id = $1 AND channel_id = $2",
        claim["session"]["id"],
        room,
    )
    return row["version"], row["read_seq"]


async def _until_given_back(pool, claim: dict, room: str, before: tuple[str, int]) -> None:
    """Until the position was written (moved) and is back where it was."""
    async with asyncio.timeout(15):
        while (now := await _position(pool, claim, room))[0] == before[0] or now[1] != before[1]:
            await asyncio.sleep(0.02)


async def _gone_mid_request(client: httpx.AsyncClient, waiting: asyncio.Task) -> None:
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    await client.aclose()


async def test_a_client_gone_while_its_position_was_moving_gets_its_messages_back(
    replicas, claimed, pool
) -> None:
    alice, bob = await claimed(), await claimed()
    sending = httpx.AsyncClient(base_url=replicas[1], timeout=30)
    room = await _room(sending, alice)
    await _send(sending, alice, room, "first")
    assert len(await _recv(sending, bob, room)) == 1
    baseline = _waiting()

    # The replica's reader takes the next message for bob while bob's client goes.
    client = httpx.AsyncClient(base_url=replicas[0], timeout=30)
    before = await _position(pool, bob, room)
    async with _position_locked(pool, bob, room):
        waiting = asyncio.create_task(_recv(client, bob, room, wait="true", wait_seconds=20))
        await _until(lambda: _waiting() == baseline + 1)
        second = await _send(sending, alice, room, "second")
        await _until_a_statement_waits_on_a_lock(pool)
        await _gone_mid_request(client, waiting)
        await _until(lambda: _waiting() == baseline)
    await _until_given_back(pool, bob, room, before)
    assert [m["message_id"] for m in await _recv(sending, bob, room)] == [second["message_id"]]

    # Bob's receive finds the next message itself and goes while it moves past it.
    third = await _send(sending, alice, room, "third")
    client = httpx.AsyncClient(base_url=replicas[0], timeout=30)
    before = await _position(pool, bob, room)
    async with _position_locked(pool, bob, room):
        waiting = asyncio.create_task(_recv(client, bob, room, wait="true", wait_seconds=20))
        await _until_a_statement_waits_on_a_lock(pool)
        await _gone_mid_request(client, waiting)
    await _until_given_back(pool, bob, room, before)
    assert [m["message_id"] for m in await _recv(sending, bob, room)] == [third["message_id"]]
    await sending.aclose()
