"""Connecting: the Entra ID password is a cached token fetched again before expiry; a
wait for a pooled connection is bounded."""

import time
from dataclasses import dataclass

import pytest

from ledger import database, notify
from ledger.database import ENTRA_SCOPE, EntraPassword, PoolTimeout, close_pool, create_pool
from ledger.notify import Listener, is_open


@dataclass
class _AccessToken:
    token: str
    expires_on: int


class _Credential:
    """Stands in for azure-identity's DefaultAzureCredential, which needs Azure."""

    def __init__(self, lifetime: float) -> None:
        self.lifetime = lifetime
        self.scopes: list[tuple[str, ...]] = []

    async def get_token(self, *scopes: str) -> _AccessToken:
        self.scopes.append(scopes)
        return _AccessToken(f"token-{len(self.scopes)}", int(time.time() + self.lifetime))


async def test_token_cached_until_close_to_expiry() -> None:
    credential = _Credential(lifetime=3600)
    password = EntraPassword(credential, refresh_margin=300)
    assert [await password() for _ in range(3)] == ["token-1"] * 3
    assert credential.scopes == [(ENTRA_SCOPE,)]


async def test_token_refreshed_inside_margin() -> None:
    credential = _Credential(lifetime=200)  # already inside the 300 s margin
    password = EntraPassword(credential, refresh_margin=300)
    assert await password() == "token-1"
    assert await password() == "token-2"


async def test_a_wait_for_a_connection_is_bounded(make_database, monkeypatch) -> None:
    """A pool whose connections are all held (by holders stuck forever, say) answers the
    next caller with PoolTimeout, a ConnectionError the API turns into 503 and the loops
    retry, instead of making it wait for good; a LISTEN waiting for a connection gives up
    the same way, and neither leaves a connection taken when it gives up."""
    monkeypatch.setattr(database, "ACQUIRE_SECONDS", 0.5)
    monkeypatch.setattr(notify, "ACQUIRE_SECONDS", 0.5)
    pool = await create_pool(make_database(), max_size=2)
    try:
        held = [await pool.acquire(), await pool.acquire()]
        started = time.monotonic()
        with pytest.raises(PoolTimeout) as raised:
            await pool.fetchval("SELECT 1")
        assert isinstance(raised.value, ConnectionError)
        listener = Listener(pool, "bounded_test", lambda _: None)
        await listener.ensure()  # logs listen_failed and leaves it to the caller's polling
        assert not is_open(listener._connection)
        assert time.monotonic() - started < 5
        for connection in held:
            await pool.release(connection)
        assert await pool.fetchval("SELECT 1") == 1
        await listener.ensure()
        assert is_open(listener._connection)
        await listener.close()
        assert pool.get_idle_size() == pool.get_size()
    finally:
        await close_pool(pool)
