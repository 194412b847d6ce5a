"""Connecting: the Entra ID password is a cached token fetched again before expiry."""

import time
from dataclasses import dataclass

from ledger.database import ENTRA_SCOPE, EntraPassword


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
